"""Exercises for lesson 04 and the other half of lesson 05: retries, the retry budget, and ejection.

The right answers come from :mod:`spofkit.failover` itself: which failures are retried from
:func:`retry_decision`, a budget's allowance from :class:`RetryBudget`, an ejection's length from
:class:`OutlierDetector`.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from typing import Any

from spofkit.exercises.base import ChoiceExercise, NumericExercise, Problem, _pick
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

    def _question(self, problem: Problem, option: Any) -> str:
        method, _path, failure, _reached, attempts, _words = _RETRY_SCENARIOS[option]
        if failure is None:
            return "is a 500 one of the failures the balancer retries (retry_statuses), or the application's answer?"
        questions = [f"could this {method} have reached a backend?", f"is {method} idempotent?"]
        if attempts > 1:
            questions.append(f"how many attempts are left of max_attempts = {self.settings.max_attempts}?")
        return " ".join(questions)


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
        params = problem.params
        requests = params["rate"] * params["window"]
        floor = params["min_per_second"] * params["window"]
        if floor > 0 and self._is_near(given, params["ratio"] * requests):
            return "you left out the floor: it allows retries on top of the ratio"
        if self._is_near(given, params["ratio"] * params["rate"] + params["min_per_second"]):
            return f"that is one second's worth; the question asks for one window of {params['window']:g} s"
        return "allowance = floor × window + ratio × (requests in the window)"


# --- lesson 05: gray failures, as passive ejection sees them -----------------------------------------


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
        params = problem.params
        uncapped = params["base_time"] * params["ejection_number"]
        if uncapped > params["max_time"] and self._is_near(given, uncapped):
            return "no ejection lasts longer than max_time"
        if params["ejection_number"] > 1 and self._is_near(given, params["base_time"]):
            return "an instance ejected again stays out longer: base_time × the number of this ejection"
        return "duration = min(base_time × number of this ejection, max_time)"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
