"""What the screen shows, boiled down from the event stream: the TUI's only "state".

The lab publishes one event per thing that happened — at 1,000 requests/s that is thousands of events a
second. A screen cannot draw them one by one, and it need not: it needs *rates* and *recent history*. This
module folds events into small rolling counters (one bucket per second of lab time) and answers the questions
the widgets ask: how available was the service to its clients over the last ten seconds? what share of the
traffic went to instance ``b``? which lanes did request #812 try before it was served?

Two kinds of figure, two time spans. A *rate* ("12/s") or a *share* ("33 %") says what is happening now: it
counts the last second only (``RATE_WINDOW``), so when traffic stops (a crashed instance marked DOWN, the load
paused) it falls to 0 within a second. A *ratio* over what happened (availability, error rate, p50/p99) says
how the last ten seconds went (``WINDOW_SECONDS``), so a short outage stays readable for a while.

It is pure: no Textual, no clock of its own. Every method that depends on time takes ``now`` (lab seconds),
so the tests and the snapshot screenshots can freeze time and get the same picture every run.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from spofkit.events import (
    BalancerRoleChanged,
    ClientRequest,
    DeployStep,
    Event,
    FaultCleared,
    FaultInjected,
    InstanceAdded,
    InstanceDown,
    InstanceDraining,
    InstanceEjected,
    InstanceRemoved,
    InstanceRestarted,
    InstanceReturned,
    InstanceUp,
    RequestCompleted,
    RequestRetried,
    SettingChanged,
    StrategyChanged,
)
from spofkit.policy.pair import MASTER, STOPPED

# The rolling window behind "availability", "error rate" and the percentiles: how the last seconds went.
WINDOW_SECONDS = 10
# The window behind every "/s" rate and every share: what is happening now.
RATE_WINDOW = 1.0
# How many seconds of per-second history a sparkline may show.
HISTORY_SECONDS = 60


# --- rolling per-second counters -------------------------------------------------------------------------


class SecondBuckets:
    """Counts per whole second of lab time, forgetting seconds older than ``keep``."""

    def __init__(self, keep: int = HISTORY_SECONDS) -> None:
        self.keep = keep
        self._buckets: dict[int, float] = {}
        self._oldest = 0

    def add(self, at: float, amount: float = 1.0) -> None:
        second = math.floor(at)
        self._buckets[second] = self._buckets.get(second, 0.0) + amount
        if second - self._oldest > 2 * self.keep:  # prune now and then, not on every add
            self._oldest = second - self.keep
            self._buckets = {s: v for s, v in self._buckets.items() if s >= self._oldest}

    def series(self, now: float, seconds: int) -> list[float]:
        """The last ``seconds`` buckets, oldest first; the last one is the (partial) current second."""
        current = math.floor(now)
        return [self._buckets.get(s, 0.0) for s in range(current - seconds + 1, current + 1)]

    def total(self, now: float, seconds: int) -> float:
        return sum(self.series(now, seconds))

    def clear(self) -> None:
        self._buckets.clear()


class RecentTimes:
    """When recent events happened, for "how many per second, right now".

    :meth:`per_second` counts the events of the last ``window`` seconds, so it drops to 0 exactly ``window``
    seconds after the last event (a bucket per whole second would lag by up to another second).
    """

    def __init__(self, window: float = RATE_WINDOW, max_times: int = 100_000) -> None:
        self.window = window
        self._times: collections.deque[float] = collections.deque(maxlen=max_times)

    def add(self, at: float) -> None:
        self._times.append(at)

    def count(self, now: float) -> int:
        """Events in the ``window`` seconds up to ``now``."""
        while self._times and self._times[0] <= now - self.window:
            self._times.popleft()
        return len(self._times)

    def per_second(self, now: float) -> float:
        return self.count(now) / self.window

    def clear(self) -> None:
        self._times.clear()


class RecentValues:
    """``(at, value)`` pairs from the last ``window`` seconds (bounded), for percentiles."""

    def __init__(self, window: float = WINDOW_SECONDS, max_values: int = 20_000) -> None:
        self.window = window
        self._values: collections.deque[tuple[float, float]] = collections.deque(maxlen=max_values)

    def add(self, at: float, value: float) -> None:
        self._values.append((at, value))

    def percentiles(self, now: float, wanted: Iterable[float]) -> list[float | None]:
        """Nearest-rank percentiles (``0 < p <= 100``) of the values in the window; None if it is empty."""
        while self._values and self._values[0][0] < now - self.window:
            self._values.popleft()
        values = sorted(value for _, value in self._values)
        if not values:
            return [None for _ in wanted]
        return [values[max(0, math.ceil(p / 100 * len(values)) - 1)] for p in wanted]

    def clear(self) -> None:
        self._values.clear()


# --- the things the widgets read -------------------------------------------------------------------------


@dataclass(frozen=True)
class Trip:
    """One request's journey for the flow picture.

    ``lanes`` are the instances it was sent to, in order (a retried request has several; a request refused at
    the balancer has none). ``outcome`` is ``served``, ``retried`` (served after a retry) or ``failed``.
    ``started`` is the lab time its animation begins.
    """

    request_id: int
    lanes: tuple[str, ...]
    outcome: str
    started: float


@dataclass(frozen=True)
class LogLine:
    at: float
    text: str
    tone: str  # good | bad | warn | info: how the event log colours it


@dataclass
class InstanceCounters:
    """Attempts one instance handled: ``recent`` for its rate and share, per-second buckets for its error
    rate and latency line."""

    recent: RecentTimes = field(default_factory=RecentTimes)
    attempts: SecondBuckets = field(default_factory=SecondBuckets)
    errors: SecondBuckets = field(default_factory=SecondBuckets)
    latency_sum: SecondBuckets = field(default_factory=SecondBuckets)
    latency_count: SecondBuckets = field(default_factory=SecondBuckets)


@dataclass(frozen=True)
class InstanceFigures:
    attempts_per_second: float  # attempts in the last RATE_WINDOW seconds, per second
    error_rate: float | None  # failed attempts / attempts in the (longer) window; None without traffic
    share: float | None  # this instance's attempts / all attempts, in the last RATE_WINDOW seconds
    latency_series: list[float]  # mean latency (seconds) of each recent second, oldest first


@dataclass(frozen=True)
class ClientFigures:
    """What a user of the service would feel: rates now, availability and latency over ``window`` seconds."""

    source: str  # "clients" (the load generator's view) or "balancer" (its answers, if no client is seen)
    availability: float | None
    ok_per_second: float  # over the last RATE_WINDOW seconds
    failed_per_second: float
    ok_series: list[float]
    failed_series: list[float]
    p50: float | None
    p99: float | None
    window: int
    last_second: int = 0  # the whole second the series' last entry counts (the clock's floor of now - 1)


# Events worth a line in the log (probes, completions and client requests are far too many; retries and
# client failures are summarised once per second instead).
_LOGGED_KINDS = (
    InstanceDown,
    InstanceUp,
    FaultInjected,
    FaultCleared,
    InstanceRestarted,
    InstanceEjected,
    InstanceReturned,
    InstanceAdded,
    InstanceDraining,
    InstanceRemoved,
    StrategyChanged,
    SettingChanged,
    BalancerRoleChanged,
    DeployStep,
)

# Events one balancer publishes about its own view (its checks, its pool, its switches). With two balancers each
# publishes its own, so the log says whose it is: "lb2: b marked DOWN". (BalancerRoleChanged names it already.)
_BALANCER_VIEW_KINDS = (
    InstanceDown,
    InstanceUp,
    InstanceEjected,
    InstanceReturned,
    InstanceAdded,
    InstanceDraining,
    InstanceRemoved,
    StrategyChanged,
    SettingChanged,
)


class LabModel:
    """Fold lab events into the figures the widgets draw. Feed it with :meth:`ingest`, read with ``*_figures``.

    ``min_trip_gap`` thins out the flow picture at high rates: per lane, a served request is drawn only if the
    previous one drawn on that lane started at least that many seconds earlier. Failed and retried requests
    are what a learner must see, so they get a quarter of that gap.

    Set ``name_balancers`` when the lab has more than one balancer: log lines about a balancer's own view then
    start with its name (each balancer of a pair checks the instances itself, so "b marked DOWN" comes twice).
    """

    def __init__(self, window: int = WINDOW_SECONDS, min_trip_gap: float = 0.06) -> None:
        self.window = window
        self.min_trip_gap = min_trip_gap
        self.instances: dict[str, InstanceCounters] = {}
        self.client_ok = SecondBuckets()
        self.client_failed = SecondBuckets()
        self.client_ok_recent = RecentTimes()
        self.client_failed_recent = RecentTimes()
        self.client_latency = RecentValues(window)
        self.balancer_ok = SecondBuckets()
        self.balancer_failed = SecondBuckets()
        self.balancer_ok_recent = RecentTimes()
        self.balancer_failed_recent = RecentTimes()
        self.balancer_latency = RecentValues(window)
        self.clients_seen = False
        self.name_balancers = False
        self.balancer_answers: dict[str, RecentTimes] = {}  # per balancer: when it answered a client
        self.new_trips: list[Trip] = []
        self.new_log: list[LogLine] = []
        self._tries: collections.OrderedDict[int, list[str]] = collections.OrderedDict()
        self._last_trip_on_lane: dict[str, float] = {}
        self._retries_pending: collections.Counter[str] = collections.Counter()
        self._client_errors_pending: collections.Counter[str] = collections.Counter()
        self._last_summary = -math.inf

    # --- feeding -------------------------------------------------------------------------------------

    def ingest(self, event: Event) -> None:
        if isinstance(event, RequestCompleted):
            self._completed(event)
        elif isinstance(event, RequestRetried):
            self._retried(event)
        elif isinstance(event, ClientRequest):
            self._client(event)
        elif isinstance(event, _LOGGED_KINDS):
            self.new_log.append(LogLine(event.at, self.log_text(event), tone_of(event)))

    def log_text(self, event: Event) -> str:
        """The event's own words; with ``name_balancers``, prefixed by the balancer whose view it is."""
        if self.name_balancers and isinstance(event, _BALANCER_VIEW_KINDS) and not _lab_setting(event):
            return f"{event.balancer}: {describe(event)}"
        return describe(event)

    def ingest_all(self, events: Iterable[Event]) -> None:
        for event in events:
            self.ingest(event)

    def _counters(self, name: str) -> InstanceCounters:
        counters = self.instances.get(name)
        if counters is None:
            counters = self.instances[name] = InstanceCounters()
        return counters

    def _retried(self, event: RequestRetried) -> None:
        counters = self._counters(event.instance)
        counters.recent.add(event.at)
        counters.attempts.add(event.at)
        counters.errors.add(event.at)
        self._tries.setdefault(event.request_id, []).append(event.instance)
        if len(self._tries) > 5000:  # a request whose completion we never see must not leak memory
            self._tries.popitem(last=False)
        self._retries_pending[f"{event.instance}: {short_reason(event.reason)}"] += 1

    def _completed(self, event: RequestCompleted) -> None:
        answers = self.balancer_answers.get(event.balancer)
        if answers is None:
            answers = self.balancer_answers[event.balancer] = RecentTimes()
        answers.add(event.at)
        tried = self._tries.pop(event.request_id, [])
        failed = event.outcome == "failed" or event.status >= 500
        last = event.instance or event.last_tried
        if last is not None and (not tried or tried[-1] != last or event.instance is not None):
            counters = self._counters(last)
            counters.recent.add(event.at)
            counters.attempts.add(event.at)
            if failed:
                counters.errors.add(event.at)
            else:
                counters.latency_sum.add(event.at, event.latency)
                counters.latency_count.add(event.at)
            tried.append(last)
        (self.balancer_failed if failed else self.balancer_ok).add(event.at)
        (self.balancer_failed_recent if failed else self.balancer_ok_recent).add(event.at)
        self.balancer_latency.add(event.at, event.latency)
        outcome = "failed" if failed else event.outcome
        self._maybe_trip(Trip(event.request_id, tuple(tried), outcome, event.at))

    def _maybe_trip(self, trip: Trip) -> None:
        lane = trip.lanes[-1] if trip.lanes else ""
        gap = self.min_trip_gap if trip.outcome == "served" else self.min_trip_gap / 4
        if trip.started - self._last_trip_on_lane.get(lane, -math.inf) < gap:
            return
        self._last_trip_on_lane[lane] = trip.started
        self.new_trips.append(trip)

    def _client(self, event: ClientRequest) -> None:
        self.clients_seen = True
        if event.ok:
            self.client_ok.add(event.at)
            self.client_ok_recent.add(event.at)
        else:
            self.client_failed.add(event.at)
            self.client_failed_recent.add(event.at)
            self._client_errors_pending[event.error or "error"] += 1
        self.client_latency.add(event.at, event.latency)

    # --- once a second: summaries for the log ------------------------------------------------------

    def summarise(self, now: float) -> None:
        """Turn the retries and client failures of the last second into one log line each."""
        if now - self._last_summary < 1.0:
            return
        self._last_summary = now
        if self._retries_pending:
            total = sum(self._retries_pending.values())
            parts = ", ".join(f"{why} ×{n}" for why, n in self._retries_pending.most_common(2))
            self.new_log.append(LogLine(now, f"{total} retried ({parts})", "warn"))
            self._retries_pending.clear()
        if self._client_errors_pending:
            total = sum(self._client_errors_pending.values())
            parts = ", ".join(f"{why} ×{n}" for why, n in self._client_errors_pending.most_common(3))
            self.new_log.append(LogLine(now, f"clients saw {total} failure{'s' if total > 1 else ''} ({parts})", "bad"))
            self._client_errors_pending.clear()

    def take_log(self) -> list[LogLine]:
        lines, self.new_log = self.new_log, []
        return lines

    def take_trips(self) -> list[Trip]:
        trips, self.new_trips = self.new_trips, []
        return trips

    # --- reading -------------------------------------------------------------------------------------

    def instance_figures(self, name: str, now: float, history: int = 20) -> InstanceFigures:
        counters = self._counters(name)
        done = now - 1.0  # whole seconds only: the current one is still filling up
        attempts = counters.attempts.total(done, self.window)
        errors = counters.errors.total(done, self.window)
        recent = counters.recent.count(now)
        everyone = sum(c.recent.count(now) for c in self.instances.values())
        sums = counters.latency_sum.series(done, history)
        counts = counters.latency_count.series(done, history)
        return InstanceFigures(
            attempts_per_second=recent / counters.recent.window,
            error_rate=errors / attempts if attempts else None,
            share=recent / everyone if everyone else None,
            latency_series=[s / c if c else 0.0 for s, c in zip(sums, counts, strict=True)],
        )

    def balancer_rate(self, name: str, now: float) -> float:
        """Answers balancer ``name`` gave clients in the last ``RATE_WINDOW`` seconds, per second."""
        answers = self.balancer_answers.get(name)
        return answers.per_second(now) if answers is not None else 0.0

    def client_figures(self, now: float, history: int = 30) -> ClientFigures:
        """The clients' view; if no client events were ever seen (a remote lab without load generator
        events), the balancer's answers stand in for it."""
        if self.clients_seen:
            source, ok, failed, latency = "clients", self.client_ok, self.client_failed, self.client_latency
            ok_recent, failed_recent = self.client_ok_recent, self.client_failed_recent
        else:
            source, ok, failed = "balancer", self.balancer_ok, self.balancer_failed
            latency = self.balancer_latency
            ok_recent, failed_recent = self.balancer_ok_recent, self.balancer_failed_recent
        # The current second is still filling up: availability and the chart use whole seconds only.
        done = now - 1.0
        ok_total = ok.total(done, self.window)
        failed_total = failed.total(done, self.window)
        requests = ok_total + failed_total
        p50, p99 = latency.percentiles(now, (50, 99))
        return ClientFigures(
            source=source,
            availability=ok_total / requests if requests else None,
            ok_per_second=ok_recent.per_second(now),
            failed_per_second=failed_recent.per_second(now),
            ok_series=ok.series(done, history),
            failed_series=failed.series(done, history),
            p50=p50,
            p99=p99,
            window=self.window,
            last_second=math.floor(done),
        )

    def reset(self) -> None:
        """Forget every count (the "reset counters" key); the log and the instance list stay."""
        for counters in self.instances.values():
            for buckets in vars(counters).values():
                buckets.clear()
        for buckets in (self.client_ok, self.client_failed, self.balancer_ok, self.balancer_failed):
            buckets.clear()
        for recent in (
            self.client_ok_recent,
            self.client_failed_recent,
            self.balancer_ok_recent,
            self.balancer_failed_recent,
            *self.balancer_answers.values(),
        ):
            recent.clear()
        self.client_latency.clear()
        self.balancer_latency.clear()
        self._retries_pending.clear()
        self._client_errors_pending.clear()

    def forget(self, name: str) -> None:
        """An instance left the pool: drop its counters."""
        self.instances.pop(name, None)
        self._last_trip_on_lane.pop(name, None)


# --- wording ---------------------------------------------------------------------------------------------


def short_reason(reason: str) -> str:
    return reason.split(";")[0].split("(")[0].strip()[:32] or "failed"


def _lab_setting(event: Event) -> bool:
    """The load's settings are the lab's, not a balancer's (the event carries the default balancer name)."""
    return isinstance(event, SettingChanged) and event.setting.startswith("load_")


def tone_of(event: Event) -> str:
    if isinstance(event, (InstanceDown, InstanceEjected, FaultInjected)):
        return "bad"
    if isinstance(event, (InstanceUp, InstanceReturned, FaultCleared, InstanceAdded)):
        return "good"
    if isinstance(event, (InstanceDraining, InstanceRemoved, InstanceRestarted)):
        return "warn"
    if isinstance(event, BalancerRoleChanged):
        # A new master is a takeover (worth a yellow line); a balancer that stopped is one less at the door.
        return "warn" if event.role == MASTER else ("bad" if event.role == STOPPED else "info")
    if isinstance(event, DeployStep):
        return "good" if event.step == "done" else "info"
    return "info"


def describe(event: Event) -> str:
    """A short log line a learner can read at a glance: the event's own words (the same in every view)."""
    return event.describe()
