"""The front door, simulated: how a client's request reaches a balancer.

With one balancer (:class:`SingleFrontDoor`) every request goes to it — and if it has crashed, the client's
connection is refused; if it hangs, the client waits until it gives up. That balancer is a single point of
failure; :mod:`spofkit.sim.pair` puts two there.

A crashed balancer that is recovered or restarted is a *new* balancer, configured by the lab (the supervisor)
like the old one but with an empty head: its health checks start again from its configuration, as live.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Protocol

from spofkit.sim.balancer import SimBalancer
from spofkit.sim.client import ClientCall
from spofkit.status import BalancerStatus

RUNNING = "running"
HANG = "hang"
CRASHED = "crashed"
BalancerFactory = Callable[[str], SimBalancer]


class FrontDoor(Protocol):
    """What the lab needs of its front door, one balancer or a pair."""

    @property
    def balancers(self) -> dict[str, SimBalancer]: ...

    def deliver(self, call: ClientCall) -> None: ...

    def crash(self, name: str) -> None: ...

    def check_fault(self, kind: str) -> None:
        """A ValueError saying why this front door cannot take a balancer fault of ``kind`` (other than a crash)."""

    def inject(self, name: str, kind: str) -> None: ...

    def recover(self, name: str) -> None: ...

    def restart(self, name: str) -> None: ...

    def statuses(self) -> list[BalancerStatus]: ...

    def serving(self) -> SimBalancer | None: ...


class BalancerSlot:
    """One balancer of the front door and its own faults, as :class:`spofkit.balancer_node.BalancerNode` has them.

    A crashed balancer refuses new connections and cuts the ones open (their clients see a reset); a hung one
    accepts requests and answers none until it recovers (then it handles them, if their clients still wait).
    """

    def __init__(self, name: str, make: BalancerFactory) -> None:
        self.name = name
        self.make = make
        self.balancer = make(name)
        self.state = RUNNING
        self.held: list[ClientCall] = []

    @property
    def alive(self) -> bool:
        return self.state != CRASHED

    def accept(self, call: ClientCall) -> None:
        if self.state == CRASHED:
            call.failed("connect")
        elif self.state == HANG:
            self.held.append(call)
            call.needs_timer(float("inf"))
        else:
            self.balancer.handle(call)

    def hang(self) -> None:
        if self.state == CRASHED:
            raise ValueError(f"balancer {self.name} has crashed: recover or restart it first")
        self.state = HANG

    def crash(self) -> None:
        if self.state == CRASHED:
            return
        self.state = CRASHED
        self.balancer.crash()
        held, self.held = self.held, []
        for call in held:
            call.failed("reset")

    def recover(self) -> None:
        if self.state == CRASHED:
            self.balancer = self.make(self.name)
        self.state = RUNNING
        held, self.held = self.held, []
        for call in held:
            if not call.done:
                self.balancer.handle(call)

    def status(
        self, *, state: str | None = None, address: str | None = None, role: str = "single", note: str = ""
    ) -> BalancerStatus:
        """The balancer's own status, with its state (``running``, ``hang``, ``crashed``…), role and address."""
        return dataclasses.replace(
            self.balancer.status(), state=state or self.state, address=address, role=role, note=note
        )


class SingleFrontDoor:
    """One balancer: every client request goes to it."""

    def __init__(self, make: BalancerFactory, name: str = "lb1") -> None:
        self.slot = BalancerSlot(name, make)
        # Every client request goes straight to the slot (one call less for each request).
        self.deliver: Callable[[ClientCall], None] = self.slot.accept

    @property
    def balancers(self) -> dict[str, SimBalancer]:
        return {self.slot.name: self.slot.balancer}

    def _slot(self, name: str) -> BalancerSlot:
        if name != self.slot.name:
            raise KeyError(name)
        return self.slot

    def crash(self, name: str) -> None:
        self._slot(name).crash()

    def check_fault(self, kind: str) -> None:
        if kind == "advert_loss":
            raise ValueError("advert_loss needs a pair of balancers (balancers=2, pair='active-passive')")

    def inject(self, name: str, kind: str) -> None:
        self.check_fault(kind)
        self._slot(name).hang()

    def recover(self, name: str) -> None:
        self._slot(name).recover()

    def restart(self, name: str) -> None:
        slot = self._slot(name)
        slot.crash()
        slot.recover()

    def statuses(self) -> list[BalancerStatus]:
        slot = self.slot
        return [slot.status(address=slot.balancer.url if slot.alive else None)]

    def serving(self) -> SimBalancer | None:
        return self.slot.balancer
