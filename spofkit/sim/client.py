"""The clients, simulated: an open-loop load that records what every request felt like.

The same as :class:`spofkit.loadgen.LoadGenerator`'s open loop: request ``i`` is sent at ``t0 + i / rate``
whether or not earlier ones have been answered (or at random, exponentially spaced times with
``arrivals="poisson"``), each client gives up after ``timeout`` seconds, and every request becomes a
:class:`~spofkit.loadgen.RequestRecord` and a :class:`~spofkit.events.ClientRequest` event, with the error names
the live client uses (``connect``, ``timeout``, ``reset``, ``http_<status>``).

A client may also try again itself: give the loop a ``retry`` rule (:data:`ClientRetry`), and after every failed try
it asks the rule how long to wait before the next one (or to give up), up to :data:`MAX_CLIENT_TRIES` tries. The
rule is the caller's — a lesson's backoff with jitter, say — and the loop only keeps its appointments; the request
keeps its id, its record runs from the first try to the last answer, and ``attempts`` adds up the balancer's
attempts over every try.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable
from typing import Any

from spofkit.events import ClientRequest, Event
from spofkit.loadgen import RequestRecord, check_method
from spofkit.policy import RequestInfo
from spofkit.sim.capacity import quantized
from spofkit.sim.scheduler import SimScheduler, SimTimer

ARRIVALS = ("uniform", "poisson")
# Float noise when comparing a scheduled time with the end of the run (0.1 * 3 != 0.3), as the live client.
_EPSILON = 1e-9
# A request is tried at most this often, whatever the client's retry rule says (one that always answers "again
# at once" while every instance is down would otherwise loop at one instant for ever).
MAX_CLIENT_TRIES = 100
# The live client's default: how long a user waits for an answer.
CLIENT_TIMEOUT = 5.0

# A client's own retry rule: handed the failed try's record and how many tries were made so far (1 after the
# first), it answers the seconds to wait before the next try, or None to give up and keep that failure.
ClientRetry = Callable[[RequestRecord, int], "float | None"]


def positive(name: str, value: object) -> float:
    """``value`` as a positive finite number (a rate, a duration, a timeout), or a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


# A record made as the tuple it is, without the named tuple's own __new__ (a Python-level function): one C call for
# every request. The same RequestRecord, fields in its order.
_make_record: Callable[[tuple[Any, ...]], RequestRecord] = functools.partial(tuple.__new__, RequestRecord)


class ClientCall:
    """One request as its client sees it: sent at ``start``, answered (or given up on) once."""

    __slots__ = ("done", "earlier_attempts", "first_start", "id", "load", "request", "start", "timer", "tries")

    def __init__(self, load: OpenLoop, request_id: int, start: float, *, first: ClientCall | None = None) -> None:
        self.load = load
        self.request = load.request
        self.id = request_id
        self.start = start  # this try's
        self.done = False
        self.timer: SimTimer | None = None
        # A retry by the client (``first`` is the try before it): the user has waited since the first try.
        self.first_start: float = first.first_start if first else start
        self.tries: int = first.tries + 1 if first else 1
        self.earlier_attempts = 0  # the balancer's attempts for the tries before this one

    def answered(self, status: int, instance: str | None, attempts: int) -> None:
        """The answer came (now). Ignored if the client gave up already."""
        if self.done:
            return
        if self.timer is not None:
            self.timer.cancel()
        load = self.load
        error = f"http_{status}" if status >= 400 else None
        load._record(self, load.scheduler._now, status, instance, attempts, error)

    def failed(self, error: str) -> None:
        """No answer: ``connect`` (nobody listens), ``reset`` (the connection broke)."""
        if not self.done:
            if self.timer is not None:
                self.timer.cancel()
            self.load._record(self, self.load.scheduler._now, None, None, 1, error)

    def needs_timer(self, by: float) -> None:
        """The answer may come after the client gives up: set the client's own timeout (once)."""
        if self.timer is None and by > self.start + self.load.timeout:
            self.timer = self.load.scheduler.call_at(self.start + self.load.timeout, self._gave_up)

    def _gave_up(self) -> None:
        if not self.done:
            self.load._record(self, self.load.scheduler._now, None, None, 1, "timeout")


