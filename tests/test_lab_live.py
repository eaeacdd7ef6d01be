"""Whole experiments on 127.0.0.1: real instances, real health checks, a real balancer, a load that records all."""

from __future__ import annotations

import asyncio
import os

import pytest
from conftest import wait_for

from spofkit.events import Event, InstanceDown, InstanceEjected, RequestCompleted
from spofkit.failover import EjectionSettings, RetrySettings
from spofkit.health import HealthSettings
from spofkit.lab import Lab

HEALTH = HealthSettings(interval=0.2, timeout=0.15, rise=2, fall=2)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A killed child not yet reaped is a zombie: dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_with_retries_a_crash_costs_clients_nothing() -> None:
    async with await Lab.start(3, health=HEALTH) as lab:
        report = await lab.run_load(rate=150, duration=3.0, faults=[(1.0, "b", "crash", {})])
    assert report.requests == 450
    assert report.failed == 0, report.to_text()
    assert report.retried > 0  # the crash happened, and retries hid it
    assert report.per_instance.get("b", 0) < report.per_instance["a"]


async def test_without_protection_a_crash_costs_one_in_n() -> None:
    async with await Lab.start(3, health=None, retries=None, ejection=None) as lab:
        report = await lab.run_load(rate=150, duration=3.0, faults=[(1.0, "b", "crash", {})])
    after_crash = sum(1 for bucket in report.timeline for _ in range(bucket.failed))
    assert after_crash == report.failed
    # Round robin keeps sending every third request to the dead instance for the rest of the run.
    requests_after_crash = 150 * 2.0
    assert 0.2 * requests_after_crash < report.failed < 0.45 * requests_after_crash, report.to_text()
    assert report.detection_window is None  # nobody noticed


async def test_hang_costs_no_errors_and_at_most_one_per_try_timeout() -> None:
    per_try = 0.4
    retries = RetrySettings(per_try_timeout=per_try, deadline=3.0)
    async with await Lab.start(3, health=HEALTH, retries=retries) as lab:
        report = await lab.run_load(rate=100, duration=3.0, faults=[(1.0, "b", "hang", {})])
    assert report.failed == 0, report.to_text()
    assert report.latency_max is not None
    # Some requests did wait for the hung instance, but never longer than one per-try timeout (plus slack for a
    # busy machine): the retry went to a *different*, healthy instance.
    assert report.latency_max >= per_try
    assert report.latency_max < per_try + 1.0, report.to_text()


async def test_detection_window_is_within_the_health_check_bound() -> None:
    async with await Lab.start(3, health=HEALTH) as lab:
        report = await lab.run_load(rate=50, duration=3.0, faults=[(0.5, "c", "crash", {})])
    assert report.detection_window is not None, "the health checker never marked c down"
    # At least fall - 1 probe spacings must pass; at most the bound (plus scheduling slack on a loaded machine).
    assert report.detection_window >= (HEALTH.fall - 1) * HEALTH.fast_interval * 0.9
    assert report.detection_window <= HEALTH.detection_window_bound() + 0.3, report.detection_window


async def test_gray_failure_fools_health_checks_but_not_passive_ejection() -> None:
    ejection = EjectionSettings(consecutive_failures=3, base_time=10.0)
    seen: list[Event] = []
    async with await Lab.start(3, health=HEALTH, ejection=ejection) as lab:
        lab.events.subscribe(seen.append)
        await lab.inject("b", "gray")
        report = await lab.run_load(rate=100, duration=2.0)
        assert lab.status().instance("b").state == "ejected"
    ejections = [e for e in seen if isinstance(e, InstanceEjected)]
    assert [e.instance for e in ejections] == ["b"]
    assert not any(isinstance(e, InstanceDown) for e in seen)  # the health check kept saying OK
    # 500s are not retried (the request reached the app), so clients saw exactly the failures ejection needed.
    assert report.errors_by_kind == {"http_500": 3}
    served_by_b_after = [
        e
        for e in seen
        if isinstance(e, RequestCompleted) and e.instance == "b" and e.at > ejections[0].at and e.status < 500
    ]
    assert served_by_b_after == []


async def test_recovery_brings_the_instance_back_after_rise_checks() -> None:
    async with await Lab.start(3, health=HEALTH) as lab:
        await lab.inject("a", "crash")
        await wait_for(lambda: lab.status().instance("a").state == "down", 5, message="a marked down")
        await lab.recover("a")
        await wait_for(lambda: lab.status().instance("a").state == "up", 5, message="a back up")
        report = await lab.run_load(rate=60, duration=1.0)
    assert report.failed == 0
    assert report.per_instance.get("a", 0) > 0


