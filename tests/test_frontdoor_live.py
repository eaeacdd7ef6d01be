"""The front door, live: a pair of balancers on one service address, their faults, and zero-downtime deploys."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from conftest import child_pids, wait_for

from spofkit.admin import AdminServer
from spofkit.commands import BalancerFault, BalancerRecover, BalancerRestart, CommandError, Deploy
from spofkit.events import BalancerRoleChanged, DeployStep, Event
from spofkit.health import HealthSettings
from spofkit.lab import Lab
from spofkit.policy.pair import PairSettings

pytestmark = pytest.mark.timeout(120)
QUICK = HealthSettings(interval=0.2, timeout=0.15, rise=2, fall=2)
MASTER_DOWN = PairSettings(priority=100).master_down_interval


def holder(lab: Lab) -> str | None:
    holding = [b.name for b in lab.status().balancers if b.address is not None and b.state != "crashed"]
    return holding[0] if len(holding) == 1 else None


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int | None, str | None]:
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
            await response.read()
            return response.status, None
    except (aiohttp.ClientError, asyncio.TimeoutError) as error:
        return None, type(error).__name__


class SteadyClient:
    """Requests through the service address at a steady, bounded rate; ``retrying`` retries connection errors
    on a fresh connection with a short backoff, for up to 2 s (what a careful client of a pair does)."""

    def __init__(self, url: str, *, rate: float = 50.0, retrying: bool = False) -> None:
        self.url = url
        self.rate = rate
        self.retrying = retrying
        self.sent = 0
        self.failed: list[str] = []
        self._stop = asyncio.Event()

    async def run(self, max_seconds: float = 30.0) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + max_seconds
        connector = aiohttp.TCPConnector(force_close=True)  # one connection a request: a dead balancer's
        async with aiohttp.ClientSession(connector=connector) as session:  # open connections die with it
            tasks = []
            while not self._stop.is_set() and loop.time() < end:
                tasks.append(asyncio.create_task(self._one(session)))
                self.sent += 1
                await asyncio.sleep(1 / self.rate)
            await asyncio.gather(*tasks)

    async def _one(self, session: aiohttp.ClientSession) -> None:
        deadline = asyncio.get_running_loop().time() + 2.0
        delay = 0.02
        while True:
            status, error = await get(session, self.url + "/")
            if status == 200:
                return
            retry = self.retrying and error is not None and asyncio.get_running_loop().time() + delay < deadline
            if not retry:
                self.failed.append(error or f"http {status}")
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)

    def stop(self) -> None:
        self._stop.set()


@pytest.fixture
async def pair_lab() -> AsyncIterator[Lab]:
    lab = await Lab.start(3, balancers=2, health=QUICK)
    try:
        yield lab
    finally:
        await lab.stop()


async def test_a_pair_starts_with_the_primary_holding_the_service_address(pair_lab: Lab) -> None:
    status = pair_lab.status()
    roles = {b.name: b.role for b in status.balancers}
    assert roles == {"lb1": "master", "lb2": "backup"}
    assert holder(pair_lab) == "lb1"
    assert status.balancers[0].address == pair_lab.balancer_url
    async with aiohttp.ClientSession() as session:
        assert (await get(session, pair_lab.balancer_url + "/"))[0] == 200
        for balancer in status.balancers:  # each also answers on its own address, for clients that know both
            assert (await get(session, balancer.url + "/"))[0] == 200
    assert all(len(b.members) == 3 for b in status.balancers)  # each has its own view of the instances


async def test_a_crashed_master_is_replaced_and_a_retrying_client_loses_nothing(pair_lab: Lab) -> None:
    client = SteadyClient(pair_lab.balancer_url, retrying=True)
    running = asyncio.create_task(client.run())
    await wait_for(lambda: client.sent >= 25, 5)
    crashed_at = pair_lab.now()
    await pair_lab.apply(BalancerFault("lb1", "crash"))
    await wait_for(lambda: holder(pair_lab) == "lb2", MASTER_DOWN + 3, message="lb2 takes the address")
    took = pair_lab.now() - crashed_at
    await wait_for(lambda: client.sent >= 150, 10)
    client.stop()
    await running
    assert client.failed == [], client.failed
    assert took <= MASTER_DOWN + 1.0  # the bound, with room for a busy machine
    # The supervisor, the instances and the survivor are all still there.
    assert {i.state for i in pair_lab.status().instances} == {"up"}
    assert pair_lab.status().balancer("lb1").state == "crashed"


async def test_a_client_without_retries_sees_the_takeover(pair_lab: Lab) -> None:
    client = SteadyClient(pair_lab.balancer_url, retrying=False)
    running = asyncio.create_task(client.run())
    await wait_for(lambda: client.sent >= 25, 5)
    await pair_lab.apply(BalancerFault("lb1", "crash"))
    await wait_for(lambda: holder(pair_lab) == "lb2", MASTER_DOWN + 3)
    await wait_for(lambda: client.sent >= 100, 10)
    client.stop()
    await running
    assert client.failed, "connections are refused until lb2 takes the address"
    assert set(client.failed) <= {"ClientConnectorError", "ServerDisconnectedError", "ClientOSError"}


@pytest.mark.parametrize("preempt", [True, False])
async def test_a_restarted_primary_takes_back_the_address_only_with_preempt(preempt: bool) -> None:
    lab = await Lab.start(2, balancers=2, health=QUICK, preempt=preempt)
    try:
        await lab.apply(BalancerFault("lb1", "crash"))
        await wait_for(lambda: holder(lab) == "lb2", MASTER_DOWN + 3)
        await lab.apply(BalancerRecover("lb1"))  # a crashed balancer is started again
        expected = "lb1" if preempt else "lb2"
        await wait_for(lambda: holder(lab) == expected, 5, message=f"{expected} holds the address")
        await wait_for(lambda: {b.role for b in lab.status().balancers} == {"master", "backup"}, 5)
        await asyncio.sleep(0)  # nothing to wait for: the roles have settled
        assert holder(lab) == expected
        assert len(lab.status().balancer("lb1").members) == 2  # the supervisor re-configured the new one
    finally:
        await lab.stop()


async def test_a_hung_master_keeps_advertising_so_nobody_takes_over(pair_lab: Lab) -> None:
    await pair_lab.apply(BalancerFault("lb1", "hang"))
    changes: list[Event] = []
    unsubscribe = pair_lab.events.subscribe(lambda e: changes.append(e) if isinstance(e, BalancerRoleChanged) else None)
    async with aiohttp.ClientSession() as session:
        status, error = await get(session, pair_lab.balancer_url + "/")
    assert (status, error) == (None, "TimeoutError")  # accepted, never answered
    started = pair_lab.now()
    await wait_for(lambda: pair_lab.now() - started > 2 * MASTER_DOWN, 5)
    unsubscribe()
    assert changes == [] and holder(pair_lab) == "lb1"  # a gray failure of the front door
    assert pair_lab.status().balancer("lb1").state == "hang"
    await pair_lab.apply(BalancerRecover("lb1"))
    async with aiohttp.ClientSession() as session:
        assert (await get(session, pair_lab.balancer_url + "/"))[0] == 200


async def test_advert_loss_makes_two_masters_and_the_kernel_refuses_the_second_listener(pair_lab: Lab) -> None:
    await pair_lab.apply(BalancerFault("lb1", "advert_loss"))
    await wait_for(lambda: {b.role for b in pair_lab.status().balancers} == {"master"}, MASTER_DOWN + 3)
    # Split brain; on one host only one can listen. lb2 is master the moment it decides, blocked once its attempt to
    # take the address has failed: a moment later (CI once read the status in between).
    await wait_for(lambda: pair_lab.status().balancer("lb2").state == "blocked", 5, message="lb2 blocked")
    assert "cannot take" in pair_lab.status().balancer("lb2").note
    await pair_lab.apply(BalancerRecover("lb1"))
    await wait_for(lambda: pair_lab.status().balancer("lb2").role == "backup", 5, message="healed")


async def test_active_active_keeps_serving_when_one_balancer_dies() -> None:
    lab = await Lab.start(3, balancers=2, pair="active-active", health=QUICK)
    try:
        assert {b.role for b in lab.status().balancers} == {"active"}
        client = SteadyClient(lab.balancer_url, retrying=True)
        running = asyncio.create_task(client.run())
        await wait_for(lambda: client.sent >= 25, 5)
        await lab.apply(BalancerFault("lb2", "crash"))
        await wait_for(lambda: client.sent >= 100, 10)
        client.stop()
        await running
        assert client.failed == [], client.failed
        served_by = {e.balancer for e in lab.events.history if e.kind == "RequestCompleted"}
        assert served_by == {"lb1", "lb2"}  # the kernel spread connections over both while both lived
    finally:
        await lab.stop()


async def test_rolling_restart_under_load_fails_nothing_and_restart_all_does() -> None:
    # Process isolation: a restart is a new process, which takes a moment to start — as a real deploy does.
    lab = await Lab.start(3, health=QUICK, isolation="process")
    try:
        steps: list[DeployStep] = []
        lab.events.subscribe(lambda e: steps.append(e) if isinstance(e, DeployStep) else None)
        client = SteadyClient(lab.balancer_url, rate=60)
        running = asyncio.create_task(client.run())
        result = await lab.apply(Deploy(batch=1))
        client.stop()
        await running
        assert result["deployed"] == ["a", "b", "c"]
        assert client.failed == [], client.failed
        assert [s.step for s in steps if s.instance == "a"] == ["drain", "restart", "ready?", "done"]
        # The naive way, for comparison: everything at once.
        client = SteadyClient(lab.balancer_url, rate=60)
        running = asyncio.create_task(client.run())
        await wait_for(lambda: client.sent >= 20, 5)
        await lab.apply(Deploy(how="all-at-once"))
        await wait_for(lambda: client.sent >= 80, 10)
        client.stop()
        await running
        assert client.failed, "restarting every instance at once is an outage"
    finally:
        await lab.stop()


async def test_a_second_deploy_while_one_runs_is_refused() -> None:
    lab = await Lab.start(2, health=QUICK)
    try:
        first = asyncio.create_task(lab.apply(Deploy()))
        await wait_for(lambda: any(e.kind == "DeployStep" for e in lab.events.history), 5)
        with pytest.raises(CommandError) as refused:
            await lab.apply(Deploy())
        assert refused.value.status == 409
        await first
    finally:
        await lab.stop()


async def test_balancer_upgrade_by_planned_takeover_loses_nothing_for_a_retrying_client(pair_lab: Lab) -> None:
    client = SteadyClient(pair_lab.balancer_url, retrying=True)
    running = asyncio.create_task(client.run())
    await wait_for(lambda: client.sent >= 20, 5)
    result = await pair_lab.apply(Deploy(target="balancers"))
    await wait_for(lambda: holder(pair_lab) is not None, 5)
    client.stop()
    await running
    assert result["deployed"] == ["lb2", "lb1"]  # the backup first
    assert client.failed == [], client.failed


async def test_unknown_balancer_is_404_and_the_admin_api_drives_the_pair(pair_lab: Lab) -> None:
    with pytest.raises(CommandError) as unknown:
        await pair_lab.apply(BalancerRestart("lb9"))
    assert (unknown.value.status, unknown.value.field) == (404, "balancer")
    admin = AdminServer(pair_lab, token="pair-test-token")
    await admin.start()
    try:
        headers = {"Authorization": "Bearer pair-test-token"}
        async with aiohttp.ClientSession(headers=headers) as session:
            async with session.get(f"{admin.url}/status") as response:
                body: dict[str, Any] = await response.json()
            assert [(b["name"], b["role"]) for b in body["balancers"]] == [("lb1", "master"), ("lb2", "backup")]
            assert {"name", "pid", "role", "state", "address"} <= set(body["balancers"][0])
            async with session.post(f"{admin.url}/balancers/lb1/fault", json={"kind": "crash"}) as response:
                assert response.status == 200
            await wait_for(lambda: holder(pair_lab) == "lb2", MASTER_DOWN + 3)
            async with session.post(f"{admin.url}/balancers/lb1/fault", json={"kind": "melt"}) as response:
                assert (response.status, (await response.json())["field"]) == (400, "kind")
    finally:
        await admin.stop()


async def test_kill_9_of_a_balancer_process_leaves_the_lab_running_and_no_orphan() -> None:
    before = child_pids()
    lab = await Lab.start(2, balancers=2, isolation="process", health=QUICK)
    try:
        lb1 = lab.status().balancer("lb1")
        assert lb1.pid is not None and lb1.pid in child_pids()
        os.kill(lb1.pid, signal.SIGKILL)  # from outside, as a learner's `kill -9` would
        await wait_for(lambda: holder(lab) == "lb2", MASTER_DOWN + 5, message="lb2 takes over")
        async with aiohttp.ClientSession() as session:
            assert (await get(session, lab.balancer_url + "/"))[0] == 200
        assert lab.status().balancer("lb1").state == "crashed"
        assert all(i.running for i in lab.status().instances)
        await lab.apply(BalancerRestart("lb1"))
        new_pid = lab.status().balancer("lb1").pid
        assert new_pid is not None and new_pid != lb1.pid
    finally:
        await lab.stop()
    await wait_for(lambda: child_pids() == before, 10, message="every child process gone")


async def _serve_pair() -> tuple[asyncio.subprocess.Process, dict[str, str], list[str]]:
    import sys

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "spofkit", "serve", "--instances", "2", "--port", "0", "--admin-port", "0",
        "--isolation", "process", "--balancers", "2", "--quiet",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout is not None
    lines: list[str] = []
    while True:
        line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode().rstrip("\n")
        assert line, f"serve ended early: {lines}"
        lines.append(line)
        if line == "ready":
            break
    listing = dict(line.split(" ", 1) for line in lines if " " in line and not line.startswith("#"))
    return process, listing, lines


def _pids(lines: list[str]) -> dict[str, int]:
    pids = {}
    for line in lines:
        words = line.split()
        if words and words[0] in ("front", "instance") and "pid" in words:
            pids[words[1]] = int(words[words.index("pid") + 1])
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


async def test_serve_a_pair_kill_9_a_balancer_then_stop_the_supervisor() -> None:
    process, listing, lines = await _serve_pair()
    pids = _pids(lines)
    try:
        assert set(pids) == {"lb1", "lb2", "a", "b"}, lines
        os.kill(pids["lb1"], signal.SIGKILL)
        admin = listing["admin"]

        async def lb2_master() -> bool:
            async with aiohttp.ClientSession() as session, session.get(f"{admin}/status") as response:
                body = await response.json()
            return any(b["name"] == "lb2" and b["address"] for b in body["balancers"])

        await wait_for(lb2_master, MASTER_DOWN + 5, message="the admin API outlives lb1 and shows lb2 master")
        async with aiohttp.ClientSession() as session:
            assert (await get(session, listing["balancer"] + "/"))[0] == 200
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 60) == 0
        for name, pid in pids.items():
            await wait_for(lambda pid=pid: not _alive(pid), 10, message=f"{name} (pid {pid}) gone")
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_killing_the_supervisor_takes_every_child_with_it() -> None:
    process, _, lines = await _serve_pair()
    pids = _pids(lines)
    try:
        process.kill()  # kill -9 of `spofkit serve`: no clean-up code runs in it
        await process.wait()
        for name, pid in pids.items():
            await wait_for(lambda pid=pid: not _alive(pid), 10, message=f"{name} (pid {pid}) died with its parent")
    finally:
        for pid in pids.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("retry_for", [0.0, 2.0])
async def test_a_client_that_knows_both_balancers_fails_over_between_them(retry_for: float) -> None:
    # Client-side failover, like a client with several DNS records: each balancer's own address is an entry.
    lab = await Lab.start(2, balancers=2, pair="active-active", health=QUICK)
    try:
        entries = [b.url for b in lab.status().balancers]
        crash = BalancerFault("lb1", "crash")

        async def crash_soon() -> None:
            await asyncio.sleep(0.5)
            await lab.apply(crash)

        crashing = asyncio.create_task(crash_soon())
        report = await lab.run_load(
            rate=60, duration=2.0, entry_urls=entries[1:], client_retry_for=retry_for, url=entries[0]
        )
        await crashing
        if retry_for:
            assert report.failed == 0, report.errors_by_kind  # lb1's share went to lb2's address
        else:
            assert report.failed > 0  # half the requests go to lb1's address, refused once it is dead
            assert set(report.errors_by_kind) == {"connect"}
    finally:
        await lab.stop()
