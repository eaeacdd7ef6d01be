"""Exercises for lesson 09, capacity and overload: headroom, queueing delay, retries that multiply, budgets.

The capacities come from :class:`~spofkit.capacity.Capacity` (``requests_per_second``: workers / work time), a
retry budget's allowance from the balancer's own :class:`~spofkit.policy.failover.RetryBudget`, and the number
of tries a layer makes from its :class:`~spofkit.policy.failover.RetrySettings` (``max_attempts``). The M/M/1
response time is the textbook's ``1 / (μ − λ)``, which tests/test_sim_models.py checks the simulator against.
"""

from __future__ import annotations

import math
import random
from typing import Any

from spofkit.capacity import Capacity
from spofkit.exercises.base import NumericExercise, Problem, _pick
from spofkit.policy.failover import RetryBudget, RetrySettings


def utilisation_after_losing(instances: int, lost: int, capacity: Capacity, rate: float) -> float:
    """How busy (0..1, above 1: overloaded) the instances left are, when ``lost`` of ``instances`` are gone and
    the load ``rate`` (req/s) is shared by the rest."""
    per_instance = capacity.requests_per_second
    if per_instance is None:
        raise ValueError(f"utilisation needs a capacity with workers and work, got {capacity.describe()}")
    if not 0 <= lost < instances:
        raise ValueError(f"lost must be 0..{instances - 1}, got {lost!r}")
    return rate / ((instances - lost) * per_instance)


def mm1_response_time(work_seconds: float, utilisation: float) -> float:
    """Mean time in the system (waiting + work) of one worker, exponential work of mean ``work_seconds``,
    Poisson arrivals at ``utilisation`` (0 <= ρ < 1): ``1 / (μ − λ)`` = work / (1 − ρ)."""
    if not 0 <= utilisation < 1:
        raise ValueError(
            f"utilisation must be 0 <= ρ < 1 (at 1 and above the queue grows without end), got {utilisation!r}"
        )
    return work_seconds / (1 - utilisation)


def largest_budget_ratio(rate: float, capacity: float, min_per_second: float, window: float = 10.0) -> float:
    """The largest retry budget ratio that keeps attempts (requests + retries the budget allows) within
    ``capacity`` (req/s) at a steady ``rate``: read off the balancer's own :class:`RetryBudget`, whose
    allowance grows in a straight line with the ratio. Negative: even no ratio is enough (the floor alone is
    too much)."""

    def attempts_per_second(ratio: float) -> float:
        budget = RetryBudget(ratio, min_per_second, window)
        requests = round(rate * window)
        for i in range(requests):
            budget.record_request(window - i / rate)  # the last window's steady arrivals
        return rate + budget.allowance(window) / window

    without, with_one = attempts_per_second(0.0), attempts_per_second(1.0)
    return (capacity - without) / (with_one - without)


# --- lesson 09 --------------------------------------------------------------------------------------------


