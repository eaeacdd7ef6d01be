"""Load-balancing strategies (the rules live in :mod:`spofkit.policy.strategies`; this is their public name)."""

from spofkit.policy.strategies import (
    STRATEGIES,
    Backend,
    ConsistentHash,
    LeastConnections,
    PeakEwma,
    PowerOfTwo,
    RandomChoice,
    RequestInfo,
    RoundRobin,
    Strategy,
    WeightedRoundRobin,
    make_strategy,
    strategy_names,
)

__all__ = [
    "STRATEGIES",
    "Backend",
    "ConsistentHash",
    "LeastConnections",
    "PeakEwma",
    "PowerOfTwo",
    "RandomChoice",
    "RequestInfo",
    "RoundRobin",
    "Strategy",
    "WeightedRoundRobin",
    "make_strategy",
    "strategy_names",
]
