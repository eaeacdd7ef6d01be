"""The simulated lab: the Lab's interface in virtual time, the same policies, the same reports."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap

import pytest

from spofkit.commands import (
    AddInstance,
    ChangeSettings,
    CommandError,
    InjectFault,
    Recover,
    RemoveInstance,
    SetLoad,
    SetStrategy,
    UnknownName,
)
from spofkit.events import (
    FaultInjected,
    HealthProbe,
    InstanceDown,
    InstanceEjected,
    InstanceUp,
    RequestCompleted,
    SettingChanged,
)
from spofkit.policy import EjectionSettings, HealthSettings, RetrySettings
from spofkit.sim import Capacity, SimLab

HEALTH = HealthSettings(interval=0.2, timeout=0.15, rise=2, fall=2)


def test_a_crash_with_retries_costs_clients_nothing_and_is_detected_within_the_bound() -> None:
    lab = SimLab(3, health=HEALTH, seed=3)
    report = lab.run_load_sync(rate=150, duration=3.0, faults=[(1.0, "b", "crash", {})])
    assert report.requests == 450
    assert report.failed == 0, report.to_text()
    assert report.retried > 0
    assert report.detection_window is not None
    assert (HEALTH.fall - 1) * HEALTH.fast_interval <= report.detection_window <= HEALTH.detection_window_bound()
    assert report.per_instance["b"] < report.per_instance["a"]


def test_a_run_lasts_its_duration_even_when_its_last_request_comes_long_before() -> None:
    lab = SimLab(2, health=HEALTH, seed=1)
    started = lab.now()
    # Requests at 0, 1000, ... 9000 s; the crash comes after the last of them.
    report = lab.run_load_sync(rate=0.001, duration=10_000, faults=[(9_500.0, "a", "crash", {})])
    assert report.requests == 10
    assert lab.now() >= started + 10_000  # not 9,000 s, one request's gap short
    assert report.fault_instance == "a" and report.detection_window is not None  # a fault after the last request
    capped = lab.now()
    lab.run_load_sync(rate=0.001, duration=10_000, max_requests=1)  # max_requests ends the schedule at once
    assert lab.now() < capped + 10


def test_a_new_rate_takes_effect_at_once_after_a_very_low_one() -> None:
    lab = SimLab(2, health=HEALTH, seed=1)
    lab.apply_sync(SetLoad(rate=50))
    lab.advance_sync(1.0)
    lab.apply_sync(SetLoad(rate=0.0002))  # the next request would be 5,000 s away: past the load's end
    lab.advance_sync(1.0)
    background = lab._background
    assert background is not None
    before = background.sent
    lab.apply_sync(SetLoad(rate=50))
    lab.advance_sync(10.0)
    assert background is lab._background  # the same load, at its new rate
    assert 495 <= background.sent - before <= 505  # 50 a second from now on, not the old rate's gap first


def test_without_any_protection_round_robin_keeps_sending_a_third_to_the_dead_instance() -> None:
    lab = SimLab(3, health=None, retries=None, ejection=None, seed=3)
    report = lab.run_load_sync(rate=150, duration=3.0, faults=[(1.0, "b", "crash", {})])
    assert report.detection_window is None
    assert report.failed == 100  # exactly every third of the 300 requests after the crash
    assert set(report.errors_by_kind) == {"http_502"}


def test_a_hang_without_retries_makes_clients_wait_until_they_give_up() -> None:
    lab = SimLab(3, health=HEALTH, retries=None, seed=1)
    report = lab.run_load_sync(rate=100, duration=2.0, faults=[(0.5, "c", "hang", {})], timeout=1.0)
    assert report.errors_by_kind.get("timeout", 0) > 0, report.to_text()
    assert report.latency_max is not None and report.latency_max < 1.0  # timed-out requests carry no status
    timed_out = [b for b in report.timeline if b.failed]
    assert timed_out and timed_out[0].second == 0  # they began right after the hang at 0.5 s


def test_a_hang_with_retries_costs_latency_of_one_per_try_timeout_not_errors() -> None:
    per_try = 0.4
    lab = SimLab(3, health=HEALTH, retries=RetrySettings(per_try_timeout=per_try, deadline=3.0), seed=1)
    report = lab.run_load_sync(rate=100, duration=3.0, faults=[(1.0, "b", "hang", {})])
    assert report.failed == 0, report.to_text()
    assert report.latency_max == pytest.approx(per_try)


def test_gray_failure_fools_the_health_checks_but_not_passive_ejection() -> None:
    lab = SimLab(3, health=HEALTH, ejection=EjectionSettings(consecutive_failures=3, base_time=10.0), seed=2)
    lab.apply_sync(InjectFault("b", "gray"))
    lab.run_load_sync(rate=100, duration=2.0)
    kinds = [(type(e).__name__, getattr(e, "instance", None)) for e in lab.events.history]
    assert ("InstanceEjected", "b") in kinds
    assert ("InstanceDown", "b") not in kinds
    assert all(e.ok for e in lab.events.history if isinstance(e, HealthProbe) and e.instance == "b")


def test_every_fault_is_carried_out_as_faults_effect_says() -> None:
    """One lab per fault; what the first attempts on b met is what the Effect says it should be."""
    expected = {
        "crash": "http_502",  # refused, not retried here
        "error": "http_500",
        "reset": "http_502",  # cut off halfway: the balancer sees a reset
    }
    for kind, error in expected.items():
        lab = SimLab(2, health=None, retries=None, ejection=None, seed=0)
        lab.apply_sync(InjectFault("b", kind))
        report = lab.run_load_sync(rate=20, duration=1.0)
        assert report.errors_by_kind == {error: 10}, (kind, report.to_text())
    slow = SimLab(2, health=None, retries=None, ejection=None, seed=0)
    slow.apply_sync(InjectFault("b", "slow", {"ms": 250.0}))
    assert slow.run_load_sync(rate=20, duration=1.0).latency_max == pytest.approx(0.25)
    warm = SimLab(1, health=None, retries=None, ejection=None, seed=0)
    warm.apply_sync(InjectFault("a", "warmup", {"seconds": 1.0, "extra_ms": 100.0}))
    report = warm.run_load_sync(rate=10, duration=2.0)
    assert report.latency_max == pytest.approx(0.1)
    assert report.timeline[-1].p50_latency == 0.0  # the warmup is over after a second
    flap = SimLab(1, health=None, retries=None, ejection=None, seed=0)
    flap.apply_sync(InjectFault("a", "flap", {"period": 0.5}))
    began = flap.now()
    report = flap.run_load_sync(rate=20, duration=2.0)
    assert report.failed == 20  # down half the time
    # Down from 0 to 0.5 s and from 1.0 to 1.5 s after it began (the report measures in slices of 0.15 s).
    starts = [since - began for since, _ in report.outage_periods]
    assert starts == [pytest.approx(0.0, abs=report.outage_slice), pytest.approx(1.0, abs=report.outage_slice)]


def test_same_seed_gives_the_same_digest_in_other_processes_and_another_seed_another() -> None:
    program = textwrap.dedent(
        """
        import sys
        from spofkit.sim import SimLab, Capacity
        lab = SimLab(4, seed=int(sys.argv[1]), capacity=Capacity(concurrency=2, queue=4, work_ms=5, spread_ms=2),
                     strategy="power_of_two")
        lab.run_load_sync(rate=300, duration=2.0, faults=[(0.5, "b", "crash", {}), (1.0, "c", "gray", {})])
        print(lab.digest.hexdigest())
        """
    )

    def digest(seed: int, hash_seed: str) -> str:
        env = {"PYTHONHASHSEED": hash_seed, "PATH": "/usr/bin:/bin"}
        done = subprocess.run(
            [sys.executable, "-c", program, str(seed)], capture_output=True, text=True, env=env, timeout=120, check=True
        )
        return done.stdout.strip()

    first = digest(7, "1")
    assert len(first) == 64
    assert digest(7, "2") == first  # string hashing salted differently: the same run
    assert digest(8, "1") != first


def test_the_report_and_events_have_the_live_shapes() -> None:
    lab = SimLab(3, health=HEALTH, seed=0)
    report = lab.run_load_sync(rate=50, duration=2.0, faults=[(0.5, "a", "crash", {})])
    assert report.fault_instance == "a"
    history = list(lab.events.history)
    assert any(isinstance(e, FaultInjected) and e.instance == "a" for e in history)
    assert any(isinstance(e, InstanceDown) and e.instance == "a" and e.balancer == "lb1" for e in history)
    completed = [e for e in history if isinstance(e, RequestCompleted)]
    assert completed and all(e.path == "/" and e.method == "GET" for e in completed)
    times = [e.at for e in history]
    assert times == sorted(times)  # the event log is in time order


def test_commands_are_the_labs_commands_with_the_labs_answers() -> None:
    lab = SimLab(3, health=HEALTH, seed=0)
    assert lab.apply_sync(InjectFault("b", "slow", {"ms": 100})) == {
        "instance": "b",
        "fault": "slow",
        "params": {"ms": 100.0, "jitter_ms": 0.0},
    }
    row = lab.apply_sync(Recover("b"))
    assert row["name"] == "b" and row["fault"] is None and row["state"] == "up"
    added = lab.apply_sync(AddInstance())
    assert added["name"] == "d" and added["state"] == "down"  # waits for rise passed checks
    lab.advance_sync(1.0)
    assert lab.status().instance("d").state == "up"
    assert lab.apply_sync(SetStrategy("least_connections")) == {"strategy": "least_connections"}
    assert lab.apply_sync(ChangeSettings(retries=False)) == {"retries": False, "health_checks": True, "ejection": True}
    assert lab.apply_sync(RemoveInstance("a")) == {"removed": "a"}
    assert lab.instance_names == ["b", "c", "d"]
    with pytest.raises(UnknownName, match="no instance named 'zz'"):
        lab.apply_sync(Recover("zz"))
    with pytest.raises(CommandError) as taken:
        lab.apply_sync(AddInstance("b"))
    assert taken.value.status == 409 and taken.value.field == "name"


def test_health_checks_switched_off_and_on_follow_the_policy() -> None:
    lab = SimLab(2, health=HEALTH, seed=0)
    lab.apply_sync(InjectFault("b", "crash"))
    lab.advance_sync(1.0)
    assert lab.status().instance("b").state == "down"
    lab.apply_sync(ChangeSettings(health_checks=False))
    assert lab.status().instance("b").state == "up"  # checks off: every member counts as up
    lab.apply_sync(ChangeSettings(health_checks=True))
    lab.advance_sync(1.0)
    assert lab.status().instance("b").state == "down"
    up = [e for e in lab.events.history if isinstance(e, InstanceUp)]
    assert not up


async def test_the_async_interface_is_the_live_labs() -> None:
    async with await SimLab.start(3, health=HEALTH, seed=0) as lab:
        report = await lab.run_load(rate=100, duration=1.0, faults=[(0.2, "c", "crash", {})])
        await lab.recover("c")
        status = lab.status()
    assert report.requests == 100
    assert [row.name for row in status.instances] == ["a", "b", "c"]
    assert dataclasses.asdict(status)["balancers"][0]["name"] == "lb1"


def test_ejection_events_come_from_the_policy() -> None:
    lab = SimLab(3, health=None, ejection=EjectionSettings(consecutive_failures=2, base_time=0.5), seed=0)
    lab.apply_sync(InjectFault("a", "error", {"rate": 1.0, "status": 503}))
    lab.run_load_sync(rate=60, duration=2.0)
    ejected = [e for e in lab.events.history if isinstance(e, InstanceEjected)]
    assert ejected and ejected[0].instance == "a"
    assert any(type(e).__name__ == "InstanceReturned" for e in lab.events.history)


def test_capacity_settings_are_checked_and_named() -> None:
    with pytest.raises(ValueError, match=r"concurrency must be 1\.\.") as bad:
        Capacity(concurrency=0)
    assert bad.value.field == "concurrency"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="queue needs a concurrency"):
        Capacity(queue=3)
    with pytest.raises(ValueError, match="exponential work time takes no spread"):
        Capacity(work_ms=5, spread_ms=1, distribution="exponential")


@pytest.mark.parametrize(("ms", "fails"), [(299.0, False), (300.0, True), (450.0, True)])
def test_a_probe_fails_exactly_when_the_effect_says_it_does(ms: float, fails: bool) -> None:
    """Effect.fails_probe: a delay of the check's whole timeout (0.3 s) or more fails the probe; less passes."""
    from spofkit.faults import Slow, effect

    settings = HealthSettings(interval=0.5, timeout=0.3, fall=1, rise=1)
    assert (
        effect(Slow(ms=ms), health_check=True, elapsed=0.0, dice=__import__("random").Random()).fails_probe(
            settings.timeout
        )
        is fails
    )
    lab = SimLab(2, health=settings, seed=0)
    lab.apply_sync(InjectFault("b", "slow", {"ms": ms}))
    lab.advance_sync(2.0)
    began = lab.now() - 2.0
    probes = [e for e in lab.events.history if isinstance(e, HealthProbe) and e.instance == "b" and e.at > began]
    assert probes and all(e.ok is not fails for e in probes)
    assert lab.status().instance("b").state == ("down" if fails else "up")


