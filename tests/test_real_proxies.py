"""A real HAProxy and a real nginx as the lab's balancer: the same instances, faults, load generator and Report.

Every test runs the Debian-packaged binary as a child of the lab and checks what a learner would check: the
experiment ran, every request was recorded, the proxy's own state change was seen as an event, and afterwards
no process of it is left (``no_child_processes``, and its PID is gone).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import wait_for

from spofkit.commands import AddInstance, BalancerFault, BalancerRecover, ChangeSettings, Deploy, SetStrategy
from spofkit.compare import BALANCERS, Comparison, Run, compare_balancers
from spofkit.events import DeployStep, Event, FaultInjected, InstanceDown, InstanceUp, StrategyChanged
from spofkit.health import HealthSettings
from spofkit.lab import Lab
from spofkit.loadgen import RequestRecord
from spofkit.policy import RetrySettings
from spofkit.real_proxy import HAProxyNode, NginxNode, RealProxyNode
from spofkit.report import build_report

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("no_child_processes")]
ROOT = Path(__file__).resolve().parent.parent
PROXIES = ("haproxy", "nginx")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def proxy_of(lab: Lab) -> RealProxyNode:
    node = lab.front.nodes["lb1"]
    assert isinstance(node, RealProxyNode)
    return node


async def get(url: str, *, method: str = "GET", timeout: float = 3.0) -> tuple[int | None, str | None]:
    """One request on a fresh connection: (status, X-Served-By), or (None, the error's name)."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        try:
            async with session.request(method, url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                await response.read()
                return response.status, response.headers.get("X-Served-By")
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            return None, type(error).__name__


async def stopped_cleanly(lab: Lab) -> None:
    """Stop the lab; the proxy's process (nginx: its whole group) and its folder must be gone."""
    node = proxy_of(lab)
    pid, workdir = node.pid, node.workdir
    await lab.stop()
    assert pid is not None and not alive(pid), f"{node.kind} (pid {pid}) outlived the lab"
    assert workdir is not None and not workdir.exists()
    if isinstance(node, NginxNode):
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)  # no worker of its group is left either


# --- the experiment: a crash of one instance under load ----------------------------------------------------------


@pytest.mark.parametrize("kind", PROXIES)
async def test_a_crash_under_load_is_measured_by_the_same_report(kind: str) -> None:
    lab = await Lab.start(3, balancer=kind, isolation="process")
    try:
        node = proxy_of(lab)
        assert lab.status().balancers[0].pid == node.pid and alive(node.pid or 0)
        seen: list[Event] = []
        lab.events.subscribe(seen.append)
        victim = lab.status().instance("b").pid
        report = await lab.run_load(rate=100, duration=4.0, faults=[(1.0, "b", "crash", {})])
        assert victim is not None and not alive(victim), "the instance's process was really killed"
        assert report.requests == 400, "every request sent was recorded"
        assert report.fault_instance == "b" and report.fault_at is not None
        downs = [e for e in seen if isinstance(e, InstanceDown) and e.instance == "b"]
        assert downs, f"{kind} never said b is down"
        assert downs[0].balancer == "lb1" and downs[0].reason.lower().startswith(kind)
        assert report.detection_window is not None
        assert lab.status().instance("b").state == "down"
        assert report.latency_p50 is not None and report.latency_p99 is not None
    finally:
        await stopped_cleanly(lab)


async def test_a_fault_is_timed_from_when_it_was_set_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy may notice a crash within milliseconds (nginx's passive marks): the fault's time must be when the kill
    was set off, not when the lab had finished killing and reaping the process, or the detection came "before" it."""
    lab = await Lab.start(2, isolation="process")
    try:
        instance = lab.instances["b"]
        read_counters = instance._last_counters

        async def slow_to_read_counters() -> None:  # a busy child: the lab asks for its counters before the kill
            await asyncio.sleep(0.3)
            await read_counters()

        monkeypatch.setattr(instance, "_last_counters", slow_to_read_counters)
        seen: list[Event] = []
        lab.events.subscribe(seen.append)
        set_off = lab.now()
        await lab.inject("b", "crash")
        fault = next(e for e in seen if isinstance(e, FaultInjected))
        assert fault.at - set_off < 0.1, f"the fault is dated {fault.at - set_off:.2f} s after it was set off"
    finally:
        await lab.stop()


@pytest.mark.parametrize("kind", PROXIES)
async def test_a_recovered_instance_is_seen_back(kind: str) -> None:
    """HAProxy's checks bring it back; nginx only learns from a real request after fail_timeout."""
    lab = await Lab.start(3, balancer=kind, health=HealthSettings(interval=0.2, timeout=0.15))
    try:
        seen: list[Event] = []
        lab.events.subscribe(seen.append)
        await lab.inject("b", "crash")
        await lab.run_load(rate=50, duration=1.0)
        await wait_for(lambda: any(isinstance(e, InstanceDown) and e.instance == "b" for e in seen), 5)
        await lab.recover("b")
        lab.start_background_load(50)
        await wait_for(lambda: any(isinstance(e, InstanceUp) and e.instance == "b" for e in seen), 10)
        up = next(e for e in seen if isinstance(e, InstanceUp) and e.instance == "b")
        assert up.reason.lower().startswith(kind)
        await wait_for(lambda: lab.status().instance("b").state == "up", 5)
    finally:
        await lab.stop_background_load()
        await stopped_cleanly(lab)


# --- changing the pool and the settings ---------------------------------------------------------------------------


async def test_haproxy_changes_its_pool_through_the_runtime_api_without_a_reload() -> None:
    lab = await Lab.start(2, balancer="haproxy")
    try:
        node = proxy_of(lab)
        assert isinstance(node, HAProxyNode)
        pid = node.pid
        await lab.apply(AddInstance("n", weight=2))
        assert "n" in (await node.api("show servers state instances"))
        await wait_for(lambda: lab.status().instance("n").state == "up", 5)
        served = {(await get(lab.balancer_url + "/"))[1] for _ in range(12)}
        assert "n" in served
        await lab.remove_instance("a")
        assert " a " not in (await node.api("show servers state instances"))
        assert [m.name for m in lab.status().balancers[0].members] == ["b", "n"]
        assert node.pid == pid, "a pool change is a runtime API call, not a new process"
    finally:
        await stopped_cleanly(lab)


async def test_a_setting_haproxy_cannot_change_at_run_time_is_a_reload_that_refuses_nobody() -> None:
    lab = await Lab.start(3, balancer="haproxy")
    try:
        node = proxy_of(lab)
        old = node.pid
        assert old is not None
        seen: list[Event] = []
        lab.events.subscribe(seen.append)
        load = asyncio.create_task(lab.run_load(rate=100, duration=2.0))
        await asyncio.sleep(0.5)
        await lab.apply(SetStrategy("least_connections"))
        report = await load
        assert node.pid != old, "the new settings run in a new process"
        assert "balance leastconn" in node.config_text()
        assert lab.status().strategy == "least_connections"
        assert any(isinstance(e, StrategyChanged) and e.balancer == "lb1" for e in seen)
        await wait_for(lambda: not alive(old), 8, message="the old HAProxy finishes and exits")
        assert report.failed == 0, report.errors_by_kind
    finally:
        await stopped_cleanly(lab)


async def test_nginx_takes_a_change_as_a_new_configuration_and_a_sighup() -> None:
    lab = await Lab.start(2, balancer="nginx")
    try:
        node = proxy_of(lab)
        assert isinstance(node, NginxNode)
        pid, generation = node.pid, node.generation
        await lab.apply(AddInstance("n"))
        assert node.generation == generation + 1
        assert (await node.control("/generation")).strip() == str(node.generation)
        served = {(await get(lab.balancer_url + "/"))[1] for _ in range(9)}
        assert "n" in served
        await lab.apply(ChangeSettings(retries=False))
        assert "proxy_next_upstream off;" in node.config_text()
        assert node.pid == pid, "nginx's master stays; its worker is replaced"
    finally:
        await stopped_cleanly(lab)


# --- the balancer's own faults ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", PROXIES)
async def test_kill_9_of_the_proxy_and_a_new_one_configured_alike(kind: str) -> None:
    lab = await Lab.start(3, balancer=kind)
    try:
        old = proxy_of(lab).pid
        assert old is not None
        await lab.apply(BalancerFault("lb1", "crash"))
        status = lab.status().balancer("lb1")
        assert status.state == "crashed" and status.pid is None
        assert not alive(old)
        assert (await get(lab.balancer_url + "/", timeout=1.0))[0] is None, "nothing answers at the service address"
        await lab.apply(BalancerRecover("lb1"))
        status = lab.status().balancer("lb1")
        assert status.state == "running" and status.pid not in (None, old)
        assert [m.name for m in status.members] == ["a", "b", "c"]
        assert (await get(lab.balancer_url + "/"))[0] == 200
    finally:
        await stopped_cleanly(lab)


@pytest.mark.parametrize("kind", PROXIES)
async def test_a_hung_proxy_accepts_and_never_answers(kind: str) -> None:
    lab = await Lab.start(2, balancer=kind)
    try:
        await lab.apply(BalancerFault("lb1", "hang"))
        assert lab.status().balancer("lb1").state == "hang"
        status, error = await get(lab.balancer_url + "/", timeout=1.0)
        assert status is None and error in ("TimeoutError", "ServerTimeoutError")  # connected, no answer
        await lab.apply(BalancerRecover("lb1"))
        assert (await get(lab.balancer_url + "/"))[0] == 200
        assert lab.status().balancer("lb1").state == "running"
    finally:
        await stopped_cleanly(lab)


# --- the idempotency rule, as exported ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", PROXIES)
async def test_a_post_that_may_have_reached_a_hung_instance_is_not_replayed(kind: str) -> None:
    """The exported retry rule: GETs are retried elsewhere after the per-try timeout, POSTs are not."""
    retries = RetrySettings(per_try_timeout=0.3, deadline=2.0)
    lab = await Lab.start(3, balancer=kind, retries=retries, health=None, ejection=None)
    try:
        await lab.inject("b", "hang")
        gets = [await get(lab.balancer_url + "/") for _ in range(6)]
        posts = [await get(lab.balancer_url + "/", method="POST") for _ in range(6)]
        assert all(status == 200 for status, _ in gets), gets
        assert any(status == 504 for status, _ in posts), posts  # the ones that went to b: not sent again
        assert all(status in (200, 504) for status, _ in posts), posts
    finally:
        await stopped_cleanly(lab)


# --- spofkit serve --balancer -------------------------------------------------------------------------------------


def read_until_ready(process: subprocess.Popen[str], timeout: float = 30.0) -> dict[str, list[str]]:
    lines: dict[str, list[str]] = {}
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"spofkit serve ended before ready: {process.stderr.read() if process.stderr else ''}")
        key, _, rest = line.strip().partition(" ")
        if key == "ready":
            return lines
        lines.setdefault(key, []).append(rest)
    raise AssertionError("spofkit serve was not ready in time")


@pytest.mark.parametrize("kind", PROXIES)
async def test_spofkit_serve_with_a_real_proxy(kind: str, tmp_path: Path) -> None:
    env = dict(os.environ, HOME=str(tmp_path))  # the admin token file goes to a home of the test's own
    command = [sys.executable, "-m", "spofkit", "serve", "--balancer", kind, "--instances", "2"]
    command += ["--port", "0", "--admin-port", "0", "--quiet"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        lines = await asyncio.to_thread(read_until_ready, process)
        service, admin = lines["balancer"][0], lines["admin"][0]
        assert f"balancer {kind}" in " ".join(lines["#"])
        assert (await get(service + "/"))[0] == 200
        async with aiohttp.ClientSession() as session, session.get(admin + "/status") as response:
            status: dict[str, Any] = json.loads(await response.text())
        proxy_pid = status["balancers"][0]["pid"]
        assert proxy_pid and alive(proxy_pid)
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, 30)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    assert code == 0
    assert not alive(proxy_pid), f"{kind} outlived spofkit serve"


# --- side by side -------------------------------------------------------------------------------------------------


async def test_one_call_runs_the_scenario_on_the_three_balancers_and_builds_one_table() -> None:
    progress: list[float] = []
    comparison = await compare_balancers(
        "crash", rate=100, duration=3.0, fault_at=1.0, isolation="inprocess", on_progress=progress.append
    )
    assert [(run.scenario, run.balancer) for run in comparison.runs] == [("crash", b) for b in BALANCERS]
    for run in comparison.runs:
        assert run.report.requests == 300, f"{run.balancer}: every request sent was recorded"
        assert run.taken_out_after is not None, f"{run.balancer} never took the crashed instance out"
    table = comparison.table()
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["scenario", "balancer", "requests", "client"]
    for run in comparison.runs:
        row = next(line for line in lines if line.split()[:2] == ["crash", run.balancer])
        assert f"{run.report.client_visible_outage:.2f} s" in row
        assert row.split()[3] == str(run.report.failed)
    assert "HAProxy 2." in comparison.machine and "nginx 1." in comparison.machine
    assert progress and progress[-1] == pytest.approx(1.0) and progress == sorted(progress)


def test_the_table_says_never_and_lines_up() -> None:
    """The table on hand-made reports: numbers right-aligned under their header, "never" for a fault nobody saw."""
    records = [RequestRecord(i, "GET", "/", i / 10, i / 10 + 0.01, 200, "a", 1, None) for i in range(20)]
    report = build_report(records, [FaultInjected(0.5, "b", "gray", {})])
    runs = (Run("gray", "spofkit", report, 0.06, "ejected"), Run("gray", "haproxy", report, None, ""))
    comparison = Comparison(runs, 3, 10.0, 2.0, 0.5, "inprocess")
    lines = comparison.table().splitlines()
    header, spofkit_row, haproxy_row = lines[0], lines[2], lines[3]
    assert spofkit_row.endswith("0.06 s, ejected") and haproxy_row.endswith("never")
    errors_end = header.index("client errors") + len("client errors")
    assert spofkit_row[:errors_end].endswith(" 0") and haproxy_row[:errors_end].endswith(" 0")
    assert "gray, haproxy: b was never taken out, and no client noticed" in comparison.to_text()
    with pytest.raises(ValueError, match="scenario must be one of"):
        asyncio.run(compare_balancers("meltdown"))


def test_bench_compare_proxies_prints_one_line_per_run_as_json() -> None:
    command = [sys.executable, str(ROOT / "bench" / "compare_proxies.py"), "--scenarios", "crash"]
    command += ["--balancers", "haproxy,nginx", "--rate", "50", "--duration", "2", "--fault-at", "0.5", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    runs = [json.loads(line) for line in done.stdout.splitlines()]
    assert [run["balancer"] for run in runs] == ["haproxy", "nginx"]
    assert all(run["requests"] == 100 and run["scenario"] == "crash" for run in runs)


# --- what a person sees: the dashboard attached to a lab whose balancer is HAProxy ----------------------------


async def test_the_dashboard_shows_haproxy_marking_a_crashed_instance_down_in_haproxy_s_words() -> None:
    pytest.importorskip("textual")
    from spofkit.admin import AdminServer
    from tui.app import SpofkitApp, make_source
    from tui.widgets.event_log import EventLog
    from tui.widgets.instance_panel import InstancePanel

    lab = await Lab.start(3, balancer="haproxy")
    admin = AdminServer(lab, token="test-token-0123456789")
    await admin.start()
    try:
        app = SpofkitApp(make_source(admin.url, rate=20.0, token=admin.token))
        async with app.run_test(size=(100, 32)) as pilot:
            try:
                await wait_for(lambda: app.lab_ready and app.panels_shown(), 20, message="drawn")
                await pilot.press("2", "c")  # select b, crash it: HAProxy is the one to notice
                panel = app.query_one("#panel-b", InstancePanel)
                await wait_for(lambda: panel.has_class("state-down"), 20, message="b shows DOWN")
                log = app.query_one(EventLog)
                await wait_for(
                    lambda: any("b marked DOWN: HAProxy" in line.text for line in log.lines), 20, message="in the log"
                )
            finally:
                await app.shutdown()
    finally:
        await admin.stop()
        await stopped_cleanly(lab)


@pytest.mark.parametrize("kind", PROXIES)
async def test_a_rolling_deploy_waits_for_what_the_proxy_says(kind: str) -> None:
    """HAProxy's checks must pass before the deploy moves on; nginx has none, and says a server is up at once."""
    lab = await Lab.start(2, balancer=kind, health=HealthSettings(interval=0.2, timeout=0.15))
    try:
        seen: list[Event] = []
        lab.events.subscribe(seen.append)
        await lab.apply(Deploy(batch=1))
        done = [e.instance for e in seen if isinstance(e, DeployStep) and e.step == "done"]
        assert done == ["a", "b"]
        ups = [e for e in seen if isinstance(e, InstanceUp)]
        assert {e.instance for e in ups} == {"a", "b"} and all(e.reason.lower().startswith(kind) for e in ups)
        if kind == "nginx":
            assert "no health checks" in ups[0].reason
        assert (await get(lab.balancer_url + "/"))[0] == 200
    finally:
        await stopped_cleanly(lab)


@pytest.mark.parametrize("kind", PROXIES)
async def test_a_killed_supervisor_takes_its_proxy_with_it(kind: str, tmp_path: Path) -> None:
    """kill -9 of `spofkit serve`: nothing can clean up, so the kernel must (PR_SET_PDEATHSIG on the proxy)."""
    env = dict(os.environ, HOME=str(tmp_path))
    command = [sys.executable, "-m", "spofkit", "serve", "--balancer", kind, "--instances", "1"]
    command += ["--port", "0", "--admin-port", "0", "--quiet"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        lines = await asyncio.to_thread(read_until_ready, process)
        proxy_pid = int(lines["front"][0].split(" pid ")[1].split()[0])
        assert alive(proxy_pid)
    finally:
        process.kill()
        await asyncio.to_thread(process.wait, 30)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    await wait_for(lambda: not alive(proxy_pid), 10, message=f"{kind} (pid {proxy_pid}) outlives a killed supervisor")
    if kind == "nginx":

        def group_gone() -> bool:
            try:
                os.killpg(proxy_pid, 0)
            except ProcessLookupError:
                return True
            return False

        await wait_for(group_gone, 10, message="nginx's worker outlives its master")
    # Its folder stayed behind (nobody lived to remove it); the next lab that starts a proxy removes it.
    stale = [p for p in Path(tempfile.gettempdir()).glob(f"spofkit-{kind}-lb1-{process.pid}-*")]
    assert stale
    lab = await Lab.start(1, balancer=kind)
    await stopped_cleanly(lab)
    assert not [p for p in stale if p.exists()]
