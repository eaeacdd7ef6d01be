"""Service instances: the thing that fails.

A service instance is a small, real HTTP server on 127.0.0.1. Any path answers ``200`` with a bit of JSON saying
who served it (``{"instance": "a", "path": "/", "served": 7, ...}`` and the header ``X-Served-By: a``);
``GET /health`` is its health check. On top of that you can inject a fault (:mod:`spofkit.faults`) and take it
away again with :meth:`~Instance.recover`. Every change is published on the event stream.

How much it can do is its :class:`~spofkit.capacity.Capacity`, the simulator's own: at most ``concurrency``
requests are served at once (:class:`Workers`), at most ``queue`` more wait for a worker in order of arrival, and
one that finds no place is answered ``503`` at once (JSON, ``X-Served-By``), without work. Each request's work time
is drawn from :class:`~spofkit.capacity.ServiceTime` (fixed, lognormal or exponential), seeded per instance.
Health checks go through the same workers and queue but do no work, as in the simulator: an overloaded instance
answers its checks late, or with 503. The default is no limit and no work; ``work_time=`` is "fixed work, no
limit".

Two ways to run one, with the same API:

* :class:`ServiceInstance` runs inside this Python process (fast, the default, fine in a notebook). A crash
  closes its listening socket and cuts every open connection, which is what a client sees when a process dies.
* :class:`~spofkit.process_instance.ProcessInstance` runs the same server in its own OS process. A crash is
  then a real ``kill -9``, and a restart is a new process (a new pid) on the same port.

Counters (``served``, ``errors``) add up over the instance's whole life, restarts included. In process
isolation they live in the child: the parent fetches them every half second and just before it kills or stops
the child (if something else kills it, the last moments' counts are lost, as with any crashed process's
metrics). The ``served`` in an answer's JSON is counted by the server that answered, so in process isolation
it starts again from 0 in each new process: a new process remembers nothing.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import contextlib
import json
import math
import random
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web

from spofkit.capacity import MAX_WORK_MS, Capacity, ServiceTime
from spofkit.events import (
    Event,
    EventBus,
    FaultCleared,
    FaultInjected,
    InstanceRestarted,
    InstanceStarted,
    InstanceStopped,
)
from spofkit.faults import Crash, Effect, Fault, Flap, Hang, Warmup, effect

HEALTH_PATH = "/health"
HOST = "127.0.0.1"
SHED_STATUS = 503  # the answer of an instance whose workers and queue are all taken (as in the simulator)
_AnyInstance = TypeVar("_AnyInstance", bound="Instance")


class Instance(abc.ABC):
    """What the lab, the balancer and the views may rely on, however the instance runs.

    This class holds the rules that are the same in both isolations: which events a change publishes, that a
    fault replaces the previous one, that recovering a crashed instance starts it again on the same port, and
    that a warmup ends by itself. Subclasses supply five primitives: ``_boot`` (come up), ``_crash`` (die
    abruptly), ``_shutdown`` (stop), ``_apply`` (make a non-crash fault take effect) and ``_clear`` (undo it).
    """

    def __init__(
        self,
        name: str,
        *,
        port: int = 0,
        work_time: float = 0.0,
        capacity: Capacity | None = None,
        events: EventBus | None = None,
        seed: int | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an integer 0..65535 (0 = pick a free one), got {port!r}")
        longest = MAX_WORK_MS / 1000.0
        if (
            isinstance(work_time, bool)
            or not isinstance(work_time, (int, float))
            or not math.isfinite(work_time)
            or not 0 <= work_time <= longest
        ):
            raise ValueError(f"work_time must be a number of seconds 0..{longest:g}, got {work_time!r}")
        if capacity is not None and not isinstance(capacity, Capacity):
            raise TypeError(f"capacity must be a spofkit.capacity.Capacity, got {capacity!r}")
        if capacity is not None and work_time:
            raise ValueError("give work_time (fixed work, no limit) or capacity (its work_ms), not both")
        self.name = name
        self.host = HOST
        self.port = port
        self.capacity = capacity if capacity is not None else Capacity.fixed_work(work_time)
        self.work_time = self.capacity.work_ms / 1000.0  # the mean
        self.events = events
        self.seed = seed
        self.fault: Fault | None = None
        self.served = 0
        self.errors = 0  # every failed answer, shed ones included
        self.shed = 0  # answered 503 at once: no worker free, no place in the queue
        self.in_flight = 0  # requests and checks at the instance: being served, hung or waiting for a worker
        self._started = False
        self._lock = asyncio.Lock()  # one lifecycle change at a time
        self._warmup_end: asyncio.TimerHandle | None = None  # a warmup ends by itself, on this timer

    # --- what views read ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The OS process serving, or None when it runs inside this process (or is not running)."""
        return None

    @property
    @abc.abstractmethod
    def running(self) -> bool:
        """True while the instance accepts connections."""

    @property
    def busy(self) -> int:
        """Workers taken right now (a hung request keeps its worker)."""
        return 0

    @property
    def queued(self) -> int:
        """Requests (and health checks) waiting for a worker."""
        return 0

    def stats(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": self.url,
            "pid": self.pid,
            "fault": self.fault.kind if self.fault else None,
            "fault_params": self.fault.params() if self.fault else {},
            "served": self.served,
            "errors": self.errors,
            "shed": self.shed,
            "in_flight": self.in_flight,
            "busy": self.busy,
            "queued": self.queued,
            "running": self.running,
        }

    async def refresh_stats(self) -> dict[str, Any]:
        """``stats()``, first asking the server for fresh counters where they live elsewhere."""
        return self.stats()

    # --- lifecycle and faults ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start serving (a second call does nothing). With ``port=0`` the port is picked now and kept."""
        async with self._lock:
            if self._started:
                return
            await self._boot()
            self._started = True
            self._publish(InstanceStarted(self._now(), self.name, self.url, self.pid))

    async def stop(self) -> None:
        """Stop serving and release everything (open connections are closed). Safe to call twice."""
        async with self._lock:
            if not self._started:
                return
            self._started = False
            self._cancel_warmup_end()
            await self._shutdown()
            self.fault = None
            self._publish(InstanceStopped(self._now(), self.name))

    async def inject(self, fault: Fault) -> None:
        """Make ``fault`` happen now, replacing any fault already active."""
        if not isinstance(fault, Fault):
            raise TypeError(f"fault must be a spofkit.faults.Fault, got {fault!r}")
        async with self._lock:
            self._require_started()
            await self._inject_locked(fault)

    async def recover(self, warmup: Warmup | None = None) -> None:
        """Undo the active fault; a crashed instance comes back on its port. ``warmup``: start slow."""
        async with self._lock:
            self._require_started()
            self._cancel_warmup_end()
            previous = self.fault
            came_back = not self._alive()
            if came_back:
                await self._boot()
            elif previous is not None:
                await self._clear()
            self.fault = None
            self._announce_change(previous, came_back)
            if warmup is not None:
                await self._inject_locked(warmup)

    async def restart(self, warmup: Warmup | None = None) -> None:
        """Crash, then start again on the same port, with no fault. ``warmup``: start slow."""
        async with self._lock:
            self._cancel_warmup_end()
            previous = self.fault
            if self._alive():
                await self._crash()
            await self._boot()
            self._started = True
            self.fault = None
            self._announce_change(previous, came_back=True)
            if warmup is not None:
                await self._inject_locked(warmup)

    async def _inject_locked(self, fault: Fault) -> None:
        # The fault's time is when it was set off, not when killing (and reaping) a process was over: a balancer
        # that notices within milliseconds must not seem to have noticed before the fault.
        struck_at = self._now()
        self._cancel_warmup_end()
        previous = self.fault
        came_back = False
        if isinstance(fault, Crash):
            if self._alive():
                await self._crash()
        else:
            came_back = not self._alive()
            if came_back:
                await self._boot()
            await self._apply(fault)
        self.fault = fault
        self._announce_change(previous, came_back)
        self._publish(FaultInjected(struck_at, self.name, fault.kind, fault.params()))
        if isinstance(fault, Warmup):
            self._warmup_end = asyncio.get_running_loop().call_later(fault.seconds, self._end_warmup, fault)

    def _end_warmup(self, warmup: Warmup) -> None:
        # A warmup is over once its extra latency has decayed to zero: nothing is wrong any more.
        self._warmup_end = None
        if self.fault is warmup:
            self.fault = None
            self._publish(FaultCleared(self._now(), self.name, warmup.kind))

    def _cancel_warmup_end(self) -> None:
        if self._warmup_end is not None:
            self._warmup_end.cancel()
            self._warmup_end = None

    def _announce_change(self, previous: Fault | None, came_back: bool) -> None:
        if previous is not None:
            self._publish(FaultCleared(self._now(), self.name, previous.kind))
        if came_back:
            self._publish(InstanceRestarted(self._now(), self.name, self.pid))

    def _require_started(self) -> None:
        if not self._started:
            raise RuntimeError(f"instance {self.name!r} is not started; call start() first")

    def _now(self) -> float:
        return self.events.now() if self.events is not None else 0.0

    def _publish(self, event: Event) -> None:
        if self.events is not None:
            self.events.publish(event)

    async def __aenter__(self: _AnyInstance) -> _AnyInstance:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- primitives each isolation supplies ----------------------------------------------------------

    @abc.abstractmethod
    def _alive(self) -> bool:
        """The server exists (it may still refuse connections, e.g. in the down half of a flap)."""

    @abc.abstractmethod
    async def _boot(self) -> None: ...

    @abc.abstractmethod
    async def _crash(self) -> None: ...

    @abc.abstractmethod
    async def _shutdown(self) -> None: ...

    @abc.abstractmethod
    async def _apply(self, fault: Fault) -> None: ...

    @abc.abstractmethod
    async def _clear(self) -> None: ...


