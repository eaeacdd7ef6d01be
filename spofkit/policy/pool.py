"""Pool selection: which instance may take the next attempt.

The rules, in the order they are applied:

1. **Eligible** members are those not yet tried for this request, not draining, not ejected (passive ejection)
   and not marked down by the health checks. The pool is *told* the health verdicts (:meth:`Pool.set_healthy`);
   it does not run checks.
2. **Backups** serve only when no primary is eligible (HAProxy's ``backup``): a spare that takes over, not a
   member that shares the load.
3. **max_conns**: a member already handling ``max_conns`` requests is skipped; if every eligible member is
   full, the client gets a 503 at once rather than waiting in a queue that only grows.
4. The **strategy** picks among what is left (:mod:`spofkit.policy.strategies`).
5. **Slow start**: a member that came (back) up less than ``slow_start`` seconds ago takes a share growing
   linearly from 0 to full — a picked member is admitted with probability ``(now - up_since) / slow_start``, and
   if it is not, the strategy picks again among the others. A cold cache or JIT is not hit with its full share.
6. **Nothing to choose**: 503 if no attempt has been made yet ("no instance is available"), 502 if every
   eligible member has been tried already ("no other instance left to try").

It also counts each member's in-flight, served and failed attempts and feeds results to the strategy (for
peak EWMA) and to the outlier detector (passive ejection, :mod:`spofkit.policy.failover`). No I/O, no clock:
every call takes ``now``, randomness comes from the two ``random.Random`` it is handed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any, TypeVar, cast, overload

from spofkit.events import (
    DEFAULT_BALANCER,
    Event,
    InstanceAdded,
    InstanceDraining,
    InstanceEjected,
    InstanceRemoved,
    InstanceReturned,
)
from spofkit.policy.failover import EjectionSettings, OutlierDetector
from spofkit.policy.strategies import Backend, CheckedBackends, RequestInfo, Strategy, make_strategy

_T = TypeVar("_T")

MAX_WEIGHT = 256
_tuple_new = tuple.__new__
_INFINITY = float("inf")


def _nothing() -> None:
    pass


class Member:
    """One configured instance, as one balancer sees it. A member is itself: compared by identity.

    The counters (``in_flight``, ``served``, ``failed``) are plain attributes. The five fields that decide who is
    eligible (``healthy``, ``draining``, ``weight``, ``backup``, ``max_conns``) tell the pool when they change, so
    its ready list (worked out once, not for every request) stays true even when a member is changed by hand.
    """

    __slots__ = (
        "_backup",
        "_changed",
        "_draining",
        "_healthy",
        "_max_conns",
        "_weight",
        "failed",
        "in_flight",
        "name",
        "served",
        "up_since",
        "url",
    )

    def __init__(
        self,
        name: str,
        url: str,
        weight: int = 1,
        backup: bool = False,
        max_conns: int | None = None,
        in_flight: int = 0,
        served: int = 0,
        failed: int = 0,
        draining: bool = False,
        healthy: bool = True,  # the health checks' verdict (True while checks are off)
        up_since: float = 0.0,  # when it last came (back) up: slow start counts from here
        on_change: Callable[[], None] = _nothing,
    ) -> None:
        self.name = name
        self.url = url
        self._weight = weight
        self._backup = backup
        self._max_conns = max_conns
        self.in_flight = in_flight
        self.served = served
        self.failed = failed
        self._draining = draining
        self._healthy = healthy
        self.up_since = up_since
        self._changed = on_change

    def __repr__(self) -> str:
        return (
            f"Member(name={self.name!r}, url={self.url!r}, weight={self._weight}, backup={self._backup}, "
            f"max_conns={self._max_conns}, in_flight={self.in_flight}, served={self.served}, failed={self.failed}, "
            f"draining={self._draining}, healthy={self._healthy}, up_since={self.up_since})"
        )

    @property
    def weight(self) -> int:
        return self._weight

    @weight.setter
    def weight(self, value: int) -> None:
        self._weight = value
        self._changed()

    @property
    def backup(self) -> bool:
        return self._backup

    @backup.setter
    def backup(self, value: bool) -> None:
        self._backup = value
        self._changed()

    @property
    def max_conns(self) -> int | None:
        return self._max_conns

    @max_conns.setter
    def max_conns(self, value: int | None) -> None:
        self._max_conns = value
        self._changed()

    @property
    def draining(self) -> bool:
        return self._draining

    @draining.setter
    def draining(self, value: bool) -> None:
        self._draining = value
        self._changed()

    @property
    def healthy(self) -> bool:
        return self._healthy

    @healthy.setter
    def healthy(self, value: bool) -> None:
        self._healthy = value
        self._changed()

    @property
    def full(self) -> bool:
        return self._max_conns is not None and self.in_flight >= self._max_conns


def _snapshot(m: Member) -> Backend:
    """``Backend(m.name, m.weight, m.in_flight)``, made the quickest way a named tuple can be (for every request)."""
    return _tuple_new(Backend, (m.name, m._weight, m.in_flight))


class _MemberBackends(CheckedBackends):
    """The candidates as the strategy sees them: a ``Backend`` is made only for the members a strategy reads.

    Power of two choices looks at two members of a hundred; building a snapshot of all hundred for every
    request was most of the cost of choosing. Each ``Backend`` still is a snapshot, taken when it is read.
    """

    __slots__ = ("_members", "_remembered")

    def __init__(self, members: list[Member]) -> None:
        self._members = members
        self._remembered: dict[Hashable, Any] = {}  # kept with the _Ready it belongs to: until the pool changes

    def remember(self, key: Hashable, work_out: Callable[[Sequence[Backend]], _T]) -> _T:
        remembered = self._remembered
        if key in remembered:
            return cast(_T, remembered[key])
        value = remembered[key] = work_out(self)
        return value

    def __len__(self) -> int:
        return len(self._members)

    @overload
    def __getitem__(self, index: int) -> Backend: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Backend]: ...
    def __getitem__(self, index: int | slice) -> Backend | Sequence[Backend]:
        if isinstance(index, slice):
            return [_snapshot(m) for m in self._members[index]]
        return _snapshot(self._members[index])

    def __iter__(self) -> Iterator[Backend]:
        return map(_snapshot, self._members)


class _Ready:
    """Rules 1 and 2 for a first attempt, worked out once and kept until something they depend on changes:
    membership, a health verdict, a drain, an ejection, or the time an ejection runs out."""

    __slots__ = ("backends", "by_name", "members", "valid_from", "valid_until")

    def __init__(self, members: list[Member], valid_from: float, valid_until: float) -> None:
        self.members = members
        self.by_name = {m.name: m for m in members}
        # Every weight > 0 (in_flight is never below 0): strategies may skip their own checks. A weight of 0
        # (a drain by weight) takes the strategies' own path, which knows what 0 means.
        self.backends: Sequence[Backend] | None = (
            _MemberBackends(members) if members and all(m.weight > 0 for m in members) else None
        )
        self.valid_from = valid_from
        self.valid_until = valid_until


class NoInstance(Exception):
    """No member can take this attempt (rule 6); ``status`` and ``reason`` go to the client."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Pool:
    """The members of one balancer and the rules for choosing among them."""

    def __init__(
        self,
        emit: Callable[[Event], None],
        *,
        strategy: Strategy | str = "round_robin",
        ejection: EjectionSettings | None = None,
        slow_start: float = 0.0,
        strategy_rng: random.Random | None = None,
        slow_start_rng: random.Random | None = None,
        balancer: str = DEFAULT_BALANCER,
    ) -> None:
        if not slow_start >= 0:
            raise ValueError(f"slow_start must be >= 0 seconds, got {slow_start!r}")
        self.emit = emit
        self.balancer = balancer
        self.strategy = make_strategy(strategy)
        self.ejection = ejection
        self.outliers = OutlierDetector(ejection or EjectionSettings())
        self.slow_start = slow_start
        self.strategy_rng = strategy_rng or random.Random(0)
        self.slow_start_rng = slow_start_rng or random.Random(1)
        self.members: dict[str, Member] = {}
        self._primaries = 0  # members that are not backups (passive ejection ejects at most a share of them)
        self._capped = 0  # members with a max_conns (rule 3 looks at each candidate only when there are any)
        self._ready: _Ready | None = None  # rules 1 and 2 for a first attempt, until something changes

    def changed(self) -> None:
        """Something rules 1 and 2 depend on has changed: work them out afresh at the next choice.

        Called on every change to membership, a member's eligibility fields, ejection and health (a ``Member``
        calls it itself when one of its fields is set).
        """
        self._ready = None
        members = self.members.values()
        self._primaries = sum(1 for m in members if not m._backup)
        self._capped = sum(1 for m in members if m._max_conns is not None)

    # --- membership -----------------------------------------------------------------------------------

    def member(self, name: str) -> Member:
        try:
            return self.members[name]
        except KeyError:
            raise KeyError(f"no instance named {name!r}; known: {sorted(self.members)}") from None

    def add(
        self,
        name: str,
        url: str,
        now: float,
        *,
        weight: int = 1,
        backup: bool = False,
        max_conns: int | None = None,
        healthy: bool = True,
    ) -> Member:
        if name in self.members:
            raise ValueError(f"instance name {name!r} is already in the pool")
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= MAX_WEIGHT:
            raise ValueError(f"weight must be a whole number 0..{MAX_WEIGHT}, got {weight!r}")
        if max_conns is not None and (isinstance(max_conns, bool) or not isinstance(max_conns, int) or max_conns < 1):
            raise ValueError(f"max_conns must be a whole number >= 1, got {max_conns!r}")
        member = Member(name, url, weight, backup, max_conns, healthy=healthy, up_since=now, on_change=self.changed)
        self.members[name] = member
        self.changed()
        self.emit(InstanceAdded(now, name, url, backup, balancer=self.balancer))
        return member

    def drain(self, name: str, now: float) -> Member:
        """No new attempts for ``name``; the ones in flight go on. The driver removes it once they are done."""
        member = self.member(name)
        if not member.draining:
            member.draining = True  # the member tells the pool
            self.emit(InstanceDraining(now, name, member.in_flight, balancer=self.balancer))
        return member

    def remove(self, name: str, now: float) -> None:
        member = self.member(name)
        member._changed = _nothing
        del self.members[name]
        self.changed()
        self.outliers.forget(name)
        self.emit(InstanceRemoved(now, name, balancer=self.balancer))

    def set_healthy(self, name: str, healthy: bool, now: float) -> None:
        """The health checks' verdict on ``name``. Coming back up starts its slow start."""
        member = self.members.get(name)
        if member is None:
            return
        if healthy and not member.healthy:
            member.up_since = now
        if member.healthy != healthy:
            member.healthy = healthy  # the member tells the pool

    @property
    def strategy(self) -> Strategy:
        return self._strategy

    @strategy.setter
    def strategy(self, spec: Strategy) -> None:
        self._strategy = spec
        # observe is optional for a learner's own strategy, and the base class's does nothing: skip the call then.
        observe = getattr(spec, "observe", None)
        is_base = getattr(observe, "__func__", None) is Strategy.observe
        self._observe: Callable[[str, float, bool, float], None] | None = None if is_base else observe

    def set_strategy(self, spec: Strategy | str) -> None:
        self.strategy = make_strategy(spec)

    @property
    def strategy_name(self) -> str:
        return str(getattr(self.strategy, "name", type(self.strategy).__name__))

    def set_ejection(self, settings: EjectionSettings | None) -> None:
        """Passive ejection on (with ``settings``) or off; either way every ejection so far is forgotten."""
        self.ejection = settings
        self.outliers = OutlierDetector(settings or EjectionSettings())
        self._ready = None

    # --- choosing -------------------------------------------------------------------------------------

    def is_ejected(self, name: str, now: float) -> bool:
        return self.ejection is not None and self.outliers.is_ejected(name, now)

    def eligible(self, now: float, tried: set[str] | frozenset[str] = frozenset()) -> list[Member]:
        """Rules 1 and 2: who may take the next attempt, before max_conns and the strategy."""
        ejected = self.outliers.ejected_at(now) if self.ejection is not None else ()
        usable = [
            m
            for m in self.members.values()
            if m.healthy and not m.draining and m.name not in tried and m.name not in ejected
        ]
        primaries = [m for m in usable if not m.backup]
        return primaries or [m for m in usable if m.backup]

    def choose(self, request: RequestInfo, now: float, tried: set[str] | frozenset[str] = frozenset()) -> Member:
        """Pick a member for one attempt (rules 1–5), or raise :class:`NoInstance` saying why none can (rule 6)."""
        backends: Sequence[Backend] | None
        if tried:
            eligible = self.eligible(now, tried)
            offered = None
            backends = None
        else:
            ready = self._ready
            if ready is None or not ready.valid_from <= now < ready.valid_until:
                ready = self._ready = self._work_out_ready(now)
            eligible, offered, backends = ready.members, ready.by_name, ready.backends
        if not eligible:
            if tried:
                raise NoInstance(502, "no other instance left to try")
            raise NoInstance(503, "no instance is available (all down, ejected or draining)")
        candidates = eligible
        if self._capped:
            candidates = [m for m in eligible if not m.full]
            if not candidates:
                raise NoInstance(503, "every available instance is at its max_conns limit")
            if len(candidates) != len(eligible):
                offered = backends = None
        while True:
            if offered is None:
                offered = {m.name: m for m in candidates}
            if backends is None:  # (the common case above has a lazy sequence, which builds only what is read)
                backends = [_snapshot(m) for m in candidates]
            picked = self.strategy.pick(backends, request, now, self.strategy_rng)
            member = offered.get(picked.name)
            if member is None:
                raise ValueError(f"strategy {self.strategy_name} picked {picked.name!r}, which was not offered")
            if len(candidates) == 1 or self._admitted_by_slow_start(member, now):
                return member
            candidates = [m for m in candidates if m is not member]
            offered = backends = None

    def _work_out_ready(self, now: float) -> _Ready:
        # Kept until the earliest ejection in force runs out (then that member is eligible again).
        ejected = self.outliers.ejected_at(now) if self.ejection is not None else ()
        ends = [until for name in ejected if (until := self.outliers.ejected_until(name)) is not None]
        return _Ready(self.eligible(now), now, min(ends, default=_INFINITY))

    def _admitted_by_slow_start(self, member: Member, now: float) -> bool:
        if self.slow_start <= 0:
            return True
        warmed = (now - member.up_since) / self.slow_start
        return warmed >= 1 or self.slow_start_rng.random() < warmed

    # --- results --------------------------------------------------------------------------------------

    def attempt_started(self, member: Member) -> None:
        member.in_flight += 1

    def attempt_finished(self, member: Member, ok: bool, latency: float, now: float) -> None:
        """One attempt on ``member`` is over: count it, tell the strategy, and maybe eject the member."""
        if member.in_flight > 0:
            member.in_flight -= 1
        if ok:
            member.served += 1
        else:
            member.failed += 1
        observe = self._observe
        if observe is not None:
            observe(member.name, latency, ok, now)
        if self.ejection is None or member.name not in self.members:
            return
        ejected_for = self.outliers.record(member.name, ok, now, self._primaries or 1)
        if ejected_for is not None:
            self._ready = None
            failures = self.ejection.consecutive_failures
            self.emit(InstanceEjected(now, member.name, ejected_for, failures, balancer=self.balancer))

    def next_return_at(self) -> float | None:
        """When the earliest ejection runs out (a driver sets a timer for it), or None."""
        return self.outliers.earliest_end()  # a removed member's record is forgotten with it

    def ejections_ended(self, now: float) -> list[str]:
        """Announce members whose ejection has run out by ``now`` (each once)."""
        back = self.outliers.returned(now)
        if back:
            self._ready = None
        for name in back:
            self.emit(InstanceReturned(now, name, balancer=self.balancer))
        return back
