"""One balancer of a lab's front door, with its part in a pair and the faults a balancer can have.

A lab's front door is one balancer, or two. :class:`BalancerNode` is one of them: a
:class:`~spofkit.balancer.Balancer` (the proxy and its policy) plus

- its **role** in the front door: ``single`` (the only one: it listens on the service address from the start),
  ``master``/``backup`` in an *active-passive* pair (a :class:`~spofkit.pair.PairDriver` says when to listen on
  the service address — VRRP's rules), or ``active`` in an *active-active* pair (both listen on the service
  address at once with ``SO_REUSEPORT``, and the kernel spreads new connections between them);
- its **own address** (127.0.0.1 on a port of its own) besides the service address, for clients that know every
  balancer and fail over between them themselves, like a client with several DNS records;
- **faults** of its own: ``hang`` (it accepts connections and never answers — while its adverts go on, so its
  partner sees nothing wrong: a gray failure of the front door) and ``advert_loss`` (the link between the pair is
  cut: no adverts in or out, so both become master — split brain). A crash of an in-process node closes its
  sockets and cuts its connections abruptly; in process isolation it is a real ``kill -9`` of its process
  (:mod:`spofkit.process_balancer`).

The same class runs inside a balancer's own process (``python -m spofkit._balancer_child``) and, for
``isolation="inprocess"`` labs, inside the lab's process.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
from dataclasses import dataclass
from typing import Any

from spofkit.balancer import Balancer
from spofkit.clock import LoopScheduler
from spofkit.events import EventBus
from spofkit.pair import Address, PairDriver
from spofkit.policy import EjectionSettings, HealthSettings, RetrySettings, Strategy
from spofkit.policy.pair import PairMember, PairSettings
from spofkit.proxy.listener import Listener
from spofkit.status import (
    ACTIVE,
    ADVERT_LOSS,
    BACKUP,
    BLOCKED,
    CRASHED,
    HANG,
    MASTER,
    RUNNING,
    SINGLE,
    STOPPED,
    BalancerStatus,
)

ACTIVE_PASSIVE = "active-passive"
ACTIVE_ACTIVE = "active-active"
PAIR_MODES = (ACTIVE_PASSIVE, ACTIVE_ACTIVE)
BALANCER_FAULTS = (HANG, ADVERT_LOSS)  # crash is not a fault a node applies to itself: it is killed


@dataclass(frozen=True)
class FrontDoor:
    """How a lab's balancers share its service address."""

    mode: str = SINGLE
    service_port: int = 0  # 0: the first balancer picks one, and the others use the same
    advert_interval: float = 0.2
    preempt: bool = True

    def __post_init__(self) -> None:
        if self.mode not in (SINGLE, *PAIR_MODES):
            raise ValueError(f"pair must be one of {PAIR_MODES}, got {self.mode!r}")