async def test_process_isolation_kills_and_restarts_a_real_process() -> None:
    async with await Lab.start(2, health=HEALTH, isolation="process") as lab:
        pid = lab.status().instance("b").pid
        assert pid is not None and pid != os.getpid() and pid_alive(pid)
        await lab.inject("b", "crash")
        await wait_for(lambda: not pid_alive(pid), 5, message=f"pid {pid} gone")
        await wait_for(lambda: lab.status().instance("b").state == "down", 5, message="b marked down")
        report = await lab.run_load(rate=50, duration=1.0)
        assert report.failed == 0
        await lab.restart("b")
        new_pid = lab.status().instance("b").pid
        assert new_pid is not None and new_pid != pid and pid_alive(new_pid)
        await wait_for(lambda: lab.status().instance("b").state == "up", 5, message="b back up")
        pids = [s.pid for s in lab.status().instances]
    assert not any(p is not None and pid_alive(p) for p in pids), "an instance process outlived the lab"


async def test_add_and_drain_an_instance_under_load() -> None:
    async with await Lab.start(2, health=HEALTH, work_time=0.05) as lab:
        name = await lab.add_instance()
        await wait_for(lambda: lab.status().instance(name).state == "up", 5, message=f"{name} up")
        load = asyncio.create_task(lab.run_load(rate=80, duration=2.0))
        await wait_for(lambda: lab.status().instance("a").in_flight > 0, 5, message="a busy")
        await lab.remove_instance("a")
        report = await load
        assert "a" not in lab.instance_names
    assert report.failed == 0, report.to_text()  # draining lets in-flight requests finish
    assert report.per_instance[name] > 0


@pytest.mark.parametrize("bad", [{"instances": 0}, {"isolation": "container"}, {"strategy": "fastest"}])
async def test_bad_lab_arguments_name_the_problem(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad)) if "strategy" not in bad else "unknown strategy"):
        await Lab.start(**bad)  # type: ignore[arg-type]


async def test_preempt_off_is_refused_for_a_lab_with_one_balancer() -> None:
    with pytest.raises(ValueError, match="preempt=False is a setting of a pair of balancers: give balancers=2"):
        await Lab.start(1, preempt=False)


async def test_adding_and_removing_by_method_checks_what_the_commands_check() -> None:
    async with await Lab.start(2, health=HEALTH) as lab:
        with pytest.raises(ValueError, match="weight must be a whole number") as raised:
            await lab.add_instance("c", weight=-1, initially_up=True)  # the path that skips the command
        assert getattr(raised.value, "field", None) == "weight"
        with pytest.raises(ValueError, match="drain_timeout must be a number of seconds >= 0"):
            await lab.remove_instance("b", drain_timeout=-1)
        assert lab.instance_names == ["a", "b"]
        report = await lab.run_load(rate=40, duration=0.5)
    assert report.failed == 0 and report.requests == 20


async def test_bad_fault_is_refused_and_the_lab_keeps_serving() -> None:
    async with await Lab.start(2, health=HEALTH) as lab:
        with pytest.raises(ValueError, match="rate"):
            await lab.inject("a", "error", rate=2.0)
        with pytest.raises(KeyError, match="zz"):
            await lab.inject("zz", "crash")
        report = await lab.run_load(rate=40, duration=0.5)
    assert report.failed == 0 and report.requests == 20


async def test_settings_can_change_on_a_running_lab() -> None:
    async with await Lab.start(2, health=HEALTH) as lab:
        lab.set_retries(RetrySettings(per_try_timeout=0.25))
        assert lab.balancer.retries is not None and lab.balancer.retries.per_try_timeout == 0.25
        lab.set_retries(False)
        assert lab.balancer.retries is None
        lab.set_retries(True)
        assert lab.balancer.retries is not None and lab.balancer.retries.per_try_timeout == 0.25
        lab.set_ejection(EjectionSettings(consecutive_failures=7))
        assert lab.balancer.ejection is not None and lab.balancer.ejection.consecutive_failures == 7
        quick = HealthSettings(interval=0.1, timeout=0.1, rise=1, fall=1)
        await lab.set_health_checks(quick)
        assert lab.balancer.health == quick
        await lab.inject("b", "crash")
        await wait_for(lambda: lab.status().instance("b").state == "down", 5, message="b down under the new settings")
        assert lab.status().health_checks


async def test_a_check_that_errors_counts_as_failed_and_the_checker_keeps_going() -> None:
    lab = await Lab.start(instances=2, health=HEALTH)
    try:
        checker = lab.balancer.checker
        assert checker._session is not None
        real_get = checker._session.get
        broken = {"a"}

        def get(url: str, **options: object) -> object:
            if any(lab.instances[name].url in url for name in broken):
                raise RuntimeError("something no one planned for")
            return real_get(url, **options)  # type: ignore[arg-type]

        checker._session.get = get  # type: ignore[method-assign]
        await wait_for(lambda: lab.status().instance("a").state == "down", 5, message="a marked DOWN by failing checks")
        assert lab.status().instance("b").state == "up"
        broken.clear()  # the probe loop survived the errors: a comes back by itself
        await wait_for(lambda: lab.status().instance("a").state == "up", 5, message="a back UP")
        downs = [e for e in lab.events.history if isinstance(e, InstanceDown) and e.instance == "a"]
        assert "check error: RuntimeError" in downs[-1].reason
    finally:
        await lab.stop()
