"""Split brain for real: two balancers in network namespaces on one bridge, both claiming the virtual IP.

On one host's loopback the kernel itself refuses a second listener on an address:port, so split brain cannot
happen there. Between machines it can: each has its own kernel, and each will happily put the service address on
its interface. This module builds that setting on one Linux machine, as root, out of network namespaces — each one
a machine's worth of network stack — and runs the experiment a lesson teaches::

         client 192.0.2.10 ──┐
                             ├── bridge br0 (in its own namespace)
    lb1 192.0.2.11 + a1 ─────┤     virtual IP 192.0.2.100:8080, held by the master
    lb2 192.0.2.12 + a2 ─────┘

(192.0.2.0/24 is TEST-NET-1, a range for documentation that is never routed.) Each balancer namespace runs
``python -m spofkit._netns_node balancer``: a service instance, a spofkit balancer on port 8080 and a pair driver
whose adverts cross the bridge. The client namespace runs keep-alive HTTP clients of the virtual IP. Then:

(a) **normal pair**: lb1 (priority 200) is master and holds the address; every answer comes from its side.
(b) **adverts cut** (each driver's ``link_cut``: the link between the two balancers is broken, the one to the
    clients is not): lb2 hears nothing, declares lb1 dead and takes the address too. Both are master, both have
    192.0.2.100 on their interface, both announce it with gratuitous ARP, and the client's neighbour entry for it
    flips between their MAC addresses. Each flip sends the client's packets on open connections to a kernel that
    knows nothing of them: it answers with a reset.
(c) **the same cut, with fencing**: a balancer may hold the address only with a lease from a supervisor — this
    process, over a control channel (each node's pipe) that the cut does not touch. lb2 becomes master in VRRP's
    eyes, but is refused the lease while lb1 renews it; only lb1 holds the address, and the client is served on.
(d) **lb1 killed** (``kill -9``, optional): the supervisor sees the process die, fences it (takes the address
    off its interface, which a dead process cannot do itself) and ends its lease; lb2 takes over.

:func:`run_split_brain_experiment` runs it and returns a :class:`SplitBrainReport` (``print(report.to_text())``);
``python -m spofkit.netns`` does the same from a shell. :func:`can_run_netns` says whether this machine can, and
why not. Nothing here touches the root namespace's interfaces, routes or sysctls: every interface is created
inside a namespace of ours, and everything is torn down in the end, after a failure too (processes by PID first,
then ``ip netns del``).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import itertools
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from spofkit._netns_node import SERVICE_PORT
from spofkit.policy.pair import BACKUP, MASTER, AddressLease

NETWORK_PREFIX = 24
VIP = "192.0.2.100"
BRIDGE = "br0"
DEVICE = "eth0"  # every host's interface to the bridge
# name: (address, MAC, service instance). Locally administered MACs that say who they are, for readable `ip neigh`.
HOSTS = {
    "client": ("192.0.2.10", "02:00:00:00:00:10", None),
    "lb1": ("192.0.2.11", "02:00:00:00:00:11", "a1"),
    "lb2": ("192.0.2.12", "02:00:00:00:00:12", "a2"),
}
PRIORITIES = {"lb1": 200, "lb2": 100}
NAMESPACE_SUFFIXES = {"bridge": "br", "client": "c", "lb1": "lb1", "lb2": "lb2"}
# Names we create: spof-<pid of the creating process>-<suffix>. Only these are ever deleted as stale.
OUR_NAMESPACE = re.compile(r"^spof-(\d+)-(br|c|lb1|lb2|probe)$")
IP_TIMEOUT = 10.0  # seconds for one `ip` command
STOP_GRACE = 3.0  # seconds a child has to stop after being asked, before SIGKILL
POLL = 0.02  # seconds between checks of a condition
NEIGHBOUR_SAMPLE = 0.05  # seconds between looks at the client's neighbour entry for the VIP
WHAT_IT_SHOWS = (
    "What it would show: with the adverts between two balancers cut, both become master and both put the virtual "
    "IP on their interface. Each announces it with gratuitous ARP, so the clients' neighbour entry for it flips "
    "between the two, and every flip resets the clients' connections that were open with the other one (the new "
    "owner's kernel knows nothing of them). Priorities cannot prevent it: neither side hears the other. Fencing "
    "can: with a lease from a supervisor, only one of them holds the address and the clients are served throughout."
)


class NetnsUnavailable(RuntimeError):
    """This machine cannot run the experiment (not Linux, not root, no iproute2, or namespaces refused)."""


class ExperimentFailed(RuntimeError):
    """Something the experiment waits for did not happen in time; the message says what."""


# --- can this machine do it? ------------------------------------------------------------------------------


def can_run_netns(ip: str = "ip") -> tuple[bool, str]:
    """``(True, ...)`` if this process can build the testbed; otherwise ``(False, why and how to fix it)``.

    It checks for Linux, root and iproute2, then tries for real: creates a namespace with a veth pair and a bridge
    in it, and deletes it again (a container may run as root and still be refused namespaces).
    """
    if not sys.platform.startswith("linux"):
        return False, f"network namespaces are a Linux feature, and this is {sys.platform}"
    if shutil.which(ip) is None:
        return False, (
            f"`{ip}` from iproute2 is not installed: `apt-get install iproute2` (Debian, Ubuntu) or "
            "`dnf install iproute` (Fedora)"
        )
    if os.geteuid() != 0:
        return False, (
            f"it needs root (creating network namespaces takes CAP_SYS_ADMIN and CAP_NET_ADMIN), and this process "
            f"runs as uid {os.geteuid()}: run it with sudo, e.g. `sudo {sys.executable} -m spofkit.netns`"
        )
    probe = f"spof-{os.getpid()}-probe"
    steps = [
        ["netns", "add", probe],
        ["-n", probe, "link", "add", "name", "p0", "type", "veth", "peer", "name", "p1"],
        ["-n", probe, "link", "add", "name", "pb", "type", "bridge"],
    ]
    try:
        for step in steps:
            done = subprocess.run([ip, *step], capture_output=True, text=True, timeout=IP_TIMEOUT)
            if done.returncode != 0:
                return False, (
                    f"root, but `ip {' '.join(step)}` failed: {done.stderr.strip()} (in a container, run it with "
                    "--privileged, or --cap-add SYS_ADMIN --cap-add NET_ADMIN)"
                )
    finally:
        subprocess.run([ip, "netns", "del", probe], capture_output=True, timeout=IP_TIMEOUT)
    return True, "root, iproute2, and network namespaces with veth pairs and bridges: ready"


def _unavailable(why: str) -> NetnsUnavailable:
    return NetnsUnavailable(
        f"The split-brain experiment cannot run here: {why}. (It builds network namespaces of its own, a bridge and "
        f"veth pairs, and moves a virtual IP between them: that takes root on Linux.) {WHAT_IT_SHOWS}"
    )


# --- running `ip` -----------------------------------------------------------------------------------------


async def run_ip(ip: str, *arguments: str, check: bool = True) -> str:
    """``ip ARGUMENTS``; its output. With ``check``, a failure raises RuntimeError with ip's own words."""
    process = await asyncio.create_subprocess_exec(
        ip, *arguments, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), IP_TIMEOUT)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        raise RuntimeError(f"ip {' '.join(arguments)} did not finish within {IP_TIMEOUT:.0f}s") from None
    if check and process.returncode != 0:
        raise RuntimeError(f"ip {' '.join(arguments)} failed: {err.decode().strip()}")
    return out.decode()


