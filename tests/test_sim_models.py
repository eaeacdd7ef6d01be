"""The simulator's models against what is known exactly: queueing formulas, availability of redundant parts,
and capacity arithmetic."""

from __future__ import annotations

import math
import statistics

import pytest

from spofkit.events import FaultCleared, FaultInjected
from spofkit.policy import RetrySettings
from spofkit.sim import Capacity, FailureGroup, FailureProcess, SimLab, failure_plan
from spofkit.sim.failures import up_time


def test_mm1_response_times_follow_the_formula() -> None:
    """One worker, exponential work (mean 10 ms, mu = 100/s), Poisson arrivals at 70/s: an M/M/1 queue.

    Its response time is exponential with rate mu - lambda = 30/s: mean 33.3 ms, median ln 2 / 30 = 23.1 ms,
    p95 ln 20 / 30 = 99.9 ms. Tolerance: 8 % — over ~35,000 requests the estimate's standard error is about
    2-3 % (successive response times in a queue this busy are strongly correlated), so 8 % is three of them.
    """
    mu, lam = 100.0, 70.0
    capacity = Capacity(concurrency=1, queue=100_000, work_ms=1000 / mu, distribution="exponential")
    lab = SimLab(1, capacity=capacity, health=None, retries=None, ejection=None, seed=11)
    report = lab.run_load_sync(rate=lam, duration=500.0, arrivals="poisson", timeout=60.0)
    assert report.failed == 0
    latencies = [r.latency for r in lab.records]
    assert statistics.fmean(latencies) == pytest.approx(1 / (mu - lam), rel=0.08)
    assert report.latency_p50 == pytest.approx(math.log(2) / (mu - lam), rel=0.08)
    assert report.latency_p95 == pytest.approx(math.log(20) / (mu - lam), rel=0.08)
    # And the count of arrivals is Poisson: 35,000 +- 3 standard deviations (sqrt(35,000) = 187).
    assert abs(report.requests - lam * 500) < 3 * math.sqrt(lam * 500)


@pytest.mark.parametrize(("rate", "fails"), [(300.0, False), (380.0, False), (420.0, True), (600.0, True)])
def test_load_above_the_capacity_left_after_a_crash_fails_and_below_it_does_not(rate: float, fails: bool) -> None:
    """3 instances of 2 workers x 10 ms each serve 600 req/s; after one crashes, 400 req/s are left."""
    capacity = Capacity(concurrency=2, queue=20, work_ms=10.0)
    assert capacity.requests_per_second == 200.0
    lab = SimLab(3, capacity=capacity, seed=5)
    report = lab.run_load_sync(rate=rate, duration=6.0, faults=[(1.0, "b", "crash", {})])
    after = [r for r in lab.records if r.start > 3.0 + lab.records[0].start]  # once b is marked down
    failed_after = sum(1 for r in after if not r.ok)
    if fails:
        assert failed_after > 0.05 * len(after), report.to_text()
        # Shed by full queues (503), or 502 once the retry found the other queue full too: answers, not timeouts.
        assert set(report.errors_by_kind) <= {"http_502", "http_503"}, report.errors_by_kind
    else:
        assert report.failed == 0, report.to_text()


def test_capacity_alone_overloads_an_instance_with_nothing_broken() -> None:
    lab = SimLab(1, capacity=Capacity(concurrency=1, queue=5, work_ms=20.0), health=None, retries=None, seed=0)
    report = lab.run_load_sync(rate=100, duration=2.0)  # twice what 1 worker x 20 ms can do
    assert report.errors_by_kind.get("http_503", 0) == pytest.approx(100, abs=10)
    assert not [e for e in lab.events.history if isinstance(e, FaultInjected)]


