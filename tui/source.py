"""Where the TUI's picture comes from: a lab in this process, a lab in another one, or a frozen scene.

The dashboard is a *view*. It never balances, never probes: it subscribes to a lab's event stream, reads its
status snapshots and presses its buttons. This module puts those three things behind one small interface,
:class:`DataSource`, so the same screen can show

- :class:`LabSource` — a :class:`~spofkit.lab.Lab` started right here (the default: ``spofkit tui``);
- :class:`RemoteSource` — a lab run by ``spofkit serve`` elsewhere, through its admin API
  (``spofkit tui --connect http://127.0.0.1:8081``): ``GET /status``, the ``GET /events`` stream, and the
  ``POST``/``PUT``/``DELETE`` control endpoints;
- :class:`FrozenSource` — a fixed status and fixed events at a frozen time, for tests and screenshots.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import dataclasses
import inspect
import json
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

import aiohttp
from yarl import URL

from spofkit.admin import find_token
from spofkit.events import Event
from spofkit.lab import InstanceStatus, Lab, LabStatus
from spofkit.loadgen import is_loopback_host

T = TypeVar("T")
Subscriber = Callable[[Event], None]
Unsubscribe = Callable[[], None]

DEFAULT_LOAD_RATE = 30.0


class ControlError(Exception):
    """A control was refused (unknown instance, bad value, server unreachable); the message says why."""


class DataSource(abc.ABC):
    """What the dashboard needs from a lab: events, status, controls. All times are lab seconds."""

    #: One line saying what is being watched, for the status bar.
    description: str = ""

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect or start the lab. Raises with a clear message if that is impossible."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Let go of everything started by :meth:`start`. Safe to call twice."""

    @abc.abstractmethod
    def subscribe(self, subscriber: Subscriber) -> Unsubscribe:
        """Call ``subscriber(event)`` for every future event; it must be quick (it may run inside the lab)."""

    @abc.abstractmethod
    def now(self) -> float:
        """The lab's clock."""

    @abc.abstractmethod
    def status(self) -> LabStatus | None:
        """The latest status snapshot, or None before the first one arrived."""

    # --- controls ----------------------------------------------------------------------------------------

    @abc.abstractmethod
    async def inject(self, name: str, kind: str, **params: Any) -> None: ...

    @abc.abstractmethod
    async def recover(self, name: str) -> None: ...

    @abc.abstractmethod
    async def restart(self, name: str) -> None: ...

    @abc.abstractmethod
    async def add_instance(self) -> str: ...

    @abc.abstractmethod
    async def remove_instance(self, name: str) -> None: ...

    @abc.abstractmethod
    async def set_strategy(self, strategy: str) -> None: ...

    @abc.abstractmethod
    async def set_retries(self, enabled: bool) -> None: ...

    @abc.abstractmethod
    async def set_health_checks(self, enabled: bool) -> None: ...

    @abc.abstractmethod
    async def set_ejection(self, enabled: bool) -> None: ...

    @abc.abstractmethod
    async def set_load_rate(self, rate: float) -> None: ...

    @abc.abstractmethod
    async def set_load_paused(self, paused: bool) -> None: ...


# --- a lab in this process ---------------------------------------------------------------------------------


