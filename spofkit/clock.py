"""Time, injected: a clock to read and a scheduler to set timers on.

Policies never read a clock or sleep: they are handed ``now`` and answer when they next want to be woken (the next
probe, the end of an ejection). A *driver* owns time and keeps those appointments through a :class:`Scheduler`:

- live, :class:`LoopScheduler` sets timers on the asyncio loop, measured on the lab's :class:`Clock`;
- simulated, a heap of timers with a virtual ``now`` (:mod:`spofkit.sim`) does the same with no waiting at all.

This module imports nothing that does I/O, so the pure policy package can share its protocols.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import asyncio


class Clock:
    """Seconds since the lab started, from a monotonic source (never the wall clock, which can jump)."""

    def __init__(self, source: Callable[[], float] = time.monotonic, *, start: float | None = None) -> None:
        """``start``: the source's reading at lab time 0 (another process of the same lab passes its own, so
        both tell the same time: ``time.monotonic`` is one clock for every process of a machine)."""
        self._source = source
        self._start = source() if start is None else start

    def now(self) -> float:
        return self._source() - self._start

    def to_source(self, at: float) -> float:
        """The source's reading (e.g. ``time.monotonic()``) at lab time ``at``."""
        return self._start + at


class Timer(Protocol):
    """A pending call; ``cancel()`` makes sure it does not happen (harmless if it already did)."""

    def cancel(self) -> None: ...


class Scheduler(Protocol):
    """How every timer in spofkit is set: probes, ejection returns, warm-up decay, flap periods, adverts."""

    def now(self) -> float:
        """Lab time in seconds."""
        ...

    def call_at(self, at: float, callback: Callable[[], Any]) -> Timer:
        """Call ``callback()`` once, at lab time ``at`` (at once if ``at`` is past). Returns a cancellable timer."""
        ...


class Wakeup:
    """One timer, kept set for the earliest moment ``due()`` names (None: nothing due), that calls ``wake(now)``.

    For a policy that changes by itself at moments it knows (an ejection running out): the driver calls ``arm()``
    after anything that may bring that moment closer. A moment later than the timer already set waits for it: the
    timer fires, ``wake`` finds nothing due yet, and the timer is set again for what is due then. Both drivers, live
    and simulated, keep the balancer policy's appointments this way.
    """

    def __init__(self, scheduler: Scheduler, due: Callable[[], float | None], wake: Callable[[float], None]) -> None:
        self.scheduler = scheduler
        self.due = due
        self.wake = wake
        self._timer: Timer | None = None
        self._at: float | None = None

    def arm(self) -> None:
        due = self.due()
        if due is None or (self._at is not None and self._at <= due):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._at = due
        self._timer = self.scheduler.call_at(due, self._fire)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._at = None

    def _fire(self) -> None:
        self._timer = self._at = None
        self.wake(self.scheduler.now())
        self.arm()


class LoopScheduler:
    """The live scheduler: timers on the running asyncio loop, at lab times of ``clock``.

    ``clock`` must read ``time.monotonic`` (the source asyncio's loop time uses), so that lab time and loop
    time differ by a constant. The loop is the one running when the first timer is set.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._offset = 0.0

    def now(self) -> float:
        return self.clock.now()

    def call_at(self, at: float, callback: Callable[[], Any]) -> Timer:
        loop = self._running_loop()
        return loop.call_at(self.clock.to_source(at) + self._offset, callback)

    def call_later(self, delay: float, callback: Callable[[], Any]) -> Timer:
        return self.call_at(self.now() + delay, callback)

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        import asyncio  # here, not at the top: the pure policy package imports this module's protocols

        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # loop.time() is time.monotonic() on every loop asyncio ships; measure the offset once, in case.
            self._loop, self._offset = loop, loop.time() - time.monotonic()
        return loop
