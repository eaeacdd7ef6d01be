"""Process isolation: the same service instance in its own OS process, so a crash is a real ``kill -9``.

In-process instances (:mod:`spofkit.instance`) are fast and fine in a notebook, but their "crash" is simulated
by closing sockets. Here the server runs as ``python -m spofkit._instance_child``: crashing it sends SIGKILL
to that process, the kernel closes its sockets, and a restart is a new process (a new pid) on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from spofkit.events import EventBus, FaultInjected
from spofkit.faults import Crash, Fault
from spofkit.instance import Instance


class ChildGone(RuntimeError):
    """The child process exited; it cannot answer."""


class ProcessInstance(Instance):
    """The same server in its own OS process (``python -m spofkit._instance_child``).

    The parent talks to the child over its stdin/stdout, one JSON line per message: the child first says
    ``{"ok": true, "port": ..., "pid": ...}``, then answers each command (``inject``, ``recover``, ``stats``)
    with one reply carrying the same ``id`` and its counters. A crash does not ask the child anything: it is
    ``kill -9``. If the parent dies, however it dies, the child notices and exits too (see
    :mod:`spofkit._instance_child`); when the interpreter exits without stopping the lab, :meth:`stop_now` stops it.
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
        events: EventBus | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(name, port=port, work_time=work_time, events=events, seed=seed)
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._poller: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 0
        self._child_running = False
        self._served_before = 0  # counted by processes that are gone
        self._errors_before = 0
        # How the last process ended: its exit status, negative for a signal (-9 after a crash: SIGKILL).
        self.last_exit_code: int | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._alive() and self._process else None

    @property
    def running(self) -> bool:
        return self._alive() and self._child_running

    def stop_now(self, timeout: float = 2.0) -> None:
        """Stop the child without the event loop (at interpreter exit): SIGTERM, and SIGKILL if it lingers.

        The child stops cleanly on SIGTERM; this waits up to ``timeout`` seconds for it to have exited.
        """
        process = self._process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _still_running(process.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        if _still_running(process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)

    async def refresh_stats(self) -> dict[str, Any]:
        if self._alive():
            with contextlib.suppress(ChildGone):
                await self._call({"cmd": "stats"})
        return self.stats()

    # --- primitives -------------------------------------------------------------------------------

    def _alive(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def _boot(self) -> None:
        command = [sys.executable, "-m", "spofkit._instance_child", "--name", self.name]
        command += ["--port", str(self.port), "--work-time", str(self.work_time), "--parent-pid", str(os.getpid())]
        if self.seed is not None:
            command += ["--seed", str(self.seed)]
        # The child must import spofkit from wherever this copy lives, installed or not.
        package_root = str(Path(__file__).resolve().parent.parent)
        path = os.environ.get("PYTHONPATH")
        env = dict(os.environ, PYTHONPATH=package_root + (os.pathsep + path if path else ""))
        process = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env
        )
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), self.startup_timeout)
            hello = json.loads(line) if line else {}
        except (asyncio.TimeoutError, ValueError):
            hello = {}
        except BaseException:  # cancelled while waiting: do not leave the process behind
            await _kill_and_reap(process)
            raise
        if not hello.get("ok"):
            await _kill_and_reap(process)
            reason = hello.get("error", f"no greeting (exit code {process.returncode})")
            raise OSError(f"instance {self.name!r}: child process failed to start: {reason}")
        self.port = int(hello["port"])  # kept for restarts: a new process binds the same port
        self._process = process
        self._child_running = True
        self._reader = asyncio.create_task(self._read_replies(process))
        self._poller = asyncio.create_task(self._poll_stats())

    async def _crash(self) -> None:
        await self._last_counters()  # the lab's bookkeeping, not a goodbye: the process is not warned
        process = self._forget_process()
        if process is not None and process.returncode is None:
            os.kill(process.pid, signal.SIGKILL)  # kill -9: no goodbye, no cleanup
        await self._reap(process)

    async def _shutdown(self) -> None:
        await self._last_counters()
        process = self._forget_process()
        if process is not None and process.returncode is None:
            process.terminate()  # SIGTERM: please stop
            try:
                await asyncio.wait_for(process.wait(), self.stop_timeout)
            except asyncio.TimeoutError:
                process.kill()  # it did not listen: SIGKILL
        await self._reap(process)

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

    def _forget_process(self) -> asyncio.subprocess.Process | None:
        """Detach the current process first, so its reader knows its end was asked for."""
        process, self._process = self._process, None
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None
        return process

    async def _reap(self, process: asyncio.subprocess.Process | None) -> None:
        if process is None:
            return
        if self._reader is not None:
            await self._reader  # ends once the process has exited and been waited for
            self._reader = None
        self.last_exit_code = await process.wait()

    async def _call(self, command: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Send one command and wait for its reply. Raises ChildGone if the process is not there."""
        process = self._process
        if process is None or process.returncode is not None or process.stdin is None:
            raise ChildGone(f"instance {self.name!r} has no running process")
        self._next_id += 1
        request_id = self._next_id
        reply_future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = reply_future
        try:
            process.stdin.write(json.dumps(dict(command, id=request_id)).encode() + b"\n")
            await process.stdin.drain()
            reply = await asyncio.wait_for(reply_future, timeout or self.control_timeout)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise ChildGone(f"instance {self.name!r}: process went away") from exc
        finally:
            self._pending.pop(request_id, None)
        if not reply.get("ok"):
            raise RuntimeError(f"instance {self.name!r} refused {command['cmd']}: {reply.get('error')}")
        return reply

    async def _read_replies(self, process: asyncio.subprocess.Process) -> None:
        """Route the child's replies to their callers; when it exits, bank its counters and reap it."""
        assert process.stdout is not None
        child_served = child_errors = 0
        while line := await process.stdout.readline():
            try:
                message = json.loads(line)
            except ValueError:
                continue
            stats = message.get("stats")
            if isinstance(stats, dict):
                child_served, child_errors = int(stats["served"]), int(stats["errors"])
                self.served = self._served_before + child_served
                self.errors = self._errors_before + child_errors
                self.in_flight = int(stats["in_flight"])
                self._child_running = bool(stats["running"])
            waiting = self._pending.pop(message.get("id", -1), None)
            if waiting is not None and not waiting.done():
                waiting.set_result(message)
        # End of output: the process is gone. Counters it never reported are lost, as with any real crash.
        self._served_before += child_served
        self._errors_before += child_errors
        self.served, self.errors, self.in_flight = self._served_before, self._errors_before, 0
        self._child_running = False
        for waiting in self._pending.values():
            if not waiting.done():
                waiting.set_exception(ChildGone(f"instance {self.name!r}: process exited"))
        if process.stdin is not None:
            process.stdin.close()
        exit_code = self.last_exit_code = await process.wait()
        if process is self._process:
            # Nobody here asked it to go (someone ran `kill -9 <pid>`?): that is a crash.
            self._forget_process()
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


def _still_running(pid: int) -> bool:
    """Is ``pid`` still running? A zombie (exited, not yet reaped by asyncio's watcher) is not."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (not Linux): ask the system whether the process exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


async def _kill_and_reap(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.kill()
    await process.wait()
