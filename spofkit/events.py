"""One event stream: the way every view learns what happened.

Instances, the health checker and the balancer *publish* small frozen dataclasses; widgets, the TUI, the
recorder and the reports *subscribe*. Nothing reaches into another component's internals to find out that an
instance went down or a request was retried: it reads the event.

Every event carries ``at``, the lab clock's time in seconds (see :class:`Clock`), so a log or a plot lines up
with the load generator's records.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from spofkit.clock import Clock as Clock  # re-exported: views import the lab clock from here

if TYPE_CHECKING:
    import asyncio

# The name a lab's balancer has when there is one; a pair's are "lb1" and "lb2". Events a balancer publishes
# (its health checks, its pool, its requests) carry the name, so two balancers' views never mix.
DEFAULT_BALANCER = "lb1"


@dataclass(frozen=True)
class Event:
    """Base class: something that happened at lab time ``at``."""

    at: float

    @property
    def kind(self) -> str:
        return type(self).__name__

    def describe(self) -> str:
        """One line for a log, e.g. ``InstanceDown b: 3 failed checks``."""
        fields = {k: v for k, v in vars(self).items() if k != "at"}
        return f"{self.kind} " + " ".join(f"{k}={v}" for k, v in fields.items())


# --- instances -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstanceStarted(Event):
    instance: str
    url: str
    pid: int | None = None


@dataclass(frozen=True)
class InstanceStopped(Event):
    instance: str


@dataclass(frozen=True)
class FaultInjected(Event):
    instance: str
    fault: str
    params: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"FaultInjected {self.instance}: {self.fault}({args})"


@dataclass(frozen=True)
class FaultCleared(Event):
    instance: str
    fault: str


@dataclass(frozen=True)
class InstanceRestarted(Event):
    instance: str
    pid: int | None = None


# --- health checks ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HealthProbe(Event):
    """One active check finished: ``ok`` or not, and why (status code, timeout, refused...)."""

    instance: str
    ok: bool
    detail: str
    duration: float
    balancer: str = DEFAULT_BALANCER


@dataclass(frozen=True)
class InstanceUp(Event):
    instance: str
    reason: str = ""
    balancer: str = DEFAULT_BALANCER

    def describe(self) -> str:
        return f"InstanceUp {self.instance}: {self.reason}"


@dataclass(frozen=True)
class InstanceDown(Event):
    instance: str
    reason: str = ""
    balancer: str = DEFAULT_BALANCER

    def describe(self) -> str:
        return f"InstanceDown {self.instance}: {self.reason}"


# --- balancer --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstanceEjected(Event):
    """Passive ejection: the balancer saw real requests fail and stops sending to the instance for a while."""

    instance: str
    duration: float
    consecutive_failures: int
    balancer: str = DEFAULT_BALANCER

    def describe(self) -> str:
        return f"InstanceEjected {self.instance} for {self.duration:.1f}s after {self.consecutive_failures} failures"


@dataclass(frozen=True)
class InstanceReturned(Event):
    """An ejected instance's ejection time ran out; it is eligible again."""

    instance: str
    balancer: str = DEFAULT_BALANCER


@dataclass(frozen=True)
class InstanceAdded(Event):
    instance: str
    url: str
    backup: bool = False
    balancer: str = DEFAULT_BALANCER


@dataclass(frozen=True)
class InstanceDraining(Event):
    instance: str
    in_flight: int
    balancer: str = DEFAULT_BALANCER


@dataclass(frozen=True)
class InstanceRemoved(Event):
    instance: str
    balancer: str = DEFAULT_BALANCER


@dataclass(frozen=True)
class StrategyChanged(Event):
    strategy: str
    balancer: str = DEFAULT_BALANCER


@dataclass(frozen=True)
class SettingChanged(Event):
    """A lab switch was flipped, e.g. ``retries`` or ``health_checks`` on/off, or the load ``rate``."""

    setting: str
    value: Any
    balancer: str = DEFAULT_BALANCER


@dataclass(frozen=True)
class RequestRetried(Event):
    """Attempt ``attempt`` on ``instance`` failed with ``reason``; the balancer tries again elsewhere."""

    request_id: int
    attempt: int
    instance: str
    reason: str
    balancer: str = DEFAULT_BALANCER

    def describe(self) -> str:
        return f"RequestRetried #{self.request_id} attempt {self.attempt} on {self.instance}: {self.reason}"


@dataclass(frozen=True)
class RequestCompleted(Event):
    """The balancer answered a client. ``outcome`` is ``served``, ``retried`` (served after a retry) or ``failed``.

    ``instance`` is the instance whose answer the client got (None when the balancer answered itself);
    ``last_tried`` is the instance the last attempt went to, also for a failed request.
    """

    request_id: int
    method: str
    path: str
    status: int
    instance: str | None
    attempts: int
    latency: float
    outcome: str
    reason: str = ""
    last_tried: str | None = None
    balancer: str = DEFAULT_BALANCER


@dataclass(frozen=True)
class ClientRequest(Event):
    """The load generator (a client) got its answer, or gave up: what a user of the service felt."""

    request_id: int
    status: int | None
    latency: float
    instance: str | None
    attempts: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


# Events that come once per request or per probe: many a second under load. Logs, narrations and event streams
# leave them out unless asked; views that count requests read them.
PER_REQUEST_EVENTS: tuple[type[Event], ...] = (HealthProbe, RequestRetried, RequestCompleted, ClientRequest)
PER_REQUEST_KINDS = frozenset(cls.__name__ for cls in PER_REQUEST_EVENTS)


# --- the bus ---------------------------------------------------------------------------------------------

Subscriber = Callable[[Event], None]


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
        self._subscribers: list[Subscriber] = []
        self.subscriber_errors = 0

    def now(self) -> float:
        return self.clock.now()

    def publish(self, event: Event) -> None:
        self.history.append(event)
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:
                self.subscriber_errors += 1

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call ``subscriber(event)`` for every future event. Returns a function that unsubscribes."""
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

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
