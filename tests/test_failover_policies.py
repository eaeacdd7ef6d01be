"""Retry rule, retry budget and passive ejection, with plain calls and a made-up clock."""

from __future__ import annotations

import pytest

from spofkit.failover import (
    CONNECT,
    RESET,
    STATUS,
    TIMEOUT,
    EjectionSettings,
    OutlierDetector,
    RetryBudget,
    RetrySettings,
    retry_decision,
)

SETTINGS = RetrySettings(max_attempts=3, deadline=5.0)


def decide(**overrides: object) -> tuple[bool, str]:
    args: dict[str, object] = {
        "failure": CONNECT,
        "method": "GET",
        "reached_backend": False,
        "attempts_made": 1,
        "elapsed": 0.1,
        "budget_allows": True,
    }
    args.update(overrides)
    decision = retry_decision(SETTINGS, **args)  # type: ignore[arg-type]
    return decision.retry, decision.reason


@pytest.mark.parametrize("failure", [CONNECT, RESET, TIMEOUT, STATUS])
def test_get_is_retried_on_every_retryable_failure(failure: str) -> None:
    assert decide(failure=failure, reached_backend=failure != CONNECT)[0]


def test_post_is_retried_only_when_it_never_reached_a_backend() -> None:
    assert decide(method="POST", failure=CONNECT, reached_backend=False)[0]
    for failure in (RESET, TIMEOUT, STATUS):
        retry, reason = decide(method="POST", failure=failure, reached_backend=True)
        assert not retry
        assert "not idempotent" in reason


def test_limits_stop_retrying() -> None:
    assert decide(attempts_made=3) == (False, "max_attempts (3) used")
    assert decide(elapsed=5.0)[1].startswith("deadline")
    assert decide(budget_allows=False) == (False, "retry budget exhausted")
    assert not decide(body_replayable=False, reached_backend=True)[0]
    only_connect = RetrySettings(retry_on=frozenset({CONNECT}))
    decision = retry_decision(
        only_connect,
        failure=TIMEOUT,
        method="GET",
        reached_backend=True,
        attempts_made=1,
        elapsed=0.0,
        budget_allows=True,
    )
    assert not decision.retry and "timeout" in decision.reason


def test_unknown_failure_kind_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown failure kind"):
        decide(failure="gremlins")


@pytest.mark.parametrize(
    "field, value",
    [
        ("max_attempts", 0),
        ("retry_on", frozenset({"gremlins"})),
        ("retry_statuses", frozenset({404})),
        ("per_try_timeout", 0),
        ("budget_ratio", -0.5),
    ],
)
def test_bad_retry_settings_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        RetrySettings(**{field: value})  # type: ignore[arg-type]


def test_retry_budget_allows_ratio_of_requests_plus_floor() -> None:
    budget = RetryBudget(ratio=0.2, min_per_second=0.0, window=10.0)
    for i in range(100):
        budget.record_request(now=i * 0.01)
    granted = sum(budget.try_spend(now=1.0) for _ in range(50))
    assert granted == 20  # 20% of 100 requests
    assert not budget.can_retry(now=1.0)
    # Twelve seconds on, the 10 s window has forgotten both the requests and the retries.
    assert budget.allowance(now=12.0) == 0
    for _ in range(5):
        budget.record_request(now=12.0)
    assert budget.try_spend(now=12.0)  # 0.2 * 5 = 1 retry
    assert not budget.try_spend(now=12.0)


def test_retry_budget_floor_lets_a_quiet_service_retry() -> None:
    budget = RetryBudget(ratio=0.0, min_per_second=1.0, window=5.0)
    assert sum(budget.try_spend(now=0.0) for _ in range(10)) == 5


def test_consecutive_failures_eject_for_growing_times() -> None:
    detector = OutlierDetector(EjectionSettings(consecutive_failures=3, base_time=2.0, max_time=5.0))
    assert detector.record("b", False, now=0.0, pool_size=3) is None
    assert detector.record("b", True, now=0.1, pool_size=3) is None  # a success resets the count
    assert [detector.record("b", False, now=0.2, pool_size=3) for _ in range(3)] == [
        None,
        None,
        2.0,
    ]
    assert detector.is_ejected("b", now=2.1)
    assert detector.returned(now=2.1) == []
    assert detector.returned(now=2.3) == ["b"]
    assert detector.returned(now=2.4) == []  # announced once
    assert not detector.is_ejected("b", now=2.3)
    assert [detector.record("b", False, now=3.0, pool_size=3) for _ in range(3)][-1] == 4.0
    detector.returned(now=7.1)
    assert [detector.record("b", False, now=8.0, pool_size=3) for _ in range(3)][-1] == 5.0  # capped


def test_max_ejected_percent_keeps_part_of_the_pool() -> None:
    detector = OutlierDetector(EjectionSettings(consecutive_failures=1, max_ejected_percent=50))
    assert detector.record("a", False, now=0.0, pool_size=3) is not None  # 1 of 3 = 33%
    assert detector.record("b", False, now=0.0, pool_size=3) is None  # 2 of 3 = 67% > 50%
    assert not detector.is_ejected("b", now=0.0)


@pytest.mark.parametrize("field, value", [("consecutive_failures", 0), ("base_time", 0), ("max_ejected_percent", 150)])
def test_bad_ejection_settings_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        EjectionSettings(**{field: value})  # type: ignore[arg-type]
