"""The load generator: a client that records what every single request felt like.

Availability is measured where users are, so the lab measures it with a client. The load generator
sends requests and writes down, for *each* of them, when it started and ended, what answer came back
(or which error: refused, timed out, reset, HTTP 5xx) and which instance served it.

**Open loop** is the mode that makes an outage visible. Request ``i`` is due at ``t0 + i / rate``
whether or not earlier requests have answered, like real users who keep arriving while the service
is struggling. Each request is its own task, bounded by ``timeout``, and is let go as soon as it is
recorded: only the requests in flight are held, so an hour of load costs no more memory than a minute.
(A *closed loop* of N workers, each waiting for its answer before sending again, slows down when the
service does, and so hides part of the outage: it is here so a lesson can show the difference.)

Every scheduled request ends up as a :class:`RequestRecord`, even one that could not be sent because
too many were already in flight, or (with ``max_lateness``) because the client itself fell too far
behind its schedule (error ``client_overload``): a load generator that silently drops requests would
report a better availability than the service has.

Only loopback URLs are accepted: the lab loads its own servers, never anyone else's.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import math
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import aiohttp
from yarl import URL

from spofkit.client import FIRST_BACKOFF, MAX_BACKOFF, should_retry
from spofkit.events import ClientRequest, Clock, EventBus

RecordCallback = Callable[["RequestRecord"], None]

# While waiting for the next send, wake up at least this often so that a new rate, a pause or stop()
# takes effect quickly even when the current rate is low.
_TICK = 0.05

# Tolerance for float noise when comparing scheduled times with the end of the run (0.1 * 3 != 0.3).
_EPSILON = 1e-9


# The methods a load may send: what a service's clients send (CONNECT is a proxy's, which the balancer refuses; a
# made-up method is a 400 from a live lab and an answer from the simulator, so a run with it would mean little).
LOAD_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")


def check_method(method: object) -> str:
    """``method`` in capitals if a load may send it (:data:`LOAD_METHODS`, in either case); else ValueError."""
    if not isinstance(method, str) or method.upper() not in LOAD_METHODS:
        raise ValueError(f"method must be one of {', '.join(LOAD_METHODS)}, got {method!r}")
    return method.upper()


class RequestRecord(NamedTuple):
    """What one request felt like to the client. Times are lab seconds (``Clock.now()``).

    (A named tuple: a long run keeps millions of these, and a tuple is cheap to make and small: no ``__dict__``.
    The garbage collector still follows each one, as it does every instance of a tuple *subclass*; only plain
    tuples of plain values are left out.)

    ``error`` is ``None`` for a success (2xx/3xx) and otherwise one of ``connect`` (refused /
    unreachable), ``timeout``, ``reset`` (the server disconnected or the body broke off),
    ``http_<status>`` (e.g. ``http_502``), ``client_overload`` (never sent: too many requests in
    flight, or due more than ``max_lateness`` ago) or ``other``.
    """

    id: int
    method: str
    path: str
    start: float
    end: float
    status: int | None  # None when no HTTP answer came
    instance: str | None  # the X-Served-By response header
    attempts: int  # X-Spof-Attempts: how many instances the balancer tried (default 1)
    error: str | None

    @property
    def latency(self) -> float:
        return self.end - self.start

    @property
    def ok(self) -> bool:
        return self.error is None


def classify_error(exc: BaseException) -> str:
    """Name the kind of failure a client saw, from the exception aiohttp raised."""
    # Timeouts first: aiohttp's connect timeout is also a connection error.
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "timeout"
    # Refused, unreachable, unknown host: no connection was ever made.
    if isinstance(exc, (aiohttp.ClientConnectorError, ConnectionRefusedError)):
        return "connect"
    # Connected, then the server went away mid-request or mid-body.
    if isinstance(
        exc,
        (
            aiohttp.ServerDisconnectedError,
            aiohttp.ClientPayloadError,
            aiohttp.ClientOSError,
            ConnectionResetError,
        ),
    ):
        return "reset"
    return "other"


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ::1."""
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_loopback_url(url: str) -> URL:
    parsed = URL(url)
    if parsed.scheme not in ("http", "https"):
        raise ValueError(f"url must start with http:// or https://, got {url!r}")
    if not parsed.host or not is_loopback_host(parsed.host):
        raise ValueError(
            f"url host {parsed.host!r} is not a loopback address: the load generator only sends to "
            "127.0.0.0/8, ::1 or localhost"
        )
    return parsed


