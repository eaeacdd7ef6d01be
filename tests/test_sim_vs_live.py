"""The same small scenario on both drivers: 3 instances, a crash, 200 req/s, with and without retries.

What must agree, and why it can only agree within a tolerance:

- **Detection windows**: both within :meth:`HealthSettings.detection_window_bound`. Live, the timers fire a little
  late on a busy machine, so it gets the live tests' usual slack of 0.3 s (and a probe that started just before the
  kill may meet it, so live can be quicker than ``(fall - 1) * interval``). They are not compared with each other:
  where the crash falls in the probe cycle is chance in both drivers (a live lab's start-up time, the
  simulator's seeded boot times), and the window moves with it between ``(fall - 1) * interval`` and the bound.
- **Failure counts**. With retries, none in either: every refused attempt is retried elsewhere. Without retries,
  passive ejection takes ``b`` out after 3 failures in a row, so both drivers fail 3 requests — live may fail one
  or two more, caught in flight by the kill (at 200 req/s and ~1-3 ms per request live, a request is in flight
  on ``b`` about 0.2 % of the time), so the tolerance is +-2 requests. And with ejection off too, every request
  round robin sends to ``b`` until it is marked down fails: about ``rate / 3 x detection window`` in both, within
  25 % plus 3 requests (live requests are not exactly evenly spaced, and the count is small).
- **Overload**: instances with capacity (2 workers x 50 ms, a queue of 4) losing one of three at 125 % of the
  capacity left: both shed load with 503/502 only, live losing 0.6-1.6 times what the simulator loses (see the
  test for why live loses a little more).
"""

from __future__ import annotations

import pytest

from spofkit.scenario import parse_scenario, run_live, run_scenario

pytestmark = pytest.mark.usefixtures("no_child_processes")

HEALTH = {"interval": 0.2, "timeout": 0.15, "rise": 2, "fall": 2}
LIVE_SLACK = 0.3


def scenario(**sections: object) -> dict[str, object]:
    base: dict[str, object] = {
        "seed": 3,
        "lab": {"instances": 3, "work_ms": 1},
        "health": HEALTH,
        "load": {"rate": 200, "duration": 3},
        "faults": [{"at": 1.0, "instance": "b", "kind": "crash"}],
    }
    base.update(sections)
    return base


@pytest.mark.parametrize(
    ("name", "sections"),
    [
        ("retries on", {}),
        ("retries off", {"retries": False}),
        ("retries and ejection off", {"retries": False, "ejection": False}),
    ],
)
async def test_the_simulator_and_a_live_lab_agree(name: str, sections: dict[str, object]) -> None:
    checked = parse_scenario(scenario(**sections))
    bound = checked.health.detection_window_bound() if checked.health else 0.0
    simulated = run_scenario(checked, "sim").report
    live = (await run_live(checked, checked.seed)).report
    assert simulated.requests == live.requests == 600
    assert simulated.detection_window is not None and live.detection_window is not None
    assert 0.2 - 1e-9 <= simulated.detection_window <= bound, simulated.to_text()
    # Live, a probe that started just before the kill can meet it, so the window can be shorter than fall - 1
    # intervals; the bound is what the health checks promise.
    assert 0 < live.detection_window <= bound + LIVE_SLACK, (live.detection_window, live.to_text())
    if name == "retries on":
        assert simulated.failed == live.failed == 0, (simulated.to_text(), live.to_text())
    elif name == "retries off":
        assert simulated.failed == 3, simulated.to_text()
        assert abs(live.failed - simulated.failed) <= 2, live.to_text()
    else:
        for report in (simulated, live):
            assert report.detection_window is not None
            expected = 200 / 3 * report.detection_window
            assert abs(report.failed - expected) <= 0.25 * expected + 3, report.to_text()


