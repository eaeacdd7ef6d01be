"""The child side of process isolation: one service instance, alone in its own OS process.

:class:`spofkit.instance.ProcessInstance` starts this module as
``python -m spofkit._instance_child --name a --port 0 [--concurrency 2 --queue 4 --work-ms 50 --spread-ms 10
--distribution lognormal]`` (its :class:`~spofkit.capacity.Capacity`) and steers it through a pipe, one JSON line per
message (not meant to be run by hand):

* on start, the child listens and says ``{"ok": true, "port": 43817, "pid": 5120}`` (``port=0`` means "any free
  port"; the parent keeps the one reported, so a restarted child can bind it again);
* then, for each command read on stdin, ``{"id": 3, "cmd": "inject", "fault": {"kind": "slow", "params": {...}}}``,
  ``{"id": 4, "cmd": "recover"}`` or ``{"id": 5, "cmd": "stats"}``, it writes exactly one reply
  ``{"id": ..., "ok": true|false, "stats": {...}}`` (with ``"error"`` when not ok).

The server itself is the ordinary in-process :class:`~spofkit.instance.ServiceInstance`, so every fault but
the crash behaves exactly as in-process. (A crash needs no command: the parent sends ``SIGKILL``.)

The child must never outlive its parent (a notebook kernel that is shut down, restarted or killed), so it
watches for the parent's end three ways, each enough on its own:

* stdin reaches end of file: the parent's end of the pipe closed (it exited, even by ``kill -9``);
* on Linux, the kernel sends it ``SIGTERM`` when the parent dies (``prctl(PR_SET_PDEATHSIG)``): this also works
  when another process still holds the pipe open, e.g. a worker the parent forked (``multiprocessing``);
* it checks every ``childproc.PARENT_CHECK_INTERVAL`` seconds that its parent is still the process that started it
  (``--parent-pid``): an orphan is adopted by another process.

``SIGTERM`` stops it cleanly; ``SIGINT`` is ignored, so pressing Ctrl-C in a terminal leaves the clean-up to the
parent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from typing import Any

from spofkit.capacity import Capacity, ModelError
from spofkit.childproc import (
    child_ask_for_a_signal_when_the_parent_dies,
    child_say,
    child_stdin_lines,
    child_watch_parent,
)
from spofkit.faults import make_fault
from spofkit.instance import ServiceInstance


async def _execute(instance: ServiceInstance, request: dict[str, Any]) -> dict[str, Any]:
    """Carry out one command; the reply says whether it worked."""
    command = request.get("cmd")
    try:
        if command == "inject":
            fault = request["fault"]
            await instance.inject(make_fault(fault["kind"], **fault.get("params", {})))
        elif command == "recover":
            await instance.recover()
        elif command != "stats":
            raise ValueError(f"unknown command {command!r} (known: inject, recover, stats)")
    except (ValueError, KeyError, TypeError, RuntimeError, OSError) as exc:
        return {
            "ok": False,
            "error": f"{type(exc).__name__}: {exc}",
            "field": getattr(exc, "field", None),
        }
    return {"ok": True}


async def _obey(instance: ServiceInstance, commands: asyncio.StreamReader) -> None:
    """Answer commands until stdin closes."""
    while line := await commands.readline():
        try:
            request = json.loads(line)
        except ValueError:
            request = {"cmd": None}
        if not isinstance(request, dict):
            request = {"cmd": None}
        reply = await _execute(instance, request)
        child_say(dict(reply, id=request.get("id"), stats=instance.stats()))


async def serve(name: str, port: int, capacity: Capacity, seed: int | None, parent_pid: int | None = None) -> int:
    # Ready to be told to stop before saying hello: the parent may stop us right after it.
    loop = asyncio.get_running_loop()
    terminated = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, terminated.set)
    parent_pid = os.getppid() if parent_pid is None else parent_pid
    child_ask_for_a_signal_when_the_parent_dies()
    if os.getppid() != parent_pid:
        return 1  # the parent died before we could ask to be told: nobody is left to serve
    watching = asyncio.create_task(child_watch_parent(parent_pid, terminated))
    commands = await child_stdin_lines()

    instance = ServiceInstance(name, port=port, capacity=capacity, seed=seed)
    try:
        await instance.start()
    except OSError as exc:
        watching.cancel()
        child_say({"ok": False, "error": f"cannot listen on 127.0.0.1:{port}: {exc}"})
        return 1
    child_say({"ok": True, "port": instance.port, "pid": os.getpid()})

    obeying = asyncio.create_task(_obey(instance, commands))
    waiting = asyncio.create_task(terminated.wait())
    await asyncio.wait({obeying, waiting}, return_when=asyncio.FIRST_COMPLETED)
    for task in (obeying, waiting, watching):
        task.cancel()
    await instance.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spofkit._instance_child", description=__doc__)
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=None, help="workers (default: no limit)")
    parser.add_argument("--queue", type=int, default=0, help="requests that may wait for a worker")
    parser.add_argument("--work-ms", type=float, default=0.0, help="mean work time of a request")
    parser.add_argument("--spread-ms", type=float, default=0.0, help="its standard deviation (lognormal)")
    parser.add_argument("--distribution", default=None, help="fixed, lognormal or exponential")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--parent-pid", type=int, default=None, help="the process that started this one")
    args = parser.parse_args(argv)
    try:
        capacity = Capacity(args.concurrency, args.queue, args.work_ms, args.spread_ms, args.distribution)
    except ModelError as error:
        parser.error(f"argument --{error.field.replace('_', '-')}: {error}")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return asyncio.run(serve(args.name, args.port, capacity, args.seed, args.parent_pid))


if __name__ == "__main__":
    sys.exit(main())
