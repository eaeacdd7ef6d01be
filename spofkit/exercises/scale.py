"""Exercises for lesson 10: availability at scale — MTBF and MTTR, spare capacity, and failures that are not
independent.

The formulas a learner checks against the simulator live here, once: :func:`at_least_one_of_n` (at least
one of N copies up), :func:`at_least_k_of_n` (enough copies up to carry the load: N+1 and 2N), and
:func:`zoned_availability` (copies spread over zones that fail as a whole). An instance's own availability is
:attr:`spofkit.sim.FailureProcess.availability`, the same object the simulator draws its failures from, and a
year's hours are :data:`HOURS_PER_YEAR`.
"""

from __future__ import annotations

import math
import random
import string
from collections.abc import Sequence
from typing import Any

from spofkit.exercises.base import AvailabilityExercise, ChoiceExercise, NumericExercise, Problem, _pick
from spofkit.sim.failures import FailureProcess

HOUR = 3600.0
DAY = 24 * HOUR
HOURS_PER_YEAR = 365 * 24


# --- the formulas ------------------------------------------------------------------------------------------


def _check_share(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be an availability between 0 and 1, got {value!r}")


def _check_count(name: str, value: int, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")


def at_least_one_of_n(copies: int, each: float) -> float:
    """At least one of ``copies`` independent copies, each up ``each`` of the time, is up: 1 − (1 − each)^N."""
    _check_share("each", each)
    _check_count("copies", copies, 1)
    return 1 - (1 - each) ** copies


def at_least_k_of_n(needed: int, copies: int, each: float) -> float:
    """At least ``needed`` of ``copies`` independent copies (each up ``each``) are up at once.

    The binomial sum over "exactly j up", j = needed..copies. ``needed = 1`` is :func:`at_least_one_of_n`;
    with a load that takes 3 copies, N+1 is ``at_least_k_of_n(3, 4, a)`` and 2N ``at_least_k_of_n(3, 6, a)``.
    """
    _check_share("each", each)
    _check_count("copies", copies, 1)
    _check_count("needed", needed, 1)
    if needed > copies:
        raise ValueError(f"needed ({needed}) cannot be more than copies ({copies})")
    return math.fsum(math.comb(copies, up) * each**up * (1 - each) ** (copies - up) for up in range(needed, copies + 1))


def zoned_availability(per_zone: Sequence[int], each: float, zone: float) -> float:
    """Copies spread over zones (``per_zone[i]`` copies in zone i), each zone up ``zone`` of the time.

    A zone serves when it is up and one of its copies is; the service is up when any zone serves. Everything is
    independent except that a zone going down takes all of its copies with it.
    """
    _check_share("each", each)
    _check_share("zone", zone)
    if not per_zone or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in per_zone):
        raise ValueError(f"per_zone must list at least one zone, each with a whole number >= 1 of copies: {per_zone!r}")
    all_zones_fail = math.prod(1 - zone * at_least_one_of_n(copies, each) for copies in per_zone)
    return 1 - all_zones_fail


def _process(problem: Problem) -> FailureProcess:
    """The failure process of a problem's ``mtbf_days`` and ``mttr_hours``."""
    params = problem.params
    return FailureProcess(params["mtbf_days"] * DAY, params["mttr_hours"] * HOUR)


# --- the exercises -----------------------------------------------------------------------------------------


class MtbfAvailability(AvailabilityExercise):
    id = "10.mtbf_availability"
    lesson = "10"
    title = "From MTBF and MTTR to availability"

    def _make(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        mtbf_days = _pick(rng, [5, 10, 20, 30, 60, 90])
        mttr_hours = _pick(rng, [2, 4, 8, 12, 24, 48])
        question = (
            f"A server fails on average once every {mtbf_days} days (its MTBF), and a repair takes "
            f"{mttr_hours} hours on average (its MTTR). What share of the time is it up, in the long run?"
        )
        return question, {"mtbf_days": mtbf_days, "mttr_hours": mttr_hours}

    def solution(self, problem: Problem) -> float:
        return _process(problem).availability

    def _hint(self, problem: Problem, given: float) -> str:
        mtbf_hours = problem.params["mtbf_days"] * 24
        mttr_hours = problem.params["mttr_hours"]
        if self._is_near(given, 1 - mttr_hours / mtbf_hours):
            return (
                "close, but a cycle is an up time *and* a repair: divide the time up by the whole cycle, "
                "MTBF + MTTR, not by the MTBF alone"
            )
        mtbf_days = problem.params["mtbf_days"]
        if self._is_near(given, mtbf_days / (mtbf_days + mttr_hours)):
            return "the MTBF is in days and the MTTR in hours: put both in the same unit first"
        if self._is_near(given, mttr_hours / (mtbf_hours + mttr_hours)):
            return "that is the share of the time it is being repaired; the question asks for the time it is up"
        return "availability = MTBF / (MTBF + MTTR), both in the same unit (a day has 24 hours)"


class YearlyDowntime(NumericExercise):
    id = "10.yearly_downtime"
    lesson = "10"
    title = "Nines as hours of downtime"
    answer_format = "hours per year"
    unit = "hours"
    relative_tolerance = 0.03

    def _make(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        mtbf_days = _pick(rng, [5, 10, 20, 30])
        mttr_hours = _pick(rng, [6, 12, 24, 48])
        copies = rng.randrange(2, 4)
        question = (
            f"{copies} copies of a service each fail on average once every {mtbf_days} days and take "
            f"{mttr_hours} hours to repair, independently of each other. The service is down only while "
            f"{'both' if copies == 2 else f'all {copies}'} are down at once. How many hours a year (365 days) do "
            "you expect it to be down?"
        )
        return question, {"mtbf_days": mtbf_days, "mttr_hours": mttr_hours, "copies": copies}

    def solution(self, problem: Problem) -> float:
        each = _process(problem).availability
        return (1 - at_least_one_of_n(problem.params["copies"], each)) * HOURS_PER_YEAR

    def _hint(self, problem: Problem, given: float) -> str:
        each = _process(problem).availability
        copies = problem.params["copies"]
        if self._is_near(given, (1 - each) * HOURS_PER_YEAR):
            return f"that is one copy's downtime; the service is down only while all {copies} are down together"
        if self._is_near(given, copies * (1 - each) * HOURS_PER_YEAR):
            return "that adds up the copies' downtimes; the service is down only when they overlap, all at once"
        if self._is_near(given, self.solution(problem) * 60):
            return "that looks like minutes; the question asks for hours"
        return (
            "first each copy's availability, MTBF / (MTBF + MTTR); all copies down at once is (1 − A)^N; "
            f"times the {HOURS_PER_YEAR} hours of a year"
        )


class SpareCapacity(AvailabilityExercise):
    id = "10.spare_capacity"
    lesson = "10"
    title = "N+1 or 2N: enough copies up to carry the load"

    def _make(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        needed = rng.randrange(2, 5)
        plan = _pick(rng, ["N+1", "N+2", "2N"])
        copies = {"N+1": needed + 1, "N+2": needed + 2, "2N": 2 * needed}[plan]
        each = _pick(rng, [0.95, 0.98, 0.99, 0.995])
        question = (
            f"The peak load takes {needed} instances; you run {copies} ({plan}). Each is up {each * 100:g}% of the "
            f"time, independently of the others. What share of the time are at least {needed} up, so that the "
            "peak is served?"
        )
        return question, {"needed": needed, "copies": copies, "each": each, "plan": plan}

    def solution(self, problem: Problem) -> float:
        params = problem.params
        return at_least_k_of_n(params["needed"], params["copies"], params["each"])

    def _hint(self, problem: Problem, given: float) -> str:
        needed, copies, each = (problem.params[key] for key in ("needed", "copies", "each"))
        if self._is_near(given, at_least_one_of_n(copies, each)):
            return f"that is 'at least one up'; the peak takes {needed} of them"
        if self._is_near(given, each**copies):
            return f"that is 'all {copies} up'; {needed} are enough, so a few may be down"
        if self._is_near(given, each**needed):
            return f"that is {needed} particular instances up; any {needed} of the {copies} will do"
        return f"add up the chances that exactly j are up, for j = {needed}..{copies}: C(N, j) · a^j · (1 − a)^(N − j)"


class ZoneFailure(AvailabilityExercise):
    id = "10.zone_failure"
    lesson = "10"
    title = "A zone that fails as a whole"

    def _make(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        zones = _pick(rng, [1, 1, 2, 3])
        per_zone = rng.randrange(2, 4) if zones > 1 else rng.randrange(2, 5)
        each = _pick(rng, [0.95, 0.98, 0.99])
        zone = _pick(rng, [0.995, 0.998, 0.999])
        layout = (
            f"{per_zone} copies of a service run in one availability zone"
            if zones == 1
            else f"{zones * per_zone} copies of a service run in {zones} availability zones, {per_zone} in each"
        )
        question = (
            f"{layout}. Each copy is up {each * 100:g}% of the time on its own; each zone "
            f"is up {zone * 100:g}% of the time, and when a zone goes down, every copy in it goes down with it. "
            "Copies and zones fail independently otherwise. The service is up while at least one copy is up. "
            "What is its availability?"
        )
        return question, {"zones": zones, "per_zone": per_zone, "each": each, "zone": zone}

    def solution(self, problem: Problem) -> float:
        params = problem.params
        return zoned_availability([params["per_zone"]] * params["zones"], params["each"], params["zone"])

    def _hint(self, problem: Problem, given: float) -> str:
        zones, per_zone, each, zone = (problem.params[key] for key in ("zones", "per_zone", "each", "zone"))
        if self._is_near(given, at_least_one_of_n(zones * per_zone, each)):
            return (
                "that is 1 − (1 − a)^N, which assumes the copies fail independently; a zone takes all of its "
                "copies down together"
            )
        if zones > 1 and self._is_near(given, zone * at_least_one_of_n(zones * per_zone, each)):
            return "that puts every copy in one zone; here each zone can go down without the others"
        return (
            "one zone serves when the zone is up and one of its copies is: z · (1 − (1 − a)^n); "
            "the service fails only when every zone fails to serve"
        )

    def _why_answer(self, problem: Problem) -> str:
        zones, per_zone, each, zone = (problem.params[key] for key in ("zones", "per_zone", "each", "zone"))
        actual = 1 - self.solution(problem)
        if zones == 1:
            independent = 1 - at_least_one_of_n(per_zone, each)
            return (
                f"independent copies would all be down {independent * 100:.2g} % of the time; the zone alone is down "
                f"{(1 - zone) * 100:.2g} %, and the service {actual * 100:.2g} %: one zone is a single point of "
                "failure again"
            )
        in_one_zone = 1 - zoned_availability([zones * per_zone], each, zone)
        return (
            f"in one zone the service would be down {in_one_zone * 100:.2g} % of the time; spread over {zones} zones "
            f"it is down {actual * 100:.2g} %: {zones} zones down at once is rare, so spreading the copies wins most "
            "of it back"
        )


# Each: (what is shared, do the copies fail together?, why, a question that leads there).
_CORRELATED_CAUSES: list[tuple[str, bool, str, str]] = [
    (
        "all copies run in one availability zone, whose power fails now and then",
        True,
        "a zone's power failure takes every copy down at the same moment",
        "when the zone's power fails, how many copies are still up?",
    ),
    (
        "a new release is deployed to every copy in the same minute",
        True,
        "a bad release breaks every copy: the same bug, everywhere, at once",
        "if the release has a bug, which copies run it?",
    ),
    (
        "every copy uses the same TLS certificate, and it expires at midnight",
        True,
        "the expiry reaches every copy at the same second",
        "at one second past midnight, which copies still have a valid certificate?",
    ),
    (
        "all copies hang off one top-of-rack switch",
        True,
        "when the switch fails, every copy is cut off at once",
        "when the switch fails, which copies can still be reached?",
    ),
    (
        "every copy reads one shared configuration file that an engineer edits by hand",
        True,
        "a wrong edit reaches all copies at their next reload",
        "a typo in the file: how many copies load it?",
    ),
    (
        "each copy runs on its own machine in a different zone, with its own power and network",
        False,
        "nothing is shared: one machine's failure tells nothing about another's",
        "what could take two of these copies down at the same moment?",
    ),
    (
        "each copy's disk wears out at its own pace and fails on its own",
        False,
        "one worn disk says nothing about the others: what the formula assumes",
        "does one disk failing make another disk fail?",
    ),
    (
        "copies in two regions, each with its own on-call team and its own deploy schedule",
        False,
        "separate regions, people and schedules: their failures do not line up",
        "which event would hit both regions at once?",
    ),
    (
        "each copy is a separate machine whose memory chips fail at random, one at a time",
        False,
        "random, per-machine faults: the independence the formula needs",
        "would a memory fault in one machine touch another?",
    ),
]


class CorrelatedOrNot(ChoiceExercise):
    id = "10.correlated_or_not"
    lesson = "10"
    title = "When 1 − (1 − A)^N does not hold"

    def _make(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        while True:
            options = rng.sample(range(len(_CORRELATED_CAUSES)), 5)
            if {_CORRELATED_CAUSES[index][1] for index in options} == {True, False}:
                break
        lines = [
            f"  {label}. {_CORRELATED_CAUSES[index][0]}"
            for label, index in zip(string.ascii_uppercase, options, strict=False)
        ]
        question = (
            "Three copies of a service, each up 99% of the time. The formula 1 − (1 − 0.99)³ = 99.9999% assumes they "
            "fail independently. In which setups do the copies fail *together*, so that the formula promises too "
            "much?\n" + "\n".join(lines)
        )
        return question, {"options": options}

    def _is_true(self, problem: Problem, option: Any) -> bool:
        return _CORRELATED_CAUSES[int(option)][1]

    def _why(self, problem: Problem, option: Any) -> str:
        _words, together, why, _question = _CORRELATED_CAUSES[int(option)]
        return f"{'they fail together' if together else 'independent'}: {why}."

    def _question(self, problem: Problem, option: Any) -> str:
        return _CORRELATED_CAUSES[int(option)][3]
