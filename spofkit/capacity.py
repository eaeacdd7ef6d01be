"""How much an instance can do: workers, a waiting room, and how long each request takes.

A real server has a limited number of workers (threads, processes, a connection limit). A request that finds a
free worker is served at once; one that finds them all busy waits in a bounded queue; one that finds the queue
full is answered ``503`` at once — the server sheds load rather than letting the queue grow without end.
That is what makes *overload* a failure of its own: above its capacity (``concurrency / service time``
requests per second) an instance fails requests even though nothing is broken.

:class:`Capacity` holds those numbers; :class:`ServiceTime` draws each request's work time from them.
A health check takes a worker too (it waits in the same queue) but does no work: an overloaded instance
answers its checks late or with 503, as real ones do — which is how overload spreads.

One definition for both drivers: a live :class:`~spofkit.instance.ServiceInstance` (a real server, its workers
an asyncio gate, its work a real wait) and the simulator's :class:`~spofkit.sim.instance.SimInstance` (a model in
virtual time) read the same :class:`Capacity` and draw from the same :class:`ServiceTime`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Re-exported: the draws were defined here, and both drivers import them from here.
from spofkit.worktime import ServiceTime as ServiceTime
from spofkit.worktime import quantized as quantized

SERVICE_DISTRIBUTIONS = ("fixed", "lognormal", "exponential")
# Longer than any lesson needs; a larger value is a typo (work_ms = 50000 instead of 50).
MAX_WORK_MS = 60_000.0
MAX_CONCURRENCY = 100_000
# The shortest work a request may take when it takes any: a microsecond (virtual times are kept to the nanosecond).
MIN_WORK_MS = 0.001
# A lognormal spread of at most this many times the mean (the median is then 1/1000 of the mean): a wider one is a
# typo, and its maths overflows.
MAX_SPREAD_RATIO = 1000.0


class ModelError(ValueError):
    """A model setting is wrong (capacity, a failure process). ``field`` names it (``concurrency``, ``work_ms``…)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # so that it crosses a process pool whole
        return (type(self), (self.field, str(self)))


def _a(word: str) -> str:
    """``word`` with its article: "a lognormal", "an exponential"."""
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


def lab_capacity(capacity: object, work_time: object) -> Capacity:
    """A lab's ``capacity=`` / ``work_time=`` arguments as one Capacity (live and simulated labs alike).

    ``work_time`` (seconds) alone is fixed work with no limit, as it always was; give one or the other.
    """
    if isinstance(work_time, bool) or not isinstance(work_time, (int, float)) or not work_time >= 0:
        raise ValueError(f"work_time must be a number of seconds >= 0, got {work_time!r}")
    if capacity is None:
        return Capacity.fixed_work(work_time)
    if not isinstance(capacity, Capacity):
        raise TypeError(f"capacity must be a spofkit.capacity.Capacity, e.g. Capacity(concurrency=4), got {capacity!r}")
    if work_time:
        raise ValueError("give work_time (fixed work, no limit) or capacity (its work_ms), not both")
    return capacity


def _number(field: str, value: object, *, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ModelError(field, f"{field} must be a number, got {value!r}")
    if not low <= value <= high:
        raise ModelError(field, f"{field} must be {low:g}..{high:g}, got {value!r}")
    return float(value)


def _whole(field: str, value: object, *, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ModelError(field, f"{field} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise ModelError(field, f"{field} must be {low}..{high}, got {value!r}")
    return value


@dataclass(frozen=True)
class Capacity:
    """One instance's capacity. ``concurrency=None`` means no limit: every request is served at once.

    ``work_ms`` is the mean work time of a request (health checks do none); ``spread_ms`` its standard
    deviation. ``distribution`` is ``fixed`` (every request takes ``work_ms``), ``lognormal`` (the default
    when there is a spread: always positive, with that mean and deviation) or ``exponential`` (mean
    ``work_ms``: the M/M/c queue of the textbooks; it takes no spread).
    """

    concurrency: int | None = None
    queue: int = 0
    work_ms: float = 0.0
    spread_ms: float = 0.0
    distribution: str | None = None

    def __post_init__(self) -> None:
        if self.concurrency is not None:
            _whole("concurrency", self.concurrency, low=1, high=MAX_CONCURRENCY)
        _whole("queue", self.queue, low=0, high=MAX_CONCURRENCY)
        if self.concurrency is None and self.queue:
            raise ModelError("queue", "queue needs a concurrency limit: without one, nothing ever waits")
        object.__setattr__(self, "work_ms", _number("work_ms", self.work_ms, low=0, high=MAX_WORK_MS))
        if 0 < self.work_ms < MIN_WORK_MS:
            raise ModelError(
                "work_ms", f"work_ms must be 0 or at least {MIN_WORK_MS:g} (a microsecond), got {self.work_ms!r}"
            )
        object.__setattr__(self, "spread_ms", _number("spread_ms", self.spread_ms, low=0, high=MAX_WORK_MS))
        if self.distribution is not None and not isinstance(self.distribution, str):
            raise ModelError(
                "distribution", f"distribution must be a name such as 'lognormal', got {self.distribution!r}"
            )
        distribution = ("lognormal" if self.spread_ms else "fixed") if self.distribution is None else self.distribution
        if distribution not in SERVICE_DISTRIBUTIONS:
            raise ModelError(
                "distribution", f"distribution must be one of {', '.join(SERVICE_DISTRIBUTIONS)}, got {distribution!r}"
            )
        if distribution != "lognormal" and self.spread_ms:
            raise ModelError("spread_ms", f"{_a(distribution)} work time takes no spread_ms (only lognormal does)")
        if distribution != "fixed" and not self.work_ms:
            raise ModelError("work_ms", f"{_a(distribution)} work time needs work_ms > 0")
        if self.spread_ms > MAX_SPREAD_RATIO * self.work_ms:
            raise ModelError(
                "spread_ms",
                f"spread_ms must be at most {MAX_SPREAD_RATIO:g} times work_ms ({self.work_ms:g}), "
                f"got {self.spread_ms!r}",
            )
        object.__setattr__(self, "distribution", distribution)

    @classmethod
    def fixed_work(cls, seconds: float) -> Capacity:
        """No limit, and every request takes ``seconds`` of work: what ``work_time=`` has always meant."""
        return cls(work_ms=seconds * 1000.0)

    def describe(self) -> str:
        """``2 workers, queue 4, work 50 ms``, or ``no limit, work 0 ms``: for a person to read."""
        work = f"work {self.work_ms:g} ms"
        if self.distribution == "lognormal":
            work += f" ± {self.spread_ms:g} (lognormal)"
        elif self.distribution == "exponential":
            work += " on average (exponential)"
        if self.concurrency is None:
            return f"no limit, {work}"
        workers = "1 worker" if self.concurrency == 1 else f"{self.concurrency} workers"
        return f"{workers}, queue {self.queue}, {work}"

    @property
    def requests_per_second(self) -> float | None:
        """What one instance can serve at most (``concurrency / work time``); None without a limit or work."""
        if self.concurrency is None or not self.work_ms:
            return None
        return self.concurrency / (self.work_ms / 1000.0)
