"""The programs :mod:`spofkit.netns` starts inside its network namespaces (not meant to be run by hand).

Two of them, one per kind of namespace, each steered by the testbed through a pipe, one JSON line per message:

``python -m spofkit._netns_node balancer --name lb1 --instance a1 --priority 200 --address 192.0.2.11 ...``
    One balancer of the pair, as a real machine would run it: a service instance on 127.0.0.1, a spofkit
    :class:`~spofkit.balancer.Balancer` on ``0.0.0.0:8080`` in front of it, and a
    :class:`~spofkit.pair.PairDriver` sending VRRP-style adverts over the bridge to the peer. When the pair's
    rules say "take the address", :class:`AddressKeeper` adds the virtual IP to ``eth0`` with ``ip addr add`` and
    announces it with a gratuitous ARP, as keepalived does; "release" removes it. While it is master it repeats the
    gratuitous ARP about every ``--garp-refresh`` seconds (keepalived's ``garp_master_refresh``): in split brain that is
    what makes the client's neighbour entry flip from one balancer to the other.

    It tells the testbed ``{"type": "role", ...}`` and ``{"type": "address", "held": true, ...}`` as they change,
    and obeys ``{"cmd": "cut", "on": true}`` (drop every advert in and out: the link between the two is cut),
    ``{"cmd": "fencing", "on": true}`` (from now on, hold the address only with a lease from the testbed),
    ``{"cmd": "lease", ...}`` (the testbed's answer to a lease request), ``{"cmd": "stats"}`` and
    ``{"cmd": "stop"}``.

``python -m spofkit._netns_node client --vip 192.0.2.100 --connections 4 --rate 40``
    The clients: a few keep-alive HTTP connections to the virtual IP, each sending requests at a steady pace, and
    one ``{"type": "request", ...}`` line per request saying who answered, or what went wrong (``reset``,
    ``timeout``, ``refused``, ``unreachable``, ``http_5xx``). ``{"cmd": "phase", "name": "b"}`` labels the requests
    that follow; ``{"cmd": "stop"}`` ends the run after the requests in flight.

Why the control channel is a pipe: fencing needs a way to reach the supervisor that does not share the fate of
the adverts. A pipe to the parent process is the simplest such channel, and it also tells each program when the
testbed is gone (end of file on stdin), so nothing outlives it. On Linux the kernel also sends ``SIGTERM`` when the
parent dies, and every run ends by itself after ``--max-seconds``.

Why a raw ``AF_PACKET`` socket for the gratuitous ARP, not ``arping``: it needs no extra package, and the 42
bytes it sends (:func:`gratuitous_arp`) are short enough to read — which is the point of a lesson.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from spofkit.balancer import Balancer
from spofkit.childproc import child_ask_for_a_signal_when_the_parent_dies
from spofkit.clock import LoopScheduler
from spofkit.events import BalancerRoleChanged, Event, EventBus
from spofkit.instance import ServiceInstance
from spofkit.pair import PairDriver
from spofkit.policy.pair import MASTER, LeaseHolder, PairMember, PairSettings

ADVERT_PORT = 5798  # the adverts' UDP port (each namespace has its own ports; 5798 is VRRP's RFC number)
SERVICE_PORT = 8080
ETHERTYPE_ARP = 0x0806
BROADCAST_MAC = b"\xff" * 6
IP_COMMAND_TIMEOUT = 5.0  # seconds: `ip addr` answers in milliseconds; more means something is badly wrong


def say(message: dict[str, Any]) -> None:
    """One JSON line to the testbed, stamped with this machine's monotonic clock (shared by every namespace)."""
    message.setdefault("at", time.monotonic())
    try:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        pass  # the testbed is gone; stdin's end of file will stop us


async def read_commands(commands: asyncio.StreamReader) -> AsyncIterator[dict[str, Any]]:
    """Yield each JSON object read on stdin until it closes; lines that are not JSON objects are skipped."""
    while line := await commands.readline():
        try:
            command = json.loads(line)
        except ValueError:
            continue
        if isinstance(command, dict):
            yield command


async def open_stdin() -> asyncio.StreamReader:
    commands = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    return commands


# --- the address: ip addr add/del and gratuitous ARP -------------------------------------------------------------


