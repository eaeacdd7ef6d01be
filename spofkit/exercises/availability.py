"""Exercises for lessons 00–02: availability as the client measures it, in series and in parallel.

Each answer is a small formula the lessons derive (succeeded / sent, the product of a chain, one minus
"all copies down at once"); :func:`allowed_downtime_minutes` is the one lesson 01 shows in a cell.
"""

from __future__ import annotations

import math
import random
from typing import Any

from spofkit.exercises.base import AvailabilityExercise, NumericExercise, Problem, _pick

MINUTES_PER = {"30-day month": 30 * 24 * 60, "year (365 days)": 365 * 24 * 60, "week": 7 * 24 * 60}


# --- lesson 00: welcome -----------------------------------------------------------------------------


class AvailabilityFromCounts(AvailabilityExercise):
    id = "00.availability_from_counts"
    lesson = "00"
    title = "Availability, as the client measures it"

    def _make(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        rate = _pick(rng, [50, 100, 200])
        duration = _pick(rng, [3, 5, 10])
        requests = rate * duration
        failed = rng.randrange(1, requests // 4)
        question = (
            f"A load generator sent {requests} requests ({rate} per second for {duration} s) and "
            f"{failed} of them failed. What availability did the client see?"
        )
        return question, {"requests": requests, "failed": failed}

    def solution(self, problem: Problem) -> float:
        params = problem.params
        return float(1 - params["failed"] / params["requests"])

    def _hint(self, problem: Problem, given: float) -> str:
        params = problem.params
        if self._is_near(given, params["failed"] / params["requests"]):
            return "that is the share that failed; availability is the share that succeeded"
        return (
            f"availability = requests that succeeded / all requests sent: how many of the "
            f"{params['requests']} requests succeeded?"
        )


# --- lesson 01: a single point of failure ------------------------------------------------------------


def allowed_downtime_minutes(availability: float, period_minutes: float) -> float:
    """How long a service may be down in a period and still meet ``availability`` (0..1)."""
    return (1 - availability) * period_minutes


class DowntimeBudget(NumericExercise):
    id = "01.downtime_budget"
    lesson = "01"
    title = "From nines to minutes of downtime"
    answer_format = "minutes"
    unit = "minutes"

    def _make(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        percent = _pick(rng, [99.0, 99.5, 99.9, 99.95, 99.99, 99.999])
        period = _pick(rng, list(MINUTES_PER))
        question = (
            f"A service promises {percent}% availability. How many minutes may it be down "
            f"in a {period} and still keep that promise?"
        )
        return question, {"availability_percent": percent, "period": period}

    def solution(self, problem: Problem) -> float:
        params = problem.params
        return allowed_downtime_minutes(params["availability_percent"] / 100, MINUTES_PER[params["period"]])

    def _hint(self, problem: Problem, given: float) -> str:
        period = problem.params["period"]
        minutes = MINUTES_PER[period]
        expected = self.solution(problem)
        if self._is_near(given, expected * 60):
            return "that looks like seconds; the question asks for minutes"
        if self._is_near(given, expected / 60):
            return "that looks like hours; the question asks for minutes"
        if self._is_near(given, problem.params["availability_percent"] / 100 * minutes):
            return "that is how long it must be *up*; the budget is the time it may be down: 1 − availability"
        return f"downtime = (1 − availability) × length of the period; a {period} is {minutes} minutes"


class OutageAvailability(AvailabilityExercise):
    id = "01.outage_availability"
    lesson = "01"
    title = "What availability does the client measure?"

    def _make(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        duration = _pick(rng, [10, 20, 30, 60])
        rate = _pick(rng, [50, 100, 200])
        crash = rng.randrange(1, duration // 2)
        back = crash + rng.randrange(1, duration // 2)
        question = (
            f"A client sends {rate} requests/s, evenly spaced, to the only server for {duration} s. "
            f"The server crashes at t = {crash} s and is back at t = {back} s; every request in "
            f"between fails. What availability does the client measure?"
        )
        return question, {"rate": rate, "duration": duration, "crash_at": crash, "back_at": back}

    def solution(self, problem: Problem) -> float:
        params = problem.params
        return float(1 - (params["back_at"] - params["crash_at"]) / params["duration"])

    def _hint(self, problem: Problem, given: float) -> str:
        params = problem.params
        if self._is_near(given, (params["back_at"] - params["crash_at"]) / params["duration"]):
            return "that is the share of the run the server was down; availability is the share it was up"
        return (
            f"availability = requests that succeeded / all requests; the rate cancels out, so it is the share "
            f"of the {params['duration']} s run the server was up (it was down from t = {params['crash_at']} s "
            f"to t = {params['back_at']} s)"
        )


class SeriesAvailability(AvailabilityExercise):
    id = "01.series_availability"
    lesson = "01"
    title = "A chain is as available as the product of its links"

    def _make(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        names = ["DNS", "load balancer", "application server", "database", "cache", "auth service"]
        count = rng.randrange(2, 5)
        parts = rng.sample(names, count)
        availabilities = [_pick(rng, [0.99, 0.995, 0.999, 0.9995, 0.9999]) for _ in parts]
        listing = ", ".join(f"{name} {a * 100:g}%" for name, a in zip(parts, availabilities, strict=True))
        question = (
            f"A request needs every one of these, each a single copy that fails independently: "
            f"{listing}. What is the availability of the whole chain?"
        )
        return question, {"parts": parts, "availabilities": availabilities}

    def solution(self, problem: Problem) -> float:
        return float(math.prod(problem.params["availabilities"]))

    def _hint(self, problem: Problem, given: float) -> str:
        lowest = min(problem.params["availabilities"])
        if given >= lowest - 1e-12:
            return (
                f"your answer is no lower than the weakest link ({lowest * 100:g}%), but the chain is up only when "
                f"*all* links are up at once, so it is worse than its weakest link: multiply the availabilities"
            )
        if given < self.solution(problem):
            return "each link costs only a little: multiply the availabilities, as fractions, and nothing more"
        return "multiply the availabilities, as fractions (a percentage divided by 100)"


# --- lesson 02: redundancy ---------------------------------------------------------------------------


class CrashErrorFraction(NumericExercise):
    id = "02.crash_error_fraction"
    lesson = "02"
    title = "Round robin without health checks"
    answer_format = "a fraction between 0 and 1"
    relative_tolerance = 0.02

    def _make(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        instances = rng.randrange(2, 9)
        crashed = 1 if rng.random() < 0.6 else rng.randrange(1, instances)
        question = (
            f"{instances} identical instances sit behind a round-robin balancer with no health "
            f"checks and no retries. {crashed} of them crash{'es' if crashed == 1 else ''}. "
            f"What fraction of client requests fail until someone notices?"
        )
        return question, {"instances": instances, "crashed": crashed}

    def solution(self, problem: Problem) -> float:
        return float(problem.params["crashed"] / problem.params["instances"])

    def _normalise(self, given: float) -> float:
        return given / 100 if 1 < given <= 100 else given

    def _hint(self, problem: Problem, given: float) -> str:
        instances, crashed = problem.params["instances"], problem.params["crashed"]
        if self._is_near(given, (instances - crashed) / instances):
            return "that is the share that still succeeds; the question asks for the share that fails"
        if crashed > 1 and self._is_near(given, 1 / instances):
            return f"that is the share of one crashed instance; {crashed} of them crashed"
        return (
            f"round robin hands each of the {instances} instances its turn whether it is alive or not, and every "
            f"request a crashed instance is handed fails: what share of the turns belong to crashed ones?"
        )


class ParallelAvailability(AvailabilityExercise):
    id = "02.parallel_availability"
    lesson = "02"
    title = "Redundant copies behind one balancer"

    def _make(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        copies = rng.randrange(2, 5)
        each = _pick(rng, [0.9, 0.95, 0.99, 0.995])
        balancer = _pick(rng, [0.999, 0.9995, 0.9999])
        question = (
            f"{copies} copies of a server are each up {each * 100:g}% of the time, failing "
            f"independently. The service is up when at least one copy is up *and* the one "
            f"balancer in front of them (up {balancer * 100:g}%) is up. Assume the balancer "
            f"notices dead copies at once. What is the availability of the service?"
        )
        return question, {"copies": copies, "each": each, "balancer": balancer}

    def solution(self, problem: Problem) -> float:
        params = problem.params
        all_copies_down = (1 - params["each"]) ** params["copies"]
        return float(params["balancer"] * (1 - all_copies_down))

    def _hint(self, problem: Problem, given: float) -> str:
        params = problem.params
        copies, each, balancer = params["copies"], params["each"], params["balancer"]
        if self._is_near(given, 1 - (1 - each) ** copies):
            return "that is the copies alone; every request also passes the one balancer in front of them"
        if self._is_near(given, each * balancer):
            return f"that is one copy behind the balancer; with {copies} copies, all must be down at once to fail"
        if self._is_near(given, each**copies * balancer):
            return (
                "multiplying availabilities is for parts that are all needed (a chain); for copies of which "
                "any one will do, multiply the *un*availabilities: all down together = (1 − a)^N"
            )
        return (
            "the copies fail together with probability (1 − a)^N, so they are up 1 − (1 − a)^N; "
            "the balancer is in series with them: multiply by its availability"
        )

    def _why_answer(self, problem: Problem) -> str:
        params = problem.params
        all_copies_down = (1 - params["each"]) ** params["copies"]
        balancer_down = 1 - params["balancer"]
        if balancer_down > all_copies_down:
            return (
                f"the one balancer is down more often than all {params['copies']} copies at once: it has become "
                f"the single point of failure, and more copies would hardly help"
            )
        return (
            f"all {params['copies']} copies down at once is still more likely than the balancer being down: "
            f"another copy would help, until the balancer becomes the single point of failure"
        )
