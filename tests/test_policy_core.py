"""The pure policy package: the probe schedule, pool selection, one balancer's policy. Plain calls only."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from spofkit.events import Event, HealthProbe, InstanceDown, InstanceUp
from spofkit.policy import BalancerPolicy, HealthMonitor, HealthSettings, NoInstance, Pool, RequestInfo, Try
from spofkit.status import member_state

GET = RequestInfo()


def test_importing_the_policy_package_imports_no_io() -> None:
    script = (
        "import sys, spofkit.policy, spofkit.status\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('asyncio', 'aiohttp', 'socket', 'selectors'))\n"
        "print(','.join(bad))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"spofkit.policy imported {done.stdout.strip()}"


# --- the probe schedule -------------------------------------------------------------------------------------


def run_probes(monitor: HealthMonitor, name: str, results: list[tuple[bool, float]]) -> list[float]:
    """Drive ``monitor`` as a driver would: probe when due; each probe takes the given seconds. Returns start times."""
    starts = []
    for ok, takes in results:
        due = monitor.next_probe_at(name)
        assert due is not None
        starts.append(due)
        monitor.probe_started(name, due)
        monitor.probe_finished(name, ok, "200" if ok else "timeout", due + takes)
    return starts


def test_probes_come_every_interval_then_fastinter_while_falling_then_downinter() -> None:
    events: list[Event] = []
    settings = HealthSettings(interval=1.0, fastinter=0.25, downinter=2.0, timeout=0.1, fall=3, rise=2)
    monitor = HealthMonitor(settings, random.Random(0), events.append)
    assert monitor.add("b", 10.0) == 10.0  # no jitter: the first probe at once
    starts = run_probes(monitor, "b", [(True, 0.01), (False, 0.1), (False, 0.1), (False, 0.1), (True, 0.01)])
    assert starts == pytest.approx([10.0, 11.0, 11.25, 11.5, 13.5])
    downs = [e for e in events if isinstance(e, InstanceDown)]
    assert len(downs) == 1 and downs[0].at == pytest.approx(11.6)
    assert not monitor.is_up("b")


def test_a_probe_that_runs_out_its_timeout_delays_the_next_one() -> None:
    settings = HealthSettings(interval=0.5, timeout=0.3, fastinter=0.1)
    monitor = HealthMonitor(settings, random.Random(0), [].append)
    monitor.add("b", 0.0)
    starts = run_probes(monitor, "b", [(False, 0.3), (False, 0.3), (False, 0.3)])
    assert starts == pytest.approx([0.0, 0.3, 0.6])  # fastinter 0.1 < timeout: each waits for the last


def test_a_stalled_checker_excuses_one_probe_and_asks_again_at_once_then_counts() -> None:
    # Rule 4: a timeout that fired long after it was due says the checker was stalled, not the instance.
    events: list[Event] = []
    monitor = HealthMonitor(HealthSettings(interval=0.2, timeout=0.1, fall=1, rise=1), random.Random(0), events.append)
    monitor.add("b", 0.0)
    monitor.probe_started("b", 0.0)
    assert monitor.next_probe_at("b") is None  # one probe at a time
    assert monitor.probe_unjudged("b", 1.5)  # excused: not counted ...
    assert monitor.is_up("b") and not events  # ... no verdict, no probe result published
    assert monitor.next_probe_at("b") == 1.5  # ... and the next probe goes at once
    monitor.probe_started("b", 1.5)
    assert not monitor.probe_unjudged("b", 3.0)  # two in a row: this one must count (a checker always late
    monitor.probe_finished("b", False, "timeout", 3.0)  # still detects a dead instance, one probe later)
    assert not monitor.is_up("b") and [e.kind for e in events] == ["HealthProbe", "InstanceDown"]
    monitor.probe_started("b", 3.2)
    monitor.probe_finished("b", True, "200", 3.21)
    monitor.probe_started("b", 3.4)
    assert monitor.probe_unjudged("b", 5.0)  # a counted probe in between: the next stall is excused again
    assert not monitor.probe_unjudged("gone", 5.0)  # an instance no longer watched: nothing to excuse


def test_an_always_late_checker_finds_a_dead_instance_one_probe_later_whatever_fall_is() -> None:
    events: list[Event] = []
    monitor = HealthMonitor(HealthSettings(interval=0.2, timeout=0.1, fall=3), random.Random(0), events.append)
    monitor.add("b", 0.0)
    now, excused = 0.0, 0
    while not [e for e in events if isinstance(e, InstanceDown)]:
        assert now < 10, "never marked DOWN"
        monitor.probe_started("b", now)
        now += 0.5  # every probe times out long after it was due
        if monitor.probe_unjudged("b", now):
            excused += 1
        else:
            monitor.probe_finished("b", False, "timeout", now)
    assert excused == 1  # one excuse for the whole run of failures, then fall counted probes
    assert len([e for e in events if isinstance(e, HealthProbe)]) == 3


def test_detection_within_the_bound_for_a_hang_just_after_a_passed_probe() -> None:
    settings = HealthSettings()
    events: list[Event] = []
    monitor = HealthMonitor(settings, random.Random(0), events.append)
    monitor.add("b", 0.0)
    run_probes(monitor, "b", [(True, 0.001)])  # passed at ~0; the hang starts right after
    broke_at = 0.001
    run_probes(monitor, "b", [(False, settings.timeout)] * settings.fall)
    (down,) = [e for e in events if isinstance(e, InstanceDown)]
    assert down.at - broke_at <= settings.detection_window_bound() + 1e-9


def test_rising_instance_goes_up_after_rise_passes_and_events_name_the_balancer() -> None:
    events: list[Event] = []
    monitor = HealthMonitor(HealthSettings(rise=2), random.Random(0), events.append, balancer="lb2")
    monitor.add("d", 0.0, initially_up=False)
    run_probes(monitor, "d", [(True, 0.01), (True, 0.01)])
    ups = [e for e in events if isinstance(e, InstanceUp)]
    assert [(e.instance, e.balancer) for e in ups] == [("d", "lb2")]
    assert all(e.balancer == "lb2" for e in events if isinstance(e, HealthProbe))


def test_jitter_spreads_first_probes_within_one_interval_and_is_seeded() -> None:
    settings = HealthSettings(interval=1.0, jitter=0.5)
    first = [HealthMonitor(settings, random.Random(7), [].append).add(n, 0.0) for n in "abcdef"]
    again = [HealthMonitor(settings, random.Random(7), [].append).add(n, 0.0) for n in "abcdef"]
    assert first == again
    assert all(0 <= t <= 0.5 for t in first)


def test_one_schedule_per_instance_and_a_removed_instance_is_not_probed() -> None:
    monitor = HealthMonitor(HealthSettings(), random.Random(0), [].append)
    monitor.add("b", 0.0)
    with pytest.raises(ValueError, match="already watch"):
        monitor.add("b", 0.0)
    monitor.probe_started("b", 0.0)
    assert monitor.next_probe_at("b") is None  # one probe at a time
    monitor.remove("b")
    assert monitor.probe_finished("b", True, "200", 0.1) is None  # a result racing with removal is dropped
    assert monitor.next_probe_at("b") is None


# --- pool selection -----------------------------------------------------------------------------------------


def pool_of(*names: str, **options: object) -> Pool:
    pool = Pool([].append, **options)  # type: ignore[arg-type]
    for name in names:
        backup = name.startswith("backup")
        pool.add(name, "http://127.0.0.1:1", 0.0, backup=backup)
    return pool


def test_backups_serve_only_when_no_primary_can() -> None:
    pool = pool_of("a", "b", "backup1")
    assert {pool.choose(GET, 0.0).name for _ in range(6)} == {"a", "b"}
    pool.set_healthy("a", False, 1.0)
    pool.set_healthy("b", False, 1.0)
    assert pool.choose(GET, 1.0).name == "backup1"


def test_draining_members_get_nothing_new() -> None:
    pool = pool_of("a", "b")
    pool.drain("a", 0.0)
    assert {pool.choose(GET, 0.0).name for _ in range(4)} == {"b"}
    pool.drain("b", 0.0)
    with pytest.raises(NoInstance) as none:
        pool.choose(GET, 0.0)
    assert none.value.status == 503


def test_slow_start_share_grows_linearly_from_the_verdict() -> None:
    pool = pool_of("a", "b", slow_start=10.0, strategy="random")
    pool.set_healthy("b", False, 0.0)
    pool.set_healthy("b", True, 100.0)  # b came back up at t=100

    def share_of_b(now: float) -> float:
        picks = [pool.choose(GET, now).name for _ in range(4000)]
        return picks.count("b") / len(picks)

    assert share_of_b(100.0) == 0.0
    assert share_of_b(102.5) == pytest.approx(0.5 * 0.25, abs=0.04)  # picked half the time, admitted a quarter
    assert share_of_b(120.0) == pytest.approx(0.5, abs=0.04)


def test_slow_start_and_strategy_draw_from_their_own_random_streams() -> None:
    def picks(slow_start: float) -> list[str]:
        pool = pool_of("a", "b", "c", slow_start=slow_start, strategy="random")
        return [pool.choose(GET, 100.0).name for _ in range(50)]

    # Fully warmed members: slow start admits everyone, and must not shift the strategy's dice.
    assert picks(0.0) == picks(5.0)


def test_a_strategy_that_picks_something_not_offered_is_refused_by_name() -> None:
    class Broken:
        name = "broken"

        def pick(self, backends, request, now, rng):  # type: ignore[no-untyped-def]
            from spofkit.policy import Backend

            return Backend("zz")

    pool = pool_of("a", strategy=Broken())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="broken picked 'zz'"):
        pool.choose(GET, 0.0)


def test_member_state_precedence() -> None:
    assert member_state(draining=True, ejected=True, health_phase="down") == "draining"
    assert member_state(draining=False, ejected=True, health_phase="up") == "ejected"
    assert member_state(draining=False, ejected=False, health_phase="rising") == "rising"
    assert member_state(draining=False, ejected=False, health_phase=None) == "up"


# --- one balancer's policy ----------------------------------------------------------------------------------


def test_health_verdicts_reach_the_pool() -> None:
    events: list[Event] = []
    policy = BalancerPolicy(events.append, health=HealthSettings(fall=1, rise=1))
    policy.add_member("a", "http://127.0.0.1:1", 0.0)
    policy.add_member("b", "http://127.0.0.1:2", 0.0)
    assert policy.health is not None
    policy.health.probe_started("a", 0.0)
    policy.health.probe_finished("a", False, "refused", 0.01)
    assert policy.state_of("a", 0.02) == "down"
    for _ in range(3):
        attempts = policy.new_request(GET, 0.1)
        assert attempts.begin(0.1) == Try("b", 1.0, 1)
        attempts.answered(0.1, 200)
    policy.set_health(None, 1.0)  # checks off: everyone counts as up
    assert policy.state_of("a", 1.0) == "up"


def test_health_checks_toggled_leave_exactly_one_schedule_per_member() -> None:
    policy = BalancerPolicy([].append, health=HealthSettings())
    for name in "abc":
        policy.add_member(name, "http://127.0.0.1:1", 0.0)
    for now in (1.0, 2.0, 3.0, 4.0):
        policy.set_health(None, now)
        policy.set_health(HealthSettings(), now + 0.5)
    assert policy.health is not None
    assert sorted(policy.health.names) == ["a", "b", "c"]


def test_a_health_check_passes_only_with_an_expected_status() -> None:
    """One rule, which both drivers judge a check's answer by (the simulator holds no copy of it)."""
    assert HealthSettings().passes(200)
    assert not HealthSettings().passes(503) and not HealthSettings().passes(204)
    either = HealthSettings(expect=(200, 204))
    assert either.passes(204) and not either.passes(404)
