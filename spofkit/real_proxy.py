"""A real HAProxy or nginx as the lab's balancer: the same instances, faults, load and Report, another proxy.

``Lab.start(balancer="haproxy")`` (or ``"nginx"``, or ``spofkit serve --balancer haproxy``) runs the Debian-packaged
binary as a child of the lab, in front of the lab's instances, configured by :mod:`spofkit.export` from the lab's
settings. What the lab needs of a balancer (:class:`spofkit.frontdoor.Node`) it gets from the proxy's own ways:

- **HAProxy** (:class:`HAProxyNode`): its *runtime API* on a Unix socket (``add server``, ``set server ... state
  drain``, ``del server``, ``show stat``) changes the pool while it runs and says what it sees; its log (on its
  standard output) says when it marks a server DOWN or UP, with its reason, at once. Settings that HAProxy cannot
  change at run time (the strategy, retries, the checks themselves) are a *reload*: a new process takes over the
  listening sockets (``-sf``) and the old one finishes what it was doing.
- **nginx** (:class:`NginxNode`): the open source nginx has no active health checks and no runtime API, so the lab
  observes its passive behaviour. Its error log says "upstream server temporarily disabled" when ``max_fails``
  failures put a server out for ``fail_timeout``; its access log (one line per request, with every server tried and
  its status) shows the retries, and the first answer from a server that was out shows it is back. A change of the
  pool is a new configuration and a ``SIGHUP`` (in-flight requests finish on the old one).

Both publish the usual events (``InstanceDown``, ``InstanceUp``, ``InstanceAdded``, ``StrategyChanged``...), each
naming its balancer, so the Report measures the detection window the same way, and the TUI and widgets show them.

The proxy is a child process of the lab, stopped by its PID, with its configuration, sockets and logs in a
temporary directory; it listens on 127.0.0.1 only (the service address and an address of its own). ``crash`` is a
``kill -9``; ``hang`` stops the process (``SIGSTOP``): the kernel still accepts connections, nobody answers —
the front door's gray failure, for real. If the lab's process dies, the kernel stops the proxy too
(``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import csv
import dataclasses
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from spofkit.childproc import child_ask_for_a_signal_when_the_parent_dies
from spofkit.events import (
    Event,
    EventBus,
    InstanceAdded,
    InstanceDown,
    InstanceDraining,
    InstanceRemoved,
    InstanceUp,
    SettingChanged,
    StrategyChanged,
)
from spofkit.export import (
    BACKEND,
    ExportMember,
    LabSettings,
    RuntimeOptions,
    find_binary,
    haproxy_config,
    haproxy_server_line,
    haproxy_server_options,
    nginx_config,
    nginx_passive_limits,
)
from spofkit.pair import Address
from spofkit.policy import EjectionSettings, HealthSettings, RetrySettings, Strategy
from spofkit.status import DOWN, DRAINING, FALLING, RISING, UP, BalancerStatus, MemberView

REAL_PROXIES = ("haproxy", "nginx")
HOST = "127.0.0.1"
START_TIMEOUT = 10.0  # seconds for a proxy to listen and answer its control socket
STOP_TIMEOUT = 3.0  # seconds between SIGTERM and SIGKILL
CONTROL_TIMEOUT = 2.0  # seconds for one runtime API or control socket call
POLL_INTERVAL = 0.25  # seconds between two looks at the proxy's counters (as a balancer child reports them)
STDERR_LINES = 30  # the last lines a proxy wrote to stderr, kept to explain a failed start
HANG = "hang"
CRASHED = "crashed"


class ProxyFailed(RuntimeError):
    """The proxy did not start, or did not take a change; the message has its own words."""


# --- the child process ----------------------------------------------------------------------------------


class ProxyProcess:
    """One run of the proxy binary: its process, and readers of its standard output and error."""

    def __init__(self, process: asyncio.subprocess.Process, on_line: Any, *, group: bool = False) -> None:
        self.process = process
        self.pid = process.pid
        self.group = group  # signals go to its whole process group (nginx: the master and its worker)
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self._on_line = on_line
        self._readers = [
            asyncio.create_task(self._read(process.stdout, "stdout")),
            asyncio.create_task(self._read(process.stderr, "stderr")),
        ]

    @classmethod
    async def spawn(
        cls, command: list[str], on_line: Any, *, group: bool = False, keep_stdin: bool = False
    ) -> ProxyProcess:
        """Start ``command``; ``on_line(process, "stdout" | "stderr", line)`` hears every line it writes.

        ``keep_stdin`` gives it a pipe on stdin, open until it is stopped (a spofkit child ends at its end of file).
        """
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=subprocess.PIPE if keep_stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # a Ctrl-C in the lab's terminal is for the lab, which then stops the proxy
            preexec_fn=child_ask_for_a_signal_when_the_parent_dies,
        )
        return cls(process, on_line, group=group)

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    def signal(self, signum: int) -> None:
        """Send ``signum`` by PID (to the process group led by that PID, for a ``group`` process)."""
        if self.alive or self.group:  # a group's worker may outlive a killed master for a moment
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if self.group:
                    os.killpg(self.pid, signum)
                else:
                    os.kill(self.pid, signum)

    async def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM (after SIGCONT: a stopped process cannot act on it), SIGKILL after ``timeout``; reaped."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), timeout)
        except asyncio.TimeoutError:
            self.signal(signal.SIGKILL)
            await self.process.wait()
        await self._finish_reading()

    async def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.process.stdin is not None:
            self.process.stdin.close()
        await self.process.wait()
        await self._finish_reading()

    def kill_now(self) -> None:
        """Without the event loop (at interpreter exit): SIGKILL by PID."""
        self.signal(signal.SIGKILL)

    async def _finish_reading(self) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self._readers, return_exceptions=True), 1.0)
        for reader in self._readers:
            reader.cancel()

    async def _read(self, stream: asyncio.StreamReader | None, which: str) -> None:
        assert stream is not None
        while line := await stream.readline():
            text = line.decode(errors="replace").rstrip()
            if which == "stderr":
                self.stderr_tail.append(text)
            self._on_line(self, which, text)


# --- what both proxies share ------------------------------------------------------------------------------


@dataclasses.dataclass
class _Member:
    name: str
    url: str
    weight: int = 1
    backup: bool = False
    max_conns: int | None = None
    initially_up: bool = True

    def exported(self) -> ExportMember:
        return ExportMember.from_url(
            self.name, self.url, weight=self.weight, backup=self.backup, max_conns=self.max_conns
        )


class RealProxyNode:
    """What HAProxy and nginx share as a lab's balancer: settings, the process, faults, events. See subclasses."""

    kind = "proxy"

    def __init__(
        self,
        name: str,
        events: EventBus,
        *,
        strategy: str = "round_robin",
        retries: RetrySettings | None = None,
        ejection: EjectionSettings | None = None,
        health: HealthSettings | None = None,
        slow_start: float = 0.0,
        service_port: int = 0,
        own_port: int = 0,
    ) -> None:
        if not isinstance(strategy, str):
            raise ValueError(f"{self.kind} takes a strategy by name (your own class cannot run inside {self.kind})")
        self.name = name
        self.events = events
        self.strategy = strategy
        self.retries = retries
        self.ejection = ejection
        self.health = health
        self.slow_start = slow_start
        self.service_port = service_port
        self.own_port = own_port
        self.members: dict[str, _Member] = {}
        self.binary = find_binary(self.kind)
        self.workdir: Path | None = None
        self.current: ProxyProcess | None = None
        self.fault: str | None = None
        self.note = ""
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopping = False

    # --- the Node protocol: lifecycle ------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self.current.pid if self.current is not None and self.current.alive else None

    @property
    def running(self) -> bool:
        return self.current is not None and self.current.alive

    @property
    def advert(self) -> Address | None:
        return None  # a real proxy is the lab's only balancer (its pair with keepalived: spofkit.keepalived_pair)

    @property
    def own_url(self) -> str:
        return f"http://{HOST}:{self.own_port}"

    @property
    def service_url(self) -> str:
        return f"http://{HOST}:{self.service_port}"

    async def start(self) -> None:
        """Write the configuration, start the proxy, wait until it listens and answers its control socket."""
        _remove_stale_workdirs()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"spofkit-{self.kind}-{self.name}-{os.getpid()}-"))
        self.service_port = self.service_port or _free_port()
        self.own_port = self.own_port or _free_port()
        self._stopping = False
        try:
            await self._launch()
        except BaseException:
            await self._shut(kill=True)
            raise

    async def stop(self, *, graceful: bool = True) -> None:
        await self._shut(kill=False)

    async def crash(self) -> None:
        """``kill -9`` the proxy's process (and one still finishing after a reload)."""
        await self._shut(kill=True)

    def stop_now(self) -> None:
        """At interpreter exit, without the event loop: SIGKILL by PID, remove the files."""
        for process in self._processes():
            process.kill_now()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    async def _shut(self, *, kill: bool) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        for process in self._processes():
            await (process.kill() if kill else process.stop())
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _processes(self) -> list[ProxyProcess]:
        return [self.current] if self.current is not None else []

    async def _launch(self) -> None:
        raise NotImplementedError

    # --- the Node protocol: the pool and the switches ------------------------------------------------------

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
        if name in self.members:
            raise ValueError(f"{self.name} already has a member named {name!r}")
        member = _Member(name, url, weight, backup, max_conns, initially_up)
        member.exported()  # a bad address fails here, before the proxy hears of it
        self.members[name] = member
        try:
            await self._member_added(member)
        except BaseException:
            self.members.pop(name, None)
            raise
        self._publish(InstanceAdded(self.events.now(), name, url, backup, balancer=self.name))

    async def remove_member(self, name: str, *, drain_timeout: float = 10.0) -> None:
        member = self.members.get(name)
        if member is None:
            return
        await self._member_removed(member, drain_timeout)
        self.members.pop(name, None)
        self._publish(InstanceRemoved(self.events.now(), name, balancer=self.name))

    async def set_strategy(self, strategy: Strategy | str) -> None:
        if not isinstance(strategy, str):
            raise ValueError(f"{self.kind} takes a strategy by name (your own class cannot run inside {self.kind})")
        self.strategy = strategy
        await self._reconfigure()
        self._publish(StrategyChanged(self.events.now(), strategy, balancer=self.name))

    async def set_retries(self, settings: RetrySettings | None) -> None:
        self.retries = settings
        await self._reconfigure()
        self._publish(SettingChanged(self.events.now(), "retries", settings is not None, balancer=self.name))

    async def set_ejection(self, settings: EjectionSettings | None) -> None:
        self.ejection = settings
        await self._reconfigure()
        self._publish(SettingChanged(self.events.now(), "ejection", settings is not None, balancer=self.name))

    async def set_health(self, settings: HealthSettings | None) -> None:
        self.health = settings
        await self._reconfigure()
        self._publish(SettingChanged(self.events.now(), "health_checks", settings is not None, balancer=self.name))

    async def join_pair(self, peers: list[Address]) -> None:
        """A real proxy is never half of a lab's pair (keepalived pairs them: :mod:`spofkit.keepalived_pair`)."""

    async def _member_added(self, member: _Member) -> None:
        raise NotImplementedError

    async def _member_removed(self, member: _Member, drain_timeout: float) -> None:
        raise NotImplementedError

    async def _reconfigure(self) -> None:
        raise NotImplementedError

    # --- the Node protocol: faults -------------------------------------------------------------------------

    async def inject(self, kind: str) -> None:
        """``hang``: stop the process (SIGSTOP). The kernel still accepts connections; nothing answers them."""
        if kind != HANG:
            raise ValueError(
                f"a {self.kind} balancer's fault is 'hang' (or crash, a kill -9); {kind!r} is for a spofkit pair"
            )
        if self.current is not None:
            self.current.signal(signal.SIGSTOP)
        self.fault = HANG

    async def recover(self) -> None:
        if self.current is not None:
            self.current.signal(signal.SIGCONT)
        self.fault = None

    # --- reading -----------------------------------------------------------------------------------------------

    def settings(self) -> LabSettings:
        """The lab's settings for this proxy, as :mod:`spofkit.export` writes them."""
        return LabSettings(
            members=tuple(member.exported() for member in self.members.values()),
            strategy=self.strategy,
            health=self.health,
            retries=self.retries,
            ejection=self.ejection,
            slow_start=self.slow_start,
            listen=(f"{HOST}:{self.service_port}",),
            source=f"the lab's balancer {self.name}",
        )

    def runtime(self, generation: int = 0) -> RuntimeOptions:
        assert self.workdir is not None
        return RuntimeOptions(
            self.workdir, own_listen=f"{HOST}:{self.own_port}", balancer_name=self.name, generation=generation
        )

    def config_text(self) -> str:
        """The configuration the proxy runs now (the exported one, plus the lab's block)."""
        raise NotImplementedError

    def status(self) -> BalancerStatus:
        members = tuple(self._member_view(member) for member in self.members.values())
        requests, retried, failed = self._totals()
        state = CRASHED if not self.running else (HANG if self.fault == HANG else "running")
        note = self.note
        if not self.running and self.current is not None and self.current.process.returncode is not None:
            note = f"exit status {self.current.process.returncode}"
        return BalancerStatus(
            name=self.name,
            url=self.own_url,
            strategy=self.strategy,
            retries=self.retries is not None,
            health_checks=self.health is not None,
            ejection=self.ejection is not None,
            requests=requests,
            retried=retried,
            failed=failed,
            members=members,
            role="single" if self.running else "stopped",
            state=state,
            address=f"{HOST}:{self.service_port}" if self.running else None,
            pid=self.pid,
            note=note,
        )

    def _member_view(self, member: _Member) -> MemberView:
        raise NotImplementedError

    def _totals(self) -> tuple[int, int, int]:
        raise NotImplementedError

    # --- helpers -------------------------------------------------------------------------------------------------

    def _publish(self, event: Event) -> None:
        self.events.publish(event)

    def _name_of(self, address: str) -> str | None:
        for member in self.members.values():
            if member.exported().address == address:
                return member.name
        return None

    def _write(self, filename: str, text: str) -> Path:
        assert self.workdir is not None
        path = self.workdir / filename
        path.write_text(text)
        return path

    async def _until(self, check: Any, what: str, process: ProxyProcess, timeout: float = START_TIMEOUT) -> None:
        """Poll ``check()`` (async) until true; fail with the proxy's last words if it exits or time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            if not process.alive:
                raise ProxyFailed(f"{self.kind} exited ({process.process.returncode}) before {what}: {_tail(process)}")
            with contextlib.suppress(OSError, asyncio.TimeoutError, ValueError):
                if await check():
                    return
            if time.monotonic() > deadline:
                raise ProxyFailed(f"{self.kind} did not get to {what} within {timeout:.0f} s: {_tail(process)}")
            await asyncio.sleep(0.02)


# --- HAProxy ---------------------------------------------------------------------------------------------------

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


# --- nginx -------------------------------------------------------------------------------------------------------

# An access log line of the lab's format: "$msec $status "$upstream_addr" "$upstream_status" $request_time".
_NGINX_ACCESS = re.compile(r'^(?P<msec>[\d.]+) (?P<status>\d{3}) "(?P<addrs>[^"]*)" "(?P<statuses>[^"]*)" ')
# An error log line naming an upstream server: its complaint, and the server's address.
_NGINX_ERROR = re.compile(
    r'\[(?P<level>\w+)\] \d+#\d+: (?:\*\d+ )?(?P<text>.*?), client: .*upstream: "http://(?P<addr>[^/"]+)'
)
_NGINX_DISABLED = "upstream server temporarily disabled"


@dataclasses.dataclass
class _NginxSeen:
    """What nginx's logs told of one server: answers, failures, and whether nginx has put it out."""

    served: int = 0
    failed: int = 0
    out: bool = False
    last_error: str = ""


