"""Exercises: check yourself, and ask for a fresh variant whenever you like.

Every lesson ends with a few exercises. Each exercise draws its numbers from a seed, so the same seed
gives the same problem (a class can share "seed 7"), and a new seed gives a new one::

    from spofkit.exercises import downtime_budget
    problem = downtime_budget.new_problem(seed=7)   # seed=None draws one (shown with the problem)
    problem                                         # the question, in a box
    downtime_budget.check(problem, 43.2)            # green box if right; red with expected/given/hint

The right answers come from spofkit itself, never from a second copy of a formula: the detection window
from :meth:`HealthSettings.detection_window_bound`, which failures are retried from
:func:`spofkit.failover.retry_decision`, a retry budget from :class:`RetryBudget`, an ejection time from
:class:`OutlierDetector`. When the library changes, the exercises follow.

Lesson 06 checks code instead of a number: ``await check_strategy(MyStrategy)`` runs your strategy in a
real lab with one slow instance and tells you whether it spared the slow one.

**Writing a new exercise** (for lesson authors): subclass :class:`NumericExercise` (a number within a
tolerance; :class:`AvailabilityExercise` for an availability, given as 0.999 or 99.9) or
:class:`ChoiceExercise` (pick the right labels), give it ``id``, ``lesson`` and ``title``, implement
``_make(rng)`` (question text and parameters, drawn only from ``rng``) and ``solution(problem)``, and
optionally ``_hint(problem, given)``. Create one module-level instance and list it in :data:`EXERCISES`.
"""

from __future__ import annotations

import html
import math
import random
import re
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from spofkit.failover import (
    CONNECT,
    IDEMPOTENT_METHODS,
    RESET,
    STATUS,
    TIMEOUT,
    EjectionSettings,
    OutlierDetector,
    RetryBudget,
    RetrySettings,
    retry_decision,
)
from spofkit.faults import Fault, make_fault
from spofkit.health import HealthSettings, HealthState
from spofkit.strategies import Backend, RequestInfo, make_strategy

# A drawn seed is kept small, so a learner can read it off and type it again.
MAX_DRAWN_SEED = 10_000

MINUTES_PER = {"30-day month": 30 * 24 * 60, "year (365 days)": 365 * 24 * 60, "week": 7 * 24 * 60}


# --- what a learner sees -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One variant of an exercise: the question and the numbers in it. The same seed gives the same one."""

    exercise: str  # the exercise's id, e.g. "01.downtime_budget"
    seed: int
    question: str
    params: dict[str, Any] = field(default_factory=dict, hash=False)
    answer_format: str = ""  # what to hand to check(), e.g. "minutes" or "labels such as 'AC'"

    def __str__(self) -> str:
        wanted = f"\n(answer: {self.answer_format})" if self.answer_format else ""
        return f"[{self.exercise}, seed {self.seed}] {self.question}{wanted}"

    def _repr_html_(self) -> str:
        question = html.escape(self.question).replace("\n", "<br>")
        wanted = f"<br><i>Answer: {html.escape(self.answer_format)}</i>" if self.answer_format else ""
        return (
            "<div style='border:1px solid #888;border-radius:6px;padding:8px 12px;margin:4px 0'>"
            f"<b>Exercise {html.escape(self.exercise)}</b> "
            f"<span style='color:#888'>(seed {self.seed})</span><br>{question}{wanted}</div>"
        )


