"""What HAProxy and nginx share as a lab's balancer: the child process, the settings, the faults, the events.

:class:`ProxyProcess` is one run of a proxy binary (its output read line by line, stopped by PID);
:class:`RealProxyNode` is the balancer the lab steers (:class:`spofkit.frontdoor.Node`), whose subclasses
(:mod:`.haproxy`, :mod:`.nginx`) say how their proxy takes a change and tells what it saw.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
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
from spofkit.events import Event, EventBus, InstanceAdded, InstanceRemoved, SettingChanged, StrategyChanged
from spofkit.export import ExportMember, LabSettings, RuntimeOptions, find_binary
from spofkit.pair import Address
from spofkit.policy import EjectionSettings, HealthSettings, RetrySettings, Strategy
from spofkit.status import BalancerStatus, MemberView

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
