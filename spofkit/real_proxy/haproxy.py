"""HAProxy as the lab's balancer: steered through its runtime API, heard through its log.

The pool changes while HAProxy runs (``add server``, ``set server ... state drain``, ``del server``); a setting
HAProxy cannot change at run time (the strategy, retries, the checks themselves) is a *reload*: a new process takes
over the listening sockets (``-sf``) and the old one finishes what it was doing. HAProxy's log, on its standard
output, says when it marks a server DOWN or UP, with its reason; ``show stat`` gives the counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import re
import signal
import time
from pathlib import Path
from typing import Any

from spofkit.events import EventBus, InstanceDown, InstanceDraining, InstanceUp
from spofkit.export import BACKEND, haproxy_config, haproxy_server_line, haproxy_server_options
from spofkit.policy import HealthSettings
from spofkit.real_proxy.base import (
    CONTROL_TIMEOUT,
    HANG,
    HOST,
    POLL_INTERVAL,
    STOP_TIMEOUT,
    ProxyFailed,
    ProxyProcess,
    RealProxyNode,
    _accepts,
    _Member,
)
from spofkit.status import DOWN, DRAINING, FALLING, RISING, UP, MemberView

# "Server instances/b is DOWN, reason: Layer4 connection problem, info: "Connection refused", check duration: 0ms.
# 2 active and 0 backup servers left. ..." (and "Backup Server ..."): HAProxy's own words for a state change.
_HAPROXY_CHANGE = re.compile(
    rf"^(?:Backup )?Server {BACKEND}/(?P<name>\S+) is (?P<state>UP|DOWN)(?:, reason: (?P<reason>.*?))?"
    r"(?:\. \d+ active and \d+ backup servers (?:left|online)|\.?$)"
)


class HAProxyNode(RealProxyNode):
    """HAProxy as the lab's balancer, steered through its runtime API; its log says when servers go DOWN and UP."""

    kind = "haproxy"

    def __init__(self, name: str, events: EventBus, **settings: Any) -> None:
        super().__init__(name, events, **settings)
        self.retiring: list[ProxyProcess] = []  # processes finishing their requests after a reload
        self._stats: dict[str, dict[str, str]] = {}  # the last `show stat`, by server name (and FRONTEND, BACKEND)
        self._carried = (0, 0, 0)  # requests, retried, failed counted by processes before a reload

    @property
    def socket_path(self) -> Path:
        return self.runtime().haproxy_socket

    def config_text(self) -> str:
        return haproxy_config(self.settings(), self.runtime())

    async def api(self, command: str) -> str:
        """One command to HAProxy's runtime API; its answer (HAProxy closes the connection after it)."""
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(self.socket_path)), CONTROL_TIMEOUT)
        try:
            writer.write(command.encode() + b"\n")
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), CONTROL_TIMEOUT)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return answer.decode(errors="replace")

    async def _launch(self, replacing: ProxyProcess | None = None) -> None:
        path = self._write("haproxy.cfg", self.config_text())
        command = [self.binary, "-db", "-f", str(path)]
        if replacing is not None:
            command += ["-sf", str(replacing.pid)]  # take over its sockets; it finishes its requests and goes
        process = await ProxyProcess.spawn(command, self._heard)
        self.current = process

        async def answering() -> bool:
            return f"Pid: {process.pid}" in await self.api("show info")

        await self._until(answering, "answering on its runtime API", process)
        await self._until(lambda: _accepts(self.service_port), f"listening on {HOST}:{self.service_port}", process)
        await self._refresh()
        self._tasks.append(asyncio.create_task(self._poll()))

    def _processes(self) -> list[ProxyProcess]:
        return [*self.retiring, *super()._processes()]

    async def _member_added(self, member: _Member) -> None:
        if not self.running:
            return
        options = haproxy_server_options(self.settings())
        line = haproxy_server_line(member.exported()).removeprefix("server ")
        name = f"{BACKEND}/{member.name}"
        await self._must(f"add server {BACKEND}/{line} {options}".rstrip(), "New server registered")
        if self.health is not None:
            await self.api(f"enable health {name}")
        await self.api(f"set server {name} state ready")  # a new server leaves maintenance UP...
        if self.health is not None and not member.initially_up:
            # ...so, as in the lab, it must pass `rise` checks first (HAProxy logs "DOWN, changed from CLI": not news)
            await self.api(f"set server {name} health down")
        await self._refresh()

    async def _member_removed(self, member: _Member, drain_timeout: float) -> None:
        if not self.running:
            return
        name = f"{BACKEND}/{member.name}"
        await self.refresh_now()
        in_flight = int(self._stats.get(member.name, {}).get("scur") or 0)
        self._publish(InstanceDraining(self.events.now(), member.name, in_flight, balancer=self.name))
        await self.api(f"set server {name} state drain")
        deadline = time.monotonic() + drain_timeout
        while time.monotonic() < deadline:
            await self.refresh_now()
            if int(self._stats.get(member.name, {}).get("scur") or 0) == 0:
                break
            await asyncio.sleep(0.05)
        await self.api(f"set server {name} state maint")
        await self.api(f"shutdown sessions server {name}")
        await self._must(f"del server {name}", "Server deleted")
        self._stats.pop(member.name, None)

    async def _reconfigure(self) -> None:
        """A reload: a new HAProxy with the new configuration takes over; the old one finishes and exits."""
        if not self.running or self.current is None:
            return
        old = self.current
        requests, retried, failed = self._totals()
        self._carried = (requests, retried, failed)
        self._stats = {}
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        self.retiring.append(old)
        self._tasks.append(asyncio.create_task(self._reap(old)))
        if self.fault == HANG:
            old.signal(signal.SIGCONT)  # a stopped process cannot hand over; the new one starts healthy
            self.fault = None
        await self._launch(replacing=old)

    async def _reap(self, old: ProxyProcess) -> None:
        try:
            await asyncio.wait_for(old.process.wait(), STOP_TIMEOUT + 3)  # hard-stop-after 3s in its configuration
        except asyncio.TimeoutError:
            old.signal(signal.SIGKILL)
            await old.process.wait()
        finally:
            if old in self.retiring and old.process.returncode is not None:
                self.retiring.remove(old)

    async def _must(self, command: str, expected: str) -> None:
        answer = await self.api(command)
        if expected not in answer:
            raise ProxyFailed(f"HAProxy refused `{command}`: {answer.strip()}")

    # --- what HAProxy says ------------------------------------------------------------------------------------

    def _heard(self, process: ProxyProcess, which: str, line: str) -> None:
        if which != "stdout" or process is not self.current or self._stopping:
            return  # stderr repeats the log with a prefix; an old process's last words are not news
        match = _HAPROXY_CHANGE.match(line)
        if match is None or match["name"] not in self.members:
            return
        reason = f"HAProxy: {match['reason']}" if match["reason"] else "HAProxy"
        event = InstanceDown if match["state"] == "DOWN" else InstanceUp
        self._publish(event(self.events.now(), match["name"], reason, balancer=self.name))

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            if self.fault != HANG:  # a stopped HAProxy cannot answer
                with contextlib.suppress(OSError, asyncio.TimeoutError, ValueError):
                    await self._refresh()

    async def refresh_now(self) -> None:
        """Read HAProxy's counters now (status() shows the last reading, at most POLL_INTERVAL old)."""
        with contextlib.suppress(OSError, asyncio.TimeoutError, ValueError):
            await self._refresh()

    async def _refresh(self) -> None:
        text = await self.api("show stat")
        rows = csv.DictReader(io.StringIO(text.removeprefix("# ")))
        self._stats = {row["svname"]: row for row in rows if row.get("pxname") in (BACKEND, "service")}

    def _member_view(self, member: _Member) -> MemberView:
        row = self._stats.get(member.name, {})
        state, successes, failures = _haproxy_state(row, self.health)
        return MemberView(
            name=member.name,
            state=state,
            backup=member.backup,
            weight=member.weight,
            in_flight=_count(row, "scur"),
            served=sum(_count(row, key) for key in ("hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx")),
            failed=_count(row, "hrsp_5xx") + _count(row, "econ") + _count(row, "eresp"),
            health_successes=successes,
            health_failures=failures,
            rise=self.health.rise if self.health else 0,
            fall=self.health.fall if self.health else 0,
            max_conns=member.max_conns,
        )

    def _totals(self) -> tuple[int, int, int]:
        front, back = self._stats.get("FRONTEND", {}), self._stats.get("BACKEND", {})
        requests, retried, failed = self._carried
        return (
            requests + _count(front, "req_tot"),
            retried + _count(back, "wretr") + _count(back, "wredis"),
            failed + _count(front, "hrsp_5xx"),
        )


