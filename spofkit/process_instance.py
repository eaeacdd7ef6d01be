"""Process isolation: the same service instance in its own OS process, so a crash is a real ``kill -9``.

In-process instances (:mod:`spofkit.instance`) are fast and fine in a notebook, but their "crash" is simulated
by closing sockets. Here the server runs as ``python -m spofkit._instance_child``: crashing it sends SIGKILL
to that process, the kernel closes its sockets, and a restart is a new process (a new pid) on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from spofkit.capacity import Capacity
from spofkit.childproc import ChildGone, ChildProcess
from spofkit.events import EventBus, FaultInjected
from spofkit.faults import Crash, Fault
from spofkit.instance import Instance


class ProcessInstance(Instance):
    """The same server in its own OS process (``python -m spofkit._instance_child``).

    The parent talks to the child over its stdin/stdout, one JSON line per message: the child first says
    ``{"ok": true, "port": ..., "pid": ...}``, then answers each command (``inject``, ``recover``, ``stats``)
    with one reply carrying the same ``id`` and its counters. A crash does not ask the child anything: it is
    ``kill -9``. If the parent dies, however it dies, the child notices and exits too (see
    :mod:`spofkit._instance_child`); when the interpreter exits without stopping the lab, :meth:`stop_now` stops it.
    The child gets the same :class:`~spofkit.capacity.Capacity` on its command line (``--concurrency 2 --queue 4
    --work-ms 50 ...``), so its workers and queue are those of an in-process instance; a new process after a
    crash starts with all of them free.
    """

    startup_timeout = 20.0  # seconds for a new process to import aiohttp and listen (slow on a busy machine)
    control_timeout = 5.0  # seconds for the child to answer a command
    stop_timeout = 3.0  # seconds between SIGTERM and SIGKILL
    stats_interval = 0.5  # how often the counters are fetched from the child

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
        self._child = ChildProcess(
            f"instance {name!r}",
            startup_timeout=self.startup_timeout,
            call_timeout=self.control_timeout,
            on_message=self._heard,
            on_exit=self._exited,
        )
        self._poller: asyncio.Task[None] | None = None
        self._child_running = False
        self._child_served = self._child_errors = self._child_shed = 0  # as the current process counts them
        self._served_before = self._errors_before = self._shed_before = 0  # counted by processes that are gone
        self._child_busy = self._child_queued = 0

    @property
    def last_exit_code(self) -> int | None:
        """How the last process ended: its exit status, negative for a signal (-9 after a crash: SIGKILL)."""
        return self._child.last_exit_code

    @property
    def pid(self) -> int | None:
        return self._child.pid

    @property
    def running(self) -> bool:
        return self._alive() and self._child_running

    @property
    def busy(self) -> int:
        return self._child_busy

    @property
    def queued(self) -> int:
        return self._child_queued

    def stop_now(self, timeout: float = 2.0) -> None:
        """Stop the child without the event loop (at interpreter exit): SIGTERM, and SIGKILL if it lingers."""
        self._child.stop_now(timeout)

    async def refresh_stats(self) -> dict[str, Any]:
        if self._alive():
            with contextlib.suppress(ChildGone):
                await self._call({"cmd": "stats"})
        return self.stats()

    # --- primitives -------------------------------------------------------------------------------

    def _alive(self) -> bool:
        return self._child.alive

    async def _boot(self) -> None:
        capacity = self.capacity
        args = ["--name", self.name, "--port", str(self.port)]
        args += ["--work-ms", repr(capacity.work_ms), "--distribution", str(capacity.distribution)]
        if capacity.spread_ms:
            args += ["--spread-ms", repr(capacity.spread_ms)]
        if capacity.concurrency is not None:
            args += ["--concurrency", str(capacity.concurrency), "--queue", str(capacity.queue)]
        if self.seed is not None:
            args += ["--seed", str(self.seed)]
        hello = await self._child.start("spofkit._instance_child", *args)
        self.port = int(hello["port"])  # kept for restarts: a new process binds the same port
        self._child_served = self._child_errors = self._child_shed = 0
        self._child_running = True
        self._poller = asyncio.create_task(self._poll_stats())

    async def _crash(self) -> None:
        await self._last_counters()  # the lab's bookkeeping, not a goodbye: the process is not warned
        self._stop_polling()
        await self._child.kill()  # kill -9: no goodbye, no cleanup

    async def _shutdown(self) -> None:
        await self._last_counters()
        self._stop_polling()
        await self._child.terminate(self.stop_timeout)  # SIGTERM: please stop (SIGKILL if it does not)

    async def _apply(self, fault: Fault) -> None:
        await self._call({"cmd": "inject", "fault": {"kind": fault.kind, "params": fault.params()}})

    async def _clear(self) -> None:
        await self._call({"cmd": "recover"})

    # --- the child process ----------------------------------------------------------------------------

    async def _last_counters(self) -> None:
        """Fetch the counters before the process takes them away (never mind if it cannot answer)."""
        if self._alive():
            with contextlib.suppress(RuntimeError, asyncio.TimeoutError):
                await self._call({"cmd": "stats"}, timeout=1.0)

    def _stop_polling(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None

    async def _call(self, command: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Send one command and wait for its reply. Raises ChildGone if the process is not there."""
        return await self._child.call(command, timeout)

    def _heard(self, message: dict[str, Any]) -> None:
        """Every reply carries the child's counters."""
        stats = message.get("stats")
        if isinstance(stats, dict):
            self._child_served, self._child_errors = int(stats["served"]), int(stats["errors"])
            self._child_shed = int(stats["shed"])
            self.served = self._served_before + self._child_served
            self.errors = self._errors_before + self._child_errors
            self.shed = self._shed_before + self._child_shed
            self.in_flight = int(stats["in_flight"])
            self._child_busy, self._child_queued = int(stats["busy"]), int(stats["queued"])
            self._child_running = bool(stats["running"])

    def _exited(self, exit_code: int, asked: bool) -> None:
        # The process is gone: bank its counters (those it never reported are lost, as with any real crash).
        self._served_before += self._child_served
        self._errors_before += self._child_errors
        self._shed_before += self._child_shed
        self._child_served = self._child_errors = self._child_shed = 0
        self.served, self.errors, self.shed = self._served_before, self._errors_before, self._shed_before
        self.in_flight = self._child_busy = self._child_queued = 0
        self._child_running = False
        if not asked:
            # Nobody here asked it to go (someone ran `kill -9 <pid>`?): that is a crash.
            self._stop_polling()
            self._cancel_warmup_end()
            self.fault = Crash()
            self._publish(FaultInjected(self._now(), self.name, "crash", {"exit_code": exit_code}))

    async def _poll_stats(self) -> None:
        while True:
            await asyncio.sleep(self.stats_interval)
            try:
                await self._call({"cmd": "stats"})
            except ChildGone:
                return
            except (asyncio.TimeoutError, RuntimeError):
                continue  # a busy child: try again next time