def test_a_rolling_deploy_costs_nothing_and_restarting_all_at_once_an_outage() -> None:
    from spofkit.commands import Deploy
    from spofkit.events import DeployStep

    rolling = SimLab(3, health=HEALTH, capacity=Capacity(work_ms=5.0), seed=0)
    rolling.apply_sync(SetLoad(rate=100))
    answer = rolling.apply_sync(Deploy(batch=1))
    assert answer["deployed"] == ["a", "b", "c"] and answer["seconds"] > 3 * (HEALTH.rise - 1) * HEALTH.interval
    steps = [(e.instance, e.step) for e in rolling.events.history if isinstance(e, DeployStep)]
    assert steps[:4] == [("a", "drain"), ("a", "restart"), ("a", "ready?"), ("a", "done")]
    assert [name for name, step in steps if step == "done"] == ["a", "b", "c"]
    background = rolling._background
    assert background is not None and background.recorded >= 0.9 * 100 * answer["seconds"]
    assert all(record.ok for record in background.records), "a rolling restart must cost clients nothing"

    at_once = SimLab(3, health=HEALTH, retries=None, capacity=Capacity(work_ms=5.0), seed=0)
    at_once.apply_sync(SetLoad(rate=100))
    at_once.advance_sync(0.5)
    at_once.apply_sync(Deploy(how="all-at-once"))
    at_once.advance_sync(1.0)
    assert at_once._background is not None
    assert any(not record.ok for record in at_once._background.records)  # every in-flight request was cut


def test_status_and_events_travel_over_the_wire_like_a_live_labs() -> None:
    from spofkit import wire

    lab = SimLab(3, health=HEALTH, seed=0)
    lab.run_load_sync(rate=50, duration=1.0, faults=[(0.2, "b", "crash", {})])
    status = lab.status()
    assert wire.status_from_dict(wire.status_to_dict(status)) == status
    for event in lab.events.history:
        assert wire.event_from_dict(wire.event_to_dict(event)) == event


def test_removing_an_instance_waits_only_until_its_last_attempt_is_over_even_if_that_one_is_retried() -> None:
    lab = SimLab(3, health=None, retries=RetrySettings(per_try_timeout=0.3), seed=0)
    lab.apply_sync(InjectFault("b", "hang"))
    lab.apply_sync(SetLoad(rate=30))
    lab.advance_sync(0.1)  # a request is hung on b now
    assert lab.balancer.policy.pool.member("b").in_flight == 1
    began = lab.now()
    lab.apply_sync(RemoveInstance("b"))
    # The hung attempt times out after 0.3 s and is retried on another instance: then b has nothing in flight.
    assert lab.now() - began == pytest.approx(0.3, abs=0.1)
    assert lab.instance_names == ["a", "c"]


def test_the_idempotency_rule_sees_the_clients_method() -> None:
    """A POST that may have reached a hung instance is not retried; one refused by a crashed instance is."""
    retries = RetrySettings(per_try_timeout=0.2)
    outcomes = {}
    for method in ("GET", "POST"):
        for kind in ("hang", "crash"):
            lab = SimLab(3, health=None, ejection=None, retries=retries, seed=0)
            lab.apply_sync(InjectFault("b", kind))
            report = lab.run_load_sync(rate=30, duration=1.0, method=method)
            outcomes[(method, kind)] = report.errors_by_kind
    assert outcomes[("GET", "hang")] == {} and outcomes[("GET", "crash")] == {}
    assert outcomes[("POST", "crash")] == {}  # refused: provably never reached b, so retried
    assert outcomes[("POST", "hang")] == {"http_504": 10}  # every third request met b and timed out there
    with pytest.raises(ValueError, match="method must be one of GET, HEAD, POST"):
        SimLab(1).run_load_sync(rate=1, duration=1, method="G T")


