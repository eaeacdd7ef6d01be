"""The pair, live: adverts as UDP datagrams between two balancers, and the address taken or released on cue.

The rules are in :mod:`spofkit.policy.pair` (:class:`~spofkit.policy.pair.PairMember`). :class:`PairDriver` keeps
its appointments: it sets a timer for the member's ``timer_at``, sends each advert the member asks for as a small
JSON datagram to the peer (``{"from": "lb1", "priority": 200}``), feeds the peer's adverts back in, and calls
``take_address`` / ``release_address`` when the member says so — on loopback that means listening on the
service port or closing it; in a network namespace, adding or removing the virtual IP.

``link_cut`` drops every advert in and out, as a broken link between the two balancers would: the way to make
split brain on purpose.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from spofkit.clock import Scheduler, Timer
from spofkit.policy.pair import PairAction, PairMember, ReleaseAddress, SendAdvert, TakeAddress

Address = tuple[str, int]
# An advert is a few dozen bytes; anything much larger on the advert port is not from our peer.
MAX_ADVERT_BYTES = 512


class _AdvertProtocol(asyncio.DatagramProtocol):
    def __init__(self, driver: PairDriver) -> None:
        self.driver = driver

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.driver._received(data)


class PairDriver:
    """Drives one :class:`PairMember` with UDP adverts on ``host`` and the given address callbacks."""

    def __init__(
        self,
        member: PairMember,
        scheduler: Scheduler,
        *,
        take_address: Callable[[str], Any],
        release_address: Callable[[str], Any],
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.member = member
        self.scheduler = scheduler
        self.take_address = take_address
        self.release_address = release_address
        self.host = host
        self.port = port
        self.peers: list[Address] = []
        self.link_cut = False
        self.adverts_dropped = 0
        self._transport: asyncio.DatagramTransport | None = None
        self._timer: Timer | None = None

    @property
    def advert_address(self) -> Address:
        return (self.host, self.port)

    async def open(self) -> Address:
        """Bind the advert socket (before :meth:`start`, so the peer can be told where to send)."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _AdvertProtocol(self), local_addr=(self.host, self.port)
        )
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        return self.advert_address

    def start(self) -> None:
        """Join the pair (as backup, unless this balancer owns the address)."""
        self._carry_out(self.member.start(self.scheduler.now()))

    def stop(self) -> None:
        """Leave gracefully: a master resigns (priority-0 advert), so the backup takes over within its skew."""
        self._carry_out(self.member.stop(self.scheduler.now()))
        self.close()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    # --- the cycle --------------------------------------------------------------------------------------------

    def _carry_out(self, actions: list[PairAction]) -> None:
        for action in actions:
            if isinstance(action, SendAdvert):
                self._send(action.priority)
            elif isinstance(action, TakeAddress):
                self.take_address(action.reason)
            elif isinstance(action, ReleaseAddress):
                self.release_address(action.reason)
        self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        due = self.member.timer_at
        if due is not None and self._transport is not None:
            self._timer = self.scheduler.call_at(due, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._carry_out(self.member.tick(self.scheduler.now()))

    def _send(self, priority: int) -> None:
        if self._transport is None:
            return
        if self.link_cut:
            self.adverts_dropped += 1
            return
        advert = json.dumps({"from": self.member.name, "priority": priority}).encode()
        for peer in self.peers:
            self._transport.sendto(advert, peer)

    def _received(self, data: bytes) -> None:
        if self.link_cut:
            self.adverts_dropped += 1
            return
        if len(data) > MAX_ADVERT_BYTES:
            return
        try:
            advert = json.loads(data)
            sender, priority = advert["from"], advert["priority"]
        except (ValueError, KeyError, TypeError):
            return  # not an advert: ignore it, as VRRP ignores malformed packets
        if not isinstance(sender, str) or isinstance(priority, bool) or not isinstance(priority, int):
            return
        if not 0 <= priority <= 255:
            return
        self._carry_out(self.member.advert_received(self.scheduler.now(), sender, priority))
