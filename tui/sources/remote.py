"""A lab run by ``spofkit serve`` elsewhere, watched and driven through its admin API (loopback only).

``spofkit tui --connect http://127.0.0.1:8081`` uses three things the admin API offers:

- ``GET /status``, polled every ``status_interval`` s, decoded by :func:`spofkit.wire.status_from_dict`;
- ``GET /events?all=1``, a server-sent event stream, each ``data:`` line decoded by
  :func:`spofkit.wire.event_from_dict`;
- ``POST /commands`` with :func:`spofkit.wire.command_to_dict`: every key's command, spelled as the wire spells
  it. (The REST routes, ``PUT /load`` and the like, would carry the same commands; the one route means one
  encoder here and one decoder there, both in :mod:`spofkit.wire` and round-trip tested, and a new command needs
  no new code in the dashboard.)

A refusal comes back as JSON, ``{"error": "...", "field": "..."}`` with a 4xx status; it is raised here as the
:class:`~spofkit.commands.CommandError` the lab raised there, so the screen shows the same message either way.
Changing calls carry the admin token (``Authorization: Bearer TOKEN``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import aiohttp
from yarl import URL

from spofkit import wire
from spofkit.admin import find_token
from spofkit.commands import Command, CommandError, SetLoad
from spofkit.loadgen import is_loopback_host
from spofkit.status import LabStatus
from tui.sources.base import DEFAULT_LOAD_RATE, ControlError, DataSource, Subscriber, Unsubscribe

# Transport troubles: the lab could not be asked (as opposed to a lab that answered no).
UNREACHABLE = (aiohttp.ClientError, OSError, asyncio.TimeoutError)


class RemoteSource(DataSource):
    """Watch and drive the lab whose admin API is at ``url``.

    ``token`` is the admin token (default: ``SPOFKIT_ADMIN_TOKEN``, or the file ``spofkit serve`` wrote). If the
    lab has no load, ``start_load`` requests/s are started on attaching and stopped on leaving (None: none).
    """

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
        self.token = token or find_token(parsed.port)
        self.status_interval = status_interval
        # The load to start on attaching, as a command: a bad rate is refused here, now.
        self.initial_load = SetLoad(rate=start_load) if start_load else None
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
        except UNREACHABLE as error:
            await self.stop()
            raise ControlError(f"cannot reach a spofkit admin API at {self.url}: {error}") from error
        except (wire.WireError, CommandError, ControlError) as error:
            await self.stop()
            raise ControlError(f"{self.url} did not answer as a spofkit admin API: {error}") from error
        status = self._status
        # Nothing flows without load: start some on the server if it has none (and stop it on leaving).
        if status is not None and status.load_rate is None and self.initial_load is not None:
            with contextlib.suppress(CommandError, ControlError, *UNREACHABLE):
                await self.apply(self.initial_load)
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
                await self.apply(SetLoad(rate=0))
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
        data = await self._request("GET", "/status")
        self._status = wire.status_from_dict(data)
        self._status_received = time.monotonic()

    async def _poll_status(self) -> None:
        while True:
            with contextlib.suppress(wire.WireError, CommandError, ControlError, *UNREACHABLE):
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
            except UNREACHABLE:
                pass
            await asyncio.sleep(0.5)

    def _deliver(self, payload: str) -> None:
        try:
            data = json.loads(payload)
            event = wire.event_from_dict(data) if isinstance(data, dict) else None
        except (ValueError, wire.WireError):  # not JSON, or an event missing a field: skip it, do not guess
            return
        if event is None:  # a kind this version does not know
            return
        for subscriber in list(self._subscribers):
            with contextlib.suppress(Exception):
                subscriber(event)

    # --- commands ----------------------------------------------------------------------------------------

    async def apply(self, command: Command) -> dict[str, Any]:
        """``POST /commands`` with the command as :mod:`spofkit.wire` spells it; then a fresh status."""
        answer = await self._request("POST", "/commands", wire.command_to_dict(command))
        # Fetch the status now, so the screen (and the next toggle) sees the change; if that fails, the
        # command still happened and the next poll catches up.
        with contextlib.suppress(wire.WireError, CommandError, ControlError, *UNREACHABLE):
            await self._poll_status_once()
        return answer if isinstance(answer, dict) else {}

    async def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One call to the admin API; its JSON answer. A JSON error answer is raised as a CommandError."""
        if self._session is None:
            raise ControlError("not connected")
        async with self._session.request(
            method, f"{self.url}{path}", json=body, timeout=aiohttp.ClientTimeout(total=15)
        ) as response:
            try:
                data = await response.json(content_type=None)
            except ValueError:
                data = None
            if response.status < 400:
                return data
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            raise CommandError(str(data.get("field") or "body"), data["error"], response.status)
        raise ControlError(f"{method} {path}: HTTP {response.status}")
