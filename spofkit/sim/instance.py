"""A service instance, modelled: workers, a queue, and the faults of :mod:`spofkit.faults`.

The live :class:`~spofkit.instance.ServiceInstance` is a real HTTP server; :class:`SimInstance` is its model.
What a fault does to a request or a probe is not written here: both ask :func:`spofkit.faults.effect`, the one
definition, and carry out the :class:`~spofkit.faults.Effect` it answers —

- ``refused``: nobody listens (a crash, the down half of a flap): the connection is refused at once;
- ``hangs``: accepted, never answered (the worker stays stuck until the instance recovers or dies);
- ``delay``: the answer comes that much later;
- ``status``: an error answer, fast, without doing the work (as the live instance does);
- ``cut_off``: the work is done, but the answer breaks off halfway: the balancer sees a reset.

A crash (and each down flip of a flap) cuts every connection open at that moment: requests being served or
waiting get a reset, as when a process dies. Counters (``served``, ``errors``) add up over the instance's life.

:meth:`SimInstance.load` reads the instance's own gauges (:class:`InstanceLoad`: workers busy, requests queued), the
figures a real server reports about itself (HAProxy's ``scur``/``qcur``, nginx's active and waiting connections);
they can differ from what a balancer has in flight there, because an attempt the balancer gave up on still
keeps its worker.

A request that arrives is a :class:`Visit`. The instance either answers at once (:meth:`SimInstance.receive`
returns the outcome: refused, or 503 when the queue is full) or later, by calling ``visit.owner.visit_done``
at the virtual time the answer comes.
"""

from __future__ import annotations

import collections
import functools
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from spofkit.events import Event, FaultCleared, FaultInjected, InstanceRestarted, InstanceStarted, InstanceStopped
from spofkit.faults import Crash, Effect, Fault, Flap, Hang, Warmup, effect
from spofkit.sim.capacity import Capacity, ServiceTime
from spofkit.sim.scheduler import SimScheduler, SimTimer

# What happened to a visit, as the balancer sees it.
ANSWER = "answer"  # an HTTP answer with ``status``
REFUSED = "refused"  # no connection: nobody listens
RESET = "reset"  # the connection broke before a full answer
QUEUE_FULL = 503  # the answer of an instance whose workers and queue are all taken


@dataclass(frozen=True)
class InstanceLoad:
    """One instance's own gauges at a moment: ``busy`` workers (health checks and abandoned attempts included),
    ``queued`` requests waiting for one, and how many ``workers`` it has (None: no limit)."""

    name: str
    busy: int
    queued: int
    workers: int | None


class VisitOwner(Protocol):
    def visit_done(self, visit: Visit) -> None: ...


class Visit:
    """One request (or health probe) at an instance. The instance fills in ``outcome`` and ``status``."""

    __slots__ = (
        "abandoned",
        "context",
        "effect",
        "finish_at",
        "give_up",
        "health_check",
        "instance",
        "outcome",
        "owner",
        "status",
        "timer",
    )

    def __init__(self, owner: VisitOwner, health_check: bool, context: Any = None) -> None:
        self.owner = owner
        self.health_check = health_check
        self.context = context  # the owner's own data (the request's attempt machine, or the probed name)
        self.effect: Effect | None = None
        self.outcome = ANSWER
        self.status = 200
        self.finish_at: float | None = None  # known once a worker took it (None while it waits or hangs)
        self.abandoned = False  # the owner gave up (per-try timeout): the work goes on, the answer is dropped
        self.timer: SimTimer | None = None  # the instance's: when the answer comes
        self.give_up: SimTimer | None = None  # the owner's: when it stops waiting
        self.instance: SimInstance | None = None

    def __call__(self) -> None:
        """The visit's timer fired: the answer is ready."""
        assert self.instance is not None
        self.instance._finished(self)