class NginxNode(RealProxyNode):
    """nginx (open source) as the lab's balancer: one process, reconfigured by SIGHUP, observed through its logs."""

    kind = "nginx"

    def __init__(self, name: str, events: EventBus, **settings: Any) -> None:
        super().__init__(name, events, **settings)
        self.generation = 0
        self.seen: dict[str, _NginxSeen] = {}
        self.requests = 0
        self.retried = 0
        self.failed = 0

    def config_text(self) -> str:
        return nginx_config(self.settings(), self.runtime(self.generation))

    async def control(self, path: str) -> str:
        """GET ``path`` on the lab's control socket (a Unix socket only the lab reaches)."""
        socket_path = str(self.runtime().nginx_control_socket)
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(socket_path), CONTROL_TIMEOUT)
        try:
            writer.write(f"GET {path} HTTP/1.0\r\nHost: spofkit\r\n\r\n".encode())
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), CONTROL_TIMEOUT)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return answer.decode(errors="replace").partition("\r\n\r\n")[2]

    async def _launch(self) -> None:
        self.generation += 1
        assert self.workdir is not None
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.workdir / kind).mkdir(exist_ok=True)
        path = self._write("nginx.conf", self.config_text())
        error_log = self.workdir / "error.log"  # only until the configuration's own error_log (stderr) is read
        command = [self.binary, "-p", str(self.workdir), "-e", str(error_log), "-c", str(path)]
        process = await ProxyProcess.spawn(command, self._heard, group=True)
        self.current = process
        await self._until(self._is_live(self.generation), "answering on its control socket", process)
        await self._until(lambda: _accepts(self.service_port), f"listening on {HOST}:{self.service_port}", process)

    def _is_live(self, generation: int) -> Any:
        async def check() -> bool:
            return (await self.control("/generation")).strip() == str(generation)

        return check

    async def _reload(self) -> None:
        """A new configuration and SIGHUP; wait until nginx runs it. In-flight requests finish on the old one."""
        if not self.running or self.current is None:
            return
        self.generation += 1
        self._write("nginx.conf", self.config_text())
        old_workers = _children_of(self.current.pid)
        self.current.signal(signal.SIGHUP)
        await self._until(self._is_live(self.generation), f"running configuration {self.generation}", self.current)

        async def old_workers_stopped_accepting() -> bool:  # until then, an old worker may still take a request
            return all(_shutting_down(pid) for pid in old_workers)

        await self._until(old_workers_stopped_accepting, "its old worker shutting down", self.current)
        back = [name for name, seen in self.seen.items() if seen.out]
        for name in back:  # a reload forgets nginx's failure counts: every server is tried again
            self.seen[name].out = False
            reason = "nginx reloaded its configuration, which forgets its failure counts: it will be tried again"
            self._publish(InstanceUp(self.events.now(), name, reason, balancer=self.name))

    async def _member_added(self, member: _Member) -> None:
        self.seen.setdefault(member.name, _NginxSeen())
        await self._reload()
        if not member.initially_up:  # the lab would wait for `rise` checks; nginx has none and sends at once
            reason = "nginx has no health checks: a new server takes its share of requests at once"
            self._publish(InstanceUp(self.events.now(), member.name, reason, balancer=self.name))

    async def _member_removed(self, member: _Member, drain_timeout: float) -> None:
        self._publish(InstanceDraining(self.events.now(), member.name, 0, balancer=self.name))
        saved = self.members.pop(member.name)
        try:
            await self._reload()  # nginx finishes the requests it has on the old configuration
        finally:
            self.members[member.name] = saved
        self.seen.pop(member.name, None)

    async def _reconfigure(self) -> None:
        await self._reload()

    # --- what nginx says -------------------------------------------------------------------------------------

    def _heard(self, process: ProxyProcess, which: str, line: str) -> None:
        if process is not self.current or self._stopping:
            return
        if which == "stdout":
            self._heard_request(line)
        else:
            self._heard_error(line)

    def _heard_request(self, line: str) -> None:
        match = _NGINX_ACCESS.match(line)
        if match is None:
            return
        addresses = [a.strip() for a in match["addrs"].split(",") if a.strip() and a.strip() != "-"]
        statuses = [s.strip() for s in match["statuses"].split(",")]
        self.requests += 1
        self.retried += 1 if len(addresses) > 1 else 0
        self.failed += 1 if int(match["status"]) >= 500 else 0
        for address, status in zip(addresses, statuses, strict=False):
            name = self._name_of(address)
            if name is None:
                continue
            seen = self.seen.setdefault(name, _NginxSeen())
            if status.isdigit() and int(status) < 500:
                seen.served += 1
                if seen.out:
                    seen.out = False
                    reason = f"nginx tried it again after fail_timeout and it answered {status}"
                    self._publish(InstanceUp(self.events.now(), name, reason, balancer=self.name))
            else:
                seen.failed += 1

    def _heard_error(self, line: str) -> None:
        match = _NGINX_ERROR.search(line)
        if match is None:
            return
        name = self._name_of(match["addr"])
        if name is None:
            return
        seen = self.seen.setdefault(name, _NginxSeen())
        if not match["text"].startswith(_NGINX_DISABLED):
            seen.last_error = match["text"]
            return
        if seen.out:
            return  # tried again after fail_timeout, failed again: still out
        seen.out = True
        max_fails, fail_timeout = nginx_passive_limits(self.settings())
        why = f"; the last: {seen.last_error}" if seen.last_error else ""
        attempts = "attempt" if max_fails == 1 else "attempts"
        window = f"{fail_timeout:g} s"
        reason = f"nginx: {max_fails} failed {attempts} within fail_timeout ({window}): out for {window}{why}"
        self._publish(InstanceDown(self.events.now(), name, reason, balancer=self.name))

    def _member_view(self, member: _Member) -> MemberView:
        seen = self.seen.get(member.name, _NginxSeen())
        return MemberView(
            name=member.name,
            state=DOWN if seen.out else UP,
            backup=member.backup,
            weight=member.weight,
            served=seen.served,
            failed=seen.failed,
            max_conns=member.max_conns,
        )

    def _totals(self) -> tuple[int, int, int]:
        return self.requests, self.retried, self.failed