def our_namespaces(ip: str = "ip") -> list[str]:
    """Every namespace on this machine named the way a testbed names its own (``spof-<pid>-...``)."""
    done = subprocess.run([ip, "netns", "list"], capture_output=True, text=True, timeout=IP_TIMEOUT)
    names = (line.split()[0] for line in done.stdout.splitlines() if line.strip())
    return [name for name in names if OUR_NAMESPACE.match(name)]


def remove_stale_namespaces(ip: str = "ip") -> list[str]:
    """Delete namespaces a testbed left behind when its process was killed (its pid is gone). Returns them."""
    stale = []
    for name in our_namespaces(ip):
        match = OUR_NAMESPACE.match(name)
        assert match is not None
        if not _alive(int(match.group(1))):
            subprocess.run([ip, "netns", "del", name], capture_output=True, timeout=IP_TIMEOUT)
            stale.append(name)
    return stale


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- a program in a namespace ---------------------------------------------------------------------------------


Message = dict[str, Any]


class Child:
    """One program of ours running in a namespace, steered by JSON lines on its stdin, heard on its stdout."""

    def __init__(self, name: str, process: asyncio.subprocess.Process, on_message: Callable[[Child, Message], None]):
        self.name = name
        self.process = process
        self.pid = process.pid
        self.on_message = on_message
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self._readers = [asyncio.create_task(self._read_stdout()), asyncio.create_task(self._read_stderr())]

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    @property
    def deafness(self) -> BaseException | None:
        """The error that stopped us hearing this program (a message we could not handle), if any."""
        reader = self._readers[0]
        return reader.exception() if reader.done() and not reader.cancelled() else None

    def send(self, command: Message) -> None:
        """Write one command (a few dozen bytes: the pipe's buffer takes it at once, no need to await)."""
        stdin = self.process.stdin
        if stdin is not None and self.running and not stdin.is_closing():
            stdin.write((json.dumps(command) + "\n").encode())

    def kill(self) -> None:
        """``kill -9``, by PID."""
        if self.running:
            os.kill(self.pid, signal.SIGKILL)

    async def stop(self) -> None:
        """Ask it to stop, close its stdin; after ``STOP_GRACE`` seconds, kill it. Always reaps it."""
        if self.running:
            self.send({"cmd": "stop"})
            if self.process.stdin is not None:
                self.process.stdin.close()
            try:
                await asyncio.wait_for(self.process.wait(), STOP_GRACE)
            except asyncio.TimeoutError:
                self.kill()
        await self.process.wait()
        for reader in self._readers:
            reader.cancel()

    async def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            try:
                message = json.loads(line)
            except ValueError:
                continue  # not one of our messages (a stray print): nothing to hear
            if isinstance(message, dict):
                self.on_message(self, message)

    async def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            self.stderr_tail.append(line.decode(errors="replace").rstrip())