class SimInstance:
    """One modelled instance. Lifecycle and fault rules are those of :class:`spofkit.instance.Instance`."""

    def __init__(
        self,
        name: str,
        scheduler: SimScheduler,
        publish: Callable[[Event], None],
        *,
        capacity: Capacity | None = None,
        dice: random.Random | None = None,
        work_rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.url = f"sim://{name}"
        self.scheduler = scheduler
        self.publish = publish
        self.capacity = capacity or Capacity()
        self.dice = dice or random.Random(0)
        self.service_time = ServiceTime(self.capacity, work_rng or random.Random(1))
        self._concurrency = self.capacity.concurrency
        self._queue_limit = self.capacity.queue
        self.fault: Fault | None = None
        self.fault_began = 0.0
        self.running = False
        self.started = False
        self.served = 0
        self.errors = 0
        self.shed = 0  # of the errors: answered 503 at once, no worker free and no place in the queue
        self.busy = 0  # workers taken (a hung request keeps its worker)
        self._serving: dict[Visit, None] = {}  # taken workers, in arrival order (a dict keeps order, a set not)
        self._waiting: collections.deque[Visit] = collections.deque()
        self._fault_timer: SimTimer | None = None  # a warmup's end or a flap's next flip

    # --- reading ---------------------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Requests and probes at the instance: being served, hung or waiting."""
        return self.busy + len(self._waiting)

    @property
    def queued(self) -> int:
        return len(self._waiting)

    def load(self) -> InstanceLoad:
        """Its gauges now: busy workers, queued requests, workers."""
        return InstanceLoad(self.name, self.busy, len(self._waiting), self._concurrency)

    # --- requests ----------------------------------------------------------------------------------------

    def receive(self, visit: Visit) -> bool:
        """A request (or probe) arrives now. Returns True if it was answered at once (refused or 503 queue full),
        False if the answer comes later through ``visit.owner.visit_done(visit)``."""
        now = self.scheduler._now
        met = effect(self.fault, health_check=visit.health_check, elapsed=now - self.fault_began, dice=self.dice)
        if not self.running or met.refused:
            visit.outcome = REFUSED
            return True
        visit.effect = met
        visit.instance = self
        if self._concurrency is None or self.busy < self._concurrency:
            self._start(visit, now)
            return False
        if len(self._waiting) < self._queue_limit:
            self._waiting.append(visit)
            return False
        self.errors += 1  # shed: answered at once, without work
        self.shed += 1
        visit.outcome, visit.status = ANSWER, QUEUE_FULL
        return True

    def _start(self, visit: Visit, now: float) -> None:
        """A worker takes ``visit``: schedule its answer (or leave it hung)."""
        self.busy += 1
        self._serving[visit] = None
        met = visit.effect
        assert met is not None
        if met.hangs and isinstance(self.fault, Hang):
            return  # the worker is stuck until recover() or a crash
        done = now + met.delay  # (a request that queued during a hang now over is served as usual)
        if met.status is not None:
            visit.status = met.status  # fails fast, without the work
        elif not visit.health_check:
            done += self.service_time.draw()
            if met.cut_off:
                visit.outcome = RESET
        self._schedule_answer(visit, done)

    def _schedule_answer(self, visit: Visit, at: float) -> None:
        visit.finish_at = at
        visit.timer = self.scheduler.call_at(at, visit)

    def _finished(self, visit: Visit) -> None:
        del self._serving[visit]
        self.busy -= 1
        if visit.outcome == ANSWER and visit.status < 400:
            if not visit.health_check:
                self.served += 1
        else:
            self.errors += 1
        self._take_next()
        if not visit.abandoned:
            visit.owner.visit_done(visit)

    def _take_next(self) -> None:
        waiting = self._waiting
        while waiting and (self._concurrency is None or self.busy < self._concurrency):
            self._start(waiting.popleft(), self.scheduler._now)

    def _cut_connections(self) -> None:
        """Every open connection drops (a process dies, a flap goes down): all visits here get a reset."""
        cut = list(self._serving) + list(self._waiting)
        self._serving.clear()
        self._waiting.clear()
        self.busy = 0
        for visit in cut:
            if visit.timer is not None:
                visit.timer.cancel()
            visit.outcome = RESET
            self.errors += 1
            if not visit.abandoned:
                # A moment later, not inside the command that crashed us: the owner may send new requests.
                self.scheduler.call_at(self.scheduler._now, functools.partial(visit.owner.visit_done, visit))

    def _release_hung(self) -> None:
        """Hung requests go on (recover): they do their work and are answered."""
        now = self.scheduler._now
        for visit in list(self._serving):
            if visit.effect is not None and visit.effect.hangs and visit.finish_at is None:
                self._schedule_answer(visit, now + (0.0 if visit.health_check else self.service_time.draw()))

    # --- lifecycle and faults (the rules of spofkit.instance.Instance) -------------------------------------

    def _now(self) -> float:
        return self.scheduler._now

    def start(self) -> None:
        if self.started:
            return
        self.started = self.running = True
        self.publish(InstanceStarted(self._now(), self.name, self.url))

    def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        self._end_fault_effects()
        self._die()
        self.fault = None
        self.publish(InstanceStopped(self._now(), self.name))

    def inject(self, fault: Fault) -> None:
        """Make ``fault`` happen now, replacing any fault already active."""
        self._require_started()
        self._end_fault_effects()
        previous = self.fault
        came_back = False
        if isinstance(fault, Crash):
            if self.running:
                self._die()
        else:
            came_back = not self.running
            self.running = True
            self._release_hung()  # a hang replaced by another fault lets its requests go on, as live
            self.fault_began = self._now()
        self.fault = fault
        self._announce_change(previous, came_back)
        self.publish(FaultInjected(self._now(), self.name, fault.kind, fault.params()))
        if isinstance(fault, Warmup):
            self._fault_timer = self.scheduler.call_later(fault.seconds, lambda: self._end_warmup(fault))
        elif isinstance(fault, Flap):
            self._flip(fault, 0)

    def recover(self, warmup: Warmup | None = None) -> None:
        """Undo the active fault; a crashed instance comes back. ``warmup``: start slow."""
        self._require_started()
        self._end_fault_effects()
        previous = self.fault
        came_back = not self.running
        self.running = True
        self._release_hung()
        self.fault = None
        self._announce_change(previous, came_back)
        if warmup is not None:
            self.inject(warmup)

    def restart(self, warmup: Warmup | None = None) -> None:
        """Crash, then start again, with no fault."""
        self._end_fault_effects()
        previous = self.fault
        if self.running:
            self._die()
        self.running = self.started = True
        self.fault = None
        self._announce_change(previous, came_back=True)
        if warmup is not None:
            self.inject(warmup)

    def _die(self) -> None:
        self.running = False
        self._cut_connections()

    def _end_warmup(self, warmup: Warmup) -> None:
        self._fault_timer = None
        if self.fault is warmup:
            self.fault = None
            self.publish(FaultCleared(self._now(), self.name, warmup.kind))

    def _flip(self, flap: Flap, phase: int) -> None:
        """Phases 0, 2, 4… of a flap are down (open connections are cut), 1, 3… up; each lasts ``period``."""
        self._fault_timer = None
        if self.fault is not flap:
            return
        if phase % 2 == 0:
            self._cut_connections()
        when = self.fault_began + (phase + 1) * flap.period
        self._fault_timer = self.scheduler.call_at(when, lambda: self._flip(flap, phase + 1))

    def _end_fault_effects(self) -> None:
        if self._fault_timer is not None:
            self._fault_timer.cancel()
            self._fault_timer = None

    def _announce_change(self, previous: Fault | None, came_back: bool) -> None:
        if previous is not None:
            self.publish(FaultCleared(self._now(), self.name, previous.kind))
        if came_back:
            self.publish(InstanceRestarted(self._now(), self.name))

    def _require_started(self) -> None:
        if not self.started:
            raise RuntimeError(f"instance {self.name!r} is not started")