# --- making one ---------------------------------------------------------------------------------------------------


def make_real_proxy(kind: str, name: str, events: EventBus, **settings: Any) -> RealProxyNode:
    """An :class:`HAProxyNode` or a :class:`NginxNode` (``kind``), not started yet. ``settings``: the lab's."""
    if kind == "haproxy":
        return HAProxyNode(name, events, **settings)
    if kind == "nginx":
        return NginxNode(name, events, **settings)
    raise ValueError(f"a real proxy is one of {REAL_PROXIES}, got {kind!r}")


# A proxy's folder: spofkit-<kind>-<balancer>-<pid of the lab>-<random>. Only such folders are ever removed as stale.
_WORKDIR = re.compile(r"^spofkit-(?:haproxy|nginx)-[\w.-]+?-(\d+)-\w+$")


def _remove_stale_workdirs() -> None:
    """Remove the folders of proxies whose lab was killed (a `kill -9` leaves no time to clean up)."""
    for entry in Path(tempfile.gettempdir()).glob("spofkit-*-*"):
        match = _WORKDIR.match(entry.name)
        if match and entry.is_dir() and not _alive(int(match[1])):
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive, and not ours to judge
    return True


def _children_of(parent: int) -> set[int]:
    """The processes whose parent is ``parent`` (nginx's master: its workers), from /proc."""
    children = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if int(stat[stat.rindex(")") + 2 :].split()[1]) == parent:
                    children.add(int(entry.name))
    return children


def _shutting_down(pid: int) -> bool:
    """Gone, or an nginx worker that no longer accepts ("nginx: worker process is shutting down")."""
    try:
        return b"shutting down" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True


async def _accepts(port: int) -> bool:
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), CONTROL_TIMEOUT)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _tail(process: ProxyProcess) -> str:
    return " | ".join(process.stderr_tail) or "(it said nothing)"
