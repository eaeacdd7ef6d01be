"""The child side of process isolation: one service instance, alone in its own OS process.

:class:`spofkit.instance.ProcessInstance` starts this module as
``python -m spofkit._instance_child --name a --port 0`` and steers it through a pipe, one JSON line per
message (not meant to be run by hand):

* on start, the child listens and says ``{"ok": true, "port": 43817, "pid": 5120}`` (``port=0`` means "any free
  port"; the parent keeps the one reported, so a restarted child can bind it again);
* then, for each command read on stdin, ``{"id": 3, "cmd": "inject", "fault": {"kind": "slow", "params": {...}}}``,
  ``{"id": 4, "cmd": "recover"}`` or ``{"id": 5, "cmd": "stats"}``, it writes exactly one reply
  ``{"id": ..., "ok": true|false, "stats": {...}}`` (with ``"error"`` when not ok).

The server itself is the ordinary in-process :class:`~spofkit.instance.ServiceInstance`, so every fault but
the crash behaves exactly as in-process. (A crash needs no command: the parent sends ``SIGKILL``.)

The child must never outlive its parent: when stdin reaches end of file (the parent exited, even by
``kill -9``) it stops. ``SIGTERM`` stops it too; ``SIGINT`` is ignored, so pressing Ctrl-C in a terminal leaves
the clean-up to the parent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from typing import Any

from spofkit.faults import make_fault
from spofkit.instance import ServiceInstance


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


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
        _say(dict(reply, id=request.get("id"), stats=instance.stats()))


async def serve(name: str, port: int, work_time: float, seed: int | None) -> int:
    # Ready to be told to stop before saying hello: the parent may stop us right after it.
    loop = asyncio.get_running_loop()
    terminated = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, terminated.set)
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)

    instance = ServiceInstance(name, port=port, work_time=work_time, seed=seed)
    try:
        await instance.start()
    except OSError as exc:
        _say({"ok": False, "error": f"cannot listen on 127.0.0.1:{port}: {exc}"})
        return 1
    _say({"ok": True, "port": instance.port, "pid": os.getpid()})

    obeying = asyncio.create_task(_obey(instance, commands))
    waiting = asyncio.create_task(terminated.wait())
    await asyncio.wait({obeying, waiting}, return_when=asyncio.FIRST_COMPLETED)
    for task in (obeying, waiting):
        task.cancel()
    await instance.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spofkit._instance_child", description=__doc__)
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--work-time", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return asyncio.run(serve(args.name, args.port, args.work_time, args.seed))


if __name__ == "__main__":
    sys.exit(main())