def _haproxy_state(row: dict[str, str], health: HealthSettings | None) -> tuple[str, int, int]:
    """(state, successes while down, failures while up) from a ``show stat`` row.

    HAProxy keeps one health counter per server, from 0 to rise + fall - 1: a server is UP from ``rise`` on, each
    failed check takes one off, each passed one adds one. "UP 2/3" is a server going down, "DOWN 1/2" one coming up.
    HAProxy also starts each server "UP 1/3" (one failed check from DOWN) and lets passed checks fill the counter
    up: an UP server whose last check *passed* is called up here, falling only after a failed one.
    """
    status = row.get("status", "UP")
    if status.startswith("DRAIN") or status.startswith("NOLB"):
        return DRAINING, 0, 0
    if status.startswith("MAINT"):
        return DOWN, 0, 0
    if health is None or status == "no check":
        return UP, 0, 0
    counter = _count(row, "check_health")
    top = health.rise + health.fall - 1
    if status == "UP":
        return UP, 0, 0
    if status.startswith("UP "):
        last_check = row.get("check_status", "").removeprefix("* ")  # "* " while a check is running
        if last_check in PASSED_CHECKS:
            return UP, 0, 0
        return FALLING, 0, max(0, top - counter)
    if status.startswith("DOWN "):
        return RISING, counter, 0
    return DOWN, 0, 0


# HAProxy's codes for a check that passed (or has not run yet: INI), in `show stat`'s check_status.
PASSED_CHECKS = frozenset({"INI", "L4OK", "L6OK", "L7OK", "L7OKC"})


def _count(row: dict[str, str], key: str) -> int:
    value = row.get(key) or "0"
    return int(value) if value.isdigit() else 0