class Workers:
    """An instance's workers and its waiting room: at most ``concurrency`` requests served at once, at most
    ``queue`` more waiting for a worker, in order of arrival. ``concurrency=None``: no limit, nobody waits.

    Unlike ``asyncio.Semaphore`` it says *before* a request waits whether there is room for it (if not, the answer
    is 503 at once), and a worker set free goes straight to the request that has waited longest, never to one
    that happens to arrive at that moment.
    """

    def __init__(self, concurrency: int | None, queue: int) -> None:
        self.concurrency = concurrency
        self.queue = queue
        self.busy = 0
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def queued(self) -> int:
        return len(self._waiting)

    def full(self) -> bool:
        """Every worker busy and every place in the queue taken: a request arriving now is shed."""
        return self.concurrency is not None and self.busy >= self.concurrency and len(self._waiting) >= self.queue

    async def take(self) -> None:
        """A worker: at once if one is free, else once the requests ahead in the queue have had theirs.

        Ask :meth:`full` first: ``take`` itself queues whoever calls it. Every ``take`` needs its
        :meth:`give_back`, also when the request fails.
        """
        if self.concurrency is None or self.busy < self.concurrency:
            self.busy += 1
            return
        turn = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        try:
            await turn  # give_back() hands its worker over by completing this future
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.give_back()  # handed a worker just as we were cancelled (a crash): pass it on
            elif turn in self._waiting:
                self._waiting.remove(turn)
            raise

    def give_back(self) -> None:
        """A request is done with its worker: it goes to the request that has waited longest, or is free."""
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():  # (a waiting request that was cancelled may not have left the queue yet)
                turn.set_result(None)
                return
        self.busy -= 1


