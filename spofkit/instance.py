"""Service instances: the thing that fails.

A service instance is a small, real HTTP server on 127.0.0.1. Any path answers ``200`` with a bit of JSON saying
who served it (``{"instance": "a", "path": "/", "served": 7, ...}`` and the header ``X-Served-By: a``);
``GET /health`` is its health check. On top of that you can inject a fault (:mod:`spofkit.faults`) and take it
away again with :meth:`~Instance.recover`. Every change is published on the event stream.

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
import contextlib
import json
import random
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web

from spofkit.events import (
    Event,
    EventBus,
    FaultCleared,
    FaultInjected,
    InstanceRestarted,
    InstanceStarted,
    InstanceStopped,
)
from spofkit.faults import Crash, Fault, Flap, Hang, Warmup, effect

HEALTH_PATH = "/health"
HOST = "127.0.0.1"
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
        events: EventBus | None = None,
        seed: int | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an integer 0..65535 (0 = pick a free one), got {port!r}")
        if isinstance(work_time, bool) or not isinstance(work_time, (int, float)) or work_time < 0:
            raise ValueError(f"work_time must be a number of seconds >= 0, got {work_time!r}")
        self.name = name
        self.host = HOST
        self.port = port
        self.work_time = float(work_time)
        self.events = events
        self.seed = seed
        self.fault: Fault | None = None
        self.served = 0
        self.errors = 0
        self.in_flight = 0
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

    def stats(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": self.url,
            "pid": self.pid,
            "fault": self.fault.kind if self.fault else None,
            "fault_params": self.fault.params() if self.fault else {},
            "served": self.served,
            "errors": self.errors,
            "in_flight": self.in_flight,
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


class ServiceInstance(Instance):
    """An aiohttp server inside this process. See the module docstring for what it answers."""

    def __init__(
        self,
        name: str,
        *,
        port: int = 0,
        work_time: float = 0.0,
        events: EventBus | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(name, port=port, work_time=work_time, events=events, seed=seed)
        self._rng = random.Random(seed)
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
        met = effect(self.fault, health_check=is_health, elapsed=elapsed, dice=self._rng)
        if met.hangs:
            # Accepted, never answered: wait until recover() releases us (a crash or stop cancels us).
            await self._hang_released.wait()
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
        if self.work_time > 0:
            await asyncio.sleep(self.work_time)  # the simulated service time
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
