"""The front door in production: two HAProxies and keepalived, and the same balancer crash as spofkit's pair.

spofkit's pair (:mod:`spofkit.pair`) follows VRRP's rules; in production the rules are keepalived's, and the proxy
is HAProxy. This module runs both on one Linux machine, as root, in the network namespaces of
:class:`spofkit.netns.Testbed` (a bridge, a client, ``lb1`` and ``lb2``; nothing touches the root namespace)::

         client 192.0.2.10 ──┐
                             ├── bridge            virtual IP 192.0.2.100:8080, held by the VRRP master
    lb1 192.0.2.11 ──────────┤   HAProxy + keepalived (priority 200), instance a1
    lb2 192.0.2.12 ──────────┘   HAProxy + keepalived (priority 100), instance a2

Each balancer namespace runs a service instance, an HAProxy in front of it (its configuration from
:mod:`spofkit.export`) and a keepalived that holds the virtual IP while it is master. keepalived cannot see HAProxy
die by itself: a ``vrrp_script`` asks every ``check_interval`` whether *this* HAProxy still runs (``pgrep`` of its
command line), and a failed check puts keepalived in FAULT state — it sends a priority-0 advert and removes the
address, and the backup takes over after its skew time only. The same client as the split-brain experiment
measures what users feel. Then, for each front door:

- **spofkit pair**: ``kill -9`` of lb1's balancer (proxy and adverts are one process): the backup hears nothing
  and takes over after the master-down interval (3 × advert + skew);
- **keepalived + HAProxy**: ``kill -9`` of lb1's HAProxy: keepalived notices at its next check and steps down;
- **keepalived + HAProxy, lb1 lost** (optional): lb1's link goes down and everything in it is killed — a power
  loss: no priority-0 advert this time, the backup waits the master-down interval too.

Each is measured the same way: from the kill to the virtual IP on lb2's interface (asked of its kernel), and to the
client's first answer from lb2's side; the client errors during the takeover. :func:`run_keepalived_pair` returns a
:class:`PairComparison` (``print(report.to_text())``); ``python -m spofkit.keepalived_pair`` does it from a shell.
:func:`can_run_keepalived` says whether this machine can, and why not.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spofkit._netns_node import SERVICE_PORT
from spofkit.export import ExportMember, LabSettings, find_binary, haproxy_config
from spofkit.netns import (
    DEVICE,
    HOSTS,
    PRIORITIES,
    VIP,
    Child,
    ExperimentFailed,
    NetnsUnavailable,
    Testbed,
    run_experiment_cli,
    run_ip,
)
from spofkit.netns import can_run_netns as _can_run_netns
from spofkit.policy.pair import PairSettings
from spofkit.real_proxy import ProxyProcess

VIRTUAL_ROUTER_ID = 51
POLL = 0.02  # seconds between looks at who holds the address
START_TIMEOUT = 20.0  # seconds for a front door to come up (Python children are slow to start on a busy machine)
TAKEOVER_TIMEOUT = 15.0  # seconds a takeover may take before the experiment gives up
# keepalived's own defaults: adverts every second, a vrrp_script checked every second, one failure is enough.
# (Its check cannot be faster: a vrrp_script's interval is whole seconds in keepalived 2.2. `track_process` would see
# HAProxy die at once, but it needs the kernel's process events, which a network namespace other than the first
# does not get.)
KEEPALIVED_DEFAULTS = {"advert_interval": 1.0, "check_interval": 1.0}
_ROLE_LINE = re.compile(r"\((?P<instance>\w+)\) Entering (?P<state>MASTER|BACKUP|FAULT) STATE")


class KeepalivedUnavailable(NetnsUnavailable):
    """This machine cannot run the keepalived pair (no root, no namespaces, or keepalived/HAProxy missing)."""


def can_run_keepalived(ip: str = "ip") -> tuple[bool, str]:
    """``(True, ...)`` if this process can run the pair; otherwise ``(False, why and how to fix it)``."""
    for binary in ("keepalived", "haproxy"):
        try:
            find_binary(binary)
        except RuntimeError as missing:
            return False, str(missing)
    if shutil.which("pgrep") is None:
        return False, "pgrep (Debian package procps) is not installed: keepalived's check of HAProxy uses it"
    return _can_run_netns(ip)


# --- keepalived's configuration ---------------------------------------------------------------------------------


def keepalived_config(
    name: str,
    *,
    priority: int,
    address: str,
    peer: str,
    check: str,
    advert_interval: float = 0.2,
    check_interval: float = 1.0,
    vip: str = VIP,
    device: str = DEVICE,
) -> str:
    """One keepalived of the pair: a VRRP instance holding ``vip`` while master, adverts to ``peer`` only (unicast,
    as spofkit's pair sends them), and ``check`` (a command) run every ``check_interval``: failing, it steps down.

    ``advert_interval`` below one second needs VRRP version 3 (keepalived then takes centiseconds).
    """
    if not 0.01 <= advert_interval <= 255:
        raise ValueError(f"advert_interval must be 0.01..255 seconds, got {advert_interval!r}")
    if check_interval != int(check_interval) or not 1 <= check_interval <= 60:
        raise ValueError(
            f"check_interval must be a whole number of seconds 1..60 (keepalived 2.2 runs a vrrp_script every whole "
            f"second at best), got {check_interval!r}"
        )
    if not 1 <= priority <= 254:
        raise ValueError(f"priority must be 1..254, got {priority!r}")
    return f"""# keepalived for {name}, written by spofkit.keepalived_pair: VRRP's rules, as in spofkit's pair.
global_defs {{
    router_id {name}
    vrrp_version 3                      # VRRPv3: adverts more often than once a second
    enable_script_security
    script_user root
}}

# keepalived cannot see HAProxy die: this check asks, every {check_interval:g} s, whether this HAProxy still runs.
vrrp_script haproxy_runs {{
    script "{check}"
    interval {check_interval:g}
    timeout 1
    fall 1                              # one failed check is enough to step down
    rise 1
}}

vrrp_instance front_door {{
    state BACKUP                        # both start as backups; the priority decides who becomes master
    interface {device}
    virtual_router_id {VIRTUAL_ROUTER_ID}
    priority {priority}
    advert_int {advert_interval:g}
    unicast_src_ip {address}
    unicast_peer {{
        {peer}
    }}
    virtual_ipaddress {{
        {vip}/32 dev {device}
    }}
    track_script {{
        haproxy_runs
    }}
}}
"""


def check_keepalived_config(text: str) -> tuple[bool, str]:
    """``keepalived --config-test`` on ``text``: (ok, what it said)."""
    binary = find_binary("keepalived")
    with tempfile.TemporaryDirectory(prefix="spofkit-keepalived-check-") as folder:
        path = Path(folder) / "keepalived.conf"
        path.write_text(text)
        done = subprocess.run([binary, "--config-test", "-f", str(path)], capture_output=True, text=True, timeout=30)
    said = (done.stdout + done.stderr).strip()
    return done.returncode == 0 and "ignoring" not in said.lower() and "warning" not in said.lower(), said


# --- what it measured ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Takeover:
    """One front door, one kill: how long until the other balancer served, and what the client suffered."""

    front_door: str
    killed: str  # what died, in words
    advert_interval: float
    check_interval: float | None  # keepalived's check of HAProxy; None for spofkit's pair
    address_moved: float | None  # seconds from the kill to the virtual IP on lb2's interface
    first_answer: float | None  # seconds from the kill to the client's first answer from lb2's side
    sent: int  # requests sent during the phase
    errors: dict[str, int] = field(default_factory=dict)  # failed requests of the phase, by kind
    roles: tuple[tuple[float, str, str], ...] = ()  # (seconds after the kill, balancer, role), as keepalived says

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    @property
    def expected(self) -> str:
        """What VRRP's rules predict for this takeover, in words."""
        skew = (256 - PRIORITIES["lb2"]) / 256 * self.advert_interval
        master_down = PairSettings(
            advert_interval=self.advert_interval, priority=PRIORITIES["lb2"]
        ).master_down_interval
        if self.check_interval is not None and "HAProxy" in self.killed:
            return f"{skew:.2f}-{self.check_interval + skew:.2f} s (check + skew)"
        # From the last advert heard, which came up to one interval before the kill.
        return f"{master_down - self.advert_interval:.2f}-{master_down:.2f} s (master-down)"


@dataclass(frozen=True)
class PairComparison:
    """Every takeover measured, in the order run, and how."""

    takeovers: tuple[Takeover, ...]
    phase_seconds: float
    rate: float
    namespaces: tuple[str, ...]
    pids: tuple[int, ...] = ()  # every process started, for the record (all stopped by the end)

    def table(self) -> str:
        header = ["front door", "advert", "what died (kill -9)", "rules predict", "VIP moved", "first answer", "errors"]
        rows = [header]
        for t in self.takeovers:
            errors = f"{t.failed} of {t.sent}"
            if t.errors:
                errors += " (" + ", ".join(f"{kind} {n}" for kind, n in sorted(t.errors.items())) + ")"
            advert = f"{t.advert_interval:g} s"
            rows.append([t.front_door, advert, t.killed, t.expected, _s(t.address_moved), _s(t.first_answer), errors])
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
        lines.insert(1, "-" * len(lines[0]))
        return "\n".join(lines)

    def to_text(self) -> str:
        lines = [
            f"The front door's balancer killed under load: spofkit's pair and keepalived + HAProxy, in network "
            f"namespaces (virtual IP {VIP}:{SERVICE_PORT}); the client sends {self.rate:g} requests/s",
            "",
            self.table(),
            "",
            "VIP moved: from the kill to the address on lb2's interface; first answer: to the client's first answer "
            "from lb2's side.",
        ]
        return "\n".join(lines)

    def takeover(self, front_door: str, killed_contains: str = "") -> Takeover:
        for t in self.takeovers:
            if t.front_door == front_door and killed_contains in t.killed:
                return t
        raise KeyError(
            f"no takeover of {front_door!r} ({killed_contains!r}); have {[t.front_door for t in self.takeovers]}"
        )


def _s(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.2f} s"


# --- the experiment --------------------------------------------------------------------------------------------


def _ignore_line(_process: ProxyProcess, _which: str, _line: str) -> None:
    """Output nobody needs to read (HAProxy's log)."""


class _Run:
    """Starts front doors in the testbed, kills their master, and keeps the client's record."""

    def __init__(self, bed: Testbed, workdir: Path, *, rate: float, phase_seconds: float) -> None:
        self.bed = bed
        self.workdir = workdir
        self.rate = rate
        self.phase_seconds = phase_seconds
        self.records: list[dict[str, Any]] = []
        self.programs: list[tuple[str, ProxyProcess]] = []  # (host, program), in the order started
        self.nodes: dict[str, Child] = {}
        self.node_says: dict[str, dict[str, Any]] = collections.defaultdict(dict)
        self.roles: list[tuple[float, str, str]] = []  # (monotonic time, balancer, role), from keepalived's log
        self.client: Child | None = None
        self.lifetime = 120.0 + 10 * phase_seconds

    # --- programs in the namespaces ---------------------------------------------------------------------------

    async def spawn(
        self,
        host: str,
        command: list[str],
        on_line: Callable[[ProxyProcess, str, str], None] = _ignore_line,
        **options: Any,
    ) -> ProxyProcess:
        """Start ``command`` in ``host``'s namespace (``ip netns exec`` execs it: the PID is the program's own)."""
        full = [self.bed.ip, "netns", "exec", self.bed.namespaces[host], *command]
        program = await ProxyProcess.spawn(full, on_line, **options)
        self.programs.append((host, program))
        self.bed.pids.append(program.pid)
        return program

    def _keepalived_line(self, host: str) -> Callable[[ProxyProcess, str, str], None]:
        def heard(_process: ProxyProcess, _which: str, line: str) -> None:
            match = _ROLE_LINE.search(line)
            if match:
                self.roles.append((time.monotonic(), host, match["state"].lower()))

        return heard

    async def instance(self, host: str) -> int:
        """A service instance in ``host``'s namespace (``a1`` or ``a2``); returns its port on 127.0.0.1."""
        name = HOSTS[host][2]
        assert name is not None
        command = [sys.executable, "-m", "spofkit._instance_child", "--name", name, "--port", "0"]
        said: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def hello_line(_process: ProxyProcess, which: str, line: str) -> None:
            if which == "stdout" and not said.done():
                said.set_result(line)

        await self.spawn(host, command, hello_line, keep_stdin=True)
        try:
            hello = json.loads(await asyncio.wait_for(said, START_TIMEOUT))
        except (asyncio.TimeoutError, ValueError):
            raise ExperimentFailed(f"instance {name} in {host} did not say it was ready") from None
        if not hello.get("ok"):
            raise ExperimentFailed(f"instance {name} in {host} did not start: {hello}")
        return int(hello["port"])

    async def stop_programs(self) -> None:
        for _host, program in reversed(self.programs):
            await program.stop()
        self.programs.clear()
        for child in list(self.nodes.values()):
            await child.stop()
        self.nodes.clear()

    # --- the client ---------------------------------------------------------------------------------------

    def heard(self, child: Child, message: dict[str, Any]) -> None:
        if message.get("type") == "request":
            self.records.append(message)
        elif child.name in ("lb1", "lb2"):
            self.node_says[child.name].update(message)

    async def start_client(self) -> None:
        arguments = ["client", "--vip", VIP, "--connections", "4", "--rate", str(self.rate), "--timeout", "1.0"]
        self.client = await self.bed.start("client", arguments, self.heard, self.lifetime)
        await self.until(
            lambda: any(r["error"] is None for r in self.records), START_TIMEOUT, "the client's first answer"
        )

    async def stop_client(self) -> None:
        if self.client is not None:
            await self.client.stop()
            self.client = None

    def phase(self, name: str) -> None:
        assert self.client is not None
        self.client.send({"cmd": "phase", "name": name})

    # --- front doors ---------------------------------------------------------------------------------------

    async def keepalived_pair(self, advert_interval: float, check_interval: float) -> dict[str, ProxyProcess]:
        """HAProxy + keepalived in lb1 and lb2, each in front of its instance; returns each HAProxy."""
        haproxies = {}
        for host, peer in (("lb1", "lb2"), ("lb2", "lb1")):
            folder = self.workdir / host
            folder.mkdir(parents=True, exist_ok=True)
            instance = HOSTS[host][2]
            assert instance is not None
            port = await self.instance(host)
            settings = LabSettings(
                members=(ExportMember(instance, f"127.0.0.1:{port}"),),
                listen=(f"0.0.0.0:{SERVICE_PORT}",),  # the virtual IP too, once keepalived puts it on eth0
                source=f"spofkit.keepalived_pair ({host})",
            )
            config = folder / "haproxy.cfg"
            config.write_text(haproxy_config(settings))
            command = [find_binary("haproxy"), "-db", "-f", str(config)]
            haproxies[host] = await self.spawn(host, command)
            check = f"{shutil.which('pgrep')} -x -f '{' '.join(command)}'"  # this HAProxy, not the other one
            text = keepalived_config(
                host,
                priority=PRIORITIES[host],
                address=HOSTS[host][0],
                peer=HOSTS[peer][0],
                check=check,
                advert_interval=advert_interval,
                check_interval=check_interval,
            )
            (folder / "keepalived.conf").write_text(text)
            await self.spawn(host, self._keepalived_command(folder), self._keepalived_line(host))
        await self.until_async(self._only_lb1_holds, START_TIMEOUT, "keepalived on lb1 holds the virtual IP")
        return haproxies

    @staticmethod
    def _keepalived_command(folder: Path) -> list[str]:
        return [
            find_binary("keepalived"),
            *("--dont-fork", "--log-console", "--log-detail", "--no-syslog", "--vrrp"),
            *("-f", str(folder / "keepalived.conf"), "-p", str(folder / "keepalived.pid")),
            *("-r", str(folder / "vrrp.pid")),
        ]

    async def spofkit_pair(self, advert_interval: float) -> None:
        for host, peer in (("lb1", "lb2"), ("lb2", "lb1")):
            instance = HOSTS[host][2]
            assert instance is not None
            arguments = [
                "balancer", "--name", host, "--instance", instance, "--priority", str(PRIORITIES[host]),
                "--address", HOSTS[host][0], "--peer", HOSTS[peer][0], "--vip", VIP, "--device", DEVICE,
                "--advert-interval", str(advert_interval), "--garp-refresh", "1.0",
            ]  # fmt: skip
            self.nodes[host] = await self.bed.start(host, arguments, self.heard, self.lifetime)
        await self.until(lambda: {"lb1", "lb2"} <= set(self.node_says), START_TIMEOUT, "both balancers started")
        await self.until_async(self._only_lb1_holds, START_TIMEOUT, "lb1 holds the virtual IP")

    async def _only_lb1_holds(self) -> bool:
        return await self.bed.vip_holders() == ["lb1"]

    # --- one takeover ---------------------------------------------------------------------------------------

    async def takeover(self, kill: Callable[[], Any], after_kill: Callable[[], Any] | None = None) -> dict[str, Any]:
        """Serve a moment, then ``await kill()``; measure until lb2 holds the address and answers, for phase_seconds.

        ``after_kill`` runs alongside (e.g. a supervisor fencing the dead one's address).
        """
        await self.until(lambda: self._recently_all_from("a1", 8), START_TIMEOUT, "the client is served by lb1")
        self.phase("takeover")
        killed_at = time.monotonic()
        await kill()
        helper = asyncio.create_task(after_kill()) if after_kill is not None else None
        moved = None
        deadline = killed_at + TAKEOVER_TIMEOUT
        while time.monotonic() < deadline:
            if "lb2" in await self.bed.vip_holders():
                moved = time.monotonic() - killed_at
                break
            await asyncio.sleep(POLL)
        first = await self.until(
            lambda: next((r for r in self.records if r["start"] > killed_at and r["served_by"] == "a2"), None),
            TAKEOVER_TIMEOUT,
            "the client's first answer from lb2's side",
        )
        # The phase lasts phase_seconds, and at least half a second past the first answer from lb2's side.
        ends = max(killed_at + self.phase_seconds, float(first["end"]) + 0.5)
        await asyncio.sleep(max(0.0, ends - time.monotonic()))
        self.phase("-")
        if helper is not None:
            await helper
        mine = [r for r in self.records if r["phase"] == "takeover"]
        errors = collections.Counter(r["error"] for r in mine if r["error"] is not None)
        roles = tuple((at - killed_at, host, role) for at, host, role in self.roles if at >= killed_at)
        return {
            "address_moved": moved,
            "first_answer": float(first["end"]) - killed_at,
            "sent": len(mine),
            "errors": dict(errors),
            "roles": roles,
        }

    def _recently_all_from(self, instance: str, count: int) -> bool:
        recent = self.records[-count:]
        return len(recent) == count and all(r["served_by"] == instance for r in recent)

    async def reset_addresses(self) -> None:
        """Between front doors: no virtual IP left on anyone's interface, every link up."""
        for host in ("lb1", "lb2"):
            await self.bed.fence(host)
            await run_ip(self.bed.ip, "-n", self.bed.namespaces[host], "link", "set", "dev", DEVICE, "up")
        self.records.clear()
        self.roles.clear()
        self.node_says.clear()

    async def until(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while not (value := predicate()):
            if time.monotonic() >= deadline:
                raise ExperimentFailed(f"{what}: did not happen within {timeout:.0f} s")
            await asyncio.sleep(POLL)
        return value

    async def until_async(self, predicate: Callable[[], Any], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not await predicate():
            if time.monotonic() >= deadline:
                raise ExperimentFailed(f"{what}: did not happen within {timeout:.0f} s")
            await asyncio.sleep(POLL)


async def keepalived_pair_experiment(
    *,
    advert_interval: float = 0.2,
    check_interval: float = 1.0,
    phase_seconds: float = 3.0,
    rate: float = 40.0,
    spofkit_pair: bool = True,
    machine_loss: bool = True,
    keepalived_defaults: bool = True,
    ip: str = "ip",
) -> PairComparison:
    """Run the takeovers (as root) and return what they measured. ``await`` it where a loop runs (a notebook).

    ``advert_interval`` is both pairs' (spofkit's default 0.2 s), ``check_interval`` keepalived's check of HAProxy.
    ``spofkit_pair`` adds spofkit's own pair for comparison, ``machine_loss`` a takeover after lb1 is lost whole,
    ``keepalived_defaults`` the HAProxy kill again with keepalived's own defaults (adverts and checks every 1 s).
    Raises :class:`KeepalivedUnavailable` when this machine cannot, :class:`ExperimentFailed` if a step fails.
    """
    able, why = can_run_keepalived(ip)
    if not able:
        raise KeepalivedUnavailable(f"the keepalived pair cannot run here: {why}")
    if not 0.05 <= advert_interval <= 2.0:
        raise ValueError(f"advert_interval must be 0.05..2 seconds, got {advert_interval!r}")
    if check_interval != int(check_interval) or not 1 <= check_interval <= 5:
        raise ValueError(f"check_interval must be a whole number of seconds 1..5, got {check_interval!r}")
    if not 1.0 <= phase_seconds <= 30.0:
        raise ValueError(f"phase_seconds must be 1..30, got {phase_seconds!r}")
    if not 1.0 <= rate <= 200.0:
        raise ValueError(f"rate must be 1..200 requests/s, got {rate!r}")
    takeovers: list[Takeover] = []
    with tempfile.TemporaryDirectory(prefix="spofkit-keepalived-") as folder:
        async with Testbed(ip=ip) as bed:
            run = _Run(bed, Path(folder), rate=rate, phase_seconds=phase_seconds)
            try:
                plans: list[tuple[str, float, float | None, str]] = []
                if spofkit_pair:
                    plans.append(("spofkit pair", advert_interval, None, "balancer"))
                plans.append(("keepalived + HAProxy", advert_interval, check_interval, "haproxy"))
                if machine_loss:
                    plans.append(("keepalived + HAProxy", advert_interval, check_interval, "machine"))
                if keepalived_defaults:
                    slow_advert = KEEPALIVED_DEFAULTS["advert_interval"]
                    slow_check = KEEPALIVED_DEFAULTS["check_interval"]
                    plans.append(("keepalived defaults", slow_advert, slow_check, "haproxy"))
                    if machine_loss:
                        plans.append(("keepalived defaults", slow_advert, slow_check, "machine"))
                for front_door, advert, check, what in plans:
                    takeovers.append(await _one_takeover(run, front_door, advert, check, what))
            finally:
                await run.stop_client()
                await run.stop_programs()
    return PairComparison(tuple(takeovers), phase_seconds, rate, tuple(bed.namespaces.values()), tuple(bed.pids))


async def _one_takeover(run: _Run, front_door: str, advert: float, check: float | None, what: str) -> Takeover:
    await run.reset_addresses()
    if what == "balancer":
        await run.spofkit_pair(advert)
        node = run.nodes["lb1"]

        async def kill_the_balancer() -> None:
            node.kill()

        async def fence_the_dead() -> None:  # as the split-brain experiment's supervisor does: a dead process
            await node.process.wait()  # cannot take its address off its interface
            await run.bed.fence("lb1")

        await run.start_client()
        measured = await run.takeover(kill_the_balancer, fence_the_dead)
        killed = "lb1's balancer"
    else:
        assert check is not None
        haproxies = await run.keepalived_pair(advert, check)
        await run.start_client()
        if what == "haproxy":

            async def kill_haproxy() -> None:
                haproxies["lb1"].signal(signal.SIGKILL)

            measured = await run.takeover(kill_haproxy)
            killed = "lb1's HAProxy"
        else:

            async def lose_lb1() -> None:
                # The machine vanishes: first from the network (no last advert gets out), then all that ran in it.
                namespace = run.bed.namespaces["lb1"]
                await run_ip(run.bed.ip, "-n", namespace, "link", "set", "dev", DEVICE, "down")
                for pid in (await run_ip(run.bed.ip, "netns", "pids", namespace, check=False)).split():
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(pid), signal.SIGKILL)

            measured = await run.takeover(lose_lb1)
            killed = "lb1 whole (power lost)"
    await run.stop_client()
    await run.stop_programs()
    return Takeover(front_door, killed, advert, check, **measured)


def run_keepalived_pair(**settings: Any) -> PairComparison:
    """:func:`keepalived_pair_experiment` from code that is not async (in a thread of its own where a loop runs)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(keepalived_pair_experiment(**settings))
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as worker:
        return worker.submit(asyncio.run, keepalived_pair_experiment(**settings)).result()


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m spofkit.keepalived_pair", description=__doc__.split("\n\n")[0])
    parser.add_argument("--advert-interval", type=float, default=0.2, help="both pairs' advert interval (s)")
    parser.add_argument("--check-interval", type=int, default=1, help="keepalived's check of HAProxy (whole s)")
    parser.add_argument("--phase-seconds", type=float, default=3.0, help="how long each takeover is watched (s)")
    parser.add_argument("--no-spofkit", action="store_true", help="leave out spofkit's own pair")
    parser.add_argument("--no-machine-loss", action="store_true", help="leave out the power loss of lb1")
    parser.add_argument("--no-defaults", action="store_true", help="leave out keepalived's own defaults")
    args = parser.parse_args(argv)
    return run_experiment_cli(
        lambda: run_keepalived_pair(
            advert_interval=args.advert_interval,
            check_interval=args.check_interval,
            phase_seconds=args.phase_seconds,
            spofkit_pair=not args.no_spofkit,
            machine_loss=not args.no_machine_loss,
            keepalived_defaults=not args.no_defaults,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