def test_requests_queued_behind_a_hang_are_served_once_it_is_recovered() -> None:
    lab = SimLab(1, capacity=Capacity(concurrency=1, queue=10, work_ms=1.0), health=None, retries=None, seed=0)
    lab.apply_sync(InjectFault("a", "hang"))
    report = lab.run_load_sync(rate=10, duration=1.0, commands=[(0.55, Recover("a"))], timeout=5.0)
    assert report.failed == 0, report.to_text()  # the first hung, the others waited behind it; all answered
    assert report.latency_max == pytest.approx(0.551, abs=0.002)


@pytest.mark.parametrize("argument", ["retries", "health", "ejection"])
def test_a_protection_given_as_something_else_is_refused_by_name(argument: str) -> None:
    with pytest.raises(TypeError, match=rf"^{argument} must be a \w+Settings .* got 'yes'"):
        SimLab(3, **{argument: "yes"})  # type: ignore[arg-type]


def test_a_protection_switched_by_true_or_false_means_defaults_or_off() -> None:
    on = SimLab(3, retries=True, health=True, ejection=True)
    off = SimLab(3, retries=False, health=False, ejection=False)
    assert (on.retries, on.health, on.ejection) == (RetrySettings(), HealthSettings(), EjectionSettings())
    assert (off.retries, off.health, off.ejection) == (None, None, None)
    assert on.status().retries and not off.status().retries
    assert on.run_load_sync(100, 1.0, faults=[(0.2, "b", "crash", {})]).failed < 30
    # Without retries, health checks or ejection, every request round robin sends to b after it crashed fails.
    assert off.run_load_sync(100, 1.0, faults=[(0.2, "b", "crash", {})]).failed > 20