def gratuitous_arp(mac: bytes, address: str) -> bytes:
    """An Ethernet frame saying "``address`` is at ``mac``", to everyone on the link.

    It is an ARP *request* from ``address`` for ``address`` itself (sender IP = target IP), broadcast: Linux,
    like most systems, treats that as gratuitous and overwrites any neighbour entry it has for ``address`` at once.
    """
    if len(mac) != 6:
        raise ValueError(f"mac must be 6 bytes, got {len(mac)}")
    ip = socket.inet_aton(address)
    ethernet = BROADCAST_MAC + mac + struct.pack("!H", ETHERTYPE_ARP)
    # hardware type 1 (Ethernet), protocol IPv4, address lengths 6 and 4, operation 1 (request)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + ip + b"\x00" * 6 + ip
    return ethernet + arp


class VirtualAddress:
    """The virtual IP on one interface of this namespace: put it there, take it away, announce it."""

    def __init__(self, vip: str, device: str) -> None:
        self.vip = vip
        self.device = device
        self._arp = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        self._arp.bind((device, 0))
        self.mac: bytes = self._arp.getsockname()[4]

    def add(self) -> None:
        _ip("addr", "add", f"{self.vip}/32", "dev", self.device, tolerate="File exists")

    def remove(self) -> None:
        _ip("addr", "del", f"{self.vip}/32", "dev", self.device, tolerate="Cannot assign requested address")

    def announce(self) -> None:
        """Send one gratuitous ARP for the address from our MAC."""
        self._arp.send(gratuitous_arp(self.mac, self.vip))

    def close(self) -> None:
        self._arp.close()


class Address(Protocol):
    """What :class:`AddressKeeper` needs of an address: a :class:`VirtualAddress` live, a recorder in tests."""

    def add(self) -> None: ...
    def remove(self) -> None: ...
    def announce(self) -> None: ...


