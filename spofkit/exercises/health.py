"""Exercises for lesson 03 and half of lesson 05: what an active health check sees, and how fast.

The right answers come from :mod:`spofkit.health` itself: the detection window from
:meth:`HealthSettings.detection_window_bound`, the right ``fall`` from running :class:`HealthState`.
:meth:`HealthSettings.recovery_window_bound` mirrors the detection bound for an instance coming back, and
:func:`health_check_notices` says which faults a ``GET /health`` probe can notice at all.
"""

from __future__ import annotations

import math
import random
import string
from typing import Any

from spofkit.exercises.base import ChoiceExercise, NumericExercise, Problem, _pick
from spofkit.faults import Fault, effect, make_fault
from spofkit.health import HealthSettings, HealthState

# --- lesson 03: health checks ------------------------------------------------------------------------


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
        params = problem.params
        pace = "max(fastinter, timeout)" if params.get("fastinter") is not None else "max(interval, timeout)"
        if self._is_near(given, self.solution(problem) - params["timeout"]):
            return "nearly: the last probe is only counted as failed once its full timeout has run out"
        return (
            f"wait up to one interval for the first failing probe, then fall − 1 = {params['fall'] - 1} more "
            f"probes, each starting {pace} after the previous one, and the last probe itself takes the full timeout"
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
        return _health_settings(problem.params).recovery_window_bound()

    def _hint(self, problem: Problem, given: float) -> str:
        params = problem.params
        first_wait = "downinter" if params.get("downinter") is not None else "downinter (here: interval)"
        return (
            f"mirror the detection window: wait up to one {first_wait} for the first passing probe, then "
            f"rise − 1 = {params['rise'] - 1} more probes max(fastinter, timeout) apart (fastinter defaults to "
            f"interval), plus the last probe's timeout"
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
        if given != int(given):
            return "fall counts failed probes in a row: it is a whole number"
        if given < misses + 1:
            return f"with fall = {given:g}, a pause that fails {misses} probes in a row marks it DOWN: a false alarm"
        return "a larger fall also avoids the false alarm, but every extra probe slows the detection of a real crash"


# --- lesson 05: gray failures, as a health check sees them ------------------------------------------


class _LuckiestProbe:
    """Dice that always roll in the instance's favour: no rate-based failure hits, jitter is at its smallest."""

    def random(self) -> float:
        # The largest draw there is: `draw < rate` holds only for rate 1, the one error rate that always hits.
        return math.nextafter(1.0, 0.0)

    def uniform(self, a: float, b: float) -> float:
        return min(a, b)


def health_check_notices(fault: Fault, settings: HealthSettings) -> bool:
    """Does an active health check (``GET settings.path``, ``timeout``) see this fault for sure?

    It asks :func:`spofkit.faults.effect` — the same definition the instances use — what the luckiest probe
    meets right when the fault begins: if even that probe fails, every probe does. So it sees a crash (refused),
    a hang, a delay beyond its timeout (slow, or a warmup's start), a flap's down half, errors on every request.
    It cannot see what only real requests feel: a gray failure, resets of real answers, a delay under its timeout.
    """
    met = effect(fault, health_check=True, elapsed=0.0, dice=_LuckiestProbe())
    return met.fails_probe(settings.timeout, settings.expect)


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
        kind, params = option
        seen = not self._is_true(problem, option)
        timeout_ms = problem.params["timeout"] * 1000
        if kind == "slow":
            delay = params["ms"]
            compared = "longer" if seen else "shorter"
            return (
                f"{'noticed' if seen else 'missed'}: the {delay:g} ms delay is {compared} than the probe's "
                f"{timeout_ms:g} ms timeout."
            )
        reasons = {
            "crash": "the probe's connection is refused",
            "hang": "the probe runs into its timeout",
            "error": "the health endpoint answers the error too",
            "gray": "the health endpoint answers 200 while real requests fail",
            "reset": "only real answers are cut off; the probe's small answer arrives",
        }
        return f"{'noticed' if seen else 'missed'}: {reasons.get(kind, '')}."

    def _question(self, problem: Problem, option: Any) -> str:
        kind, _params = option
        timeout_ms = problem.params["timeout"] * 1000
        questions = {
            "crash": "what happens to the probe's connection?",
            "hang": f"what does a probe with a {timeout_ms:g} ms timeout get from it?",
            "slow": f"is the delay longer or shorter than the probe's {timeout_ms:g} ms timeout?",
            "error": "does GET /health get the error answer too?",
            "gray": "does GET /health fail too, or only the real requests?",
            "reset": "is the probe's small answer cut off too, or only real answers?",
        }
        return questions.get(kind, "what does GET /health see of this fault?")