class BalancerNode:
    """A balancer, its role in the front door, its own address and its faults. See the module docstring."""

    def __init__(
        self,
        balancer: Balancer,
        front_door: FrontDoor,
        *,
        priority: int = 100,
        own_port: int = 0,
    ) -> None:
        self.balancer = balancer
        self.front_door = front_door
        self.name = balancer.name
        self.events: EventBus = balancer.events
        self.scheduler = LoopScheduler(self.events.clock)
        self.priority = priority
        self.fault: str | None = None
        self.service_port = front_door.service_port
        self.own_port = own_port  # 0: any free port (kept across restarts, so clients that know it find it again)
        self.holds_address = False
        self.running = False  # between start() and stop() or crash()
        self.address_error = ""  # why the service address could not be taken, if it could not
        self._service_site: Listener | None = None
        self._own_site: Listener | None = None
        self._address_changes: asyncio.Task[None] | None = None  # take/release run one after another
        self._released = asyncio.Event()  # set to let hung requests go on
        self.pair: PairDriver | None = None
        if front_door.mode == ACTIVE_PASSIVE:
            settings = PairSettings(front_door.advert_interval, priority, front_door.preempt)
            member = PairMember(self.name, settings, self.events.publish)
            self.pair = PairDriver(member, self.scheduler, take_address=self._take, release_address=self._release)

    # --- lifecycle -----------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the proxy on its own address; then take the service address as the front door's mode says."""
        self.balancer.hold = self._hold_if_hung
        await self.balancer.start(listen=False)
        self.running = True
        self._own_site, self.own_port = await self._listen(self.own_port, reuse_port=False)
        if self.front_door.mode in (SINGLE, ACTIVE_ACTIVE):
            reuse = self.front_door.mode == ACTIVE_ACTIVE
            self._service_site, self.service_port = await self._listen(self.service_port, reuse_port=reuse)
            self.holds_address = True
        else:
            assert self.pair is not None
            await self.pair.open()

    @property
    def advert(self) -> Address | None:
        """Where this balancer hears its partner's adverts (active-passive only)."""
        return self.pair.advert_address if self.pair is not None else None

    @property
    def pid(self) -> int | None:
        return None  # it runs inside the lab's process

    async def join_pair(self, peers: list[Address]) -> None:
        """Active-passive: send adverts to ``peers``; the first call joins the pair, later ones only tell a
        member already in it where its partner is now (a restarted partner hears on a new port)."""
        if self.pair is not None:
            self.pair.peers = list(peers)
            if self.pair.member.role == STOPPED:
                self.pair.start()

    async def stop(self, *, graceful: bool = True) -> None:
        """Leave the pair (a master resigns, so its partner takes over at once) and stop serving."""
        if self.pair is not None:
            if graceful:
                self.pair.stop()
            else:
                self.pair.close()
        self._released.set()
        if self._address_changes is not None:
            with contextlib.suppress(Exception):
                await self._address_changes
        await self.balancer.stop()
        self._service_site = self._own_site = None
        self.holds_address = False
        self.running = False

    async def crash(self) -> None:
        """As a killed process would: no resignation, sockets closed, open connections cut."""
        await self.stop(graceful=False)

    # --- the pool and the switches, as the lab changes them (async: a node in another process is called) -------

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
        self.balancer.add_member(
            name, url, weight=weight, backup=backup, max_conns=max_conns, initially_up=initially_up
        )

    async def remove_member(self, name: str, *, drain_timeout: float = 10.0) -> None:
        await self.balancer.remove_member(name, drain_timeout=drain_timeout)

    async def set_strategy(self, strategy: Strategy | str) -> None:
        self.balancer.set_strategy(strategy)

    async def set_retries(self, settings: RetrySettings | None) -> None:
        self.balancer.set_retries(settings)

    async def set_ejection(self, settings: EjectionSettings | None) -> None:
        self.balancer.set_ejection(settings)

    async def set_health(self, settings: HealthSettings | None) -> None:
        self.balancer.set_health(settings)

    # --- faults ----------------------------------------------------------------------------------------------

    async def inject(self, kind: str) -> None:
        if kind not in BALANCER_FAULTS:
            raise ValueError(f"a balancer fault is one of {BALANCER_FAULTS} (crash is a kill), got {kind!r}")
        await self.recover()
        self.fault = kind
        if kind == HANG:
            self._released = asyncio.Event()
        elif kind == ADVERT_LOSS and self.pair is not None:
            self.pair.link_cut = True

    async def recover(self) -> None:
        self.fault = None
        self._released.set()
        if self.pair is not None:
            self.pair.link_cut = False

    async def _hold_if_hung(self) -> None:
        """Called by the proxy for every request: a hung balancer accepts and never answers (until recovered)."""
        if self.fault == HANG:
            await self._released.wait()

    # --- the service address -------------------------------------------------------------------------------

    @property
    def role(self) -> str:
        if not self.running:
            return STOPPED
        if self.front_door.mode == SINGLE:
            return SINGLE
        if self.front_door.mode == ACTIVE_ACTIVE:
            return ACTIVE
        assert self.pair is not None
        return self.pair.member.role

    def _take(self, reason: str) -> None:
        self._chain(self._take_now())

    def _release(self, reason: str) -> None:
        self._chain(self._release_now())

    def _chain(self, change: Any) -> None:
        previous = self._address_changes

        async def in_order() -> None:
            if previous is not None:
                with contextlib.suppress(Exception):
                    await previous
            await change

        self._address_changes = asyncio.create_task(in_order())

    async def _take_now(self) -> None:
        # On one host the kernel refuses a second listener on the service address: while the other master holds
        # it (split brain), keep trying each advert interval, and report why we cannot serve.
        while self.pair is not None and self.pair.member.role == MASTER and self._service_site is None:
            try:
                self._service_site, _ = await self._listen(self.service_port, reuse_port=False)
            except OSError as error:
                self.address_error = f"cannot take {self.balancer.host}:{self.service_port}: {error.strerror}"
                await asyncio.sleep(self.front_door.advert_interval)
                continue
            self.address_error = ""
            self.holds_address = True

    async def _release_now(self) -> None:
        site, self._service_site = self._service_site, None
        self.holds_address = False
        self.address_error = ""  # whatever kept us from the address no longer matters: we let it go
        if site is not None:
            await site.stop()

    async def _listen(self, port: int, *, reuse_port: bool) -> tuple[Listener, int]:
        """Listen on 127.0.0.1:``port`` (0: any free port); returns the site and the port."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart while old sockets sit in TIME_WAIT
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self.balancer.host, port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        bound = int(sock.getsockname()[1])
        return await self.balancer.listen_on(sock), bound

    # --- reading ---------------------------------------------------------------------------------------------

    @property
    def service_url(self) -> str:
        return f"http://{self.balancer.host}:{self.service_port}"

    @property
    def own_url(self) -> str:
        return f"http://{self.balancer.host}:{self.own_port}"

    def status(self) -> BalancerStatus:
        base = self.balancer.status()
        state = (RUNNING if self.fault is None else self.fault) if self.running else CRASHED
        if self.role == MASTER and not self.holds_address and self.address_error:
            state = BLOCKED
        return _with(
            base,
            url=self.own_url,
            role=self.role,
            state=state,
            address=self.service_url if self.holds_address else None,
            pid=None,
            note=self.address_error if state == BLOCKED else "",
        )


def _with(status: BalancerStatus, **changes: Any) -> BalancerStatus:
    return dataclasses.replace(status, **changes)


__all__ = ["ACTIVE", "ACTIVE_ACTIVE", "ACTIVE_PASSIVE", "BACKUP", "MASTER", "SINGLE", "BalancerNode", "FrontDoor"]
