"""A lab's child processes: how the parent steers them, and how they never outlive it.

Process isolation runs instances and balancers as OS processes of their own, so that a crash is a real
``kill -9``. Parent and child talk over the child's stdin/stdout, one JSON object a line:

* the child starts, then says hello: ``{"ok": true, "pid": ..., ...}``;
* the parent sends commands ``{"id": 3, "cmd": "...", ...}``; the child answers each with one reply carrying the
  same ``id`` and ``"ok": true|false`` (with ``"error"``);
* the child may also send lines without an ``id`` at any time (a balancer streams its events that way).

The child must never outlive its parent (a notebook kernel shut down, restarted or killed), so it watches for the
parent's end three ways, each enough on its own: stdin reaches end of file; on Linux the kernel sends it SIGTERM
when the parent dies (``prctl(PR_SET_PDEATHSIG)``), which also works when a forked worker still holds the pipe;
and it checks that its parent is still the process that started it.

:class:`ChildProcess` is the parent's side; the ``child_*`` functions are the child's.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PARENT_CHECK_INTERVAL = 0.5  # seconds between a child's checks that its parent is still there
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
# A balancer streams an event per request: lines are short, but allow a status snapshot of a big pool.
MAX_LINE = 4 * 1024 * 1024


class ChildGone(RuntimeError):
    """The child process exited (or was never started); it cannot answer."""


class ChildProcess:
    """The parent's end of one child: start it, call it, hear what it says unasked, stop or kill it."""

    def __init__(
        self,
        what: str,
        *,
        startup_timeout: float = 20.0,
        call_timeout: float = 5.0,
        on_message: Callable[[dict[str, Any]], None] | None = None,
        on_exit: Callable[[int, bool], None] | None = None,
    ) -> None:
        """``on_message(message)`` hears every line the child writes (replies too); ``on_exit(code, asked)``
        hears that the process ended — ``asked`` is False when nobody here stopped it (someone ran ``kill -9``)."""
        self.what = what  # e.g. "balancer 'lb1'", for error messages
        self.startup_timeout = startup_timeout
        self.call_timeout = call_timeout
        self.on_message = on_message
        self.on_exit = on_exit
        self.process: asyncio.subprocess.Process | None = None
        self.hello: dict[str, Any] = {}
        self.last_exit_code: int | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 0
        self._asked_to_end: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.alive and self.process else None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self, module: str, *args: str) -> dict[str, Any]:
        """Run ``python -m module args --parent-pid PID`` and wait for its hello; raises OSError if none comes."""
        command = [sys.executable, "-m", module, *args, "--parent-pid", str(os.getpid())]
        # The child must import spofkit from wherever this copy lives, installed or not.
        package_root = str(Path(__file__).resolve().parent.parent)
        path = os.environ.get("PYTHONPATH")
        env = dict(os.environ, PYTHONPATH=package_root + (os.pathsep + path if path else ""))
        process = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env, limit=MAX_LINE
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
            raise OSError(f"{self.what}: child process failed to start: {reason}")
        self.process, self.hello = process, hello
        self._reader = asyncio.create_task(self._read(process))
        return hello

    async def call(self, command: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Send one command and wait for its reply. Raises ChildGone, or RuntimeError if the child refused."""
        process = self.process
        if process is None or process.returncode is not None or process.stdin is None:
            raise ChildGone(f"{self.what} has no running process")
        self._next_id += 1
        request_id = self._next_id
        reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = reply
        try:
            process.stdin.write(json.dumps(dict(command, id=request_id)).encode() + b"\n")
            await process.stdin.drain()
            answer = await asyncio.wait_for(reply, timeout or self.call_timeout)
        except (BrokenPipeError, ConnectionResetError) as error:
            raise ChildGone(f"{self.what}: process went away") from error
        finally:
            self._pending.pop(request_id, None)
        if not answer.get("ok"):
            raise RuntimeError(f"{self.what} refused {command.get('cmd')}: {answer.get('error')}")
        return answer

    async def kill(self) -> None:
        """``kill -9``: no goodbye, no clean-up, as a crash."""
        process = self.process
        self._asked_to_end = process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
        await self._reap()

    async def terminate(self, timeout: float = 3.0) -> None:
        """SIGTERM (please stop), then SIGKILL if it has not stopped within ``timeout``."""
        process = self.process
        self._asked_to_end = process
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except asyncio.TimeoutError:
                process.kill()
        await self._reap()

    def stop_now(self, timeout: float = 2.0) -> None:
        """Stop the child without the event loop (at interpreter exit): SIGTERM, and SIGKILL if it lingers."""
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while still_running(process.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        if still_running(process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)

    async def _reap(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if self._reader is not None:
            await self._reader  # ends once the process has exited and been waited for
            self._reader = None
        self.last_exit_code = await process.wait()

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        with contextlib.suppress(ValueError, ConnectionResetError):
            while line := await process.stdout.readline():
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(message, dict):
                    continue
                if self.on_message is not None:
                    self.on_message(message)
                waiting = self._pending.get(message.get("id", -1))
                if waiting is not None and not waiting.done():
                    waiting.set_result(message)
        for waiting in self._pending.values():
            if not waiting.done():
                waiting.set_exception(ChildGone(f"{self.what}: process exited"))
        if process.stdin is not None:
            process.stdin.close()
        code = await process.wait()
        if self.on_exit is not None:
            self.on_exit(code, process is self._asked_to_end)


async def _kill_and_reap(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    await process.wait()


def still_running(pid: int) -> bool:
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


# --- the child's side -------------------------------------------------------------------------------------------


def child_say(message: dict[str, Any]) -> None:
    """Write one message to the parent."""
    sys.stdout.write(json.dumps(message, default=str) + "\n")
    sys.stdout.flush()


def child_ask_for_a_signal_when_the_parent_dies() -> bool:
    """Linux only: have the kernel send SIGTERM when the parent dies. False where that is not available.

    The "parent" is the thread that started this process: for a lab, the thread running its event loop, which
    lives as long as the lab does.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return bool(libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


async def child_watch_parent(parent_pid: int, parent_gone: asyncio.Event) -> None:
    """Set ``parent_gone`` once this process has been handed to another parent (its own has died)."""
    while os.getppid() == parent_pid:
        await asyncio.sleep(PARENT_CHECK_INTERVAL)
    parent_gone.set()


async def child_stdin_lines() -> asyncio.StreamReader:
    """stdin as an asyncio stream, for reading the parent's commands."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_LINE)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader
