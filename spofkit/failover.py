"""Failover rules: retries, the retry budget, passive ejection (they live in :mod:`spofkit.policy.failover`)."""

from spofkit.policy.failover import (
    CONNECT,
    FAILURE_KINDS,
    IDEMPOTENT_METHODS,
    RESET,
    STATUS,
    TIMEOUT,
    EjectionSettings,
    OutlierDetector,
    RetryBudget,
    RetryDecision,
    RetrySettings,
    retry_decision,
)

__all__ = [
    "CONNECT",
    "FAILURE_KINDS",
    "IDEMPOTENT_METHODS",
    "RESET",
    "STATUS",
    "TIMEOUT",
    "EjectionSettings",
    "OutlierDetector",
    "RetryBudget",
    "RetryDecision",
    "RetrySettings",
    "retry_decision",
]
