"""A lab started right here, in this process (the default: ``spofkit tui``).

The lab runs on a thread of its own, with its own asyncio loop. Both would fit in one loop, but at a thousand
requests a second the lab keeps that loop so busy that the screen, which needs several turns of the loop per
frame, drops to a few frames a second. On its own loop the screen gets its turns, and a slow frame cannot delay
a request either. The two threads share only three things:

- events: the lab calls our subscriber, which appends to a deque;
- status snapshots: taken in the lab's thread every ``status_interval`` s and after each command;
- commands: ``Lab.apply(command)``, run in the lab's loop, its answer (or its ``CommandError``) handed back.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from spofkit.commands import Command, SetLoad
from spofkit.lab import Lab
from spofkit.status import LabStatus
from tui.sources.base import DEFAULT_LOAD_RATE, ControlError, DataSource, Subscriber, Unsubscribe

T = TypeVar("T")


class LabSource(DataSource):
    """Start a :class:`~spofkit.lab.Lab` here (``lab_options`` go to ``Lab.start``) with a steady load of
    ``rate`` requests/s. ``threaded=False`` keeps the lab in the caller's loop."""

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
        self.initial_load = SetLoad(rate=rate)  # checks the rate now, not once the lab is half started
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
        status = self._status
        where = f" · balancer {status.balancer_url}" if status else ""
        self.description = f"lab here ({self.lab.isolation}){where}"

    async def _start_lab(self) -> Lab:
        lab = await Lab.start(**self.lab_options)
        try:
            await lab.apply(self.initial_load)
        except BaseException:
            await lab.stop()
            raise
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

    # --- reading -------------------------------------------------------------------------------------

    def _lab(self) -> Lab:
        if self.lab is None:
            raise ControlError("the lab is not running")
        return self.lab

    def subscribe(self, subscriber: Subscriber) -> Unsubscribe:
        return self._lab().events.subscribe(subscriber)

    def now(self) -> float:
        return self.lab.now() if self.lab else 0.0

    def status(self) -> LabStatus | None:
        return self._status if self.lab else None

    # --- commands ------------------------------------------------------------------------------------

    async def apply(self, command: Command) -> dict[str, Any]:
        """``Lab.apply(command)`` in the lab's loop, then a fresh snapshot so the screen shows its effect."""
        lab = self._lab()

        async def run() -> dict[str, Any]:
            try:
                return await lab.apply(command)
            finally:  # a refused command may have changed nothing, or something: show the lab as it is
                self._status = lab.status()

        return await self._in_lab(run())


async def _stop_all(lab: Lab | None) -> None:
    """Stop ``lab``, then cancel and await whatever else still runs in this loop (e.g. a lab half started)."""
    if lab is not None:
        await lab.stop()
    current = asyncio.current_task()
    others = [task for task in asyncio.all_tasks() if task is not current]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)