async def test_the_background_load_methods_of_the_live_lab_work_on_the_simulated_one() -> None:
    """start_background_load, set_load_rate, pause_load, resume_load, stop_background_load: as the TUI and the
    widgets call them on a live lab, over the same SetLoad command (its checks, its events)."""
    from spofkit.commands import CommandError

    lab = await SimLab.start(3, seed=2)
    load = lab.start_background_load(rate=40)
    await lab.advance(2.0)
    assert lab.status().load_rate == 40 and 70 <= load.sent <= 90  # 40 req/s for 2 s of lab time
    lab.set_load_rate(100)
    lab.pause_load()
    sent = load.sent
    await lab.advance(1.0)
    assert load.sent == sent and lab.status().load_paused  # paused: nothing sent
    lab.resume_load()
    await lab.advance(1.0)
    assert 90 <= load.sent - sent <= 110  # the new rate
    await lab.stop_background_load()
    assert lab.status().load_rate is None
    changes = [(e.setting, e.value) for e in lab.events.history if isinstance(e, SettingChanged)]
    assert ("load_rate", 40) in changes and ("load_rate", 100) in changes and ("load_paused", True) in changes
    with pytest.raises(CommandError, match="rate must be a number of requests/s"):
        lab.set_load_rate(-5)
    with pytest.raises(TypeError, match="a simulated load takes only rate, got \\['body'\\]"):
        lab.start_background_load(10, body=b"x")
