"""The child side of a balancer in its own OS process (process isolation of the front door).

:class:`spofkit.process_balancer.ProcessBalancer` starts ``python -m spofkit._balancer_child --config JSON`` and
steers it as :mod:`spofkit.childproc` describes (not meant to be run by hand). The child runs one
:class:`~spofkit.balancer_node.BalancerNode` — the same code as an in-process balancer — and:

* says hello once it listens: ``{"ok": true, "pid": ..., "own_port": ..., "service_port": ..., "advert": [h, p]}``;
* streams every event it publishes, unasked: ``{"event": {"kind": "RequestCompleted", ...}}`` (the lab's event
  bus republishes them, so views see both balancers' events, each naming its balancer);
* answers commands: ``add_member``, ``remove_member``, ``set_strategy``, ``set_retries``, ``set_ejection``,
  ``set_health``, ``join_pair``, ``inject``, ``recover``, ``status``, and ``stop`` (a graceful exit: a master
  resigns first). Every reply carries the node's status.

A crash needs no command: the parent sends SIGKILL, and the kernel closes the node's sockets.

Telling the parent must never hold up serving. A parent busy for a moment (a TUI frame, a notebook cell, a
garbage collection) reads nothing meanwhile; a pipe holds 64 KiB, which at 500 requests a second is a fraction of
a second of events. Written the blocking way, the balancer stopped with it — no requests served, its health checks
timed out, every instance marked DOWN at once. So the child writes to the pipe without blocking
(:class:`ParentPipe`): what the pipe cannot take waits in memory, and when more than :data:`MAX_BACKLOG` bytes
wait, per-request events are dropped (counted: ``{"dropped_events": N}`` follows once the parent catches up) while
state changes, statuses and replies are always kept. The counters in the status stay exact either way.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import signal
import sys
from typing import Any

from spofkit.balancer import Balancer
from spofkit.balancer_node import BalancerNode, FrontDoor
from spofkit.childproc import (
    child_ask_for_a_signal_when_the_parent_dies,
    child_stdin_lines,
    child_watch_parent,
)
from spofkit.clock import Clock
from spofkit.events import PER_REQUEST_KINDS, Event, EventBus
from spofkit.policy import EjectionSettings, HealthSettings, RetrySettings
from spofkit.proxy.limits import ProxyLimits
from spofkit.wire import balancer_status_to_dict, event_to_dict, settings_from_dict


def build_node(config: dict[str, Any], events: EventBus) -> BalancerNode:
    balancer = Balancer(
        events,
        name=config["name"],
        strategy=config.get("strategy", "round_robin"),
        retries=settings_from_dict(RetrySettings, config.get("retries")),
        ejection=settings_from_dict(EjectionSettings, config.get("ejection")),
        health=settings_from_dict(HealthSettings, config.get("health")),
        slow_start=config.get("slow_start", 0.0),
        seed=config.get("seed", 0),
        limits=settings_from_dict(ProxyLimits, config.get("limits")),
    )
    front_door = FrontDoor(**config.get("front_door", {}))
    return BalancerNode(balancer, front_door, priority=config.get("priority", 100), own_port=config.get("own_port", 0))


async def execute(node: BalancerNode, request: dict[str, Any]) -> None:
    """Carry out one command (raises on a bad one: the caller turns that into a refusal)."""
    command = request.get("cmd")
    if command == "add_member":
        member = request["member"]
        await node.add_member(**member)
    elif command == "remove_member":
        await node.remove_member(request["name"], drain_timeout=float(request.get("drain_timeout", 10.0)))
    elif command == "set_strategy":
        await node.set_strategy(request["strategy"])
    elif command == "set_retries":
        await node.set_retries(settings_from_dict(RetrySettings, request.get("settings")))
    elif command == "set_ejection":
        await node.set_ejection(settings_from_dict(EjectionSettings, request.get("settings")))
    elif command == "set_health":
        await node.set_health(settings_from_dict(HealthSettings, request.get("settings")))
    elif command == "join_pair":
        await node.join_pair([(str(host), int(port)) for host, port in request["peers"]])
    elif command == "inject":
        await node.inject(request["kind"])
    elif command == "recover":
        await node.recover()
    elif command not in ("status", "stop"):
        raise ValueError(f"unknown command {command!r}")


def status_of(node: BalancerNode) -> dict[str, Any]:
    return balancer_status_to_dict(dataclasses.replace(node.status(), pid=os.getpid()))


# How often the counters in the status reach the parent; a state change is sent at once.
STATUS_INTERVAL = 0.25
# Bytes waiting for a parent that does not read, beyond which per-request events are dropped (a few seconds' worth).
MAX_BACKLOG = 1 << 20


class ParentPipe:
    """Lines to the parent on stdout, written without ever blocking (see the module docstring)."""

    def __init__(self, transport: asyncio.WriteTransport) -> None:
        self.transport = transport
        self.dropped = 0  # per-request events not sent because the parent was too far behind
        self._dropped_told = 0

    @classmethod
    async def open(cls) -> ParentPipe:
        loop = asyncio.get_running_loop()
        transport, _protocol = await loop.connect_write_pipe(asyncio.BaseProtocol, sys.stdout)
        return cls(transport)

    @property
    def behind(self) -> bool:
        return self.transport.get_write_buffer_size() > MAX_BACKLOG

    def say(self, message: dict[str, Any]) -> None:
        """One message that must arrive (a reply, a status, a state change)."""
        self.write([json.dumps(message, default=str)])

    async def close(self, timeout: float = 2.0) -> None:
        """Hand what waits to the pipe (for at most ``timeout`` s: a parent that reads nothing may be gone)."""
        self.write([], last=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.transport.get_write_buffer_size() and loop.time() < deadline:
            await asyncio.sleep(0.01)
        self.transport.close()

    def write(self, lines: list[str], *, last: bool = False) -> None:
        """Send ``lines``, and the count of dropped events once it has grown and the parent reads again (the
        ``last`` write carries it anyway)."""
        if self.dropped != self._dropped_told and (last or not self.behind):
            self._dropped_told = self.dropped
            lines = [*lines, json.dumps({"dropped_events": self.dropped})]
        if lines and not self.transport.is_closing():
            self.transport.write(("\n".join(lines) + "\n").encode())


class StatusPusher:
    """Streams events to the parent, and the node's status right after anything but a per-request event.

    Events are written in batches, once per turn of the event loop: at a thousand requests a second that is one
    write for many events instead of one each.
    """

    def __init__(self, node: BalancerNode, parent: ParentPipe) -> None:
        self.node = node
        self.parent = parent
        self._lines: list[str] = []
        self._status_due = False
        self._flush_due = False

    def heard(self, event: Event) -> None:
        if not self._flush_due:
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self.flush)
        if event.kind in PER_REQUEST_KINDS:
            if self.parent.behind:  # the parent is not reading: let a request's event go, never the balancer
                self.parent.dropped += 1
                return
        else:
            self._status_due = True  # one status for a burst of changes, right after the burst
        self._lines.append(json.dumps({"event": event_to_dict(event)}, default=str))

    def flush(self) -> None:
        self._flush_due = False
        if self._status_due:
            self._status_due = False
            self._lines.append(json.dumps({"status": status_of(self.node)}, default=str))
        lines, self._lines = self._lines, []
        self.parent.write(lines)

    def push(self) -> None:
        self._status_due = True
        self.flush()

    async def every(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            if not self.parent.behind:  # a parent that reads nothing gets no pile of statuses: the next one will do
                self.push()


async def obey(
    node: BalancerNode, commands: asyncio.StreamReader, stopped: asyncio.Event, pushing: StatusPusher
) -> None:
    while line := await commands.readline():
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("a command is a JSON object")
            await execute(node, request)
            reply: dict[str, Any] = {"ok": True}
        except Exception as error:  # a refusal for the parent to report; the balancer goes on serving
            request = request if isinstance(request, dict) else {}
            reply = {"ok": False, "error": f"{type(error).__name__}: {error}", "field": getattr(error, "field", None)}
        pushing.flush()  # the events the command caused reach the parent before its reply does
        pushing.parent.say(dict(reply, id=request.get("id"), status=status_of(node)))
        if request.get("cmd") == "stop":
            break
    stopped.set()  # asked to stop, or stdin closed: the parent is gone, and so must we be


async def serve(config: dict[str, Any], parent_pid: int) -> int:
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopped.set)
    child_ask_for_a_signal_when_the_parent_dies()
    if os.getppid() != parent_pid:
        return 1  # the parent died before we could ask to be told: nobody is left to serve
    watching = asyncio.create_task(child_watch_parent(parent_pid, stopped))
    commands = await child_stdin_lines()
    parent = await ParentPipe.open()

    events = EventBus(Clock(start=config["clock_start"]))
    node = build_node(config, events)
    pushing = StatusPusher(node, parent)
    events.subscribe(pushing.heard)
    try:
        await node.start()
    except OSError as error:
        watching.cancel()
        parent.say({"ok": False, "error": f"cannot listen: {error}"})
        await parent.close()
        return 1
    advert = list(node.pair.advert_address) if node.pair is not None else None
    parent.say(
        {"ok": True, "pid": os.getpid(), "own_port": node.own_port, "service_port": node.service_port, "advert": advert}
    )
    obeying = asyncio.create_task(obey(node, commands, stopped, pushing))
    periodic = asyncio.create_task(pushing.every(STATUS_INTERVAL))
    await stopped.wait()
    obeying.cancel()
    periodic.cancel()
    watching.cancel()
    await node.stop(graceful=True)
    pushing.flush()
    await parent.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spofkit._balancer_child", description=__doc__)
    parser.add_argument("--config", required=True, help="the balancer's settings, as JSON")
    parser.add_argument("--parent-pid", type=int, required=True, help="the process that started this one")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a terminal: the parent does the clean-up
    return asyncio.run(serve(json.loads(args.config), args.parent_pid))


if __name__ == "__main__":
    sys.exit(main())