class OpenLoop:
    """Send requests into ``deliver`` at ``rate`` per second for ``duration`` seconds, from the time of :meth:`start`.

    ``records`` holds every record (or the last ``keep_last``); ``on_done()`` is called once the schedule is over
    and every request sent has its record.
    """

    def __init__(
        self,
        scheduler: SimScheduler,
        deliver: Callable[[ClientCall], None],
        publish: Callable[[Event], None] | None,
        *,
        rate: float,
        duration: float,
        method: str = "GET",
        path: str = "/",
        timeout: float = CLIENT_TIMEOUT,
        arrivals: str = "uniform",
        rng: random.Random | None = None,
        max_requests: int | None = None,
        keep_last: int | None = None,
        on_done: Callable[[], None] | None = None,
        retry: ClientRetry | None = None,
    ) -> None:
        for name, value in (("rate", rate), ("duration", duration), ("timeout", timeout)):
            positive(name, value)
        method = check_method(method)
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError(f"path must start with '/', got {path!r}")
        if arrivals not in ARRIVALS:
            raise ValueError(f"arrivals must be one of {', '.join(ARRIVALS)}, got {arrivals!r}")
        if max_requests is not None and (
            isinstance(max_requests, bool) or not isinstance(max_requests, int) or max_requests < 1
        ):
            raise ValueError(f"max_requests must be a whole number >= 1, got {max_requests!r}")
        if retry is not None and not callable(retry):
            raise ValueError(f"retry must be a function (record, tries) -> seconds or None, got {retry!r}")
        self.scheduler = scheduler
        self.deliver = deliver
        self.publish = publish
        self.rate = float(rate)
        self.duration = float(duration)
        self.method = method
        self.path = path
        self.request = RequestInfo(self.method, path)  # the same for every request of this load
        self.timeout = float(timeout)
        self.arrivals = arrivals
        self.rng = rng or random.Random(0)
        self.max_requests = max_requests
        self.keep_last = keep_last
        self.on_done = on_done
        self.retry = retry
        self.retries_sent = 0  # tries beyond the first, made by the clients themselves
        self.paused = False
        self.records: list[RequestRecord] = []
        self.recorded = 0
        self.sent = 0
        self.outstanding = 0
        self.finished = False
        self._t0 = 0.0
        self._end = 0.0
        self._next_due = 0.0
        # The uniform schedule is "request i is due at anchor_time + (i - anchor_index) / rate"; a pause or a new
        # rate moves the anchor, as in the live client.
        self._anchor_time = 0.0
        self._anchor_index = 0
        self._stopped = False
        self._timer: SimTimer | None = None
        self._last_sent: float | None = None  # when the last request went out

    def start(self) -> None:
        self._t0 = self._next_due = self._anchor_time = self.scheduler.now()
        self._end = self._t0 + self.duration
        self._timer = self.scheduler.call_at(self._t0, self._send)

    def set_rate(self, rate: float) -> None:
        """A new rate from the next request on (the TUI's slider, a SetLoad command).

        As in the live client, the next request comes one new gap after the last one sent (or now, if that has
        passed), not when the old rate had it due: from 0.001 to 50 a second, the next is not 1,000 s away.
        """
        positive("rate", rate)
        self.rate = float(rate)
        if self._stopped or self._timer is None:
            return  # over, or not started: nothing is due
        now = self.scheduler.now()
        due = now if self._last_sent is None else max(now, self._last_sent + 1 / self.rate)
        self._anchor_time, self._anchor_index = due, self.sent
        self._next_due = due
        self._timer.cancel()
        self._arm(due)

    def stop(self) -> None:
        """Send no more requests; those in flight still get their records."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._check_done()

    def _send(self) -> None:
        self._timer = None
        now = self.scheduler._now
        if not self.paused:
            self._last_sent = now
            call = ClientCall(self, self.sent, now)
            self.sent += 1
            self.outstanding += 1
            self.deliver(call)
        # Uniform: request i at anchor + i / rate exactly (no drift from adding 1/rate up); Poisson: random gaps.
        if self.paused:
            due = self._anchor_time = now + 1 / self.rate
            self._anchor_index = self.sent
        elif self.arrivals == "uniform":
            due = self._anchor_time + (self.sent - self._anchor_index) / self.rate
        else:
            due = quantized(self._next_due + self.rng.expovariate(self.rate))
        self._next_due = due
        if self._stopped or (self.max_requests is not None and self.sent >= self.max_requests):
            self._schedule_over()
        elif due >= self._end - _EPSILON:  # as _arm (written out here: once a request, a call less)
            self._timer = self.scheduler.call_at(self._end, self._schedule_over)
        else:
            self._timer = self.scheduler.call_at(due, self._send)

    def _arm(self, due: float) -> None:
        if due >= self._end - _EPSILON:
            # No request is due before the end; the schedule still lasts its duration (at a low rate the last
            # request may come long before it ends), as the live client's does. A new rate meanwhile re-arms it.
            self._timer = self.scheduler.call_at(self._end, self._schedule_over)
        else:
            self._timer = self.scheduler.call_at(due, self._send)

    def _schedule_over(self) -> None:
        self._timer = None
        self._stopped = True
        self._check_done()

    def _record(
        self, call: ClientCall, end: float, status: int | None, instance: str | None, attempts: int, error: str | None
    ) -> None:
        call.done = True
        if error is not None and self.retry is not None:
            this_try = _make_record(
                (call.id, self.method, self.path, call.start, end, status, instance, attempts, error)
            )
            if self._try_again(call, this_try):
                return  # still outstanding: its record comes with the last try
        attempts += call.earlier_attempts
        record = _make_record(
            (call.id, self.method, self.path, call.first_start, end, status, instance, attempts, error)
        )
        self.records.append(record)
        self.recorded += 1
        keep = self.keep_last
        if keep is not None and len(self.records) >= 2 * keep:
            del self.records[:-keep]
        if self.publish is not None:
            self.publish(ClientRequest(end, call.id, status, end - call.first_start, instance, attempts, error))
        self.outstanding -= 1
        if self._stopped:
            self._check_done()

    def _try_again(self, call: ClientCall, this_try: RequestRecord) -> bool:
        """Ask the client's retry rule about a failed try; if it says wait, send the request again then."""
        assert self.retry is not None
        if call.tries >= MAX_CLIENT_TRIES:
            return False  # the rule would retry for ever (all down, no wait): this try's failure is the record
        wait = self.retry(this_try, call.tries)
        if wait is None:
            return False
        if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not (math.isfinite(wait) and wait >= 0):
            raise ValueError(f"the client's retry rule must answer seconds >= 0 or None, got {wait!r}")
        again = ClientCall(self, call.id, this_try.end + quantized(wait), first=call)
        again.earlier_attempts = call.earlier_attempts + this_try.attempts
        self.retries_sent += 1
        self.scheduler.call_at(again.start, functools.partial(self.deliver, again))
        return True

    def _check_done(self) -> None:
        if self._stopped and self.outstanding == 0 and not self.finished:
            self.finished = True
            if self.on_done is not None:
                self.on_done()
