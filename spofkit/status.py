"""What a view may know about a lab: the words for an instance's state, and the status snapshot.

Two kinds of knowledge are kept apart, because two balancers can disagree:

- **facts** about an instance (:class:`InstanceFacts`): its name, address, process, fault. True whoever looks.
- **a balancer's view** of it (:class:`MemberView`): whether *that balancer* sends it traffic (its ``state``),
  and what it has seen (in flight, served, failed, health counts). Each balancer has its own view.

:class:`InstanceStatus` is the two side by side for the serving balancer — the row the widgets, the TUI and
``GET /status`` show. This module is the one owner of the state vocabulary:

=========  ==============================================================================================
up         in the pool and healthy: gets traffic.
falling    failed some checks, not yet ``fall`` in a row: still gets traffic (it may be a blip).
down       marked down by the health checks: no traffic; probed every ``downinter``.
rising     passed some checks, not yet ``rise`` in a row: no traffic yet.
ejected    real requests failed in a row (passive ejection): no traffic until the ejection runs out.
draining   being removed: no new requests, the ones in flight finish.
=========  ==============================================================================================

A member may also be a **backup** (a role, not a state): it serves only while no primary can.

A *balancer* has words of its own. Its **role** in the front door: ``single`` (the only one), ``master`` or
``backup`` (active-passive pair), ``active`` (active-active pair), ``stopped``. Its **state**: ``running``,
``hang`` (accepts, never answers), ``advert_loss`` (cut off from its partner), ``blocked`` (master, but the other
holds the address: split brain on one host), ``crashed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

UP = "up"
FALLING = "falling"
DOWN = "down"
RISING = "rising"
EJECTED = "ejected"
DRAINING = "draining"
STATES = (UP, FALLING, DOWN, RISING, EJECTED, DRAINING)
# The states in which a balancer sends an instance traffic.
SERVING_STATES = frozenset({UP, FALLING})


# A balancer's role in the front door, and its state.
SINGLE = "single"
MASTER = "master"
BACKUP = "backup"
ACTIVE = "active"
STOPPED = "stopped"
ROLES = (SINGLE, MASTER, BACKUP, ACTIVE, STOPPED)
RUNNING = "running"
HANG = "hang"
ADVERT_LOSS = "advert_loss"
BLOCKED = "blocked"
CRASHED = "crashed"
BALANCER_STATES = (RUNNING, HANG, ADVERT_LOSS, BLOCKED, CRASHED)


def member_state(*, draining: bool, ejected: bool, health_phase: str | None) -> str:
    """A balancer's state for one member: draining beats ejected beats what the health checks say.

    ``health_phase`` is the health checker's ``up``/``falling``/``down``/``rising``, or None when checks are off
    (then every member counts as up).
    """
    if draining:
        return DRAINING
    if ejected:
        return EJECTED
    if health_phase is None:
        return UP
    if health_phase not in (UP, FALLING, DOWN, RISING):
        raise ValueError(f"unknown health phase {health_phase!r}")
    return health_phase


def is_serving(state: str) -> bool:
    """Does a member in ``state`` get traffic (if a strategy picks it)?"""
    return state in SERVING_STATES


@dataclass(frozen=True)
class InstanceFacts:
    """What is true of an instance whichever balancer looks: where it is, its process, its fault."""

    name: str
    url: str
    pid: int | None = None
    fault: str | None = None
    running: bool = True
    # Its capacity (spofkit.capacity): workers (None: no limit), and right now how many are busy, how many requests
    # wait for one; shed counts the requests answered 503 at once for want of a place, over the instance's life.
    concurrency: int | None = None
    busy: int = 0
    queued: int = 0
    shed: int = 0

    @classmethod
    def of_instance(cls, name: str, instance: Any) -> InstanceFacts:
        """What an instance, live or simulated (None: already gone), says of itself."""
        fault = getattr(instance, "fault", None)
        capacity = getattr(instance, "capacity", None)
        return cls(
            name=name,
            url=getattr(instance, "url", ""),
            pid=getattr(instance, "pid", None),
            fault=fault.kind if fault is not None else None,
            running=bool(getattr(instance, "running", False)),
            concurrency=capacity.concurrency if capacity is not None else None,
            busy=int(getattr(instance, "busy", 0)),
            queued=int(getattr(instance, "queued", 0)),
            shed=int(getattr(instance, "shed", 0)),
        )


@dataclass(frozen=True)
class MemberView:
    """One balancer's view of one instance."""

    name: str
    state: str
    backup: bool = False
    weight: int = 1
    in_flight: int = 0
    served: int = 0
    failed: int = 0
    health_successes: int = 0
    health_failures: int = 0
    rise: int = 0
    fall: int = 0
    max_conns: int | None = None
    ejected_until: float | None = None