def _positive(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def _positive_int(name: str, value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def _parse_attempts(header: str | None) -> int:
    # "2", or "1; not retryable: retry buffer full": the count comes first.
    try:
        return max(1, int(header.split(";", 1)[0])) if header is not None else 1
    except ValueError:
        return 1


class LoadGenerator:
    """Send ``method path`` to ``url`` in an open or a closed loop and record every request.

    ``rate`` and ``paused`` may be changed while a loop runs (the TUI's load slider does that);
    ``stop()`` ends the schedule early; ``records`` grows as requests finish, so a view can read it
    live. ``keep_last`` bounds memory for long runs (the lab's background load): only the last that
    many records stay in ``records`` (latency percentiles are then over that window), while
    ``recorded`` and ``outcomes`` count every request of the run and every one is still published as
    a ``ClientRequest`` event.

    ``max_lateness`` (seconds, default none) is for a load that shares its process with the service it
    loads (the lab's background load): when that process stalls (descheduled on a busy machine, a long
    GC), every request due meanwhile is late, and sending them all at once would swamp the event loop
    that the balancer and its health checks share, so that the checks time out and every instance is
    marked DOWN. With ``max_lateness``, a request due more than that long ago is not sent but recorded
    as ``client_overload``. Without it (experiments), late requests are sent at once, as users keep
    arriving while a service struggles.
    """

    def __init__(
        self,
        url: str,
        *,
        clock: Clock,
        events: EventBus | None = None,
        method: str = "GET",
        path: str = "/",
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float = 5.0,
        max_in_flight: int = 2000,
        keep_last: int | None = None,
        max_lateness: float | None = None,
        entry_urls: Sequence[str] = (),
        client_retry_for: float = 0.0,
    ) -> None:
        """``entry_urls``: more addresses of the same service (like several DNS records, or each balancer of a pair);
        requests take them in turn. ``client_retry_for`` > 0 makes a careful client: a request whose connection
        failed (refused, or cut before an answer) is sent again — to the next address, after 20 ms growing to
        200 ms — for up to that many seconds; only idempotent methods, except after a refused connection, which
        provably never reached anyone (the rules of :mod:`spofkit.client`)."""
        self._base_url = _check_loopback_url(url)
        method = check_method(method)
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/', got {path!r}")
        self.url = url
        self.clock = clock
        self.events = events
        self.method = method
        self.path = path
        self.headers = dict(headers or {})
        self.body = body
        self.timeout = _positive("timeout", timeout)
        self.max_in_flight = _positive_int("max_in_flight", max_in_flight)
        self.keep_last = None if keep_last is None else _positive_int("keep_last", keep_last)
        self.max_lateness = None if max_lateness is None else _positive("max_lateness", max_lateness)
        self.recorded = 0
        # Every request of the run by how it ended: "ok" or its error ("timeout", "http_503", ...).
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.paused = False
        self.records: collections.deque[RequestRecord] = collections.deque(maxlen=self.keep_last)
        self._rate = 1.0
        self._running = False
        self._stop_requested = False
        # The only reference to a request's task while it runs (asyncio itself keeps only a weak one); a
        # finished task leaves the set at once.
        self._in_flight: set[asyncio.Task[None]] = set()
        self.peak_in_flight = 0  # the most requests in flight at once in this run (open loop)
        self._on_record: RecordCallback | None = None
        self._view_error: Exception | None = None  # the first error on_record raised, re-raised after the run
        if not 0 <= client_retry_for <= 60:
            raise ValueError(f"client_retry_for must be 0..60 seconds, got {client_retry_for!r}")
        self.client_retry_for = client_retry_for
        # The full URL of every request: each entry address (without a trailing slash) followed by ``path``.
        bases = [self._base_url, *(_check_loopback_url(extra) for extra in entry_urls)]
        self._targets = [str(base).rstrip("/") + path for base in bases]
        self._target = self._targets[0]

    # --- knobs a view may turn while a loop runs --------------------------------------------------

    @property
    def rate(self) -> float:
        """Requests per second of the open loop. Setting it re-plans the rest of the schedule."""
        return self._rate

    @rate.setter
    def rate(self, value: float) -> None:
        self._rate = _positive("rate", value)

    @property
    def running(self) -> bool:
        return self._running

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet answered (open loop)."""
        return len(self._in_flight)

    def stop(self) -> None:
        """Stop scheduling new requests. Those in flight still finish and are recorded."""
        self._stop_requested = True

    # --- open loop --------------------------------------------------------------------------------

    async def run_open_loop(
        self,
        rate: float,
        duration: float,
        *,
        max_requests: int | None = None,
        on_record: RecordCallback | None = None,
    ) -> list[RequestRecord]:
        """Send request ``i`` at ``t0 + i / rate`` for ``duration`` s, never waiting for answers.

        The schedule ends after ``duration`` seconds, after ``max_requests`` requests, or at
        ``stop()``, whichever comes first; at a constant rate and without ``max_requests`` that is
        ``ceil(rate * duration)`` requests. The call returns once every request sent has finished or
        timed out, with all the records sorted by id. If the client falls behind its schedule (a
        busy machine), late requests are sent at once: the schedule is the users' arrivals, and
        users do not wait for the client to catch up.
        """
        rate = _positive("rate", rate)
        duration = _positive("duration", duration)
        if max_requests is not None:
            _positive_int("max_requests", max_requests)
        self._begin(on_record)
        self._rate = rate
        try:
            async with self._session() as session:
                try:
                    await self._schedule(session, duration, max_requests)
                    # Wait for the stragglers: each is bounded by the timeout.
                    while self._in_flight:
                        await asyncio.wait(list(self._in_flight))
                finally:
                    await self._cancel(list(self._in_flight))  # only does something if we got here by an error
        finally:
            self._running = False
        return self._results()

    async def _schedule(
        self,
        session: aiohttp.ClientSession,
        duration: float,
        max_requests: int | None,
    ) -> None:
        """Launch the open loop's requests on time."""
        t0 = self.clock.now()
        end_of_schedule = t0 + duration
        # The schedule is "request i is due at anchor_time + (i - anchor_index) / anchor_rate".
        # A new rate or a pause moves the anchor; the requests already sent keep their times.
        anchor_time, anchor_index, anchor_rate = t0, 0, self._rate
        last_due: float | None = None
        i = 0
        while not self._stop_requested and (max_requests is None or i < max_requests):
            now = self.clock.now()
            if self.paused:
                if now >= end_of_schedule:
                    return
                await asyncio.sleep(_TICK)
                # On resume, carry on from "now" instead of bursting out the paused requests.
                anchor_time, anchor_index, last_due = self.clock.now(), i, None
                continue
            if self._rate != anchor_rate:
                next_due = now if last_due is None else max(now, last_due + 1 / self._rate)
                anchor_time, anchor_index, anchor_rate = next_due, i, self._rate
            due = anchor_time + (i - anchor_index) / anchor_rate
            if due >= end_of_schedule - _EPSILON:
                # No request is due before the end; the schedule still lasts its duration (at a low rate the
                # last request may come long before it ends: faults and checks meanwhile belong to the run), and
                # a new rate or a pause meanwhile is heard on the next turn of the loop.
                if now >= end_of_schedule:
                    return
                await asyncio.sleep(min(end_of_schedule - now, _TICK))
                continue
            if due > now:
                await asyncio.sleep(min(due - now, _TICK))
                continue
            if self.max_lateness is not None and now - due > self.max_lateness:
                self._overload(i)  # the client was stalled: no burst of overdue requests on a loop it shares
            else:
                self._launch(session, i)
            last_due = due
            i += 1

    def _launch(self, session: aiohttp.ClientSession, request_id: int) -> None:
        """Start request ``request_id`` as its own task, or record it as ``client_overload``."""
        if len(self._in_flight) >= self.max_in_flight:
            self._overload(request_id)
            return
        task = asyncio.ensure_future(self._send_and_record(session, request_id))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        if len(self._in_flight) > self.peak_in_flight:
            self.peak_in_flight = len(self._in_flight)

    def _overload(self, request_id: int) -> None:
        """Record request ``request_id`` as ``client_overload``: scheduled, never sent."""
        now = self.clock.now()
        self._finish(RequestRecord(request_id, self.method, self.path, now, now, None, None, 1, "client_overload"))

    # --- closed loop ------------------------------------------------------------------------------

    async def run_closed_loop(
        self,
        workers: int,
        duration: float,
        *,
        max_requests: int,
        on_record: RecordCallback | None = None,
    ) -> list[RequestRecord]:
        """``workers`` clients, each sending its next request when the previous one finished.

        Ends after ``max_requests`` requests, after ``duration`` seconds (no new request starts
        after that; running ones finish) or at ``stop()``. Returns the records sorted by id.
        """
        _positive_int("workers", workers)
        duration = _positive("duration", duration)
        _positive_int("max_requests", max_requests)
        self._begin(on_record)
        next_id = 0
        tasks: list[asyncio.Task[None]] = []

        async def worker(session: aiohttp.ClientSession, end_time: float) -> None:
            nonlocal next_id
            while not self._stop_requested and next_id < max_requests:
                if self.clock.now() >= end_time:
                    return
                if self.paused:
                    await asyncio.sleep(_TICK)
                    continue
                request_id, next_id = next_id, next_id + 1
                await self._send_and_record(session, request_id)

        try:
            async with self._session() as session:
                end_time = self.clock.now() + duration
                tasks = [asyncio.ensure_future(worker(session, end_time)) for _ in range(workers)]
                try:
                    await asyncio.gather(*tasks)
                finally:
                    await self._cancel(tasks)
        finally:
            self._running = False
        return self._results()

    # --- one request ------------------------------------------------------------------------------

    async def _send_and_record(self, session: aiohttp.ClientSession, request_id: int) -> None:
        self._finish(await self._send(session, request_id))

    async def _send(self, session: aiohttp.ClientSession, request_id: int) -> RequestRecord:
        start = self.clock.now()
        status: int | None = None
        instance: str | None = None
        attempts = 1
        error: str | None = None
        entry = request_id  # the entry addresses in turn, as a client picks among DNS records
        backoff = FIRST_BACKOFF
        while True:
            error = None
            try:
                async with session.request(
                    self.method,
                    self._targets[entry % len(self._targets)],
                    headers=self.headers,
                    data=self.body,
                    allow_redirects=False,  # a 3xx is the answer we measure, not a hop to follow
                ) as response:
                    status = response.status
                    instance = response.headers.get("X-Served-By")
                    attempts = _parse_attempts(response.headers.get("X-Spof-Attempts"))
                    await response.read()  # a user waits for the whole body, and a body can break off
                    if status >= 400:
                        error = f"http_{status}"
            except Exception as exc:  # every failure is data here; CancelledError is not an Exception
                error = classify_error(exc)
            if not self._client_retries(error, start, backoff):
                break
            status = instance = None
            entry += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)
        end = self.clock.now()
        return RequestRecord(request_id, self.method, self.path, start, end, status, instance, attempts, error)

    def _client_retries(self, error: str | None, start: float, backoff: float) -> bool:
        """Would a careful client (``client_retry_for``) send this request again after ``error``?"""
        if error is None or self.client_retry_for <= 0:
            return False
        time_left = start + self.client_retry_for - self.clock.now()
        return should_retry(self.method, error, time_left=time_left, backoff=backoff)

    def _finish(self, record: RequestRecord) -> None:
        self.records.append(record)  # with keep_last, the deque lets the oldest record go
        self.recorded += 1
        self.outcomes[record.error or "ok"] += 1
        if self.events is not None:
            self.events.publish(
                ClientRequest(
                    at=record.end,
                    request_id=record.id,
                    status=record.status,
                    latency=record.latency,
                    instance=record.instance,
                    attempts=record.attempts,
                    error=record.error,
                )
            )
        if self._on_record is not None:
            try:
                self._on_record(record)
            except Exception as error:  # a broken view must not stop the load: the run raises it at the end
                if self._view_error is None:
                    self._view_error = error

    # --- housekeeping -----------------------------------------------------------------------------

    def _begin(self, on_record: RecordCallback | None) -> None:
        if self._running:
            raise RuntimeError("this LoadGenerator is already running; stop() it or make another one")
        self._running = True
        self._stop_requested = False
        self._on_record = on_record
        self._view_error = None
        self.records = collections.deque(maxlen=self.keep_last)
        self.recorded = 0
        self.outcomes = collections.Counter()
        self.peak_in_flight = 0

    def _results(self) -> list[RequestRecord]:
        """The kept records sorted by id, or the first error ``on_record`` raised during the run."""
        if self._view_error is not None:
            raise self._view_error
        return sorted(self.records, key=lambda record: record.id)

    def _session(self) -> aiohttp.ClientSession:
        # Keep-alive on (the default) and a pool as large as the in-flight limit, so the pool never
        # queues requests behind our back: the open loop's max_in_flight is the only limit.
        connector = aiohttp.TCPConnector(limit=self.max_in_flight, limit_per_host=0)
        return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout))

    @staticmethod
    async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
        """Cancel what still runs (only after an error or a cancelled run); let it unwind."""
        pending = [task for task in tasks if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
