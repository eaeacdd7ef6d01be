"""Two balancers at the front door, simulated: VRRP's rules, a virtual IP, what clients suffer, and fencing.

Who is master is decided by :class:`spofkit.policy.pair.PairMember` — the same object the live pair drives — and
fencing by :class:`spofkit.policy.pair.AddressLease` (the supervisor's side) and
:class:`~spofkit.policy.pair.LeaseHolder` (each balancer's, as the netns node uses it). This module keeps their
appointments and models the network between the two balancers and their clients the way :mod:`spofkit.netns`
builds it for real: two machines that can both put the service's virtual IP on their interface.

- **Adverts** travel from one balancer to the other (a fraction of a millisecond); ``advert_loss`` on a balancer
  drops every advert in and out, as a cut link between the two would.
- **The address**: a master takes it (with fencing, only if the supervisor's lease grants it; it asks again at
  each advert) and announces it with a *gratuitous ARP*, again every ``garp_interval`` (± 25 %) while it holds
  it. The clients' packets for the address go to whoever announced last.
- **Clients** keep ``connections`` keep-alive connections, each open with the balancer it reached first. When the
  address moves, a packet of a connection opened with the other balancer reaches a machine that does not know it:
  a **reset**, and the client reconnects. Packets to a machine that no longer has the address (fenced) go
  unanswered until the client gives up; a machine whose balancer process died but which still has the address
  answers with a reset (or refuses a new connection).
- **A crash** kills the balancer's process: no resignation, its requests cut. Without fencing its address stays
  on its interface; with fencing the supervisor sees the process die, removes the address and ends its lease.

In split brain (``advert_loss``) both balancers become master and both announce the address, so the clients'
traffic flips between them and connections are reset at each flip — what ``spofkit.netns`` measures for real,
here at any scale and without root. With fencing only one holds the lease, and nothing flips.

``pair="active-active"``: both balancers hold the address at once (the kernel spreads new connections between
them, as ``SO_REUSEPORT`` does); a connection to one that crashed is reset and opened again with the other.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from spofkit.policy.balancer import rng_for
from spofkit.policy.pair import (
    MASTER,
    AddressLease,
    LeaseHolder,
    PairAction,
    PairMember,
    PairSettings,
    ReleaseAddress,
    SendAdvert,
    TakeAddress,
)
from spofkit.sim.balancer import SimBalancer
from spofkit.sim.client import ClientCall
from spofkit.sim.frontdoor import CRASHED, BalancerSlot
from spofkit.sim.scheduler import SimScheduler, SimTimer
from spofkit.status import BalancerStatus

if TYPE_CHECKING:
    from spofkit.sim.lab import SimLab

ACTIVE_PASSIVE = "active-passive"
ACTIVE_ACTIVE = "active-active"
PAIR_MODES = (ACTIVE_PASSIVE, ACTIVE_ACTIVE)
PRIORITIES = {"lb1": 200, "lb2": 100}  # lb1 is the primary, as in a live lab's pair
ADVERT_LATENCY = 0.0002  # seconds from one balancer to the other on one switch
GARP_INTERVAL = 1.0  # keepalived's garp_master_refresh, as the netns testbed uses it
CONNECTIONS = 4  # the client's keep-alive connections
LEASE_TERM = 1.0
SERVICE_URL = "sim://service"


def make_pair(
    lab: SimLab,
    *,
    balancers: int,
    mode: str | None,
    advert_interval: float,
    preempt: bool,
    fencing: bool,
) -> PairFrontDoor:
    """The front door of a lab with two balancers (``mode`` defaults to active-passive)."""
    if balancers != 2:
        raise ValueError(f"a pair is 2 balancers, got balancers={balancers!r}")
    mode = mode or ACTIVE_PASSIVE
    if mode not in PAIR_MODES:
        raise ValueError(f"pair must be one of {PAIR_MODES}, got {mode!r}")
    if fencing and mode != ACTIVE_PASSIVE:
        raise ValueError("fencing is for an active-passive pair: active-active balancers share the address")
    return PairFrontDoor(
        lab.scheduler,
        lab._make_balancer,
        mode=mode,
        settings=PairSettings(advert_interval=advert_interval, preempt=preempt),
        fencing=fencing,
        rng=rng_for(lab.seed, "pair"),
    )


class _Side:
    """One balancer of the pair: its slot (the balancer and its faults), its VRRP member, its timers."""

    def __init__(self, slot: BalancerSlot, member: PairMember | None) -> None:
        self.slot = slot
        self.member = member
        self.timer: SimTimer | None = None
        self.garp: SimTimer | None = None
        self.link_cut = False
        self.holds = False  # the address is on this balancer's interface
        self.lease = LeaseHolder()  # its side of fencing (used only with fencing on)

    @property
    def name(self) -> str:
        return self.slot.name


class PairFrontDoor:
    """Two balancers, one service address. See the module docstring for the model."""

    def __init__(
        self,
        scheduler: SimScheduler,
        make: Callable[[str], SimBalancer],
        *,
        mode: str,
        settings: PairSettings,
        fencing: bool,
        rng: random.Random,
        garp_interval: float = GARP_INTERVAL,
        connections: int = CONNECTIONS,
    ) -> None:
        self.scheduler = scheduler
        self.mode = mode
        self.settings = settings
        self.lease = AddressLease(LEASE_TERM) if fencing else None
        self.rng = rng
        self.garp_interval = garp_interval
        self.arp: str | None = None  # where the clients' packets for the address go
        self.connections: list[str | None] = [None] * connections  # the balancer each is open with
        self._next_connection = 0
        self.resets = 0  # connections reset because the address moved
        self.flips = 0  # times the clients' ARP entry changed
        self.sides: dict[str, _Side] = {}
        for name in PRIORITIES:
            slot = BalancerSlot(name, make)
            self.sides[name] = _Side(slot, self._member(name, slot))
        for side in self.sides.values():
            if mode == ACTIVE_ACTIVE:
                side.holds = True
            else:
                self._join(side)

    def _member(self, name: str, slot: BalancerSlot) -> PairMember | None:
        if self.mode != ACTIVE_PASSIVE:
            return None
        settings = PairSettings(self.settings.advert_interval, PRIORITIES[name], self.settings.preempt)
        return PairMember(name, settings, slot.balancer.events.publish)

    @property
    def balancers(self) -> dict[str, SimBalancer]:
        return {name: side.slot.balancer for name, side in self.sides.items()}

    # --- VRRP, as spofkit.pair.PairDriver drives it -----------------------------------------------------------

    def _join(self, side: _Side) -> None:
        assert side.member is not None
        self._carry_out(side, side.member.start(self.scheduler.now()))

    def _carry_out(self, side: _Side, actions: list[PairAction]) -> None:
        for action in actions:
            if isinstance(action, SendAdvert):
                self._send_advert(side, action.priority)
            elif isinstance(action, TakeAddress):
                self._take(side)
            elif isinstance(action, ReleaseAddress):
                self._release(side)
        self._arm(side)

    def _arm(self, side: _Side) -> None:
        if side.timer is not None:
            side.timer.cancel()
            side.timer = None
        due = side.member.timer_at if side.member is not None else None
        if due is not None and side.slot.alive:
            side.timer = self.scheduler.call_at(due, lambda: self._tick(side))

    def _tick(self, side: _Side) -> None:
        side.timer = None
        assert side.member is not None
        self._carry_out(side, side.member.tick(self.scheduler.now()))

    def _send_advert(self, side: _Side, priority: int) -> None:
        if side.member is not None and side.member.role == MASTER:
            self._keep_address(side)  # a master's adverts renew its lease; one without the address asks again
        if side.link_cut:
            return
        for peer in self.sides.values():
            if peer is not side:
                arrives = functools.partial(self._advert_arrives, peer, side, priority)
                self.scheduler.call_later(ADVERT_LATENCY, arrives)

    def _advert_arrives(self, peer: _Side, sender: _Side, priority: int) -> None:
        if peer.link_cut or not peer.slot.alive or peer.member is None:
            return
        self._carry_out(peer, peer.member.advert_received(self.scheduler.now(), sender.name, priority))

    # --- the address --------------------------------------------------------------------------------------------

    def _take(self, side: _Side) -> None:
        side.lease.wants = True
        if self.lease is None:
            self._hold(side)
        else:
            self._ask_lease(side)  # refused: a master without the address, it asks again at its next advert

    def _keep_address(self, side: _Side) -> None:
        if self.lease is not None:
            self._ask_lease(side)

    def _ask_lease(self, side: _Side) -> None:
        """The supervisor's answer comes at once here (no network between them); the holder's rule says what then."""
        assert self.lease is not None
        now = self.scheduler.now()
        what = side.lease.answer(self.lease.request(side.name, now), now, self.lease.term)
        if what == LeaseHolder.HOLD:
            self._hold(side)
        elif what == LeaseHolder.DROP and side.holds:  # the lease went to the other: fenced off
            self._drop(side)

    def _hold(self, side: _Side) -> None:
        if not side.holds:
            side.holds = True
            self._announce(side)

    def _release(self, side: _Side) -> None:
        side.lease.wants = False
        self._drop(side)

    def _drop(self, side: _Side) -> None:
        side.holds = False
        if side.garp is not None:
            side.garp.cancel()
            side.garp = None
        if self.lease is not None:
            self.lease.release(side.name)

    def _announce(self, side: _Side) -> None:
        """A gratuitous ARP: the clients' packets for the address go to ``side`` from now on."""
        side.garp = None
        if not side.holds:
            return
        if self.arp != side.name:
            if self.arp is not None:
                self.flips += 1
            self.arp = side.name
        spread = self.garp_interval * self.rng.uniform(0.75, 1.25)
        side.garp = self.scheduler.call_later(spread, lambda: self._announce(side))

    # --- the clients ------------------------------------------------------------------------------------------

    def deliver(self, call: ClientCall) -> None:
        if self.mode == ACTIVE_ACTIVE:
            self._deliver_active_active(call)
            return
        connection = call.id % len(self.connections)
        opened_with = self.connections[connection]
        target = self.sides.get(self.arp) if self.arp is not None else None
        if target is None:
            call.failed("connect")  # nobody has announced the address yet
            return
        if opened_with is not None and opened_with != target.name:
            self.connections[connection] = None  # the other machine knows nothing of this connection
            self.resets += 1
            call.failed("reset")
            return
        if not target.holds:
            call.needs_timer(float("inf"))  # fenced off or released: nothing answers, the client waits
            return
        if not target.slot.alive:
            self.connections[connection] = None
            call.failed("reset" if opened_with is not None else "connect")  # the machine's kernel answers
            return
        self.connections[connection] = target.name
        target.slot.accept(call)

    def _deliver_active_active(self, call: ClientCall) -> None:
        connection = call.id % len(self.connections)
        opened_with = self.connections[connection]
        alive = [name for name, side in self.sides.items() if side.slot.alive]
        if opened_with is not None and opened_with not in alive:
            self.connections[connection] = None
            call.failed("reset")
            return
        if opened_with is None:
            if not alive:
                call.failed("connect")
                return
            opened_with = alive[self._next_connection % len(alive)]
            self._next_connection += 1
            self.connections[connection] = opened_with
        self.sides[opened_with].slot.accept(call)

    # --- the balancers' faults ----------------------------------------------------------------------------------

    def crash(self, name: str) -> None:
        side = self.sides[name]
        side.slot.crash()
        for timer in (side.timer, side.garp):
            if timer is not None:
                timer.cancel()
        side.timer = side.garp = None
        side.lease.wants = False  # a dead process wants nothing; restarted, the pair's rules decide again
        if self.lease is not None:  # the supervisor saw the process die: it takes the address off and ends the lease
            self.lease.holder_died(name)
            side.holds = False
        elif self.mode == ACTIVE_ACTIVE:
            side.holds = False

    def check_fault(self, kind: str) -> None:
        if kind == "advert_loss" and self.mode != ACTIVE_PASSIVE:
            raise ValueError("advert_loss needs an active-passive pair: active-active balancers send no adverts")

    def inject(self, name: str, kind: str) -> None:
        self.check_fault(kind)  # before the fault in place is undone
        side = self.sides[name]
        self.recover_fault(side)
        if kind == "hang":
            side.slot.hang()
        elif kind == "advert_loss":
            side.link_cut = True

    def recover_fault(self, side: _Side) -> None:
        side.link_cut = False
        if side.slot.state != CRASHED:
            side.slot.recover()

    def recover(self, name: str) -> None:
        side = self.sides[name]
        if side.slot.state == CRASHED:
            self.restart(name)
        else:
            self.recover_fault(side)

    def restart(self, name: str) -> None:
        """A fresh balancer (an empty head, configured by the lab) rejoins the pair as backup (VRRP's rule 1)."""
        side = self.sides[name]
        if side.slot.state != CRASHED:
            self.crash(name)
        side.slot.recover()
        side.link_cut = False
        side.holds = self.mode == ACTIVE_ACTIVE
        side.member = self._member(name, side.slot)
        if side.member is not None:
            self._join(side)

    # --- reading -------------------------------------------------------------------------------------------------

    def statuses(self) -> list[BalancerStatus]:
        rows = []
        for side in self.sides.values():
            role = side.member.role if side.member is not None else "active"
            state = side.slot.state
            if state != CRASHED and side.link_cut:
                state = "advert_loss"
            note = ""
            if role == MASTER and not side.holds and state != CRASHED:
                state, note = "blocked", "the supervisor refused it the address: another balancer holds the lease"
            address = SERVICE_URL if side.holds and state != CRASHED else None
            rows.append(side.slot.status(state=state, address=address, role=role, note=note))
        return rows

    def serving(self) -> SimBalancer | None:
        target = self.sides.get(self.arp) if self.arp is not None else None
        if target is not None and target.holds and target.slot.alive:
            return target.slot.balancer
        alive = [side for side in self.sides.values() if side.slot.alive]
        return (alive or list(self.sides.values()))[0].slot.balancer
