"""Load-balancing strategies: which instance gets the next request?

A strategy is a pure object: it is handed the instances that may serve (``Backend`` snapshots), the request,
the lab time ``now`` and a seeded ``random.Random``, and it returns one of them. It does no I/O and never reads
the clock or the global ``random`` itself, so it can be tested with plain calls and reused by a simulator.

The balancer tells it how each attempt went through ``observe`` (strategies that learn, such as peak EWMA,
use it; the others ignore it). To write your own, subclass :class:`Strategy` and implement ``pick``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Backend:
    """What a strategy may know about one instance that can serve right now."""

    name: str
    weight: int = 1
    in_flight: int = 0


@dataclass(frozen=True)
class RequestInfo:
    """What a strategy may know about the request being placed."""

    method: str = "GET"
    path: str = "/"
    headers: Mapping[str, str] = field(default_factory=dict)
    client: str = "127.0.0.1"


class Strategy:
    """The small protocol every strategy implements. ``pick`` is required; ``observe`` is optional."""

    name: str = "strategy"

    def pick(
        self,
        backends: Sequence[Backend],
        request: RequestInfo,
        now: float,
        rng: random.Random,
    ) -> Backend:
        """Return one of ``backends`` (never empty) for ``request``."""
        raise NotImplementedError

    def observe(self, backend: str, latency: float, ok: bool, now: float) -> None:
        """Learn from one finished attempt on ``backend``: how long it took and whether it succeeded."""