class AddressKeeper:
    """Puts the virtual IP on the interface when the pair's rules say so, and takes it away again.

    Without fencing, :meth:`take` adds the address at once. With fencing, it first asks the testbed for a lease
    (a ``lease_request`` message, through ``tell``) and adds the address only once granted; while it wants the
    address it renews the lease at every :meth:`tick` (once per advert interval), and it removes the address itself
    as soon as its lease runs out unrenewed — a holder that cannot reach the supervisor must stop serving before
    the supervisor gives the address away.

    While it holds the address it repeats the gratuitous ARP every ``garp_refresh`` seconds, give or take a quarter
    at random: two masters with the same fixed period could stay in step, each announcement hidden by the other's
    (periodic messages are jittered so that they do not synchronize, as routing protocols learned the hard way).
    ``garp_refresh=0`` announces only when the address is taken.
    """

    def __init__(
        self,
        name: str,
        address: Address,
        *,
        garp_refresh: float,
        tell: Callable[[dict[str, Any]], None] = say,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.address = address
        self.garp_refresh = garp_refresh
        self.tell = tell
        self.clock = clock
        self.fencing = False
        self.lease = LeaseHolder()  # fencing's rules: spofkit.policy.pair
        self.holds = False  # the address is on our interface
        self.garps_sent = 0
        self.lease_requests = 0
        self._garp_timer: asyncio.TimerHandle | None = None
        self._jitter = random.Random(f"{name} {os.getpid()}")

    # --- what the pair driver calls ---------------------------------------------------------------------------

    def take(self, reason: str) -> None:
        self.lease.wants = True
        if self.fencing:
            self._ask_lease()  # the address comes with the answer, if granted
        else:
            self._add(reason)

    def release(self, reason: str) -> None:
        self.lease.wants = False
        self._remove(reason)
        if self.fencing:
            self.tell({"type": "lease_release", "node": self.name})

    # --- what the testbed says ----------------------------------------------------------------------------------

    def set_fencing(self, on: bool) -> None:
        self.fencing = on
        if on and self.holds:
            self.lease.held_from_before()
        if on and self.lease.wants:
            self._ask_lease()

    def lease_answer(self, granted: bool, asked_at: float, term: float) -> None:
        # (answers come in the order of the requests)
        what = self.lease.answer(granted, asked_at, term)
        if what == LeaseHolder.DROP:
            self._remove("the supervisor refused the lease: another balancer holds the address")
        elif what == LeaseHolder.HOLD:
            self._add("lease granted by the supervisor")

    # --- once per advert interval ---------------------------------------------------------------------------------

    def tick(self) -> None:
        if self.fencing and self.lease.expired(self.clock(), self.holds):
            self._remove("lease ran out unrenewed: fencing myself")
        if self.fencing and self.lease.wants:
            self._ask_lease()

    def close(self) -> None:
        self._remove("stopping")

    # --- the moves ------------------------------------------------------------------------------------------

    def _ask_lease(self) -> None:
        self.lease_requests += 1
        self.tell({"type": "lease_request", "node": self.name, "asked_at": self.clock()})

    def _add(self, reason: str) -> None:
        if self.holds:
            return
        self.address.add()
        self.holds = True
        self._announce()
        self.tell({"type": "address", "node": self.name, "held": True, "reason": reason})

    def _remove(self, reason: str) -> None:
        if not self.holds:
            return
        self.address.remove()
        self.holds = False
        if self._garp_timer is not None:
            self._garp_timer.cancel()
            self._garp_timer = None
        self.tell({"type": "address", "node": self.name, "held": False, "reason": reason})

    def _announce(self) -> None:
        self._garp_timer = None
        if not self.holds:
            return
        self.address.announce()
        self.garps_sent += 1
        if self.garp_refresh > 0:
            delay = self.garp_refresh * self._jitter.uniform(0.75, 1.25)
            self._garp_timer = asyncio.get_running_loop().call_later(delay, self._announce)


def _ip(*arguments: str, tolerate: str) -> None:
    """Run ``ip ARGUMENTS`` in this namespace; an error whose text contains ``tolerate`` means "already so".

    It blocks the event loop for the few milliseconds ``ip`` takes, which keeps the order of add and del simple.
    """
    done = subprocess.run(["ip", *arguments], capture_output=True, text=True, timeout=IP_COMMAND_TIMEOUT)
    if done.returncode != 0 and tolerate not in done.stderr:
        raise RuntimeError(f"ip {' '.join(arguments)} failed: {done.stderr.strip()}")


# --- the balancer node ---------------------------------------------------------------------------------------


async def run_balancer(args: argparse.Namespace) -> int:
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    commands = await open_stdin()
    events = EventBus()
    instance = ServiceInstance(args.instance, events=events)
    await instance.start()
    balancer = Balancer(events, name=args.name, host="0.0.0.0", port=SERVICE_PORT)
    balancer.add_member(args.instance, instance.url)
    await balancer.start()
    address = VirtualAddress(args.vip, args.device)
    keeper = AddressKeeper(args.name, address, garp_refresh=args.garp_refresh)
    member = PairMember(
        args.name, PairSettings(advert_interval=args.advert_interval, priority=args.priority), events.publish
    )
    scheduler = LoopScheduler(events.clock)
    driver = PairDriver(
        member, scheduler, take_address=keeper.take, release_address=keeper.release, host=args.address, port=ADVERT_PORT
    )
    driver.peers = [(args.peer, ADVERT_PORT)]
    await driver.open()

    def report_role(event: Event) -> None:
        if isinstance(event, BalancerRoleChanged):
            say({"type": "role", "node": args.name, "role": event.role, "reason": event.reason})

    events.subscribe(report_role)
    ticker = asyncio.create_task(_every(args.advert_interval, keeper.tick))
    say({"type": "ready", "node": args.name, "mac": address.mac.hex(":")})
    driver.start()

    def stats() -> dict[str, Any]:
        return {
            "type": "stats",
            "node": args.name,
            "role": member.role,
            "master": member.master,
            "holds": keeper.holds,
            "adverts_sent": member.adverts_sent,
            "adverts_dropped": driver.adverts_dropped,
            "garps_sent": keeper.garps_sent,
            "lease_requests": keeper.lease_requests,
            "lease_refusals": keeper.lease.refusals,
            "served": instance.served,
        }

    async def obey() -> None:
        async for command in read_commands(commands):
            kind = command.get("cmd")
            if kind == "cut":
                driver.link_cut = bool(command.get("on"))
            elif kind == "fencing":
                keeper.set_fencing(bool(command.get("on")))
            elif kind == "lease":
                keeper.lease_answer(bool(command["granted"]), float(command["asked_at"]), float(command["term"]))
            elif kind == "stats":
                say(stats())
            elif kind == "stop":
                return

    try:
        await _until_first(obey(), stopping.wait(), asyncio.sleep(args.max_seconds))
    finally:
        ticker.cancel()
        if member.role == MASTER:
            driver.stop()  # resign gracefully: a priority-0 advert, and the address goes
        driver.close()
        keeper.close()
        address.close()
        await balancer.stop()
        await instance.stop()
    return 0


async def _every(interval: float, action: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    due = loop.time()
    while True:
        action()
        due = max(due + interval, loop.time())  # a late tick is not followed by a burst of catching up
        await asyncio.sleep(due - loop.time())


async def _until_first(*waits: Awaitable[Any]) -> None:
    """Wait until the first of ``waits`` (coroutines) ends, then cancel the others."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


# --- the client --------------------------------------------------------------------------------------------


def classify(error: BaseException) -> str:
    """What the client felt: ``timeout``, ``refused``, ``unreachable``, ``reset`` or ``other``."""
    if isinstance(error, (asyncio.TimeoutError, TimeoutError)):
        return "timeout"
    if isinstance(error, ConnectionRefusedError):
        return "refused"
    if isinstance(error, OSError) and error.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "unreachable"  # nobody answered ARP for the address
    if isinstance(error, (ConnectionResetError, BrokenPipeError, asyncio.IncompleteReadError)):
        return "reset"  # the other side's kernel knew nothing of our connection, or it broke off
    return "other"


class KeepAliveConnection:
    """One client connection to ``host:port``, kept open between requests (HTTP/1.1 keep-alive)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> tuple[int, str | None]:
        """Send ``GET path``; return the status and ``X-Served-By``. Raises on any failure (then reconnects)."""
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        self._writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n".encode())
        await self._writer.drain()
        status_line = await self._reader.readline()
        if not status_line:
            raise asyncio.IncompleteReadError(b"", None)  # closed before answering: a reset, to the client
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            key, _, value = line.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()
        await self._reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers.get("x-served-by")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.transport.abort()
        self._reader = self._writer = None


async def run_client(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    commands = await open_stdin()
    phase = {"name": "-"}
    period = args.connections / args.rate  # each connection's pace, so that all of them together send `rate`
    started = loop.time()
    sent = 0

    async def one_connection(index: int) -> None:
        nonlocal sent
        connection = KeepAliveConnection(args.vip, args.port)
        due = started + index * period / args.connections  # staggered, so the requests are evenly spread
        try:
            while not stopping.is_set() and sent < args.max_requests and loop.time() < started + args.max_seconds:
                await asyncio.sleep(max(0.0, due - loop.time()))
                if stopping.is_set():
                    break
                sent += 1
                record: dict[str, Any] = {"type": "request", "phase": phase["name"], "conn": index}
                record["start"] = time.monotonic()
                try:
                    status, served_by = await asyncio.wait_for(connection.get(f"/?n={sent}"), args.timeout)
                    record.update(status=status, served_by=served_by)
                    record["error"] = f"http_{status}" if status >= 500 else None
                except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError) as e:
                    connection.close()
                    record.update(status=None, served_by=None, error=classify(e), detail=f"{type(e).__name__}: {e}")
                record["end"] = time.monotonic()
                say(record)
                due = max(due + period, loop.time())  # after a slow request, no burst to catch up
        finally:
            connection.close()

    async def obey() -> None:
        async for command in read_commands(commands):
            if command.get("cmd") == "phase":
                phase["name"] = str(command.get("name", "-"))
            elif command.get("cmd") == "stop":
                break
        stopping.set()  # a stop command, or the testbed is gone (end of file)

    listener = asyncio.create_task(obey())
    try:
        await asyncio.gather(*(one_connection(i) for i in range(args.connections)))
    finally:
        listener.cancel()
    say({"type": "done", "sent": sent})
    return 0


# --- entry point ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spofkit._netns_node", description=__doc__)
    parser.add_argument("--max-seconds", type=float, default=300.0, help="end by itself after this long")
    roles = parser.add_subparsers(dest="role", required=True)
    node = roles.add_parser("balancer", help="a balancer of the pair, with its service instance")
    node.add_argument("--name", required=True)
    node.add_argument("--instance", required=True, help="the service instance's name (X-Served-By)")
    node.add_argument("--priority", type=int, required=True)
    node.add_argument("--address", required=True, help="this balancer's own address (the adverts' source)")
    node.add_argument("--peer", required=True, help="the other balancer's address (where adverts go)")
    node.add_argument("--vip", required=True)
    node.add_argument("--device", default="eth0")
    node.add_argument("--advert-interval", type=float, default=0.2)
    node.add_argument("--garp-refresh", type=float, default=1.0, help="seconds between gratuitous ARPs (0: once)")
    client = roles.add_parser("client", help="keep-alive HTTP clients of the virtual IP")
    client.add_argument("--vip", required=True)
    client.add_argument("--port", type=int, default=SERVICE_PORT)
    client.add_argument("--connections", type=int, default=4)
    client.add_argument("--rate", type=float, default=40.0, help="requests per second, all connections together")
    client.add_argument("--timeout", type=float, default=1.0, help="seconds a request may take")
    client.add_argument("--max-requests", type=int, default=20_000)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a terminal: the testbed cleans up, not us
    child_ask_for_a_signal_when_the_parent_dies()
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(run_balancer(args) if args.role == "balancer" else run_client(args))
    return 1


if __name__ == "__main__":
    sys.exit(main())
