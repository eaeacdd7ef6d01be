"""The lab's front door: one balancer, or a redundant pair, kept configured alike.

A lab with one balancer has a single point of failure in front of its redundant instances. With
``Lab.start(balancers=2, pair="active-passive")`` there are two, ``lb1`` (priority 200, the primary) and ``lb2``
(priority 100), each with its own health checks and its own view of the instances; with ``"active-active"`` both
serve the service address at once. In process isolation each balancer is its own OS process, so ``crash`` is a
real ``kill -9`` — and the lab (the *supervisor*: it owns the instances, the admin API and the balancers) lives on.

:class:`FrontDoorGroup` keeps the desired configuration — the pool's members, the strategy, the switches — and
hands it to every balancer, including one that is restarted with an empty head. Which balancer *serves* is what
the lab's status shows in its top-level fields: the one holding the service address.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
from dataclasses import dataclass, field
from typing import Any, Protocol

from spofkit.balancer import Balancer
from spofkit.balancer_node import ACTIVE_PASSIVE, PAIR_MODES, SINGLE, BalancerNode, FrontDoor
from spofkit.commands import UnknownName
from spofkit.events import BalancerFaultCleared, BalancerFaultInjected, EventBus
from spofkit.pair import Address
from spofkit.policy import EjectionSettings, HealthSettings, RetrySettings, Strategy
from spofkit.process_balancer import ProcessBalancer
from spofkit.proxy.limits import ProxyLimits
from spofkit.real_proxy import REAL_PROXIES, make_real_proxy
from spofkit.status import CRASHED, BalancerStatus
from spofkit.wire import settings_to_dict

MAX_BALANCERS = 2
BALANCER_KINDS = ("spofkit", *REAL_PROXIES)  # spofkit's own balancer, or a real HAProxy or nginx in its place
PRIORITIES = (200, 100)  # lb1 is the primary: with preempt on it takes the address back when it returns


class Node(Protocol):
    """What the group needs of a balancer, in this process (BalancerNode) or its own (ProcessBalancer)."""

    name: str
    service_port: int
    own_port: int

    @property
    def pid(self) -> int | None: ...

    @property
    def running(self) -> bool: ...

    @property
    def advert(self) -> Address | None: ...

    async def start(self) -> None: ...
    async def stop(self, *, graceful: bool = True) -> None: ...
    async def crash(self) -> None: ...
    async def add_member(
        self,
        name: str,
        url: str,
        *,
        weight: int = 1,
        backup: bool = False,
        max_conns: int | None = None,
        initially_up: bool = True,
    ) -> None: ...
    async def remove_member(self, name: str, *, drain_timeout: float = 10.0) -> None: ...
    async def set_strategy(self, strategy: Strategy | str) -> None: ...
    async def set_retries(self, settings: RetrySettings | None) -> None: ...
    async def set_ejection(self, settings: EjectionSettings | None) -> None: ...
    async def set_health(self, settings: HealthSettings | None) -> None: ...
    async def join_pair(self, peers: list[Address]) -> None: ...
    async def inject(self, kind: str) -> None: ...
    async def recover(self) -> None: ...
    def status(self) -> BalancerStatus: ...


@dataclass
class Configuration:
    """What every balancer of the lab must agree on (the supervisor's copy, handed to a restarted balancer)."""

    strategy: Strategy | str = "round_robin"
    retries: RetrySettings | None = None
    ejection: EjectionSettings | None = None
    health: HealthSettings | None = None
    slow_start: float = 0.0
    seed: int = 0
    members: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> url and options, in order
    limits: ProxyLimits | None = None  # the client side's timeouts and sizes; None: nginx-like defaults


class FrontDoorGroup:
    """The lab's balancers: start them, keep them configured alike, break and mend them, say who serves."""

    def __init__(
        self,
        events: EventBus,
        configuration: Configuration,
        *,
        count: int = 1,
        mode: str | None = None,
        isolation: str = "inprocess",
        port: int = 0,
        advert_interval: float = 0.2,
        preempt: bool = True,
        balancer: str = "spofkit",
    ) -> None:
        if balancer not in BALANCER_KINDS:
            raise ValueError(f"balancer must be one of {BALANCER_KINDS}, got {balancer!r}")
        if balancer != "spofkit" and count != 1:
            raise ValueError(
                f"balancer={balancer!r} runs one {balancer} (a pair of real HAProxies with keepalived: "
                "spofkit.keepalived_pair)"
            )
        if balancer != "spofkit" and configuration.limits is not None:
            raise ValueError(
                f"limits are spofkit's balancer's; {balancer} has its own (e.g. client_header_timeout, "
                "timeout http-request): set them in its config (spofkit export)"
            )
        if configuration.limits is not None and not isinstance(configuration.limits, ProxyLimits):
            raise TypeError(f"limits must be a spofkit.proxy.limits.ProxyLimits, got {configuration.limits!r}")
        if balancer != "spofkit" and not isinstance(configuration.strategy, str):
            raise ValueError(f"{balancer} takes a strategy by name (your own class cannot run inside {balancer})")
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_BALANCERS:
            raise ValueError(f"balancers must be 1 or 2, got {count!r}")
        mode = mode or (ACTIVE_PASSIVE if count == 2 else SINGLE)
        if count == 1 and mode != SINGLE:
            raise ValueError(f"pair={mode!r} needs balancers=2")
        if count == 2 and mode not in PAIR_MODES:
            raise ValueError(f"pair must be one of {PAIR_MODES}, got {mode!r}")
        if isolation == "process" and not isinstance(configuration.strategy, str):
            raise ValueError("balancers in their own processes take a strategy by name (your own class stays here)")
        self.events = events
        self.configuration = configuration
        self.front_door = FrontDoor(mode, service_port=port, advert_interval=advert_interval, preempt=preempt)
        self.isolation = isolation
        self.balancer = balancer
        self.names = [f"lb{i + 1}" for i in range(count)]
        self.nodes: dict[str, Node] = {}
        self._own_ports: dict[str, int] = {}

    @property
    def mode(self) -> str:
        return self.front_door.mode

    @property
    def service_port(self) -> int:
        return self.front_door.service_port

    @property
    def service_url(self) -> str:
        return f"http://127.0.0.1:{self.front_door.service_port}"

    # --- lifecycle -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.front_door.mode == ACTIVE_PASSIVE and not self.front_door.service_port:
            # Whoever becomes master will listen there, so the address must be known before anyone holds it.
            self.front_door = dataclasses.replace(self.front_door, service_port=_free_port())
        for name in self.names:
            node = self._make(name)
            await node.start()
            self._remember(node)
        await self._join_all()

    async def stop(self) -> None:
        nodes, self.nodes = list(self.nodes.values()), {}
        for node in nodes:
            with contextlib.suppress(Exception):
                await node.stop(graceful=True)

    def stop_now(self) -> None:
        """At interpreter exit: stop balancer processes without the event loop."""
        for node in self.nodes.values():
            stop_now = getattr(node, "stop_now", None)
            if stop_now is not None:
                with contextlib.suppress(Exception):
                    stop_now()

    def _make(self, name: str) -> Node:
        config = self.configuration
        priority = PRIORITIES[self.names.index(name)]
        front_door = self.front_door
        own_port = self._own_ports.get(name, 0)
        if self.balancer in REAL_PROXIES:
            assert isinstance(config.strategy, str)
            return make_real_proxy(
                self.balancer,
                name,
                self.events,
                strategy=config.strategy,
                retries=config.retries,
                ejection=config.ejection,
                health=config.health,
                slow_start=config.slow_start,
                service_port=front_door.service_port,
                own_port=own_port,
            )
        if self.isolation == "process":
            child_config = {
                "strategy": config.strategy,
                "retries": settings_to_dict(config.retries),
                "ejection": settings_to_dict(config.ejection),
                "health": settings_to_dict(config.health),
                "slow_start": config.slow_start,
                "seed": config.seed,
                "limits": settings_to_dict(config.limits),
                "priority": priority,
                "own_port": own_port,
                "front_door": {
                    "mode": front_door.mode,
                    "service_port": front_door.service_port,
                    "advert_interval": front_door.advert_interval,
                    "preempt": front_door.preempt,
                },
                "clock_start": self.events.clock.to_source(0.0),
            }
            return ProcessBalancer(name, child_config, self.events)
        balancer = Balancer(
            self.events,
            name=name,
            strategy=config.strategy,
            retries=config.retries,
            ejection=config.ejection,
            health=config.health,
            slow_start=config.slow_start,
            seed=config.seed,
            limits=config.limits,
        )
        return BalancerNode(balancer, front_door, priority=priority, own_port=own_port)

    def _remember(self, node: Node) -> None:
        self.nodes[node.name] = node
        self._own_ports[node.name] = node.own_port
        if not self.front_door.service_port:  # the first balancer picked it: the others share it
            self.front_door = dataclasses.replace(self.front_door, service_port=node.service_port)

    async def _join_all(self) -> None:
        if self.front_door.mode != ACTIVE_PASSIVE:
            return
        for node in self.nodes.values():
            peers = [other.advert for other in self.nodes.values() if other is not node and other.advert]
            await node.join_pair([peer for peer in peers if peer is not None])

    # --- the pool and the switches, on every balancer ---------------------------------------------------------

    async def add_member(self, name: str, url: str, **options: Any) -> None:
        self.configuration.members[name] = {"url": url, **options}
        await self._each(lambda node: node.add_member(name, url, **options))

    async def remove_member(self, name: str, *, drain_timeout: float = 10.0) -> None:
        self.configuration.members.pop(name, None)
        await self._each(lambda node: node.remove_member(name, drain_timeout=drain_timeout))

    async def set_strategy(self, strategy: Strategy | str) -> None:
        if (self.isolation == "process" or self.balancer != "spofkit") and not isinstance(strategy, str):
            raise ValueError("balancers in their own processes take a strategy by name (your own class stays here)")
        self.configuration.strategy = strategy
        await self._each(lambda node: node.set_strategy(strategy))

    async def set_retries(self, settings: RetrySettings | None) -> None:
        self.configuration.retries = settings
        await self._each(lambda node: node.set_retries(settings))

    async def set_ejection(self, settings: EjectionSettings | None) -> None:
        self.configuration.ejection = settings
        await self._each(lambda node: node.set_ejection(settings))

    async def set_health(self, settings: HealthSettings | None) -> None:
        self.configuration.health = settings
        await self._each(lambda node: node.set_health(settings))

    async def _each(self, change: Any) -> None:
        """Apply ``change(node)`` to every running balancer (a crashed one gets the lot when it restarts)."""
        running = [node for node in self.nodes.values() if node.running]
        await asyncio.gather(*(change(node) for node in running))

    # --- the balancers' own faults ---------------------------------------------------------------------------------

    def node(self, name: str) -> Node:
        try:
            return self.nodes[name]
        except KeyError:
            raise UnknownName("balancer", f"no balancer named {name!r}; known: {sorted(self.nodes)}") from None

    async def crash(self, name: str) -> None:
        node = self.node(name)
        pid = node.pid
        await node.crash()
        how = f"kill -9 of pid {pid}" if pid else "its sockets closed, its connections cut"
        self.events.publish(BalancerFaultInjected(self.events.now(), name, "crash", how))

    async def inject(self, name: str, kind: str) -> None:
        await self.node(name).inject(kind)
        detail = "accepts, never answers; its adverts go on" if kind == "hang" else "no adverts in or out"
        self.events.publish(BalancerFaultInjected(self.events.now(), name, kind, detail))

    async def recover(self, name: str) -> None:
        """Undo a balancer's fault; a crashed balancer is started again (a new process in process isolation)."""
        node = self.node(name)
        if not node.running:
            await self.restart(name)
        else:
            await node.recover()
            self.events.publish(BalancerFaultCleared(self.events.now(), name, "recovered"))

    async def restart(self, name: str) -> None:
        """A fresh balancer in place of ``name`` (a new process), configured as the others, rejoining the pair."""
        old = self.node(name)
        with contextlib.suppress(Exception):
            await old.crash()
        node = self._make(name)
        await node.start()
        self._remember(node)
        config = self.configuration
        for member, spec in config.members.items():
            options = {k: v for k, v in spec.items() if k != "url"}
            await node.add_member(member, spec["url"], **options)
        await self._join_all()
        pid = f"new pid {node.pid}" if node.pid else "a fresh balancer"
        self.events.publish(BalancerFaultCleared(self.events.now(), name, "restarted", pid))

    # --- reading ---------------------------------------------------------------------------------------------------

    def statuses(self) -> list[BalancerStatus]:
        return [node.status() for node in self.nodes.values()]

    def serving(self) -> BalancerStatus | None:
        """The balancer whose view the lab shows: the one holding the service address, else the first alive."""
        statuses = self.statuses()
        holding = [s for s in statuses if s.address is not None and s.state != CRASHED]
        alive = [s for s in statuses if s.state != CRASHED]
        chosen = holding or alive or statuses
        return chosen[0] if chosen else None

    def local_balancer(self) -> Balancer:
        """The serving balancer object, for labs whose balancers run in this process."""
        serving = self.serving()
        node = self.nodes.get(serving.name) if serving is not None else None
        if not isinstance(node, BalancerNode):
            raise RuntimeError(
                "this lab's balancers run in their own processes: read lab.status() and change it with lab.apply()"
            )
        return node.balancer


def _free_port() -> int:
    """A port nobody listens on right now, for a pair's service address (the master binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
