"""Virtual time: a heap of timers and a ``now`` that jumps from one timer to the next.

:class:`SimScheduler` implements :class:`spofkit.clock.Scheduler` — ``now()`` and ``call_at(t, callback)`` — as
the asyncio loop does live, but nothing ever waits: :meth:`SimScheduler.run` pops the earliest timer, sets
``now`` to its time and calls it. An hour of a lab takes as long as the callbacks take to run.

Two timers due at the same time run in the order they were set (a sequence number breaks the tie), so a run
depends on nothing but its inputs: no wall clock, no thread, no hash order.

While timers run, Python's cyclic garbage collector makes no *full* collection (:func:`full_collections_deferred`):
a long run keeps a record of every request, and each full collection walks all of them again — a tenth of a
million-request run went there. Young garbage is still collected as usual, and the full collection comes after.
On PyPy, whose collector has no such thresholds, nothing is deferred.
"""

from __future__ import annotations

import contextlib
import gc
import heapq
import itertools
import math
import threading
from collections.abc import Callable, Iterator
from typing import Any

_deferring = threading.Lock()
_deferred_runs = 0  # runs in progress, in any thread, that put off full collections
_saved_threshold = 0  # the oldest generation's threshold to restore when the last of them ends
# A threshold the oldest generation's count never reaches in a run (gc counts young collections in it).
_NEVER = 2**30


@contextlib.contextmanager
def full_collections_deferred() -> Iterator[None]:
    """Put off the garbage collector's full collections (of its oldest generation) until the block ends.

    The young generations are collected as usual, so short-lived cycles still go at once; objects that live long
    enough to reach the oldest generation (a run's records) are not walked again and again while the run adds more.
    Nested and concurrent blocks (two simulations in two threads) keep one setting, restored by the last to end.
    ``gc.disable()`` within the block is respected: only the threshold changes.
    """
    global _deferred_runs, _saved_threshold
    if not hasattr(gc, "get_threshold"):  # PyPy: its collector has no generations to set (nor such cost)
        yield
        return
    with _deferring:
        if _deferred_runs == 0:
            young, middle, _saved_threshold = gc.get_threshold()
            gc.set_threshold(young, middle, _NEVER)
        _deferred_runs += 1
    try:
        yield
    finally:
        with _deferring:
            _deferred_runs -= 1
            if _deferred_runs == 0:
                young, middle, _ = gc.get_threshold()
                gc.set_threshold(young, middle, _saved_threshold)


class SimTimer:
    """A pending call on a :class:`SimScheduler`; ``cancel()`` makes sure it does not happen."""

    __slots__ = ("at", "callback")

    def __init__(self, at: float, callback: Callable[[], Any] | None) -> None:
        self.at = at
        self.callback = callback

    def cancel(self) -> None:
        self.callback = None

    @property
    def pending(self) -> bool:
        return self.callback is not None


class SimScheduler:
    """The simulator's clock and timers. ``processed`` counts the timers that ran (the simulation's events)."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._heap: list[tuple[float, int, SimTimer]] = []
        self._sequence = itertools.count()  # breaks ties between timers due at the same time: first set, first run
        self._stopped = False
        self.processed = 0

    def now(self) -> float:
        return self._now

    def call_at(self, at: float, callback: Callable[[], Any]) -> SimTimer:
        """Call ``callback()`` at virtual time ``at`` (at once, i.e. at ``now``, if ``at`` is past)."""
        if at < self._now:
            at = self._now
        timer = SimTimer(at, callback)
        heapq.heappush(self._heap, (at, next(self._sequence), timer))
        return timer

    def call_later(self, delay: float, callback: Callable[[], Any]) -> SimTimer:
        return self.call_at(self._now + delay, callback)

    @property
    def pending(self) -> int:
        """Timers in the heap, cancelled ones included until their time comes."""
        return len(self._heap)

    def next_at(self) -> float | None:
        """When the earliest live timer is due, or None if there is none."""
        heap = self._heap
        while heap and heap[0][2].callback is None:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def stop(self) -> None:
        """Make :meth:`run` return after the callback that is running now (a callback calls this)."""
        self._stopped = True

    def run_until(self, condition: Callable[[], bool], deadline: float) -> bool:
        """Run timers, a moment at a time, until ``condition()`` holds (True) or ``deadline`` passes (False).

        Slower than :meth:`run` (the condition is checked after each moment), for the few commands that take
        time: draining an instance, a deploy.
        """
        while not condition():
            due = self.next_at()
            if due is None or due > deadline:
                self.run(until=max(deadline, self._now))
                return condition()
            self.run(until=due)
        return True

    def run(self, until: float | None = None) -> float:
        """Run timers in time order until ``until`` (then ``now == until``), :meth:`stop`, or none is left.

        Returns ``now``. Timers due exactly at ``until`` run.
        """
        if until is not None and until < self._now:
            raise ValueError(f"cannot run until {until!r}: the simulation is already at {self._now!r}")
        self._stopped = False
        with full_collections_deferred():
            self._run(math.inf if until is None else until)
        if until is not None and not self._stopped:
            self._now = until
        return self._now

    def _run(self, limit: float) -> None:
        heap = self._heap
        pop = heapq.heappop
        processed = 0
        try:
            while heap and heap[0][0] <= limit:
                at, _, timer = pop(heap)
                callback = timer.callback
                if callback is None:
                    continue  # cancelled
                timer.callback = None
                self._now = at
                processed += 1
                callback()
                if self._stopped:
                    break
        finally:
            self.processed += processed
