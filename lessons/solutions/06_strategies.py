"""Lesson 06, worked solution: strategies that spare a slow instance.

Two answers to "write your own strategy". Paste either class into the lesson's ``MyStrategy`` cell (or
rename it), then run ``await check_strategy(FewestInFlight)``. Run this file to check both against a real
lab: ``.venv/bin/python lessons/solutions/06_strategies.py``.

- :class:`FewestInFlight` is least connections in five lines. Little's law says an instance that takes longer
  holds more requests in flight, so "fewest in flight" steers away from a slow instance without ever
  measuring a latency. Ties go to the dice (``rng``), so equally idle instances share the work.
- :class:`LatencyAware` also learns from ``observe()``: it keeps a moving average of each instance's latency
  and sends each request where ``average latency × (in flight + 1)`` is smallest — the idea behind peak EWMA.
  Unlike peak EWMA its average never decays, so an instance that was slow once is only tried again when the
  others are busy enough; ``spofkit.strategies.PeakEwma`` shows how decay fixes that.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

from spofkit.strategies import Backend, RequestInfo, Strategy


class FewestInFlight(Strategy):
    """Send each request to an instance with the fewest requests in flight; ties at random."""

    name = "fewest_in_flight"

    def pick(self, backends: Sequence[Backend], request: RequestInfo, now: float, rng: random.Random) -> Backend:
        fewest = min(backend.in_flight for backend in backends)
        return rng.choice([backend for backend in backends if backend.in_flight == fewest])


class LatencyAware(Strategy):
    """Learn each instance's latency (a moving average) and pick the cheapest: latency × (in flight + 1)."""

    name = "latency_aware"

    def __init__(self, smoothing: float = 0.3) -> None:
        self.smoothing = smoothing  # how much one new sample moves the average (0..1)
        self.average: dict[str, float] = {}  # seconds, per instance name

    def pick(self, backends: Sequence[Backend], request: RequestInfo, now: float, rng: random.Random) -> Backend:
        def cost(backend: Backend) -> float:
            # An instance we have not heard from yet costs 0, so it gets tried at once.
            return self.average.get(backend.name, 0.0) * (backend.in_flight + 1)

        cheapest = min(cost(backend) for backend in backends)
        return rng.choice([backend for backend in backends if cost(backend) == cheapest])

    def observe(self, backend: str, latency: float, ok: bool, now: float) -> None:
        sample = latency if ok else max(latency, 1.0)  # a failure is bad news, not a fast answer
        previous = self.average.get(backend, sample)
        self.average[backend] = previous + self.smoothing * (sample - previous)


async def _check_both() -> None:
    from spofkit.exercises import check_strategy

    for strategy in (FewestInFlight, LatencyAware):
        print(await check_strategy(strategy))


if __name__ == "__main__":
    asyncio.run(_check_both())
