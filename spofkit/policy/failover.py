"""Failover decisions: when to try again, where not to send, and when to stop.

Three pure policies the balancer consults on every failed attempt. None of them does I/O or reads a clock; they
are handed ``now`` and return a decision, so a lesson can call them by hand.

- **Retry rule** (:func:`retry_decision`): retry only on failures that another instance may not have (connection
  refused, connection reset or empty reply, a per-try timeout, a gateway status such as 503), only while the overall
  deadline and the retry budget allow, and — the idempotency rule — a request that is not idempotent (POST,
  PATCH...) is retried *only* if it provably never reached a backend (the connection was refused). Replaying a
  POST that a backend may have processed could charge a card twice.
- **Retry budget** (:class:`RetryBudget`): retries may add at most ``ratio`` extra load (20% by default) over a
  sliding window, plus a small floor so a quiet service can still retry. Without a budget, retries during an
  overload multiply the load: a *retry storm*.
- **Passive ejection** (:class:`OutlierDetector`): the balancer watches real requests. After
  ``consecutive_failures`` failures in a row an instance is ejected for ``base_time``, longer each time it is
  ejected again, but never more than ``max_ejected_percent`` of the pool at once (ejecting everyone is an outage
  of its own). This catches *gray failures*, where the health check says OK but real requests fail.
"""

from __future__ import annotations

from dataclasses import dataclass

from spofkit.policy import _checks

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})

# Why an attempt failed. Only "connect" proves the request never reached a backend.
CONNECT = "connect"  # connection refused / could not connect
RESET = "reset"  # connection closed or reset before a full answer (an empty response)
TIMEOUT = "timeout"  # the per-try timeout ran out
STATUS = "status"  # the backend answered with a status listed in retry_statuses
FAILURE_KINDS = (CONNECT, RESET, TIMEOUT, STATUS)


@dataclass(frozen=True)
class RetrySettings:
    """How the balancer retries. Times in seconds.

    ``max_attempts`` counts the first try (3 = one try and up to two retries, each on a different instance).
    500 is not in ``retry_statuses`` by default: a 500 is usually the application's own bug, and the same request
    would fail on every instance; 502/503/504 say "this instance could not", which another instance may well do.
    """

    max_attempts: int = 3
    retry_on: frozenset[str] = frozenset(FAILURE_KINDS)
    retry_statuses: frozenset[int] = frozenset({502, 503, 504})
    per_try_timeout: float = 1.0
    deadline: float = 5.0
    budget_ratio: float = 0.2
    budget_min_per_second: float = 5.0
    budget_window: float = 10.0

    def __post_init__(self) -> None:
        _checks.whole("max_attempts", self.max_attempts, minimum=1, maximum=100)
        for name in ("retry_on", "retry_statuses"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes, int)) or not isinstance(value, (list, tuple, set, frozenset)):
                raise ValueError(
                    f"{name} must be a list or set, e.g. {sorted(getattr(RetrySettings, name))}, got {value!r}"
                )
        unknown = set(self.retry_on) - set(FAILURE_KINDS)
        if unknown:
            raise ValueError(f"retry_on has unknown kinds {sorted(unknown)}; known: {list(FAILURE_KINDS)}")
        object.__setattr__(self, "retry_on", frozenset(self.retry_on))
        codes = _checks.statuses("retry_statuses", self.retry_statuses, low=500, high=599)
        object.__setattr__(self, "retry_statuses", frozenset(codes))
        for name in ("per_try_timeout", "deadline", "budget_window"):
            object.__setattr__(self, name, _checks.seconds(name, getattr(self, name)))
        object.__setattr__(self, "budget_ratio", _checks.number("budget_ratio", self.budget_ratio, low=0, high=10))
        minimum = _checks.number("budget_min_per_second", self.budget_min_per_second, low=0, high=1e6)
        object.__setattr__(self, "budget_min_per_second", minimum)


@dataclass(frozen=True)
class RetryDecision:
    retry: bool
    reason: str


def retry_decision(
    settings: RetrySettings,
    *,
    failure: str,
    method: str,
    reached_backend: bool,
    attempts_made: int,
    elapsed: float,
    budget_allows: bool,
    body_replayable: bool = True,
) -> RetryDecision:
    """Should the balancer make another attempt after this failure? Pure; the reason names the rule that decided."""
    if failure not in FAILURE_KINDS:
        raise ValueError(f"unknown failure kind {failure!r}; known: {list(FAILURE_KINDS)}")
    if failure not in settings.retry_on:
        return RetryDecision(False, f"retries are not enabled for {failure}")
    if method.upper() not in IDEMPOTENT_METHODS and reached_backend:
        return RetryDecision(False, f"{method} is not idempotent and may have reached the backend")
    if not body_replayable:
        return RetryDecision(False, "the request body was streamed and cannot be sent again")
    if attempts_made >= settings.max_attempts:
        return RetryDecision(False, f"max_attempts ({settings.max_attempts}) used")
    if elapsed >= settings.deadline:
        return RetryDecision(False, f"deadline ({settings.deadline}s) passed")
    if not budget_allows:
        return RetryDecision(False, "retry budget exhausted")
    return RetryDecision(True, f"retry after {failure}")


@dataclass(frozen=True)
class EjectionSettings:
    """Passive ejection (Envoy calls it outlier detection). Times in seconds.

    A failure is a connect error, reset, timeout or any 5xx answer. Ejection lasts ``base_time`` × the number of
    times the instance has been ejected, capped at ``max_time``.
    """

    consecutive_failures: int = 3
    base_time: float = 2.0
    max_time: float = 30.0
    max_ejected_percent: float = 50.0

    def __post_init__(self) -> None:
        _checks.whole("consecutive_failures", self.consecutive_failures, minimum=1, maximum=1000)
        object.__setattr__(self, "base_time", _checks.seconds("base_time", self.base_time))
        object.__setattr__(self, "max_time", _checks.seconds("max_time", self.max_time))
        if not self.max_time >= self.base_time:
            raise ValueError(f"max_time must be >= base_time, got {self.max_time!r}")
        percent = _checks.number("max_ejected_percent", self.max_ejected_percent, low=0, high=100)
        object.__setattr__(self, "max_ejected_percent", percent)


# Re-exported: the counters are defined apart so that bench/compile_sim.py can compile them (they count every
# request and every attempt), while the settings above stay Python.
from spofkit.policy.counters import OutlierDetector as OutlierDetector  # noqa: E402
from spofkit.policy.counters import RetryBudget as RetryBudget  # noqa: E402