class LabSource(DataSource):
    """Start a :class:`Lab` here (``lab_options`` go to :meth:`Lab.start`) with a steady background load.

    The lab runs on a thread of its own, with its own asyncio loop. Both would fit in one loop, but at a
    thousand requests a second the lab keeps that loop so busy that the screen, which needs several turns of
    the loop per frame, drops to a few frames a second. On its own loop the screen gets its turns, and a
    slow frame cannot delay a request either. The two threads only share: events (the lab calls our
    subscriber, which appends to a deque), status snapshots (taken in the lab thread every
    ``status_interval`` s and after each control) and control calls (run in the lab's loop).
    ``threaded=False`` keeps everything in the caller's loop.
    """

    def __init__(
        self,
        rate: float = DEFAULT_LOAD_RATE,
        *,
        threaded: bool = True,
        status_interval: float = 0.1,
        **lab_options: Any,
    ) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0 requests/s, got {rate!r}")
        self.rate = rate
        self.threaded = threaded
        self.status_interval = status_interval
        self.lab_options = lab_options
        self.lab: Lab | None = None
        self.description = "in-process lab"
        self._status: LabStatus | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # --- the lab's thread ----------------------------------------------------------------------------

    async def _in_lab(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` in the lab's loop and wait for it from ours."""
        if self._loop is None:
            return await work
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self._loop))

    async def start(self) -> None:
        if self.threaded:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name="spofkit-lab", daemon=True)
            self._thread.start()
        self.lab = await self._in_lab(self._start_lab())
        self.description = f"lab here ({self.lab.isolation}) · balancer {self.lab.balancer_url}"

    async def _start_lab(self) -> Lab:
        lab = await Lab.start(**self.lab_options)
        lab.start_background_load(self.rate)
        self._status = lab.status()
        asyncio.create_task(self._take_snapshots(lab), name="tui-status")  # noqa: RUF006 - cancelled in stop()
        return lab

    async def _take_snapshots(self, lab: Lab) -> None:
        while True:
            await asyncio.sleep(self.status_interval)
            self._status = lab.status()

    async def stop(self) -> None:
        lab, self.lab = self.lab, None
        loop, self._loop = self._loop, None
        if loop is None:
            if lab is not None:
                await lab.stop()
            return
        # Stop the lab, then every task left in its loop (as asyncio.run does), then the loop and its thread.
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(_stop_all(lab), loop))
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 30)
            self._thread = None
        loop.close()

    def _lab(self) -> Lab:
        if self.lab is None:
            raise ControlError("the lab is not running")
        return self.lab

    async def _control(self, work: Callable[[Lab], Any]) -> Any:
        """Run one control in the lab's loop, then take a fresh snapshot so the screen shows its effect."""
        lab = self._lab()

        async def run() -> Any:
            result = work(lab)  # a lab method: some are coroutines, some plain functions
            if inspect.isawaitable(result):
                result = await result
            self._status = lab.status()
            return result

        return await self._in_lab(run())

    # --- reading -------------------------------------------------------------------------------------

    def subscribe(self, subscriber: Subscriber) -> Unsubscribe:
        return self._lab().events.subscribe(subscriber)

    def now(self) -> float:
        return self.lab.now() if self.lab else 0.0

    def status(self) -> LabStatus | None:
        return self._status if self.lab else None

    # --- controls ------------------------------------------------------------------------------------

    async def inject(self, name: str, kind: str, **params: Any) -> None:
        await self._control(lambda lab: lab.inject(name, kind, **params))

    async def recover(self, name: str) -> None:
        await self._control(lambda lab: lab.recover(name))

    async def restart(self, name: str) -> None:
        await self._control(lambda lab: lab.restart(name))

    async def add_instance(self) -> str:
        return str(await self._control(lambda lab: lab.add_instance()))

    async def remove_instance(self, name: str) -> None:
        await self._control(lambda lab: lab.remove_instance(name))

    async def set_strategy(self, strategy: str) -> None:
        await self._control(lambda lab: lab.set_strategy(strategy))

    async def set_retries(self, enabled: bool) -> None:
        await self._control(lambda lab: lab.set_retries(enabled))

    async def set_health_checks(self, enabled: bool) -> None:
        await self._control(lambda lab: lab.set_health_checks(enabled))

    async def set_ejection(self, enabled: bool) -> None:
        await self._control(lambda lab: lab.set_ejection(enabled))

    async def set_load_rate(self, rate: float) -> None:
        await self._control(lambda lab: lab.set_load_rate(rate))

    async def set_load_paused(self, paused: bool) -> None:
        await self._control(lambda lab: lab.pause_load() if paused else lab.resume_load())


async def _stop_all(lab: Lab | None) -> None:
    """Stop ``lab``, then cancel and await whatever else still runs in this loop (e.g. a lab half started)."""
    if lab is not None:
        await lab.stop()
    current = asyncio.current_task()
    others = [task for task in asyncio.all_tasks() if task is not current]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)


# --- a lab in another process, through its admin API -------------------------------------------------------


def status_from_dict(data: dict[str, Any]) -> LabStatus:
    """Rebuild a :class:`LabStatus` from ``GET /status`` JSON (fields the view does not know are ignored)."""
    instance_fields = {f.name for f in dataclasses.fields(InstanceStatus)}
    rows = [
        InstanceStatus(**{k: v for k, v in row.items() if k in instance_fields}) for row in data.get("instances", [])
    ]
    status_fields = {f.name for f in dataclasses.fields(LabStatus)} - {"instances"}
    return LabStatus(**{k: v for k, v in data.items() if k in status_fields}, instances=rows)


def _event_classes() -> dict[str, type[Event]]:
    return {cls.__name__: cls for cls in Event.__subclasses__()}


EVENT_CLASSES = _event_classes()


def event_from_dict(data: dict[str, Any]) -> Event | None:
    """Rebuild an event from the admin stream's ``{"kind": ..., "at": ..., **fields}``; None if unknown."""
    cls = EVENT_CLASSES.get(str(data.get("kind")))
    if cls is None:
        return None
    names = {f.name for f in dataclasses.fields(cls)}
    try:
        return cls(**{k: v for k, v in data.items() if k in names})
    except TypeError:  # a field is missing: a newer or older server; skip rather than guess
        return None


class RemoteSource(DataSource):
    """Watch and drive a lab served by ``spofkit serve`` at ``url`` (its admin API, loopback only)."""

    def __init__(
        self,
        url: str,
        *,
        status_interval: float = 0.25,
        start_load: float | None = DEFAULT_LOAD_RATE,
        token: str | None = None,
    ) -> None:
        parsed = URL(url)
        if parsed.scheme != "http" or not parsed.host or not is_loopback_host(parsed.host):
            raise ValueError(f"connect url must be http:// on 127.0.0.1 or localhost, got {url!r}")
        self.url = str(parsed).rstrip("/")
        # Changing calls need the admin token: given, or SPOFKIT_ADMIN_TOKEN, or the file `spofkit serve` wrote.
        self.token = token or find_token(parsed.port)
        self.status_interval = status_interval
        self.start_load = start_load
        self.description = f"attached to {self.url}"
        self._session: aiohttp.ClientSession | None = None
        self._status: LabStatus | None = None
        self._status_received = 0.0
        self._subscribers: list[Subscriber] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._started_load = False

    async def start(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=3), headers=headers
        )
        try:
            await self._poll_status_once()
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as error:
            await self.stop()
            raise ControlError(f"cannot reach a spofkit admin API at {self.url}: {error}") from error
        status = self._status
        # Nothing flows without load: start some on the server if it has none (and stop it on exit).
        if status is not None and status.load_rate is None and self.start_load:
            with contextlib.suppress(ControlError, aiohttp.ClientError, asyncio.TimeoutError):
                await self._call("PUT", "/load", {"rate": self.start_load})
                self._started_load = True
        self._tasks = [
            asyncio.create_task(self._poll_status(), name="tui-status"),
            asyncio.create_task(self._read_events(), name="tui-events"),
        ]

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._started_load and self._session is not None:
            with contextlib.suppress(Exception):
                await self._call("PUT", "/load", {"rate": 0})
            self._started_load = False
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def subscribe(self, subscriber: Subscriber) -> Unsubscribe:
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

        return unsubscribe

    def now(self) -> float:
        # The server's lab clock, carried forward from the last snapshot by our own monotonic clock.
        if self._status is None:
            return 0.0
        return self._status.at + (time.monotonic() - self._status_received)

    def status(self) -> LabStatus | None:
        return self._status

    # --- reading -----------------------------------------------------------------------------------------

    async def _poll_status_once(self) -> None:
        data = await self._call("GET", "/status")
        self._status = status_from_dict(data)
        self._status_received = time.monotonic()

    async def _poll_status(self) -> None:
        while True:
            with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError, ControlError):
                await self._poll_status_once()
            await asyncio.sleep(self.status_interval)

    async def _read_events(self) -> None:
        """Follow ``GET /events?all=1`` (server-sent events), reconnecting if the stream breaks."""
        assert self._session is not None
        while True:
            try:
                async with self._session.get(f"{self.url}/events", params={"all": "1"}) as response:
                    async for raw in response.content:
                        line = raw.decode("utf-8", "replace").rstrip("\r\n")
                        if line.startswith("data:"):
                            self._deliver(line[5:].strip())
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
                pass
            await asyncio.sleep(0.5)

    def _deliver(self, payload: str) -> None:
        try:
            data = json.loads(payload)
        except ValueError:
            return
        event = event_from_dict(data) if isinstance(data, dict) else None
        if event is None:
            return
        for subscriber in list(self._subscribers):
            with contextlib.suppress(Exception):
                subscriber(event)

    # --- controls ----------------------------------------------------------------------------------------

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        if self._session is None:
            raise ControlError("not connected")
        async with self._session.request(
            method, f"{self.url}{path}", json=body, timeout=aiohttp.ClientTimeout(total=15)
        ) as response:
            try:
                data = await response.json(content_type=None)
            except ValueError:
                data = {}
            if response.status >= 400:
                message = data.get("error") if isinstance(data, dict) else None
                raise ControlError(message or f"{method} {path}: HTTP {response.status}")
        if method != "GET":  # a control: fetch the status now, so the screen (and the next toggle) sees it
            await self._poll_status_once()
        return data

    async def inject(self, name: str, kind: str, **params: Any) -> None:
        await self._call("POST", f"/instances/{name}/fault", {"kind": kind, **params})

    async def recover(self, name: str) -> None:
        await self._call("POST", f"/instances/{name}/recover")

    async def restart(self, name: str) -> None:
        await self._call("POST", f"/instances/{name}/restart")

    async def add_instance(self) -> str:
        data = await self._call("POST", "/instances", {})
        return str(data.get("name", "?"))

    async def remove_instance(self, name: str) -> None:
        await self._call("DELETE", f"/instances/{name}")

    async def set_strategy(self, strategy: str) -> None:
        await self._call("PUT", "/strategy", {"strategy": strategy})

    async def set_retries(self, enabled: bool) -> None:
        await self._call("PUT", "/settings", {"retries": enabled})

    async def set_health_checks(self, enabled: bool) -> None:
        await self._call("PUT", "/settings", {"health_checks": enabled})

    async def set_ejection(self, enabled: bool) -> None:
        await self._call("PUT", "/settings", {"ejection": enabled})

    async def set_load_rate(self, rate: float) -> None:
        await self._call("PUT", "/load", {"rate": rate})

    async def set_load_paused(self, paused: bool) -> None:
        await self._call("PUT", "/load", {"paused": paused})


# --- a frozen scene ----------------------------------------------------------------------------------------


class FrozenSource(DataSource):
    """A fixed status and a fixed list of events at a frozen lab time: the same picture on every run.

    Controls do not change anything; they are recorded in ``calls`` (so a test can check which control a key
    pressed).
    """

    def __init__(self, status: LabStatus, events: Sequence[Event] = (), now: float | None = None) -> None:
        self._status = status
        self._events = list(events)
        self._now = status.at if now is None else now
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.description = "frozen scene"

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def subscribe(self, subscriber: Subscriber) -> Unsubscribe:
        for event in self._events:  # a late joiner gets the whole scene at once
            subscriber(event)
        return lambda: None

    def now(self) -> float:
        return self._now

    def status(self) -> LabStatus | None:
        return self._status

    def move_to(self, now: float, status: LabStatus | None = None) -> None:
        """Move the frozen clock to ``now`` and, if given, show ``status`` instead: a scene a test can step
        through (no events are added; the lab "went quiet")."""
        self._now = now
        if status is not None:
            self._status = status

    def _record(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))

    async def inject(self, name: str, kind: str, **params: Any) -> None:
        self._record("inject", name, kind, params)

    async def recover(self, name: str) -> None:
        self._record("recover", name)

    async def restart(self, name: str) -> None:
        self._record("restart", name)

    async def add_instance(self) -> str:
        self._record("add_instance")
        return "?"

    async def remove_instance(self, name: str) -> None:
        self._record("remove_instance", name)

    async def set_strategy(self, strategy: str) -> None:
        self._record("set_strategy", strategy)

    async def set_retries(self, enabled: bool) -> None:
        self._record("set_retries", enabled)

    async def set_health_checks(self, enabled: bool) -> None:
        self._record("set_health_checks", enabled)

    async def set_ejection(self, enabled: bool) -> None:
        self._record("set_ejection", enabled)

    async def set_load_rate(self, rate: float) -> None:
        self._record("set_load_rate", rate)

    async def set_load_paused(self, paused: bool) -> None:
        self._record("set_load_paused", paused)