class HeadroomAfterLoss(NumericExercise):
    id = "09.headroom"
    lesson = "09"
    title = "How busy are the instances left after losing one?"
    answer_format = "percent of their capacity (more than a hundred: overloaded)"
    unit = "%"
    relative_tolerance = 0.02

    def _make(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        instances = _pick(rng, [2, 3, 4, 5, 6])
        workers = _pick(rng, [1, 2, 4, 8])
        work_ms = _pick(rng, [5, 10, 20, 25, 50])
        before = _pick(rng, [0.5, 0.6, 0.65, 0.7, 0.75, 0.8])
        per_instance = Capacity(concurrency=workers, work_ms=work_ms).requests_per_second
        assert per_instance is not None
        rate = round(before * instances * per_instance)
        params = {"instances": instances, "workers": workers, "work_ms": work_ms, "rate": rate}
        question = (
            f"{instances} instances, each with {workers} worker{'s' if workers > 1 else ''} and {work_ms} ms of work "
            f"per request, share {rate} requests/s evenly. One of them crashes, and the balancer sends everything "
            "to the others. How busy are the instances left, in percent of what they can serve?"
        )
        return question, params

    def solution(self, problem: Problem) -> float:
        params = problem.params
        capacity = Capacity(concurrency=params["workers"], work_ms=params["work_ms"])
        return 100 * utilisation_after_losing(params["instances"], 1, capacity, params["rate"])

    def _hint(self, problem: Problem, given: float) -> str:
        params = problem.params
        capacity = Capacity(concurrency=params["workers"], work_ms=params["work_ms"])
        if self._is_near(given, 100 * utilisation_after_losing(params["instances"], 0, capacity, params["rate"])):
            return "that is how busy they were before the crash; the same load now has one instance fewer"
        return (
            "one instance serves workers ÷ work time (in seconds) requests/s; the load is shared by the instances "
            "still there"
        )

    def _why_answer(self, problem: Problem) -> str:
        instances = problem.params["instances"]
        return (
            f"with {instances} instances, each must stay under {100 * (instances - 1) / instances:.0f} % busy for "
            "the rest to carry the load of one lost (N+1); above 100 % the queues grow until requests fail"
        )


class QueueingDelay(NumericExercise):
    id = "09.queueing_delay"
    lesson = "09"
    title = "How long does a request take on a busy instance?"
    answer_format = "milliseconds (waiting + work)"
    unit = "ms"
    relative_tolerance = 0.03

    def _make(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        work_ms = _pick(rng, [2, 5, 10, 20, 50])
        utilisation = _pick(rng, [0.5, 0.6, 0.75, 0.8, 0.9, 0.95])
        rate = round(utilisation * 1000 / work_ms, 3)
        question = (
            f"One instance has one worker; a request's work takes {work_ms} ms on average (exponentially "
            f"distributed), and requests arrive at random (Poisson) at {rate:g} per second. On average, how long "
            "does a request spend at the instance, waiting in its queue and being worked on?"
        )
        return question, {"work_ms": work_ms, "rate": rate}

    def solution(self, problem: Problem) -> float:
        work = problem.params["work_ms"] / 1000
        return 1000 * mm1_response_time(work, problem.params["rate"] * work)

    def _hint(self, problem: Problem, given: float) -> str:
        work_ms = problem.params["work_ms"]
        utilisation = problem.params["rate"] * work_ms / 1000
        if self._is_near(given, work_ms):
            return "that is the work alone; at this load most requests find the worker busy and wait"
        if self._is_near(given, work_ms * utilisation / (1 - utilisation)):
            return "that is the wait alone; the question asks for the wait and the work together"
        return "first the utilisation ρ = arrival rate × work time; then M/M/1's time in the system, work / (1 − ρ)"

    def _why_answer(self, problem: Problem) -> str:
        return "the queueing delay grows as 1 / (1 − ρ): from 80 % to 90 % busy doubles it, to 95 % doubles it again"


class RetryAmplification(NumericExercise):
    id = "09.retry_amplification"
    lesson = "09"
    title = "How many attempts does one request become when every layer retries?"
    answer_format = "attempts at the instances per client request"
    unit = "attempts"
    relative_tolerance = 0.0

    def _make(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        layers = [("the client", _pick(rng, [2, 3, 4])), ("the balancer", _pick(rng, [2, 3]))]
        if rng.random() < 0.5:
            layers.insert(1, ("an API gateway in front of the balancer", _pick(rng, [2, 3])))
        described = "; ".join(
            f"{who} makes up to {tries} tries (the first and {tries - 1} more)" for who, tries in layers
        )
        question = (
            f"Every layer retries on a timeout: {described}. The instances are overloaded and every attempt times "
            "out. How many attempts reach the instances for one request the user makes?"
        )
        return question, {"tries": [tries for _who, tries in layers]}

    def solution(self, problem: Problem) -> float:
        # Each layer's tries are RetrySettings.max_attempts; each try of a layer is a whole request to the next.
        return float(math.prod(RetrySettings(max_attempts=tries).max_attempts for tries in problem.params["tries"]))

    def _hint(self, problem: Problem, given: float) -> str:
        tries = problem.params["tries"]
        if self._is_near(given, float(sum(tries))) or self._is_near(given, float(sum(tries) - len(tries) + 1)):
            return "retries do not add up layer by layer: each try of one layer is a whole request to the next"
        return "each try of a layer is a whole new request to the layer behind it, which retries it again"

    def _why_answer(self, problem: Problem) -> str:
        return "this is why a retry storm grows: retry at one layer only, and bound it with a budget"


class BudgetThatStopsTheStorm(NumericExercise):
    id = "09.storm_budget"
    lesson = "09"
    title = "Which retry budget keeps a storm within capacity?"
    answer_format = "the largest budget ratio, in percent of the requests, to one decimal"
    unit = "%"
    # Right to within a rounding to one decimal: the floor moves the answer by a few tenths of a point (see _make),
    # and a wider tolerance would accept the answer that leaves the floor out.
    relative_tolerance = 0.0
    absolute_tolerance = 0.15

    def _make(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        while True:
            capacity = _pick(rng, [400, 600, 800, 1000, 1200])
            rate = round(capacity * _pick(rng, [0.6, 0.7, 0.75, 0.8, 0.85]))
            floor = _pick(rng, [0.0, 5.0, 10.0, 20.0])
            params = {"capacity": capacity, "rate": rate, "min_per_second": floor, "window": 10.0}
            answer = 100 * largest_budget_ratio(rate, capacity, floor)
            no_floor = 100 * (capacity - rate) / rate
            # Only problems where leaving the floor out is a wrong answer, well outside the tolerance.
            if answer > 1 and (floor == 0 or abs(answer - no_floor) > 3 * self.absolute_tolerance):
                break
        question = (
            f"The instances can serve {capacity} requests/s; users send a steady {rate} requests/s. During a storm "
            "every request fails once and the balancer would retry each. Its retry budget allows retries up to "
            f"ratio × the requests of the last 10 s, plus a floor of {floor:g} retries/s. What is the largest ratio "
            "(in percent) that keeps the attempts (requests and retries together) within what the instances can serve?"
        )
        return question, params

    def solution(self, problem: Problem) -> float:
        params = problem.params
        return 100 * largest_budget_ratio(
            params["rate"], params["capacity"], params["min_per_second"], params["window"]
        )

    def _hint(self, problem: Problem, given: float) -> str:
        params = problem.params
        no_floor = 100 * (params["capacity"] - params["rate"]) / params["rate"]
        if params["min_per_second"] > 0 and self._is_near(given, no_floor):
            return "you left out the floor: those retries come on top of the ratio's"
        if self._is_near(
            given, 100 * (params["capacity"] - params["rate"] - params["min_per_second"]) / params["capacity"]
        ):
            return "the ratio is a share of the requests, not of the capacity"
        return "attempts per second = requests + floor + ratio × requests; keep that within the capacity"

    def _why_answer(self, problem: Problem) -> str:
        return (
            "a budget caps the extra load at a fraction of the real load, whatever fails: the storm cannot feed itself"
        )
