"""Exercises for lesson 06: Little's law, and :func:`check_strategy`, which checks code instead of a number.

``await check_strategy(MyStrategy)`` first calls ``pick`` by hand on small inputs, then runs the strategy
in a real lab with one slow instance and tells you whether it spared the slow one.
"""

from __future__ import annotations

import random
from typing import Any

from spofkit.exercises.base import Feedback, NumericExercise, Problem, _pick
from spofkit.strategies import Backend, RequestInfo, make_strategy

# --- lesson 06: strategies ---------------------------------------------------------------------------


class LittlesLaw(NumericExercise):
    id = "06.littles_law"
    lesson = "06"
    title = "Why a slow instance has more requests in flight"
    answer_format = "requests in flight"
    unit = "requests"
    relative_tolerance = 0.02

    def _make(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        rate = _pick(rng, [10, 20, 50, 100])
        latency_ms = _pick(rng, [5, 20, 50, 200, 500])
        question = (
            f"An instance receives {rate} requests/s and each takes {latency_ms} ms. On average, how "
            f"many requests is it working on at any moment?"
        )
        return question, {"rate": rate, "latency_ms": latency_ms}

    def solution(self, problem: Problem) -> float:
        return float(problem.params["rate"] * problem.params["latency_ms"] / 1000)

    def _hint(self, problem: Problem, given: float) -> str:
        rate, latency_ms = problem.params["rate"], problem.params["latency_ms"]
        if self._is_near(given, rate * latency_ms):
            return f"the time is {latency_ms} ms: turn it into seconds first"
        if self._is_near(given, rate / (latency_ms / 1000)):
            return "Little's law multiplies: in flight = arrival rate × time in the system"
        return "Little's law: in flight = arrival rate × time in the system (in seconds)"

    def _why_answer(self, problem: Problem) -> str:
        return "least connections reads exactly this number: a slow instance shows a high in-flight count"


def _pick_sanity_errors(strategy: Any) -> list[str]:
    """Call ``pick`` by hand on small inputs; return what went wrong, in words."""
    problems = []
    trials = [
        [Backend("a"), Backend("b"), Backend("c")],
        [Backend("a", in_flight=5), Backend("b", in_flight=0), Backend("c", in_flight=2)],
        [Backend("only")],
    ]
    rng = random.Random(0)
    for backends in trials:
        for step in range(5):
            try:
                chosen = strategy.pick(backends, RequestInfo(), float(step), rng)
            except Exception as error:
                problems.append(f"pick() raised {type(error).__name__}: {error} for {len(backends)} backends")
                return problems
            if chosen not in backends:
                problems.append(f"pick() returned {chosen!r}, which is not one of the backends given")
                return problems
    return problems


async def check_strategy(
    strategy: Any,
    *,
    instances: int = 3,
    slow: str = "b",
    slow_ms: float = 150.0,
    rate: float = 60.0,
    duration: float = 2.0,
    seed: int = 0,
) -> Feedback:
    """Run your strategy (a class with ``pick``, or an object) in a real lab where ``slow`` is slow.

    Round robin sends the slow instance its full share, 1/N of the requests. Your strategy passes if it
    sends it at most three quarters of that, while at least 95 % of requests still succeed. ``await``
    it (in a notebook: ``await check_strategy(MyStrategy)``); it takes about ``duration`` seconds.
    """
    from spofkit.lab import Lab  # here, not at the top: the pure exercises need no servers

    if not 2 <= instances <= 26:
        raise ValueError(f"instances must be 2..26, got {instances!r}")
    fair_share = 1 / instances
    limit = 0.75 * fair_share
    expected = f"the slow instance {slow} gets at most {limit:.0%} of requests (round robin: {fair_share:.0%})"
    try:
        chosen = make_strategy(strategy)
    except Exception as error:
        return Feedback(
            False,
            expected,
            f"a strategy that could not be created: {error}",
            "give a class whose __init__ takes no arguments and that has a pick() method",
        )
    sanity = _pick_sanity_errors(chosen)
    if sanity:
        return Feedback(
            False,
            expected,
            sanity[0],
            "pick(backends, request, now, rng) must return one of the Backend objects it was handed",
        )
    lab = await Lab.start(instances, strategy=chosen, health=None, retries=None, ejection=None, seed=seed)
    try:
        if slow not in lab.instance_names:
            raise ValueError(f"slow must name one of {lab.instance_names}, got {slow!r}")
        await lab.inject(slow, "slow", ms=slow_ms)
        report = await lab.run_load(rate=rate, duration=duration)
    finally:
        await lab.stop()
    name = getattr(chosen, "name", type(chosen).__name__)
    share = report.per_instance.get(slow, 0) / report.succeeded if report.succeeded else 1.0
    given = (
        f"{name}: {slow} got {share:.0%} ({report.per_instance.get(slow, 0)} of {report.succeeded} "
        f"answered), availability {report.availability:.1%}"
    )
    if report.availability < 0.95:
        return Feedback(
            False, expected, given, "too many requests failed: does pick() raise, or pick a backend that cannot serve?"
        )
    if share > limit:
        return Feedback(
            False,
            expected,
            given,
            "look at backend.in_flight: a slow instance holds on to its requests longer, so "
            "it has more in flight; prefer the backend with fewer (or learn latency in observe())",
        )
    return Feedback(
        True, expected, given, note="the slow instance kept more requests in flight, so your strategy sent it fewer"
    )