# --- the testbed ----------------------------------------------------------------------------------------------


class Testbed:
    """Four network namespaces of ours on one bridge, and the programs started in them.

    ``async with Testbed() as bed:`` builds it (as root) and tears it all down on the way out, whatever happened:
    children are stopped by PID, anything else still in our namespaces is killed, then the namespaces are
    deleted (which deletes their interfaces). ``bed.namespaces`` maps ``bridge``, ``client``, ``lb1``, ``lb2`` to
    the namespace names, ``spof-<pid>-br`` and so on.
    """

    def __init__(self, *, ip: str = "ip", prefix: str | None = None) -> None:
        self.ip = ip
        self.prefix = prefix or f"spof-{os.getpid()}"
        self.namespaces = {role: f"{self.prefix}-{suffix}" for role, suffix in NAMESPACE_SUFFIXES.items()}
        self.children: list[Child] = []
        self.created: list[str] = []  # namespaces made so far, in order (teardown deletes exactly these)
        self.pids: list[int] = []  # every process started, for the record
        self.teardown_problems: list[str] = []

    async def __aenter__(self) -> Testbed:
        able, why = can_run_netns(self.ip)
        if not able:
            raise _unavailable(why)
        try:
            await self._build()
        except BaseException:
            await self.teardown()
            raise
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.teardown()
        if self.teardown_problems and error is None:
            raise RuntimeError("testbed teardown: " + "; ".join(self.teardown_problems))

    async def _build(self) -> None:
        remove_stale_namespaces(self.ip)
        taken = set(self.namespaces.values()) & set(our_namespaces(self.ip))
        if taken:
            raise RuntimeError(f"namespaces {sorted(taken)} exist already: one testbed per process at a time")
        for namespace in self.namespaces.values():
            await run_ip(self.ip, "netns", "add", namespace)
            self.created.append(namespace)
        bridge = self.namespaces["bridge"]
        await run_ip(self.ip, "-n", bridge, "link", "add", "name", BRIDGE, "type", "bridge")
        await run_ip(self.ip, "-n", bridge, "link", "set", "dev", BRIDGE, "up")
        for host, (address, mac, _) in HOSTS.items():
            namespace, port = self.namespaces[host], f"to-{host}"
            # Always the keywords `name` and `dev`: ip takes "a" as short for "address", and so on.
            await run_ip(
                self.ip, "-n", bridge, "link", "add", "name", port, "type", "veth",
                "peer", "name", DEVICE, "netns", namespace,
            )  # fmt: skip
            await run_ip(self.ip, "-n", bridge, "link", "set", "dev", port, "master", BRIDGE, "up")
            await run_ip(self.ip, "-n", namespace, "link", "set", "dev", DEVICE, "address", mac)
            await run_ip(self.ip, "-n", namespace, "addr", "add", f"{address}/{NETWORK_PREFIX}", "dev", DEVICE)
            await run_ip(self.ip, "-n", namespace, "link", "set", "dev", DEVICE, "up")
            await run_ip(self.ip, "-n", namespace, "link", "set", "dev", "lo", "up")

    async def start(
        self, host: str, arguments: Iterable[str], on_message: Callable[[Child, Message], None], max_seconds: float
    ) -> Child:
        """Start ``python -m spofkit._netns_node ARGUMENTS`` in ``host``'s namespace (``ip netns exec`` execs it,
        so the PID we get is the program's own)."""
        command = [self.ip, "netns", "exec", self.namespaces[host], sys.executable, "-m", "spofkit._netns_node"]
        command += ["--max-seconds", f"{max_seconds:.0f}", *arguments]
        process = await asyncio.create_subprocess_exec(
            *command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        child = Child(host, process, on_message)
        self.children.append(child)
        self.pids.append(child.pid)
        return child

    async def vip_holders(self) -> list[str]:
        """Which balancers have the virtual IP on their interface, asked of their kernels (not of the nodes)."""
        holders = []
        for host in ("lb1", "lb2"):
            out = await run_ip(self.ip, "-n", self.namespaces[host], "-j", "addr", "show", "dev", DEVICE, check=False)
            addresses = {a.get("local") for link in json.loads(out or "[]") for a in link.get("addr_info", [])}
            if VIP in addresses:
                holders.append(host)
        return holders

    async def neighbour_of_vip(self) -> str | None:
        """Whose MAC the client's neighbour (ARP) entry for the virtual IP holds: ``lb1``, ``lb2`` or None."""
        out = await run_ip(self.ip, "-n", self.namespaces["client"], "-j", "neigh", "show", VIP, check=False)
        by_mac = {mac: host for host, (_, mac, _) in HOSTS.items()}
        for entry in json.loads(out or "[]"):
            if "lladdr" in entry and "FAILED" not in entry.get("state", []):
                return str(by_mac.get(entry["lladdr"], entry["lladdr"]))
        return None

    async def fence(self, host: str) -> None:
        """Take the virtual IP off ``host``'s interface from outside: what a dead balancer cannot do itself."""
        await run_ip(self.ip, "-n", self.namespaces[host], "addr", "del", f"{VIP}/32", "dev", DEVICE, check=False)

    async def teardown(self) -> None:
        """Stop every child (by PID), kill anything left in our namespaces, delete the namespaces. Idempotent."""
        for child in reversed(self.children):
            try:
                await child.stop()
            except Exception as problem:  # keep going: the namespaces must go whatever happened
                self.teardown_problems.append(f"stopping {child.name} (pid {child.pid}): {problem}")
        self.children.clear()
        for namespace in reversed(self.created):
            try:
                await self._empty(namespace)
                await run_ip(self.ip, "netns", "del", namespace)
            except Exception as problem:
                self.teardown_problems.append(f"deleting namespace {namespace}: {problem}")
        self.created.clear()

    async def _empty(self, namespace: str) -> None:
        """SIGKILL whatever still runs in ``namespace`` (only our programs can be in a namespace we made)."""
        out = await run_ip(self.ip, "netns", "pids", namespace, check=False)
        pids = [int(pid) for pid in out.split() if pid.isdigit()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + STOP_GRACE
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            await asyncio.sleep(POLL)


# --- what it measured ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhaseReport:
    """One phase, as the client felt it and the testbed saw it.

    ``answered`` counts answers by the service instance that gave them (``a1`` behind lb1, ``a2`` behind lb2);
    ``errors`` counts failed requests by kind (``reset``, ``timeout``, ``refused``, ``unreachable``, ``http_5xx``).
    ``masters`` are the balancers that were master (by VRRP's rules) at some moment of the phase; ``vip_holders``
    those that had the address on their interface; ``both_held_seconds`` how long both had it at once.
    ``arp_flips`` counts changes of the client's neighbour entry for the address; ``side_switches`` how often one
    answer came from the other side than the one before.
    """

    name: str
    title: str
    seconds: float
    sent: int
    answered: dict[str, int]
    errors: dict[str, int]
    masters: tuple[str, ...]
    vip_holders: tuple[str, ...]
    holders_at_end: tuple[str, ...]
    both_held_seconds: float
    arp_flips: int
    side_switches: int
    lease_refusals: dict[str, int] = field(default_factory=dict)  # by balancer

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    def describe(self) -> list[str]:
        by_side = ", ".join(f"{node} ({name}) {self.answered.get(name, 0)}" for node, name in _INSTANCES.items())
        errors = ", ".join(f"{kind} {count}" for kind, count in sorted(self.errors.items())) or "none"
        holders = " and ".join(self.vip_holders) or "nobody"
        if len(self.vip_holders) > 1 and self.both_held_seconds == 0:
            holders += ", one after the other"
        lines = [
            f"({self.name}) {self.title} — {self.seconds:.1f} s",
            f"    requests sent {self.sent}: answered by {by_side}; failed: {errors}",
            f"    master: {', '.join(self.masters) or 'nobody'}; virtual IP on the interface of {holders}"
            + (f" (both at once for {self.both_held_seconds:.1f} s)" if self.both_held_seconds > 0 else ""),
            f"    the client's ARP entry for the VIP changed {_times(self.arp_flips)}; "
            f"consecutive answers switched side {_times(self.side_switches)}",
        ]
        for node, count in sorted(self.lease_refusals.items()):
            lines.append(f"    the supervisor refused {node} the lease {_times(count)}: another balancer held it")
        return lines


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"


_INSTANCES = {host: instance for host, (_, _, instance) in HOSTS.items() if instance is not None}


@dataclass(frozen=True)
class SplitBrainReport:
    """The experiment's findings: one :class:`PhaseReport` per phase, and how it was run."""

    phases: tuple[PhaseReport, ...]
    takeover_seconds: float | None  # phase (d): from kill -9 of lb1 to the client's first answer from lb2
    address_moved_seconds: float | None  # phase (d): from kill -9 of lb1 to lb2 having the address
    settings: dict[str, float]
    namespaces: tuple[str, ...]
    pids: tuple[int, ...]
    between_phases: int = 0  # requests sent while the pair healed between phases (counted in no phase)

    def phase(self, name: str) -> PhaseReport:
        for phase in self.phases:
            if phase.name == name:
                return phase
        raise KeyError(f"no phase {name!r}; phases: {', '.join(p.name for p in self.phases)}")

    def to_text(self) -> str:
        s = self.settings
        lines = [
            f"Split brain in network namespaces: balancers lb1 (priority {PRIORITIES['lb1']}) and lb2 "
            f"(priority {PRIORITIES['lb2']}), virtual IP {VIP}:{SERVICE_PORT}, one client, one bridge",
            f"  client: {s['connections']:.0f} keep-alive connections, {s['rate']:.0f} requests/s, "
            f"timeout {s['timeout']:.1f} s; adverts every {s['advert_interval']:.2f} s; gratuitous ARP every "
            f"{s['garp_refresh']:.1f} s while master; lease term {s['lease_term']:.1f} s",
            "",
        ]
        for phase in self.phases:
            lines += [*phase.describe(), ""]
        if self.takeover_seconds is not None and self.address_moved_seconds is not None:
            lines.append(
                f"Takeover after kill -9 of lb1: lb2 had the address {self.address_moved_seconds:.2f} s later, "
                f"the client its first answer from lb2 {self.takeover_seconds:.2f} s later."
            )
        if self.between_phases:
            lines.append(f"({self.between_phases} requests sent while the pair healed between phases are not counted.)")
        return "\n".join(lines)


class _History:
    """What one thing was over time: its changes ``(at, value)``, oldest first."""

    def __init__(self, initial: Any) -> None:
        self.changes: list[tuple[float, Any]] = [(-math.inf, initial)]

    def record(self, at: float, value: Any) -> None:
        if value != self.changes[-1][1]:
            self.changes.append((at, value))

    def at(self, moment: float) -> Any:
        value = self.changes[0][1]
        for when, new in self.changes:
            if when > moment:
                break
            value = new
        return value

    def values_during(self, start: float, end: float) -> set[Any]:
        return {self.at(start)} | {value for when, value in self.changes if start < when <= end}

    def changes_during(self, start: float, end: float) -> int:
        return sum(1 for when, _ in self.changes if start < when <= end)

    def moments(self, start: float, end: float) -> list[float]:
        return [when for when, _ in self.changes if start < when < end]


# --- the experiment ----------------------------------------------------------------------------------------------


@dataclass
class _Node:
    child: Child
    role: str = "stopped"  # as the node last reported it
    holds: bool = False  # the node says the address is on its interface


class _SplitBrainRun:
    """The supervisor: starts the programs, hears them, grants leases, moves from phase to phase, keeps the record."""

    def __init__(self, bed: Testbed, settings: dict[str, float]) -> None:
        self.bed = bed
        self.settings = settings
        self.lease = AddressLease(term=settings["lease_term"])
        self.fencing = False
        self.nodes: dict[str, _Node] = {}
        self.client: Child | None = None
        self.records: list[Message] = []
        self.client_done = asyncio.Event()
        self.ready: set[str] = set()
        self.roles = {host: _History("stopped") for host in PRIORITIES}
        self.holding = {host: _History(False) for host in PRIORITIES}
        self.neighbour = _History(None)
        self.refusals: list[tuple[float, str]] = []  # (when, who) the supervisor said no
        self.windows: list[tuple[str, str, float, float]] = []  # (name, title, start, end)
        self.holders_at_end: dict[str, tuple[str, ...]] = {}  # phase: who had the address, by their kernels
        self.killed: set[str] = set()  # balancers killed on purpose
        self.lifetime = 60 + 8 * settings["phase_seconds"]  # every program ends by itself after this, whatever
        self._stats_waiters: dict[str, asyncio.Future[Message]] = {}
        self._watchers: list[asyncio.Task[None]] = []

    # --- hearing the programs --------------------------------------------------------------------------------

    def heard(self, child: Child, message: Message) -> None:
        kind, at = message.get("type"), float(message.get("at", time.monotonic()))
        node = self.nodes.get(child.name)
        if kind == "request":
            self.records.append(message)
        elif kind == "done":
            self.client_done.set()
        elif kind == "ready":
            self.ready.add(child.name)
        elif node is None:
            return
        elif kind == "role":
            node.role = message["role"]
            self.roles[child.name].record(at, node.role)
        elif kind == "address":
            node.holds = bool(message["held"])
            self.holding[child.name].record(at, node.holds)
        elif kind == "lease_request":
            granted = self.fencing and child.running and self.lease.request(child.name, time.monotonic())
            if not granted:
                self.refusals.append((at, child.name))
            child.send({"cmd": "lease", "granted": granted, "asked_at": message["asked_at"], "term": self.lease.term})
        elif kind == "lease_release":
            self.lease.release(child.name)
        elif kind == "stats":
            waiter = self._stats_waiters.pop(child.name, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(message)

    async def ask_stats(self, host: str) -> Message:
        waiter: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._stats_waiters[host] = waiter
        self.nodes[host].child.send({"cmd": "stats"})
        return await asyncio.wait_for(waiter, 5.0)

    async def watch_death(self, host: str) -> None:
        """When a balancer's process ends, fence it (its address must go: it cannot remove it any more), then end
        its lease, in that order, so that nobody else gets the address while the dead one's kernel still has it."""
        child = self.nodes[host].child
        await child.process.wait()
        at = time.monotonic()
        if self.fencing:
            await self.bed.fence(host)
            self.holding[host].record(time.monotonic(), False)
        self.lease.holder_died(host)
        self.roles[host].record(at, "stopped")

    async def sample_neighbour(self) -> None:
        while True:
            self.neighbour.record(time.monotonic(), await self.bed.neighbour_of_vip())
            await asyncio.sleep(NEIGHBOUR_SAMPLE)

    # --- the run ------------------------------------------------------------------------------------------------

    async def run(self, kill_master: bool) -> SplitBrainReport:
        """Start the pair and the client, then phases (a), (b), (c) and, with ``kill_master``, (d)."""
        await self.start_pair()
        await self.start_client()
        self.neighbour.record(time.monotonic(), await self.bed.neighbour_of_vip())  # where it stands before (a)
        sampler = asyncio.create_task(self.sample_neighbour())
        takeover: tuple[float, float] | None = None
        try:
            await self.normal_pair()
            await self.split_brain()
            await self.heal()
            await self.split_brain_fenced()
            if kill_master:
                await self.heal()
                takeover = await self.kill_the_master()
        finally:
            sampler.cancel()
            for watcher in self._watchers:
                watcher.cancel()
            await self.stop_client()
        return SplitBrainReport(
            phases=tuple([self.phase_report(*window) for window in self.windows]),
            takeover_seconds=takeover[0] if takeover else None,
            address_moved_seconds=takeover[1] if takeover else None,
            settings=dict(self.settings),
            namespaces=tuple(self.bed.namespaces.values()),
            pids=tuple(self.bed.pids),
            between_phases=sum(1 for r in self.records if r["phase"] == "-"),
        )

    async def start_pair(self) -> None:
        s = self.settings
        for host, peer in (("lb1", "lb2"), ("lb2", "lb1")):
            arguments = [
                "balancer", "--name", host, "--instance", _INSTANCES[host],
                "--priority", str(PRIORITIES[host]), "--address", HOSTS[host][0], "--peer", HOSTS[peer][0],
                "--vip", VIP, "--device", DEVICE,
                "--advert-interval", str(s["advert_interval"]), "--garp-refresh", str(s["garp_refresh"]),
            ]  # fmt: skip
            self.nodes[host] = _Node(await self.bed.start(host, arguments, self.heard, self.lifetime))
        await self.until(lambda: self.ready >= {"lb1", "lb2"}, 20, "both balancers started")
        self._watchers = [asyncio.create_task(self.watch_death(host)) for host in self.nodes]
        lb1, lb2 = self.nodes["lb1"], self.nodes["lb2"]
        await self.until(lambda: lb1.holds and lb2.role == BACKUP, 10, "lb1 holds the address, lb2 is backup")
        await self.until_async(lambda: self._master_seen_by("lb2", "lb1"), 5, "lb2 hears lb1's adverts")

    async def start_client(self) -> None:
        s = self.settings
        arguments = [
            "client", "--vip", VIP, "--connections", str(int(s["connections"])), "--rate", str(s["rate"]),
            "--timeout", str(s["timeout"]),
        ]  # fmt: skip
        self.client = await self.bed.start("client", arguments, self.heard, self.lifetime)
        await self.until(lambda: any(r["error"] is None for r in self.records), 10, "the client's first answer")

    async def stop_client(self) -> None:
        if self.client is not None and self.client.running:
            self.client.send({"cmd": "stop"})
            with contextlib.suppress(asyncio.TimeoutError):  # teardown kills it if it does not stop
                await asyncio.wait_for(self.client_done.wait(), self.settings["timeout"] + STOP_GRACE)

    async def normal_pair(self) -> None:
        start = self.begin("a", "normal pair: lb1 master")
        await self.hold(start + self.settings["phase_seconds"])
        await self.end()

    async def split_brain(self) -> None:
        start = self.begin("b", "adverts cut, no fencing: split brain")
        self.cut(True)
        lb1, lb2 = self.nodes["lb1"], self.nodes["lb2"]
        await self.until(lambda: lb1.holds and lb2.holds, 5, "lb2 takes the address too")
        await self.hold_at_least(start)
        await self.end()

    async def heal(self) -> None:
        """Mend the cut; wait until lb2 is backup again and the client is served by lb1 alone (not counted)."""
        self.cut(False)
        lb1, lb2 = self.nodes["lb1"], self.nodes["lb2"]
        await self.until(lambda: lb1.holds and not lb2.holds and lb2.role == BACKUP, 5, "lb2 steps down")
        await self.until(lambda: self._recently_all_from("a1", 8), 10, "the client is served by lb1 alone again")

    async def split_brain_fenced(self) -> None:
        self.fencing = True
        for node in self.nodes.values():
            node.child.send({"cmd": "fencing", "on": True})
        await self.until(lambda: self.lease.holder == "lb1", 5, "lb1 holds the lease")
        start = self.begin("c", "adverts cut, fencing by lease")
        self.cut(True)
        await self.until(lambda: self.nodes["lb2"].role == MASTER, 5, "lb2 becomes master (without the lease)")
        await self.hold_at_least(start)
        await self.end()

    async def kill_the_master(self) -> tuple[float, float]:
        """Phase (d): ``kill -9`` lb1. Returns the seconds until the client's first answer from lb2, and until lb2
        had the address."""
        start = self.begin("d", "lb1 killed (kill -9), fencing on")
        self.killed.add("lb1")
        self.nodes["lb1"].child.kill()
        first = await self.until(
            lambda: next((r for r in self.records if r["start"] > start and r["served_by"] == "a2"), None),
            10,
            "the client's first answer from lb2 after the kill",
        )
        await self.hold(start + self.settings["phase_seconds"])
        await self.end()
        moved = next(at for at, held in self.holding["lb2"].changes if at > start and held)
        return float(first["end"]) - start, moved - start

    # --- steps ---------------------------------------------------------------------------------------------

    def begin(self, name: str, title: str) -> float:
        assert self.client is not None
        self.client.send({"cmd": "phase", "name": name})
        start = time.monotonic()
        self.windows.append((name, title, start, math.inf))
        return start

    async def end(self) -> None:
        """End the phase: requests from now on count in none ("-"); ask the kernels who holds the address."""
        assert self.client is not None
        self.client.send({"cmd": "phase", "name": "-"})
        name, title, start, _ = self.windows[-1]
        self.windows[-1] = (name, title, start, time.monotonic())
        self.holders_at_end[name] = tuple(await self.bed.vip_holders())

    def cut(self, on: bool) -> None:
        for node in self.nodes.values():
            node.child.send({"cmd": "cut", "on": on})

    async def hold_at_least(self, start: float) -> None:
        """Run a phase for ``phase_seconds`` from ``start``, and at least 3/4 of that after its event happened."""
        seconds = self.settings["phase_seconds"]
        await self.hold(max(start + seconds, time.monotonic() + seconds * 0.75))

    async def hold(self, until: float) -> None:
        """Let the phase run until ``until`` (monotonic time), checking the programs are still there."""
        while time.monotonic() < until:
            self._check_alive()
            await asyncio.sleep(min(POLL * 5, max(0.0, until - time.monotonic())))

    async def until(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while not (value := predicate()):
            self._check_alive()
            if time.monotonic() >= deadline:
                raise ExperimentFailed(f"{what}: did not happen within {timeout:.0f} s{self._tails()}")
            await asyncio.sleep(POLL)
        return value

    async def until_async(self, predicate: Callable[[], Any], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not await predicate():
            self._check_alive()
            if time.monotonic() >= deadline:
                raise ExperimentFailed(f"{what}: did not happen within {timeout:.0f} s{self._tails()}")
            await asyncio.sleep(POLL)

    async def _master_seen_by(self, host: str, master: str) -> bool:
        return (await self.ask_stats(host)).get("master") == master

    def _recently_all_from(self, instance: str, count: int) -> bool:
        recent = [r for r in self.records if r["phase"] == "-"][-count:]
        return len(recent) == count and all(r["served_by"] == instance for r in recent)

    def _check_alive(self) -> None:
        expected = [node.child for host, node in self.nodes.items() if host not in self.killed]
        for child in [*expected, *([self.client] if self.client else [])]:
            if child.deafness is not None:
                raise ExperimentFailed(f"a message from {child.name} could not be handled: {child.deafness!r}")
            if not child.running:
                raise ExperimentFailed(f"{child.name} (pid {child.pid}) ended unexpectedly{self._tails()}")

    def _tails(self) -> str:
        tails = [f"\n  {c.name} stderr: " + " | ".join(c.stderr_tail) for c in self.bed.children if c.stderr_tail]
        return "".join(tails)

    # --- the figures ------------------------------------------------------------------------------------------

    def phase_report(self, name: str, title: str, start: float, end: float) -> PhaseReport:
        records = sorted((r for r in self.records if r["phase"] == name), key=lambda r: r["start"])
        answered = collections.Counter(r["served_by"] for r in records if r["error"] is None)
        errors = collections.Counter(r["error"] for r in records if r["error"] is not None)
        sides = [r["served_by"] for r in records if r["error"] is None]
        switches = sum(1 for before, after in itertools.pairwise(sides) if before != after)
        masters = tuple(h for h in PRIORITIES if MASTER in self.roles[h].values_during(start, end))
        holders = tuple(h for h in PRIORITIES if True in self.holding[h].values_during(start, end))
        return PhaseReport(
            name=name,
            title=title,
            seconds=end - start,
            sent=len(records),
            answered=dict(answered),
            errors=dict(errors),
            masters=masters,
            vip_holders=holders,
            holders_at_end=self.holders_at_end.get(name, ()),
            both_held_seconds=self._both_held(start, end),
            arp_flips=self.neighbour.changes_during(start, end),
            side_switches=switches,
            lease_refusals=dict(collections.Counter(who for at, who in self.refusals if start <= at <= end)),
        )

    def _both_held(self, start: float, end: float) -> float:
        moments = sorted(
            {start, end, *self.holding["lb1"].moments(start, end), *self.holding["lb2"].moments(start, end)}
        )
        return sum(
            later - earlier
            for earlier, later in itertools.pairwise(moments)
            if self.holding["lb1"].at(earlier) and self.holding["lb2"].at(earlier)
        )


def _check_settings(settings: dict[str, float]) -> None:
    limits = {
        "phase_seconds": (0.5, 30.0),
        "connections": (1, 16),
        "rate": (1.0, 200.0),
        "timeout": (0.1, 5.0),
        "advert_interval": (0.05, 1.0),
        "garp_refresh": (0.0, 10.0),
        "lease_term": (0.1, 10.0),
    }
    for name, (low, high) in limits.items():
        value = settings[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ValueError(f"{name} must be a number from {low} to {high}, got {value!r}")
    if settings["lease_term"] <= 2 * settings["advert_interval"]:
        raise ValueError(
            f"lease_term ({settings['lease_term']}) must be more than twice advert_interval "
            f"({settings['advert_interval']}): the holder renews once per advert and must not lose it by a hair"
        )


async def split_brain_experiment(
    *,
    phase_seconds: float = 3.0,
    connections: int = 4,
    rate: float = 40.0,
    timeout: float = 1.0,
    advert_interval: float = 0.2,
    garp_refresh: float = 1.0,
    lease_term: float = 1.0,
    kill_master: bool = True,
    ip: str = "ip",
) -> SplitBrainReport:
    """Run the experiment (as root) and return what it measured. ``await`` it where a loop runs (a notebook).

    ``phase_seconds`` is each phase's length; the client keeps ``connections`` keep-alive connections and sends
    ``rate`` requests a second in all, each allowed ``timeout`` seconds. ``garp_refresh`` is how often a master
    repeats its gratuitous ARP (0: only when it takes the address). ``kill_master`` adds phase (d).
    Raises :class:`NetnsUnavailable` without root or iproute2, :class:`ExperimentFailed` if a step does not happen.
    """
    settings: dict[str, float] = {
        "phase_seconds": phase_seconds,
        "connections": connections,
        "rate": rate,
        "timeout": timeout,
        "advert_interval": advert_interval,
        "garp_refresh": garp_refresh,
        "lease_term": lease_term,
    }
    _check_settings(settings)
    async with Testbed(ip=ip) as bed:
        return await _SplitBrainRun(bed, settings).run(kill_master)


def run_split_brain_experiment(**settings: Any) -> SplitBrainReport:
    """:func:`split_brain_experiment`, from code that is not async. Where a loop already runs (a notebook cell), it
    runs in a thread of its own and this call waits for it."""
    able, why = can_run_netns(settings.get("ip", "ip"))
    if not able:
        raise _unavailable(why)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        in_a_loop = False
    else:
        in_a_loop = True
    if not in_a_loop:  # (outside the except: a failure must not read as "during handling of no running loop")
        return asyncio.run(split_brain_experiment(**settings))
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as worker:
        return worker.submit(asyncio.run, split_brain_experiment(**settings)).result()


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m spofkit.netns", description=__doc__.split("\n\n")[0])
    parser.add_argument("--phase-seconds", type=float, default=3.0, help="how long each phase runs (0.5-30)")
    parser.add_argument("--no-kill", action="store_true", help="leave out phase (d), the kill -9 of lb1")
    args = parser.parse_args(argv)
    return run_experiment_cli(
        lambda: run_split_brain_experiment(phase_seconds=args.phase_seconds, kill_master=not args.no_kill)
    )


def run_experiment_cli(run: Callable[[], Any]) -> int:
    """Run a testbed experiment from a command line: print its report (exit 0), or say why it could not run (2:
    no root or no ``ip``, a bad setting) or failed (1); Ctrl-C removes the testbed first (130)."""
    try:
        report = run()
    except (NetnsUnavailable, ValueError) as error:
        print(error, file=sys.stderr)
        return 2
    except ExperimentFailed as error:
        print(f"the experiment failed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: the testbed's processes and namespaces have been removed", file=sys.stderr)
        return 130
    print(report.to_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