def test_two_independent_instances_are_available_one_minus_the_square_of_each_ones_unavailability() -> None:
    """A = MTBF / (MTBF + MTTR) = 0.909 each; both down (1 - A)^2 of the time: 0.83 %. Exponential and Weibull.

    Over a million simulated seconds (about 18,000 failures each) the share of time the service is up is
    within 0.1 percentage point of 1 - (1 - A)^2 (its standard error there is about 0.03 points).
    """
    for process in (FailureProcess(100.0, 10.0), FailureProcess(100.0, 10.0, "weibull", 2.0)):
        plan = failure_plan(["a", "b"], process, horizon=1e6, seed=4)
        shares = up_time(plan, ["a", "b"], 1e6)
        a = process.availability
        assert shares.per_instance["a"] == pytest.approx(a, abs=0.003)
        assert shares.service == pytest.approx(1 - (1 - a) ** 2, abs=0.001)


def test_a_zone_that_fails_as_a_whole_breaks_the_redundancy_formula() -> None:
    own = FailureProcess(100.0, 10.0)
    zone = FailureGroup("zone-1", ("a", "b"), FailureProcess(1000.0, 20.0))
    plan = failure_plan(["a", "b"], own, [zone], horizon=1e6, seed=4)
    shares = up_time(plan, ["a", "b"], 1e6)
    independent = 1 - (1 - own.availability) ** 2
    assert shares.service == pytest.approx(zone.process.availability * independent, abs=0.002)
    assert 1 - shares.service > 3 * (1 - independent)  # the correlated failure dominates


def test_clients_of_a_simulated_lab_see_the_redundancy_formula() -> None:
    """The same check through the whole lab: requests, retries, the policy. No health checks and no ejection, so
    that a request fails exactly when both instances are down (a refused attempt is retried on the other one).

    2,000 s with a failure every ~5.5 s of each instance: about 70 episodes of both down; the measured
    unavailability is within 30 % of (1 - A)^2 = 0.83 % (about 2.5 standard errors of such a count).
    """
    process = FailureProcess(5.0, 0.5)
    lab = SimLab(2, health=None, ejection=None, retries=RetrySettings(max_attempts=2), failures=process, seed=9)
    report = lab.run_load_sync(rate=20, duration=2000.0)
    expected = (1 - process.availability) ** 2
    assert 1 - report.availability == pytest.approx(expected, rel=0.3), report.to_text()
    crashes = [e for e in lab.events.history if isinstance(e, FaultInjected)]
    assert crashes and all(e.fault == "crash" for e in crashes)


def test_the_lab_applies_the_same_failures_as_the_plan() -> None:
    process = FailureProcess(3.0, 1.0)
    group = FailureGroup("rack", ("a", "b"), FailureProcess(10.0, 2.0, "weibull", 1.5))
    lab = SimLab(3, health=None, failures=process, groups=[group], seed=2, history_size=100_000)
    began = lab.now()
    lab.advance_sync(60.0)
    seen = [
        (round(e.at - began, 6), e.instance, isinstance(e, FaultInjected))
        for e in lab.events.history
        if isinstance(e, (FaultInjected, FaultCleared)) and e.at > began
    ]
    plan = failure_plan(["a", "b", "c"], process, [group], horizon=60.0, seed=2)
    assert seen == [(round(c.at, 6), c.instance, c.down) for c in plan]


@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_lognormal_work_times_are_randoms_own_gauss_draws(seed: int) -> None:
    """ServiceTime makes its normal draws itself (no Python call to rng.gauss for every request), by gauss's own
    Box-Muller method: the same numbers from the same stream, so a seed gives the same run as it did with gauss."""
    import math
    import random

    from spofkit.capacity import ServiceTime, quantized

    capacity = Capacity(concurrency=4, work_ms=5.0, spread_ms=2.0)
    service = ServiceTime(capacity, random.Random(seed))
    reference = random.Random(seed)
    sigma = math.sqrt(math.log(1 + (2.0 / 5.0) ** 2))
    mu = math.log(0.005) - sigma**2 / 2
    for _ in range(1001):  # odd: a spare draw is left over, as gauss leaves one
        assert service.draw() == quantized(math.exp(mu + sigma * reference.gauss(0.0, 1.0)))
    # The same uniform draws, no more, no fewer (gauss keeps its spare in the generator; ServiceTime in itself).
    assert service.rng.getstate()[:2] == reference.getstate()[:2] and reference.getstate()[2] is not None