async def test_random_failures_are_the_same_plan_on_both_drivers() -> None:
    """The live driver applies the simulator's failure plan for the seed: the first crash is at the same time."""
    from spofkit.sim.failures import failure_plan

    checked = parse_scenario(
        {
            "seed": 5,
            "lab": {"instances": 2},
            "health": HEALTH,
            "load": {"rate": 50, "duration": 3},
            "failures": {"mtbf": 1.5, "mttr": 0.5},
        }
    )
    plan = failure_plan(["a", "b"], checked.failures, horizon=3.0, seed=5)
    assert plan and plan[0].down
    simulated = run_scenario(checked, "sim").report
    live = (await run_live(checked, checked.seed)).report
    for report in (simulated, live):
        assert report.fault_instance == plan[0].instance
        assert report.run_start is not None and report.fault_at is not None
    assert simulated.fault_at == pytest.approx(plan[0].at)
    assert live.fault_at - live.run_start == pytest.approx(plan[0].at, abs=0.1)  # type: ignore[operator]


async def test_a_pair_loses_the_same_requests_when_its_master_is_killed() -> None:
    """lb1 (the master) crashes; lb2 takes the address once it has heard no advert for its master-down interval
    (0.72 s). Clients fail from the kill until then: rate x (0.72 s minus the time since lb1's last advert).
    Tolerance between the drivers: one advert interval's worth of requests (where the kill falls between two
    adverts is chance in both) and 5 more for the live balancer's start-up of its listener."""
    checked = parse_scenario(
        {
            "seed": 2,
            "lab": {"instances": 2, "balancers": 2},
            "load": {"rate": 100, "duration": 4},
            "faults": [{"at": 1.0, "balancer": "lb1", "kind": "crash"}],
        }
    )
    simulated = run_scenario(checked, "sim").report
    live = (await run_live(checked, checked.seed)).report
    for report in (simulated, live):
        assert 100 * (0.72 - 0.2) - 2 <= report.failed <= 100 * 0.72 + 10, report.to_text()
    assert abs(simulated.failed - live.failed) <= 100 * 0.2 + 5, (simulated.to_text(), live.to_text())


async def test_overload_after_a_crash_is_the_same_on_both_drivers() -> None:
    """3 instances of 2 workers x 50 ms (120 req/s, 80 left once b crashes at 1 s), 100 req/s for 5 s, from one
    scenario file's keys (``concurrency``, ``queue``, ``work_ms``) on both drivers.

    Both shed load once b is gone: every failure is an answer, 503 from a full queue or 502 when the retry found
    the other queue full too, never a timeout or a reset. How many fail agrees within a factor: live loses
    0.6-1.6 times what the simulator loses (sim 145; live 114-180 over several runs on a shared machine). Live
    usually loses more, because a live request's
    work takes longer than ``work_ms`` (the timer fires late, the answer is written, the body read: 51.9 ms
    instead of 50 at the median), so the capacity left is ~4 % smaller and the excess load over it, which is what
    fails, ~15 % larger; and where the queues overflow depends on the client's and balancer's timing, which the
    simulator has none of. Below the capacity left (40 req/s) neither loses a request
    (tests/test_capacity_live.py, tests/test_sim_models.py).
    """
    checked = parse_scenario(
        {
            "seed": 3,
            "lab": {"instances": 3, "concurrency": 2, "queue": 4, "work_ms": 50},
            "load": {"rate": 100, "duration": 5},
            "faults": [{"at": 1.0, "instance": "b", "kind": "crash"}],
        }
    )
    simulated = run_scenario(checked, "sim").report
    live = (await run_live(checked, checked.seed)).report
    assert simulated.requests == live.requests == 500
    for report in (simulated, live):
        assert report.failed > 0.1 * report.requests, report.to_text()
        assert set(report.errors_by_kind) == {"http_502", "http_503"}, report.to_text()
        assert report.first_failure_at is not None and report.run_start is not None
        assert report.first_failure_at - report.run_start >= 1.0, report.to_text()  # not before the crash
    assert 0.6 * simulated.failed <= live.failed <= 1.6 * simulated.failed, (simulated.to_text(), live.to_text())