@dataclass(frozen=True)
class Feedback:
    """The verdict on one answer: right or not, what was expected, what was given, and a hint."""

    ok: bool
    expected: str
    given: str
    hint: str = ""
    note: str = ""  # why the answer is what it is (shown both when right and when wrong)

    def __bool__(self) -> bool:
        return self.ok

    @property
    def message(self) -> str:
        if self.ok:
            lines = [f"Correct! {self.given} (expected {self.expected})."]
        else:
            lines = ["Not quite.", f"  expected: {self.expected}", f"  given:    {self.given}"]
            if self.hint:
                lines.append(f"  hint:     {self.hint}")
        if self.note:
            lines.append(f"  why:      {self.note}" if not self.ok else f"Why: {self.note}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.message

    def _repr_html_(self) -> str:
        color, background, title = (
            ("#1b5e20", "#e8f5e9", "Correct!") if self.ok else ("#b71c1c", "#ffebee", "Not quite.")
        )
        rows = [("expected", self.expected), ("given", self.given)]
        if self.hint and not self.ok:
            rows.append(("hint", self.hint))
        if self.note:
            rows.append(("why", self.note))
        body = "".join(
            f"<tr><th style='text-align:left;padding-right:8px'>{name}</th>"
            f"<td style='text-align:left'>{html.escape(value)}</td></tr>"
            for name, value in rows
        )
        return (
            f"<div class='spofkit-feedback' style='border:2px solid {color};background:{background};"
            f"color:{color};border-radius:6px;padding:8px 12px;margin:4px 0'>"
            f"<b>{title}</b><table>{body}</table></div>"
        )


# --- the kinds of exercise ---------------------------------------------------------------------------


class Exercise:
    """Base class: draws problems from a seed and checks answers. Subclasses say how."""

    id: str = "exercise"
    lesson: str = "00"
    title: str = ""
    answer_format: str = ""  # what check() wants, in words

    def new_problem(self, seed: int | None = None) -> Problem:
        """A problem for ``seed`` (a whole number); ``None`` draws a fresh seed, shown with the problem."""
        if seed is None:
            seed = random.SystemRandom().randrange(MAX_DRAWN_SEED)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be a whole number or None, got {seed!r}")
        # Seeding with a string mixes in the exercise id: seed 7 of two exercises are unrelated draws.
        rng = random.Random(f"{self.id}:{seed}")
        question, params = self._make(rng)
        return Problem(self.id, seed, question, params, self.answer_format)

    def _make(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        raise NotImplementedError

    def solution(self, problem: Problem) -> Any:
        """The right answer to ``problem`` (the solutions notebooks print it; so can you, on purpose)."""
        raise NotImplementedError

    def check(self, problem: Problem, answer: Any) -> Feedback:
        raise NotImplementedError

    def _own(self, problem: Problem) -> None:
        if not isinstance(problem, Problem):
            raise TypeError(f"problem must be a Problem from new_problem(), got {problem!r}")
        if problem.exercise != self.id:
            raise ValueError(
                f"problem is for exercise {problem.exercise!r}, not {self.id!r}: "
                f"check it with the exercise that made it"
            )

    def __repr__(self) -> str:
        return f"<exercise {self.id}: {self.title}>"


class NumericExercise(Exercise):
    """An answer that is a number, right within ``relative_tolerance`` (or ``absolute_tolerance``)."""

    relative_tolerance = 0.01
    absolute_tolerance = 1e-9
    unit = ""  # printed after numbers, e.g. "s"

    def solution(self, problem: Problem) -> float:
        raise NotImplementedError

    def check(self, problem: Problem, answer: Any) -> Feedback:
        self._own(problem)
        expected = self.solution(problem)
        given = _as_number(answer)
        if given is None:
            return Feedback(
                False,
                self._format(expected),
                repr(answer),
                f"answer with a number ({self.answer_format})",
            )
        given = self._normalise(given)
        ok = self._close(expected, given)
        hint = "" if ok else self._hint(problem, given)
        return Feedback(ok, self._format(expected), self._format(given), hint, self._note(problem))

    def _normalise(self, given: float) -> float:
        return given

    def _close(self, expected: float, given: float) -> bool:
        return math.isclose(given, expected, rel_tol=self.relative_tolerance, abs_tol=self.absolute_tolerance)

    def _format(self, value: float) -> str:
        return f"{value:.6g} {self.unit}".rstrip()

    def _hint(self, problem: Problem, given: float) -> str:
        return "work it out step by step from the question; the lesson's formula cell shows how"

    def _note(self, problem: Problem) -> str:
        return ""


class AvailabilityExercise(NumericExercise):
    """An availability, accepted as a fraction (0.999) or a percentage (99.9).

    Near 100 % every answer looks alike, so it is the *unavailability* (1 − A) that must be within 3 %:
    99.9 % vs 99.8 % is twice the downtime, and counts as wrong.
    """

    answer_format = "a fraction such as 0.999, or a percentage such as 99.9"
    relative_tolerance = 0.03

    def _normalise(self, given: float) -> float:
        return given / 100 if 1 < given <= 100 else given

    def _close(self, expected: float, given: float) -> bool:
        return math.isclose(1 - given, 1 - expected, rel_tol=self.relative_tolerance, abs_tol=1e-12)

    def _format(self, value: float) -> str:
        return f"{value * 100:.6g} %"


class ChoiceExercise(Exercise):
    """Pick the labels (``"A"``, ``"B"``...) of the options that are true; the answer is a set of labels.

    ``"AC"``, ``"A, C"``, ``["A", "C"]`` and ``{"a", "c"}`` are all the same answer. An empty answer
    (``""`` or ``set()``) says "none of them".
    """

    answer_format = "the labels of every option that applies, e.g. 'AC' (or '' for none)"

    def solution(self, problem: Problem) -> frozenset[str]:
        return frozenset(label for label, option in self._options(problem) if self._is_true(problem, option))

    def _options(self, problem: Problem) -> list[tuple[str, Any]]:
        return list(zip(string.ascii_uppercase, problem.params["options"], strict=False))

    def _is_true(self, problem: Problem, option: Any) -> bool:
        raise NotImplementedError

    def _why(self, problem: Problem, option: Any) -> str:
        """One sentence on why ``option`` is (or is not) true."""
        return ""

    def check(self, problem: Problem, answer: Any) -> Feedback:
        self._own(problem)
        expected = self.solution(problem)
        labels = {label for label, _ in self._options(problem)}
        given = _as_labels(answer)
        if given is None or not given <= labels:
            return Feedback(
                False,
                _show_labels(expected),
                repr(answer),
                f"answer with labels from {_show_labels(labels)}, e.g. 'AC', or '' for none",
            )
        ok = given == expected
        hint = ""
        if not ok:
            options = dict(self._options(problem))
            wrong = sorted(given ^ expected)
            hint = " ".join(f"{label}: {self._why(problem, options[label])}".rstrip(": ") for label in wrong)
        return Feedback(ok, _show_labels(expected), _show_labels(given), hint)


def _as_number(answer: Any) -> float | None:
    if isinstance(answer, bool):
        return None
    if isinstance(answer, str):
        try:
            return float(answer.replace("%", "").strip())
        except ValueError:
            return None
    try:
        value = float(answer)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _as_labels(answer: Any) -> set[str] | None:
    if isinstance(answer, str):
        return {c.upper() for c in re.sub(r"[\s,;]", "", answer)}
    if isinstance(answer, Iterable):
        items = list(answer)
        if all(isinstance(item, str) for item in items):
            return {item.strip().upper() for item in items}
    return None


def _show_labels(labels: Iterable[str]) -> str:
    ordered = sorted(labels)
    return ", ".join(ordered) if ordered else "none"


def _pick(rng: random.Random, values: Sequence[Any]) -> Any:
    return values[rng.randrange(len(values))]


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
        return "availability = requests that succeeded / all requests sent"


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
        minutes = MINUTES_PER[problem.params["period"]]
        expected = self.solution(problem)
        if math.isclose(given, expected * 60, rel_tol=0.01):
            return "that looks like seconds; the question asks for minutes"
        return (
            f"downtime = (1 − availability) × length of the period; a {problem.params['period']} is {minutes} minutes"
        )


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
        return (
            "availability = requests that succeeded / all requests; the rate cancels out, so it is "
            "the share of the run the server was up"
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
                "the chain is up only when *all* links are up at once, so it is worse than its "
                "weakest link: multiply the availabilities"
            )
        return "multiply the availabilities (as fractions: 99.9% is 0.999)"


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
        return (
            "round robin hands every instance its turn whether it is alive or not, so each "
            "crashed instance still receives 1/N of the requests, and fails all of them"
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
        return (
            "the copies fail together with probability (1 − a)^N, so they are up 1 − (1 − a)^N; "
            "the balancer is in series with them: multiply by its availability"
        )

    def _note(self, problem: Problem) -> str:
        return "past a couple of copies the balancer dominates: it has become the single point of failure"


# --- lesson 03: health checks ------------------------------------------------------------------------


def recovery_window_bound(settings: HealthSettings) -> float:
    """Worst case from "instance healthy again" to "marked up": detection's bound, mirrored.

    A DOWN instance is probed every ``downinter``; the first passing probe starts within one of those and
    the ``rise - 1`` after it follow ``fastinter`` apart, each taking up to ``timeout``.
    """
    spread = 1 + settings.jitter
    return (
        settings.down_interval * spread
        + (settings.rise - 1) * max(settings.fast_interval * spread, settings.timeout)
        + settings.timeout
    )


def _health_settings(params: dict[str, Any]) -> HealthSettings:
    return HealthSettings(
        interval=params["interval"],
        timeout=params["timeout"],
        rise=params["rise"],
        fall=params["fall"],
        fastinter=params.get("fastinter"),
        downinter=params.get("downinter"),
    )


def _describe_settings(params: dict[str, Any]) -> str:
    words = [
        f"interval {params['interval']:g} s",
        f"timeout {params['timeout']:g} s",
        f"rise {params['rise']}",
        f"fall {params['fall']}",
    ]
    for name in ("fastinter", "downinter"):
        if params.get(name) is not None:
            words.append(f"{name} {params[name]:g} s")
    return ", ".join(words)


class DetectionWindow(NumericExercise):
    id = "03.detection_window"
    lesson = "03"
    title = "How long until a hung instance is marked down?"
    answer_format = "seconds"
    unit = "s"

    def _make(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        interval = _pick(rng, [0.2, 0.5, 1.0, 2.0])
        params: dict[str, Any] = {
            "interval": interval,
            "timeout": _pick(rng, [0.1, 0.2, 0.3, 0.5, 1.0]),
            "rise": rng.randrange(1, 4),
            "fall": rng.randrange(1, 6),
            # Sometimes a faster pace once a failure is seen (HAProxy's fastinter).
            "fastinter": _pick(rng, [None, None, interval / 2, interval / 4]),
        }
        question = (
            f"Health checks run with {_describe_settings(params)} (no jitter). An instance hangs "
            f"right after passing a check: from then on every probe runs into its timeout. In the "
            f"worst case, how many seconds pass until it is marked DOWN?"
        )
        return question, params

    def solution(self, problem: Problem) -> float:
        return _health_settings(problem.params).detection_window_bound()

    def _hint(self, problem: Problem, given: float) -> str:
        return (
            "wait up to one interval for the first failing probe, then fall − 1 more probes, each "
            "starting max(fastinter, timeout) after the previous one, and the last probe itself "
            "takes the full timeout"
        )


class RecoveryWindow(NumericExercise):
    id = "03.recovery_window"
    lesson = "03"
    title = "How long until a recovered instance gets traffic again?"
    answer_format = "seconds"
    unit = "s"

    def _make(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        interval = _pick(rng, [0.2, 0.5, 1.0, 2.0])
        params: dict[str, Any] = {
            "interval": interval,
            "timeout": _pick(rng, [0.1, 0.2, 0.3]),
            "rise": rng.randrange(1, 6),
            "fall": rng.randrange(1, 4),
            "downinter": _pick(rng, [None, interval * 2, interval * 4]),
        }
        question = (
            f"Health checks run with {_describe_settings(params)} (no jitter; an instance that is "
            f"DOWN is probed every downinter, which defaults to interval). A DOWN instance becomes "
            f"healthy right after a failed probe. In the worst case, how many seconds until it is "
            f"marked UP (counting each passing probe as taking the full timeout)?"
        )
        return question, params

    def solution(self, problem: Problem) -> float:
        return recovery_window_bound(_health_settings(problem.params))

    def _hint(self, problem: Problem, given: float) -> str:
        return (
            "mirror the detection window: wait up to one downinter for the first passing probe, "
            "then rise − 1 more probes max(fastinter, timeout) apart, plus the last probe's timeout"
        )


class FalseAlarmFall(NumericExercise):
    id = "03.false_alarm_fall"
    lesson = "03"
    title = "Choosing fall: no false alarms from short pauses"
    answer_format = "a whole number"
    relative_tolerance = 0.0

    def _make(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        interval = _pick(rng, [0.2, 0.5, 1.0])
        misses = rng.randrange(1, 6)
        pause = round(misses * interval, 3)
        question = (
            f"An instance is healthy, but garbage-collection pauses of up to {pause:g} s make up to "
            f"{misses} health probe{'s' if misses > 1 else ''} in a row fail (checks every "
            f"{interval:g} s). What is the smallest `fall` that never marks it DOWN for such a pause, "
            f"yet detects a real crash as fast as possible?"
        )
        return question, {"interval": interval, "consecutive_misses": misses}

    def solution(self, problem: Problem) -> float:
        # Ask the real state machine: the smallest fall that survives the burst of misses.
        misses = problem.params["consecutive_misses"]
        fall = 1
        while True:
            state = HealthState(rise=1, fall=fall)
            results = [False] * misses + [True]
            if all(state.record(ok) is None for ok in results):
                return float(fall)
            fall += 1

    def _hint(self, problem: Problem, given: float) -> str:
        misses = problem.params["consecutive_misses"]
        if given < 1:
            return "fall counts failed probes in a row: it is at least 1"
        if given < misses + 1:
            return f"with fall = {given:g}, {misses} failures in a row are enough to mark it DOWN"
        return "a larger fall also avoids the false alarm, but every extra probe slows detection"


# --- lesson 04: failover and retries -----------------------------------------------------------------

# (method, path, failure kind or None for "a 500 answer", did it reach a backend?, attempts so far, words)
_RETRY_SCENARIOS: list[tuple[str, str, str | None, bool, int, str]] = [
    ("GET", "/cart", CONNECT, False, 1, "connection refused by the instance (it crashed)"),
    ("GET", "/search", TIMEOUT, True, 1, "no answer within the per-try timeout (it hangs)"),
    ("POST", "/orders", CONNECT, False, 1, "connection refused: the request never left the balancer"),
    ("POST", "/payments", TIMEOUT, True, 1, "no answer within the per-try timeout"),
    ("POST", "/orders", RESET, True, 1, "the connection was reset before any answer came"),
    ("PUT", "/profile/7", RESET, True, 1, "the connection was reset before any answer came"),
    ("DELETE", "/cart/3", TIMEOUT, True, 1, "no answer within the per-try timeout"),
    ("GET", "/stock", STATUS, True, 1, "the instance answered 503 Service Unavailable"),
    ("PATCH", "/profile/7", STATUS, True, 1, "the instance answered 503 Service Unavailable"),
    ("GET", "/report", None, True, 1, "the instance answered 500 Internal Server Error"),
    ("GET", "/cart", CONNECT, False, 3, "connection refused, on the third attempt already"),
]


class SafeToRetry(ChoiceExercise):
    id = "04.safe_to_retry"
    lesson = "04"
    title = "Which failed requests does the balancer retry?"

    settings = RetrySettings()

    def _make(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        while True:
            options = rng.sample(range(len(_RETRY_SCENARIOS)), 5)
            verdicts = {self._decide(index).retry for index in options}
            if verdicts == {True, False}:  # a mix, so "all" or "none" is never the answer
                break
        lines = []
        for label, index in zip(string.ascii_uppercase, options, strict=False):
            method, path, _failure, _reached, attempts, words = _RETRY_SCENARIOS[index]
            lines.append(f"  {label}. {method} {path}: {words} (attempt {attempts})")
        question = (
            f"The balancer retries with max_attempts = {self.settings.max_attempts} and the default "
            f"rules (retry budget not exhausted). Which of these failed attempts does it retry on "
            f"another instance?\n" + "\n".join(lines)
        )
        return question, {"options": options}

    def _decide(self, index: int) -> Any:
        method, _path, failure, reached, attempts, _words = _RETRY_SCENARIOS[index]
        if failure is None:
            # A 500 is not a failure kind the balancer retries (not in retry_statuses): answered as is.
            return _NotRetried("500 is the application's own error: it is not in retry_statuses")
        return retry_decision(
            self.settings,
            failure=failure,
            method=method,
            reached_backend=reached,
            attempts_made=attempts,
            elapsed=0.1,
            budget_allows=True,
        )

    def _is_true(self, problem: Problem, option: Any) -> bool:
        return bool(self._decide(option).retry)

    def _why(self, problem: Problem, option: Any) -> str:
        decision = self._decide(option)
        if not decision.retry:
            return f"not retried: {decision.reason}."
        method, _path, failure, _reached, _attempts, _words = _RETRY_SCENARIOS[option]
        safe = f"{method} is idempotent" if method in IDEMPOTENT_METHODS else "it provably never reached a backend"
        return f"retried: {safe}, and another instance may well not have this {failure} failure."


@dataclass(frozen=True)
class _NotRetried:
    reason: str
    retry: bool = False


class RetryBudgetSize(NumericExercise):
    id = "04.retry_budget"
    lesson = "04"
    title = "How many retries does the budget allow?"
    answer_format = "retries per window"
    unit = "retries"

    def _make(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        params = {
            "rate": _pick(rng, [20, 50, 100, 200, 500]),
            "ratio": _pick(rng, [0.1, 0.2, 0.5]),
            "min_per_second": _pick(rng, [0.0, 2.0, 5.0, 10.0]),
            "window": _pick(rng, [5.0, 10.0, 30.0]),
        }
        question = (
            f"A balancer gets a steady {params['rate']} requests/s. Its retry budget allows retries "
            f"up to {params['ratio']:g} × the requests of the last {params['window']:g} s, plus a "
            f"floor of {params['min_per_second']:g} retries/s over that window. How many retries "
            f"may it make in one window at most?"
        )
        return question, params

    def solution(self, problem: Problem) -> float:
        params = problem.params
        budget = RetryBudget(params["ratio"], params["min_per_second"], params["window"])
        now = params["window"]
        requests = round(params["rate"] * params["window"])
        for i in range(requests):
            budget.record_request(now - i / params["rate"])  # the last window's steady arrivals
        return budget.allowance(now)

    def _hint(self, problem: Problem, given: float) -> str:
        return "allowance = floor × window + ratio × (requests in the window)"


# --- lesson 05: gray failures ------------------------------------------------------------------------


def health_check_notices(fault: Fault, settings: HealthSettings) -> bool:
    """Does an active health check (``GET settings.path``, ``timeout``) see this fault at all?

    It sees what the health endpoint feels: a crash (refused), a hang or a delay beyond the timeout,
    errors on every request. It cannot see what only real requests feel: a gray failure, resets of real
    answers, a delay shorter than its timeout.
    """
    params = fault.params()
    if fault.kind in ("crash", "hang"):
        return True
    if fault.kind == "slow":
        return bool((params["ms"] + params["jitter_ms"]) / 1000 >= settings.timeout)
    if fault.kind == "error":
        return bool(params["rate"] >= 1.0)
    if fault.kind in ("gray", "reset"):
        return False
    raise ValueError(f"health_check_notices has no rule for a {fault.kind!r} fault")


class HealthCheckMisses(ChoiceExercise):
    id = "05.health_check_misses"
    lesson = "05"
    title = "What does an active health check miss?"

    def _make(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        timeout = _pick(rng, [0.2, 0.3, 0.5])
        pool: list[tuple[str, dict[str, Any]]] = [
            ("crash", {}),
            ("hang", {}),
            ("slow", {"ms": timeout * 1000 * 3}),
            ("slow", {"ms": timeout * 1000 / 4}),
            ("error", {"rate": 1.0, "status": 500}),
            ("gray", {"rate": _pick(rng, [0.3, 0.5, 0.9])}),
            ("reset", {"rate": _pick(rng, [0.2, 0.5])}),
        ]
        while True:
            options = rng.sample(pool, 5)
            settings = HealthSettings(timeout=timeout)
            verdicts = {health_check_notices(make_fault(k, **p), settings) for k, p in options}
            if verdicts == {True, False}:
                break
        lines = [
            f"  {label}. {make_fault(kind, **params).describe()}"
            for label, (kind, params) in zip(string.ascii_uppercase, options, strict=False)
        ]
        question = (
            f"The health checker sends GET /health with a {timeout:g} s timeout. Which of these "
            f"faults does it NOT notice (the instance stays UP while real users suffer)?\n" + "\n".join(lines)
        )
        return question, {"timeout": timeout, "options": options}

    def _is_true(self, problem: Problem, option: Any) -> bool:
        kind, params = option
        settings = HealthSettings(timeout=problem.params["timeout"])
        return not health_check_notices(make_fault(kind, **params), settings)

    def _why(self, problem: Problem, option: Any) -> str:
        kind, _params = option
        seen = not self._is_true(problem, option)
        reasons = {
            "crash": "the probe's connection is refused",
            "hang": "the probe runs into its timeout",
            "slow": "compare the delay with the probe's timeout",
            "error": "the health endpoint answers the error too",
            "gray": "the health endpoint answers 200 while real requests fail",
            "reset": "only real answers are cut off; the probe's small answer arrives",
        }
        return f"{'noticed' if seen else 'missed'}: {reasons.get(kind, '')}."


class EjectionTime(NumericExercise):
    id = "05.ejection_time"
    lesson = "05"
    title = "How long is an instance ejected?"
    answer_format = "seconds"
    unit = "s"

    def _make(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        base = _pick(rng, [1.0, 2.0, 5.0, 10.0])
        params = {
            "consecutive_failures": rng.randrange(2, 6),
            "base_time": base,
            "max_time": base * _pick(rng, [3, 5, 10]),
            "ejection_number": rng.randrange(1, 12),
        }
        question = (
            f"Passive ejection: after {params['consecutive_failures']} failures in a row an instance "
            f"is ejected for base_time × (times it has been ejected), at most max_time; base_time "
            f"= {base:g} s, max_time = {params['max_time']:g} s. An instance is ejected for the "
            f"{_ordinal(params['ejection_number'])} time. For how many seconds?"
        )
        return question, params

    def solution(self, problem: Problem) -> float:
        # Ask the real detector: eject the instance that many times, each after the last one ran out.
        params = problem.params
        detector = OutlierDetector(
            EjectionSettings(
                consecutive_failures=params["consecutive_failures"],
                base_time=params["base_time"],
                max_time=params["max_time"],
                max_ejected_percent=100.0,
            )
        )
        now, duration = 0.0, None
        for _ in range(params["ejection_number"]):
            for _ in range(params["consecutive_failures"]):
                duration = detector.record("b", ok=False, now=now, pool_size=3)
            assert duration is not None
            now += duration + 0.001
        assert duration is not None
        return duration

    def _hint(self, problem: Problem, given: float) -> str:
        return "duration = min(base_time × number of this ejection, max_time)"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


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
        return "Little's law: in flight = arrival rate × time in the system (in seconds)"

    def _note(self, problem: Problem) -> str:
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


# --- the registry ------------------------------------------------------------------------------------

availability_from_counts = AvailabilityFromCounts()
downtime_budget = DowntimeBudget()
outage_availability = OutageAvailability()
series_availability = SeriesAvailability()
crash_error_fraction = CrashErrorFraction()
parallel_availability = ParallelAvailability()
detection_window = DetectionWindow()
recovery_window = RecoveryWindow()
false_alarm_fall = FalseAlarmFall()
safe_to_retry = SafeToRetry()
retry_budget = RetryBudgetSize()
health_check_misses = HealthCheckMisses()
ejection_time = EjectionTime()
littles_law = LittlesLaw()

EXERCISES: dict[str, list[Exercise]] = {
    "00": [availability_from_counts],
    "01": [downtime_budget, outage_availability, series_availability],
    "02": [crash_error_fraction, parallel_availability],
    "03": [detection_window, recovery_window, false_alarm_fall],
    "04": [safe_to_retry, retry_budget],
    "05": [health_check_misses, ejection_time],
    "06": [littles_law],  # and check_strategy(), which runs code instead of checking a number
}


def exercise(exercise_id: str) -> Exercise:
    """Look an exercise up by id, e.g. ``exercise("03.detection_window")``."""
    for exercises in EXERCISES.values():
        for candidate in exercises:
            if candidate.id == exercise_id:
                return candidate
    known = ", ".join(e.id for group in EXERCISES.values() for e in group)
    raise KeyError(f"no exercise {exercise_id!r}; known: {known}")


__all__ = [
    "EXERCISES",
    "AvailabilityExercise",
    "ChoiceExercise",
    "Exercise",
    "Feedback",
    "NumericExercise",
    "Problem",
    "allowed_downtime_minutes",
    "check_strategy",
    "exercise",
    "health_check_notices",
    "recovery_window_bound",
]
