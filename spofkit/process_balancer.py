"""A balancer in its own OS process, so that killing it is a real ``kill -9`` — and nothing else dies with it.

:class:`ProcessBalancer` is the lab's (the supervisor's) handle on one ``python -m spofkit._balancer_child``. It
offers what an in-process :class:`~spofkit.balancer_node.BalancerNode` offers, over the child's pipe
(:mod:`spofkit.childproc`): the child republishes every event it makes, and every reply carries its status, so
the supervisor always has a recent view of the balancer without asking. ``crash`` sends SIGKILL: the kernel closes
its sockets, and in a pair the other balancer takes the service address over.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from typing import Any

from spofkit.childproc import ChildGone, ChildProcess
from spofkit.events import EventBus
from spofkit.pair import Address
from spofkit.policy import EjectionSettings, HealthSettings, RetrySettings, Strategy
from spofkit.status import CRASHED, STOPPED, BalancerStatus
from spofkit.wire import balancer_status_from_dict, event_from_dict, settings_to_dict


class ProcessBalancer:
    """A balancer child process, steered like a :class:`BalancerNode`. ``config`` is what the child builds from."""

    def __init__(self, name: str, config: dict[str, Any], events: EventBus) -> None:
        self.name = name
        self.config = dict(config, name=name)
        self.events = events
        self.child = ChildProcess(f"balancer {name!r}", on_message=self._heard)
        self.own_port = 0
        self.service_port = int(config.get("front_door", {}).get("service_port", 0))
        self.advert: Address | None = None
        self._status: BalancerStatus | None = None
        self.events_dropped = 0  # request events its children let go while we did not read (see _balancer_child)
        self._dropped_by_earlier_children = 0
        self.restarts = 0

    # --- lifecycle ---------------------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self.child.pid

    @property
    def running(self) -> bool:
        return self.child.alive

    @property
    def last_exit_code(self) -> int | None:
        return self.child.last_exit_code

    async def start(self) -> None:
        config = dict(self.config)
        config["front_door"] = dict(config.get("front_door", {}), service_port=self.service_port)
        if self.own_port:
            config["own_port"] = self.own_port
        self._dropped_by_earlier_children = self.events_dropped  # a new child counts from 0 again
        hello = await self.child.start("spofkit._balancer_child", "--config", json.dumps(config))
        self.own_port = int(hello["own_port"])
        self.service_port = int(hello["service_port"])
        self.advert = tuple(hello["advert"]) if hello.get("advert") else None  # type: ignore[assignment]

    async def stop(self, *, graceful: bool = True) -> None:
        if not self.child.alive:
            return
        if graceful:  # if it cannot say goodbye, terminate() below stops it anyway
            with contextlib.suppress(ChildGone, RuntimeError, asyncio.TimeoutError):
                await self._call({"cmd": "stop"}, timeout=5.0)
        await self.child.terminate()

    async def crash(self) -> None:
        """``kill -9`` the balancer's process."""
        await self.child.kill()
        self._status = None

    def stop_now(self) -> None:
        self.child.stop_now()

    # --- what a node offers --------------------------------------------------------------------------------------

    async def add_member(
        self,
        name: str,
        url: str,
        *,
        weight: int = 1,
        backup: bool = False,
        max_conns: int | None = None,
        initially_up: bool = True,
    ) -> None:
        member = {"weight": weight, "backup": backup, "max_conns": max_conns, "initially_up": initially_up}
        await self._call({"cmd": "add_member", "member": {"name": name, "url": url, **member}})

    async def remove_member(self, name: str, *, drain_timeout: float = 10.0) -> None:
        await self._call({"cmd": "remove_member", "name": name, "drain_timeout": drain_timeout}, drain_timeout + 5)

    async def set_strategy(self, strategy: Strategy | str) -> None:
        if not isinstance(strategy, str):
            raise ValueError("a balancer in its own process takes a strategy by name; your own class stays here")
        await self._call({"cmd": "set_strategy", "strategy": strategy})

    async def set_retries(self, settings: RetrySettings | None) -> None:
        await self._call({"cmd": "set_retries", "settings": settings_to_dict(settings)})

    async def set_ejection(self, settings: EjectionSettings | None) -> None:
        await self._call({"cmd": "set_ejection", "settings": settings_to_dict(settings)})

    async def set_health(self, settings: HealthSettings | None) -> None:
        await self._call({"cmd": "set_health", "settings": settings_to_dict(settings)})

    async def join_pair(self, peers: list[Address]) -> None:
        await self._call({"cmd": "join_pair", "peers": [list(peer) for peer in peers]})

    async def inject(self, kind: str) -> None:
        await self._call({"cmd": "inject", "kind": kind})

    async def recover(self) -> None:
        await self._call({"cmd": "recover"})

    async def refresh(self) -> BalancerStatus:
        await self._call({"cmd": "status"})
        return self.status()

    def status(self) -> BalancerStatus:
        """The latest status the child sent (every reply carries one); a dead process is said to be crashed."""
        base = self._status or BalancerStatus(self.name, self.own_url, "", False, False, False, pid=self.pid)
        if self.events_dropped:  # views counting request events miss these; the counters here are exact
            missed = f"{self.events_dropped} request events not shown: the lab fell behind reading them"
            base = dataclasses.replace(base, note=f"{base.note}; {missed}" if base.note else missed)
        if not self.child.alive:
            code = self.child.last_exit_code
            note = f"exit status {code}" if code is not None else ""
            return dataclasses.replace(base, state=CRASHED, role=STOPPED, address=None, pid=None, note=note)
        return base

    @property
    def own_url(self) -> str:
        return f"http://127.0.0.1:{self.own_port}"

    @property
    def service_url(self) -> str:
        return f"http://127.0.0.1:{self.service_port}"

    # --- the pipe ---------------------------------------------------------------------------------------------

    async def _call(self, command: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        reply = await self.child.call(command, timeout)
        if reply.get("status"):
            self._status = balancer_status_from_dict(reply["status"])
        return reply

    def _heard(self, message: dict[str, Any]) -> None:
        """What the child says unasked: its events, and its status after each change (and every 0.25 s)."""
        data = message.get("event")
        if isinstance(data, dict):
            event = event_from_dict(data)
            if event is not None:
                self.events.publish(event)
        status = message.get("status")
        if isinstance(status, dict):
            self._status = balancer_status_from_dict(status)
        dropped = message.get("dropped_events")
        if isinstance(dropped, int):  # we were too far behind reading: the child let some request events go
            self.events_dropped = self._dropped_by_earlier_children + dropped
