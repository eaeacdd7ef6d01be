"""Work times: how long each request keeps a worker busy, drawn per instance from its ``Capacity``.

Its own module (not :mod:`spofkit.capacity`, which re-exports it) so that ``bench/compile_sim.py`` can compile it:
a draw runs for every simulated request, while the settings and their checks stay Python. Both drivers draw from
:class:`ServiceTime`: a live instance waits the time drawn, a simulated one schedules its end.
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spofkit.capacity import Capacity

_TWO_PI = 2.0 * math.pi


def quantized(seconds: float) -> float:
    """``seconds`` to the nearest nanosecond.

    Durations drawn through ``log`` or ``exp`` may differ in their last bit between two machines' maths
    libraries; rounded, they are the same (but for a one-in-a-billion tie), so a seeded run gives the same
    event log everywhere.
    """
    return round(seconds, 9)


class ServiceTime:
    """Draws work times (seconds) for one instance from its :class:`Capacity`, with its own ``rng``."""

    def __init__(self, capacity: Capacity, rng: random.Random) -> None:
        self.rng = rng
        self.mean: float = capacity.work_ms / 1000.0
        self.distribution: str = capacity.distribution or "fixed"  # (set by Capacity's checks: never None there)
        spread = capacity.spread_ms / 1000.0
        self._sigma = 0.0
        self._mu = 0.0
        self._next_normal: float | None = None  # the second of a pair of normal draws (see _normal)
        if self.distribution == "lognormal":
            # The normal's parameters that give this mean and standard deviation.
            self._sigma = math.sqrt(math.log(1 + (spread / self.mean) ** 2))
            self._mu = math.log(self.mean) - self._sigma**2 / 2

    def draw(self) -> float:
        """One request's work time, in seconds."""
        if self.distribution == "fixed":
            return self.mean
        if self.distribution == "exponential":
            return quantized(self.rng.expovariate(1.0 / self.mean))
        # exp(normal(mu, sigma)): what lognormvariate() draws, from normal draws made two at a time.
        return quantized(math.exp(self._mu + self._sigma * self._normal()))

    def _normal(self) -> float:
        """A standard normal draw: ``random.Random.gauss(0, 1)``'s Box-Muller method, the same numbers from the same
        stream (``rng.gauss`` keeps its spare draw in the generator; this keeps it here), without its Python call
        for every request. Two uniform draws give two normal ones: the second is kept for the next call."""
        spare = self._next_normal
        if spare is not None:
            self._next_normal = None
            return spare
        angle = self.rng.random() * _TWO_PI
        radius = math.sqrt(-2.0 * math.log(1.0 - self.rng.random()))
        self._next_normal = math.sin(angle) * radius
        return math.cos(angle) * radius