class ServiceInstance(Instance):
    """An aiohttp server inside this process. See the module docstring for what it answers."""

    def __init__(
        self,
        name: str,
        *,
        port: int = 0,
        work_time: float = 0.0,
        capacity: Capacity | None = None,
        events: EventBus | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(name, port=port, work_time=work_time, capacity=capacity, events=events, seed=seed)
        self._rng = random.Random(seed)  # the faults' dice (error rates, slow's jitter)
        # Work times from a stream of their own, so that adding work does not change which requests a fault hits.
        self.service_time = ServiceTime(self.capacity, random.Random(None if seed is None else f"{seed}/work"))
        self._workers = Workers(self.capacity.concurrency, self.capacity.queue)
        self._http: web.Server | None = None  # aiohttp's HTTP protocol: one handler per connection
        self._listener: asyncio.Server | None = None  # the listening socket
        self._booted = False
        self._fault_began = 0.0  # loop time the current fault was applied (for warmup's decay)
        self._hang_released = asyncio.Event()
        self._flap_timer: asyncio.TimerHandle | None = None  # the next flip of a flap
        self._flap_flip: asyncio.Task[None] | None = None  # a flip in progress (closing or opening the socket)
        self._handlers: set[asyncio.Task[Any]] = set()  # requests being answered right now

    @property
    def running(self) -> bool:
        return self._listener is not None

    @property
    def busy(self) -> int:
        return self._workers.busy

    @property
    def queued(self) -> int:
        return self._workers.queued

    # --- answering requests ---------------------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        # A client hanging up does not stop the work (as in most real servers), so hung requests pile up
        # until recover(); a crash or stop cancels whatever is still running.
        handler = asyncio.current_task()
        assert handler is not None  # aiohttp answers each request in a task of its own
        self._handlers.add(handler)
        self.in_flight += 1
        try:
            return await self._respond(request)
        finally:
            self.in_flight -= 1
            self._handlers.discard(handler)

    async def _respond(self, request: web.BaseRequest) -> web.StreamResponse:
        is_health = request.path == HEALTH_PATH
        elapsed = asyncio.get_running_loop().time() - self._fault_began
        # Drawn on arrival, as in the simulator: a request that waits for a worker meets the fault it arrived under
        # (and the hang it arrived under, even if that one is over and another has begun by the time it is served).
        met = effect(self.fault, health_check=is_health, elapsed=elapsed, dice=self._rng)
        hang_over = self._hang_released
        workers = self._workers  # a crash replaces them: a request gives its worker back to the ones it took
        if workers.full():
            # Shedding load: answered at once, without work, so the queue cannot grow without end.
            self.errors += 1
            self.shed += 1
            busy = {"error": "overloaded: every worker is busy and the queue is full", "instance": self.name}
            return self._json(busy, SHED_STATUS)
        await workers.take()  # health checks too: they wait in the same queue, as in the simulator
        try:
            return await self._serve(request, met, hang_over, is_health)
        finally:
            workers.give_back()

    async def _serve(
        self, request: web.BaseRequest, met: Effect, hang_over: asyncio.Event, is_health: bool
    ) -> web.StreamResponse:
        """With a worker: carry out the fault's effect, then do the work (requests only) and answer."""
        if met.hangs:
            # Accepted, never answered: the worker is stuck until recover() releases us (a crash or stop cancels us).
            await hang_over.wait()
        if met.delay > 0:
            await asyncio.sleep(met.delay)
        if met.status is not None:
            # Failing fast, without doing the work, is what makes a broken instance look attractive
            # to "least connections" balancing.
            self.errors += 1
            fault = self.fault.kind if self.fault else "fault"
            return self._json({"error": f"injected fault: {fault}", "instance": self.name}, met.status)
        if is_health:
            return self._json({"status": "ok", "instance": self.name})
        body = await request.read()
        work = self.service_time.draw()
        if work > 0:
            await asyncio.sleep(work)  # the work itself: the worker is taken meanwhile
        answer: dict[str, Any] = {
            "instance": self.name,
            "method": request.method,
            "path": request.path,
            "body_bytes": len(body),
            "served": self.served + 1,
        }
        if met.cut_off:
            self.errors += 1
            return await self._cut_off(request, answer)
        self.served += 1
        return self._json(answer)

    def _json(self, answer: dict[str, Any], status: int = 200) -> web.Response:
        return web.json_response(answer, status=status, headers={"X-Served-By": self.name})

    async def _cut_off(self, request: web.BaseRequest, answer: dict[str, Any]) -> web.StreamResponse:
        """Promise a full body (Content-Length), send half of it, then drop the connection."""
        payload = json.dumps(answer).encode()
        response = web.StreamResponse(headers={"X-Served-By": self.name})
        response.content_type = "application/json"
        response.content_length = len(payload)
        await response.prepare(request)
        await response.write(payload[: len(payload) // 2])
        if request.transport is not None:
            request.transport.abort()
        return response

    # --- the listening socket -----------------------------------------------------------------------

    async def _listen(self) -> None:
        http = web.Server(self._handle, access_log=None)
        loop = asyncio.get_running_loop()
        # reuse_address: a restart may bind the port again while old connections sit in TIME_WAIT.
        listener = await loop.create_server(http, self.host, self.port, reuse_address=True)
        self.port = listener.sockets[0].getsockname()[1]  # with port=0: keep the one we got
        self._http, self._listener = http, listener

    async def _close(self) -> None:
        """Die the way a killed process does: refuse new connections and cut every open one."""
        http, listener = self._http, self._listener
        self._http = self._listener = None
        if http is None or listener is None:
            return
        # A dead process's workers and queue die with it: the next one starts with all its workers free.
        self._workers = Workers(self.capacity.concurrency, self.capacity.queue)
        listener.close()  # new connects are now refused
        for connection in http.connections:  # idle keep-alive ones too
            if connection.transport is not None:
                connection.transport.abort()
        for handler in list(self._handlers):  # and the work in progress dies with the process
            handler.cancel()
        await http.shutdown(timeout=1.0)
        await listener.wait_closed()

    # --- primitives -------------------------------------------------------------------------------

    def _alive(self) -> bool:
        return self._booted

    async def _boot(self) -> None:
        await self._listen()
        self._booted = True

    async def _crash(self) -> None:
        # Stop the fault's machinery first (a flap could open the socket again); hung requests are not
        # released to be answered: _close cancels them, as a dying process would.
        await self._end_fault_effects(release_hung=False)
        await self._close()
        self._booted = False

    async def _shutdown(self) -> None:
        await self._crash()

    async def _apply(self, fault: Fault) -> None:
        await self._end_fault_effects()
        self._fault_began = asyncio.get_running_loop().time()
        if isinstance(fault, Flap):
            self._flip(fault, 0)
            return
        if self._listener is None:
            await self._listen()
        if isinstance(fault, Hang):
            self._hang_released = asyncio.Event()

    async def _clear(self) -> None:
        await self._end_fault_effects()
        if self._listener is None:
            await self._listen()

    async def _end_fault_effects(self, release_hung: bool = True) -> None:
        if release_hung:
            self._hang_released.set()  # hung requests go on and are answered
        if self._flap_timer is not None:
            self._flap_timer.cancel()
            self._flap_timer = None
        flip, self._flap_flip = self._flap_flip, None
        if flip is not None:
            await flip

    def _flip(self, flap: Flap, phase: int) -> None:
        """Phase 0, 2, 4… of a flap is down, 1, 3… up; each lasts ``period`` and the next is on a timer."""
        down = phase % 2 == 0
        previous = self._flap_flip

        async def flip() -> None:
            if previous is not None:
                await previous  # flips happen in order, even if one is slow
            if down:
                await self._close()
            else:
                with contextlib.suppress(OSError):  # the port was taken meanwhile: stay down this round
                    await self._listen()

        self._flap_flip = asyncio.create_task(flip())
        # Count phases rather than read the clock at each flip: a timer that fires a hair early cannot repeat one.
        when = self._fault_began + (phase + 1) * flap.period
        self._flap_timer = asyncio.get_running_loop().call_at(when, self._flip, flap, phase + 1)