@dataclass(frozen=True)
class BalancerStatus:
    """One balancer: its address, switches, counters and its view of every member."""

    name: str
    url: str
    strategy: str
    retries: bool
    health_checks: bool
    ejection: bool
    requests: int = 0
    retried: int = 0
    failed: int = 0
    members: tuple[MemberView, ...] = ()
    role: str = SINGLE  # single, or in a pair: master / backup (active-passive), active (active-active); stopped
    state: str = RUNNING  # running, hang, advert_loss, blocked (master, but the address is held), crashed
    address: str | None = None  # the service address while this balancer holds it
    pid: int | None = None  # its own process, in process isolation
    note: str = ""  # why it is in that state, when there is something to say

    def member(self, name: str) -> MemberView:
        for view in self.members:
            if view.name == name:
                return view
        raise KeyError(f"balancer {self.name} has no member named {name!r}")


@dataclass(frozen=True)
class InstanceStatus:
    """One instance as a view shows it: its facts, and the serving balancer's view (``state`` decides traffic)."""

    name: str
    url: str
    pid: int | None
    state: str
    backup: bool
    fault: str | None
    health_successes: int
    health_failures: int
    rise: int
    fall: int
    in_flight: int
    served: int
    failed: int
    weight: int
    running: bool
    concurrency: int | None = None  # the instance's workers (None: no limit); the rest as in InstanceFacts
    busy: int = 0
    queued: int = 0
    shed: int = 0

    @classmethod
    def of(cls, facts: InstanceFacts, view: MemberView) -> InstanceStatus:
        return cls(
            name=facts.name,
            url=facts.url,
            pid=facts.pid,
            state=view.state,
            backup=view.backup,
            fault=facts.fault,
            health_successes=view.health_successes,
            health_failures=view.health_failures,
            rise=view.rise,
            fall=view.fall,
            in_flight=view.in_flight,
            served=view.served,
            failed=view.failed,
            weight=view.weight,
            running=facts.running,
            concurrency=facts.concurrency,
            busy=facts.busy,
            queued=facts.queued,
            shed=facts.shed,
        )

    @property
    def serving(self) -> bool:
        return is_serving(self.state)


@dataclass(frozen=True)
class LabStatus:
    """A snapshot of a whole lab at lab time ``at``.

    The top-level switches and ``instances`` rows are those of the serving balancer (``balancer_url``);
    ``balancers`` holds every balancer's own view, so that a pair can disagree and a view can show it.
    """

    at: float
    strategy: str
    retries: bool
    health_checks: bool
    ejection: bool
    balancer_url: str
    load_rate: float | None
    load_paused: bool
    instances: list[InstanceStatus] = field(default_factory=list)
    balancers: list[BalancerStatus] = field(default_factory=list)
    deploying: bool = False  # a Deploy command is running (a second one would be refused)

    def instance(self, name: str) -> InstanceStatus:
        for status in self.instances:
            if status.name == name:
                return status
        raise KeyError(f"no instance named {name!r}")

    def balancer(self, name: str) -> BalancerStatus:
        for status in self.balancers:
            if status.name == name:
                return status
        raise KeyError(f"no balancer named {name!r}; known: {[b.name for b in self.balancers]}")
