"""The event bus: publish/subscribe, in process, synchronous (re-exported by :mod:`spofkit.events`).

A module of its own, apart from the events, so that ``bench/compile_sim.py`` can compile it: the simulator
publishes two events a request through it, while the events themselves (dataclasses with their checks) stay Python.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from spofkit.clock import Clock

if TYPE_CHECKING:
    import asyncio

    from spofkit.events import Event, Subscriber


class EventBus:
    """Publish/subscribe, in process, synchronous.

    ``publish`` calls every subscriber at once, in order; a subscriber must be quick and must not raise (an
    exception is counted in ``subscriber_errors`` and swallowed, so one broken view cannot stop the balancer).
    ``history`` keeps the last ``history_size`` events for late joiners; ``queue()`` gives an asyncio queue for
    consumers that want to ``await`` events (the admin API's stream).
    """

    def __init__(self, clock: Clock | None = None, history_size: int = 5000) -> None:
        self.clock = clock or Clock()
        self.history: collections.deque[Event] = collections.deque(maxlen=history_size)
        self._subscribers: tuple[Subscriber, ...] = ()  # a new tuple on each change: publish never copies
        self.subscriber_errors = 0

    def now(self) -> float:
        return self.clock.now()

    def publish(self, event: Event) -> None:
        self.history.append(event)
        for subscriber in self._subscribers:  # (a subscriber that subscribes or leaves changes the next publish)
            try:
                subscriber(event)
            except Exception:
                self.subscriber_errors += 1

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call ``subscriber(event)`` for every future event. Returns a function that unsubscribes."""
        self._subscribers = (*self._subscribers, subscriber)

        def unsubscribe() -> None:
            subscribers = list(self._subscribers)
            if subscriber in subscribers:
                subscribers.remove(subscriber)
                self._subscribers = tuple(subscribers)

        return unsubscribe

    def queue(self, maxsize: int = 10000) -> tuple[asyncio.Queue[Event], Callable[[], None]]:
        """An asyncio queue fed with future events (oldest dropped when full) and its unsubscribe function."""
        import asyncio  # only live views await events; the pure policies that publish them never import asyncio

        q: asyncio.Queue[Event] = asyncio.Queue(maxsize=maxsize)

        def feed(event: Event) -> None:
            if q.full():
                q.get_nowait()
            q.put_nowait(event)

        return q, self.subscribe(feed)

    def since(self, at: float) -> Iterator[Event]:
        """Events in history at or after lab time ``at``."""
        return (e for e in list(self.history) if e.at >= at)
