"""Service instances and their faults, observed from outside with a real HTTP client on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import child_pids, wait_for

import spofkit
from spofkit.events import (
    EventBus,
    FaultCleared,
    FaultInjected,
    InstanceRestarted,
    InstanceStarted,
    InstanceStopped,
)
from spofkit.faults import (
    FAULT_KINDS,
    Crash,
    Error,
    FaultError,
    Flap,
    Gray,
    Hang,
    Reset,
    Slow,
    Warmup,
    make_fault,
)
from spofkit.instance import ServiceInstance
from spofkit.isolation import make_instance
from spofkit.process_instance import ProcessInstance

SHORT = aiohttp.ClientTimeout(total=0.3)


@pytest.fixture
def bus() -> EventBus:
    return EventBus()


@pytest.fixture
async def instance(bus: EventBus) -> AsyncIterator[ServiceInstance]:
    service = ServiceInstance("a", events=bus, seed=7)
    await service.start()
    yield service
    await service.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as client:
        yield client


async def fetch(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, dict[str, Any], str | None]:
    """GET ``url``: status, JSON body, X-Served-By."""
    async with session.get(url, **kwargs) as response:
        return response.status, await response.json(), response.headers.get("X-Served-By")


async def refused(session: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)):
            return False
    except aiohttp.ClientConnectorError as exc:
        return isinstance(exc.os_error, ConnectionRefusedError)


async def serves(session: aiohttp.ClientSession, url: str) -> bool:
    try:
        status, _, _ = await fetch(session, url, timeout=aiohttp.ClientTimeout(total=2))
    except aiohttp.ClientError:
        return False
    return status == 200


def kinds(bus: EventBus) -> list[str]:
    return [event.kind for event in bus.history]


# --- faults: pure data --------------------------------------------------------------------------------


def test_fault_defaults_and_params() -> None:
    assert set(FAULT_KINDS) == {"crash", "hang", "slow", "error", "gray", "flap", "reset", "warmup"}
    assert Slow().params() == {"ms": 200.0, "jitter_ms": 0.0}
    assert Error().params() == {"rate": 1.0, "status": 500}
    assert Flap().period == 2.0
    assert Warmup().params() == {"seconds": 5.0, "extra_ms": 300.0}
    assert Crash().params() == {}
    fault = make_fault("gray", rate=0.5, status=503)
    assert fault == Gray(rate=0.5, status=503)
    assert fault.kind == "gray"
    assert make_fault("slow", ms=50).params() == {"ms": 50.0, "jitter_ms": 0.0}


def test_warmup_decays_linearly_to_zero() -> None:
    warmup = Warmup(seconds=4.0, extra_ms=400)
    assert warmup.extra_delay(0.0) == pytest.approx(0.4)
    assert warmup.extra_delay(2.0) == pytest.approx(0.2)
    assert warmup.extra_delay(9.0) == 0.0


@pytest.mark.parametrize(
    ("kind", "params", "field"),
    [
        ("explode", {}, "kind"),
        ("slow", {"seconds": 1}, "seconds"),
        ("crash", {"rate": 1.0}, "rate"),
        ("slow", {"ms": -1}, "ms"),
        ("slow", {"ms": "200"}, "ms"),
        ("slow", {"jitter_ms": -5}, "jitter_ms"),
        ("error", {"rate": 1.5}, "rate"),
        ("error", {"rate": True}, "rate"),
        ("error", {"status": 99}, "status"),
        ("error", {"status": 100}, "status"),
        ("gray", {"status": 200}, "status"),
        ("slow", {"ms": float("nan")}, "ms"),
        ("slow", {"ms": float("inf")}, "ms"),
        ("slow", {"ms": 1e12}, "ms"),
        ("warmup", {"seconds": float("nan")}, "seconds"),
        ("flap", {"period": 1e9}, "period"),
        ("gray", {"status": 600}, "status"),
        ("gray", {"status": 500.5}, "status"),
        ("flap", {"period": 0}, "period"),
        ("reset", {"rate": -0.1}, "rate"),
        ("warmup", {"seconds": 0}, "seconds"),
        ("warmup", {"extra_ms": -1}, "extra_ms"),
    ],
)
def test_bad_fault_names_the_field(kind: str, params: dict[str, Any], field: str) -> None:
    with pytest.raises(FaultError) as caught:
        make_fault(kind, **params)
    assert caught.value.field == field
    assert field in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_faults_validate_when_built_directly() -> None:
    with pytest.raises(FaultError, match="rate"):
        Error(rate=2.0)


def test_bad_instance_arguments() -> None:
    with pytest.raises(ValueError, match="port"):
        ServiceInstance("a", port=70000)
    with pytest.raises(ValueError, match="work_time"):
        ServiceInstance("a", work_time=-1)
    with pytest.raises(ValueError, match="isolation"):
        make_instance("a", isolation="container")
    assert isinstance(make_instance("a"), ServiceInstance)
    assert isinstance(make_instance("a", isolation="process"), ProcessInstance)


# --- a healthy instance -------------------------------------------------------------------------------


async def test_answers_any_path_and_counts_served(
    instance: ServiceInstance, session: aiohttp.ClientSession, bus: EventBus
) -> None:
    status, body, served_by = await fetch(session, instance.url + "/some/path")
    assert (status, served_by) == (200, "a")
    assert body == {"instance": "a", "method": "GET", "path": "/some/path", "body_bytes": 0, "served": 1}
    async with session.post(instance.url + "/upload", data=b"x" * 123) as response:
        assert (await response.json())["body_bytes"] == 123
    status, body, _ = await fetch(session, instance.url + "/health")
    assert (status, body) == (200, {"status": "ok", "instance": "a"})
    stats = instance.stats()
    assert stats["served"] == 2  # the health check is not counted
    assert stats["url"] == instance.url and stats["running"] and stats["pid"] is None
    started = bus.history[0]
    assert isinstance(started, InstanceStarted) and started.url == instance.url


async def test_inject_before_start_is_an_error() -> None:
    service = ServiceInstance("idle")
    with pytest.raises(RuntimeError, match="start"):
        await service.inject(Hang())
    with pytest.raises(TypeError, match="Fault"):
        await service.inject("hang")  # type: ignore[arg-type]


# --- faults, observed -------------------------------------------------------------------------------------


async def test_crash_refuses_connections_and_cuts_open_ones(
    instance: ServiceInstance, session: aiohttp.ClientSession, bus: EventBus
) -> None:
    # An idle keep-alive connection that has already been served once...
    reader, writer = await asyncio.open_connection(instance.host, instance.port)
    writer.write(b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    await reader.readexactly(length)
    # ...and a request in flight.
    await instance.inject(Slow(ms=10_000))
    in_flight = asyncio.create_task(fetch(session, instance.url + "/slow"))
    await wait_for(lambda: instance.in_flight == 1)

    port = instance.port
    await instance.inject(Crash())

    assert not instance.running
    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        await in_flight
    try:
        leftover = await asyncio.wait_for(reader.read(), 5)
    except ConnectionResetError:
        leftover = b""
    assert leftover == b""  # the kept-alive connection was closed under the client
    writer.close()
    assert await refused(session, instance.url)
    assert instance.in_flight == 0

    await instance.restart()
    assert instance.port == port
    status, body, _ = await fetch(session, instance.url)
    assert status == 200 and body["instance"] == "a"
    assert kinds(bus) == [
        "InstanceStarted",
        "FaultInjected",  # slow
        "FaultCleared",  # slow, replaced by...
        "FaultInjected",  # ...crash
        "FaultCleared",  # crash, undone by the restart
        "InstanceRestarted",
    ]


async def test_recover_brings_a_crashed_instance_back(
    instance: ServiceInstance, session: aiohttp.ClientSession, bus: EventBus
) -> None:
    await instance.inject(Crash())
    assert await refused(session, instance.url)
    await instance.recover()
    assert await serves(session, instance.url)
    cleared = [e for e in bus.history if isinstance(e, FaultCleared)]
    assert [e.fault for e in cleared] == ["crash"]
    assert isinstance(bus.history[-1], InstanceRestarted)


async def test_hang_accepts_but_never_answers_until_recover(
    instance: ServiceInstance, session: aiohttp.ClientSession
) -> None:
    await instance.inject(Hang())
    for path in ("/", "/health"):
        with pytest.raises(asyncio.TimeoutError):
            await fetch(session, instance.url + path, timeout=SHORT)
    # The client gave up; the server still holds its stuck requests, as a hung process does.
    await wait_for(lambda: instance.in_flight == 2)
    waiting = asyncio.create_task(fetch(session, instance.url + "/late"))
    await wait_for(lambda: instance.in_flight == 3)
    await instance.recover()
    status, body, _ = await waiting  # released, and answered
    assert status == 200 and body["path"] == "/late"
    await wait_for(lambda: instance.in_flight == 0)
    assert await serves(session, instance.url)


async def test_stop_while_hung_leaves_nothing_behind(session: aiohttp.ClientSession) -> None:
    service = ServiceInstance("h")
    await service.start()
    await service.inject(Hang())
    stuck = asyncio.create_task(fetch(session, service.url))
    await wait_for(lambda: service.in_flight == 1)
    await service.stop()
    with pytest.raises(aiohttp.ClientError):
        await stuck
    assert service.in_flight == 0 and not service.running
    assert await refused(session, service.url)


async def test_slow_adds_latency_to_requests_and_health(
    instance: ServiceInstance, session: aiohttp.ClientSession
) -> None:
    await instance.inject(Slow(ms=150, jitter_ms=20))
    for path in ("/", "/health"):
        began = time.monotonic()
        status, _, _ = await fetch(session, instance.url + path)
        assert status == 200
        assert time.monotonic() - began >= 0.125  # lower bound only: a busy machine is slower, never faster


async def test_error_fails_requests_and_health(
    instance: ServiceInstance, session: aiohttp.ClientSession, bus: EventBus
) -> None:
    await instance.inject(Error(rate=1.0, status=503))
    for path in ("/", "/health"):
        status, body, served_by = await fetch(session, instance.url + path)
        assert (status, served_by) == (503, "a")
        assert "error" in body
    assert instance.errors == 2 and instance.served == 0
    injected = bus.history[-1]
    assert isinstance(injected, FaultInjected)
    assert (injected.fault, injected.params) == ("error", {"rate": 1.0, "status": 503})
    await instance.inject(Error(rate=0.0))
    assert (await fetch(session, instance.url))[0] == 200


async def test_error_rate_is_a_fraction(instance: ServiceInstance, session: aiohttp.ClientSession) -> None:
    await instance.inject(Error(rate=0.5))
    statuses = [(await fetch(session, instance.url))[0] for _ in range(40)]
    assert 5 <= statuses.count(500) <= 35 and statuses.count(500) + statuses.count(200) == 40


async def test_gray_failure_passes_health_checks(instance: ServiceInstance, session: aiohttp.ClientSession) -> None:
    await instance.inject(Gray(rate=1.0, status=502))
    assert (await fetch(session, instance.url + "/health"))[0] == 200
    assert (await fetch(session, instance.url + "/work"))[0] == 502


async def test_flap_alternates_down_and_up(instance: ServiceInstance, session: aiohttp.ClientSession) -> None:
    await instance.inject(Flap(period=0.3))
    await wait_for(lambda: refused(session, instance.url), timeout=5, message="flap: down")
    await wait_for(lambda: serves(session, instance.url), timeout=5, message="flap: up")
    await wait_for(lambda: refused(session, instance.url), timeout=5, message="flap: down again")
    await instance.recover()
    assert instance.running
    assert await serves(session, instance.url)


async def test_reset_cuts_the_answer_halfway(instance: ServiceInstance, session: aiohttp.ClientSession) -> None:
    await instance.inject(Reset(rate=1.0))
    with pytest.raises((aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        async with session.get(instance.url + "/x") as response:
            assert response.status == 200  # the headers arrived...
            await response.read()  # ...the body never completes
    assert instance.errors == 1
    assert (await fetch(session, instance.url + "/health"))[0] == 200  # health checks are spared


async def test_warmup_after_restart_then_ends_by_itself(
    instance: ServiceInstance, session: aiohttp.ClientSession, bus: EventBus
) -> None:
    await instance.restart(warmup=Warmup(seconds=30, extra_ms=300))
    began = time.monotonic()
    await fetch(session, instance.url)
    assert time.monotonic() - began >= 0.15  # +300 ms fading over 30 s: still well above 150 ms
    assert isinstance(instance.fault, Warmup)

    await instance.inject(Warmup(seconds=0.2, extra_ms=10))
    await wait_for(lambda: instance.fault is None)
    assert bus.history[-1] == FaultCleared(bus.history[-1].at, "a", "warmup")


async def test_stop_publishes_and_is_idempotent(bus: EventBus) -> None:
    service = ServiceInstance("s", events=bus)
    async with service:
        assert service.running
    await service.stop()
    assert kinds(bus) == ["InstanceStarted", "InstanceStopped"]
    assert isinstance(bus.history[-1], InstanceStopped)


# --- process isolation -----------------------------------------------------------------------------------


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return pid in child_pids()  # reaped, not a zombie


@pytest.mark.usefixtures("no_child_processes")
async def test_process_instance_crash_is_a_real_kill(session: aiohttp.ClientSession, bus: EventBus) -> None:
    service = ProcessInstance("p", events=bus, seed=1)
    try:
        await service.start()
        first_pid = service.pid
        assert first_pid is not None and first_pid != os.getpid() and is_alive(first_pid)
        status, body, served_by = await fetch(session, service.url)
        assert (status, served_by, body["served"]) == (200, "p", 1)

        await service.inject(Error(status=503))  # other faults are applied inside the child
        assert (await fetch(session, service.url))[0] == 503
        stats = await service.refresh_stats()
        assert (stats["served"], stats["errors"], stats["fault"]) == (1, 1, "error")

        port = service.port
        await service.inject(Crash())
        await wait_for(lambda: not is_alive(first_pid), message="killed process gone")
        assert service.pid is None and not service.running
        assert service.last_exit_code == -signal.SIGKILL  # a kill -9, not a polite SIGTERM
        assert await refused(session, service.url)

        await service.restart()
        assert service.port == port and service.pid not in (None, first_pid)
        assert await serves(session, service.url)
        restarted = [e for e in bus.history if isinstance(e, InstanceRestarted)]
        assert restarted[-1].pid == service.pid
        stats = await service.refresh_stats()  # counters survive the kill: the lab read them first
        assert (stats["served"], stats["errors"], stats["fault"]) == (2, 1, None)
    finally:
        await service.stop()
    assert service.pid is None
    assert service.last_exit_code == 0  # stop() asks politely (SIGTERM) and the child exits cleanly


@pytest.mark.usefixtures("no_child_processes")
async def test_process_killed_from_outside_counts_as_a_crash(session: aiohttp.ClientSession) -> None:
    async with ProcessInstance("q") as service:
        await service.inject(Flap(period=0.3))  # flap runs inside the child
        await wait_for(lambda: refused(session, service.url), message="flap in child: down")
        await wait_for(lambda: serves(session, service.url), message="flap in child: up")
        pid = service.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await wait_for(lambda: isinstance(service.fault, Crash), message="crash noticed")
        assert not is_alive(pid)
        await service.recover()
        assert service.pid not in (None, pid)
        assert await serves(session, service.url)


@pytest.mark.usefixtures("no_child_processes")
async def test_child_exits_when_its_parent_goes_away() -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "spofkit._instance_child",
        "--name",
        "orphan",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=str(Path(spofkit.__file__).parent.parent)),
    )
    assert child.stdin is not None and child.stdout is not None
    hello = await asyncio.wait_for(child.stdout.readline(), 20)
    assert b'"ok": true' in hello
    child.stdin.close()  # what the child sees when its parent dies
    assert await asyncio.wait_for(child.wait(), 10) == 0


@pytest.mark.usefixtures("no_child_processes")
async def test_a_taken_port_is_a_clear_error(instance: ServiceInstance) -> None:
    with pytest.raises(OSError):
        await ServiceInstance("b", port=instance.port).start()
    with pytest.raises(OSError, match=f"'c'.*{instance.port}"):
        await ProcessInstance("c", port=instance.port).start()
