"""Load-balancing strategies: which instance gets the next request?

A strategy is a pure object: it is handed the instances that may serve (``Backend`` snapshots),
the request, the lab time ``now`` and a seeded ``random.Random``, and it returns one of them. It
does no I/O and never reads the clock or the global ``random`` itself, so it can be tested with
plain calls and reused by a simulator.

The balancer tells it how each attempt went through ``observe`` (strategies that learn, such as
peak EWMA, use it; the others ignore it). To write your own, subclass :class:`Strategy` and
implement ``pick``.

Redundancy only helps if traffic actually reaches the healthy copies, and *how* it is spread
decides what one slow or failing copy costs you. The strategies go from blind to informed:

- ``round_robin`` and ``weighted_round_robin`` take turns; they know nothing about load.
- ``random`` spreads by weight with a roll of the dice.
- ``least_connections`` and ``power_of_two`` look at how many requests each instance is busy with.
- ``consistent_hash`` sends the same key to the same instance (caches, sessions) and moves few
  keys when one instance goes away.
- ``peak_ewma`` learns each instance's latency and steers away from slow ones.

Shared rules: ``backends`` is never empty (an empty list raises ``ValueError``). A backend with
``weight == 0`` is draining and gets nothing new, unless every backend has weight 0; then all
count as weight 1.

:func:`make_strategy` turns a name such as ``"round_robin"`` into a fresh strategy.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
from bisect import bisect_right
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar, cast

_T = TypeVar("_T")


class Backend(NamedTuple):
    """What a strategy may know about one instance that can serve right now.

    (A named tuple rather than a dataclass: the balancer makes one per candidate for every request, and a tuple
    is several times cheaper to make. It reads the same: ``backend.name``, ``.weight``, ``.in_flight``.)
    """

    name: str
    weight: int = 1
    in_flight: int = 0


class CheckedBackends(Sequence[Backend]):
    """A sequence of backends its maker vouches for: not empty, every weight > 0, every in_flight >= 0.

    The pool hands strategies one of these (lazily made ``Backend`` snapshots), so that a strategy that reads two
    backends of a hundred, such as power of two choices, costs the same at any pool size. Strategies treat it as
    any sequence; the shared checks below skip what it vouches for. Its snapshots are valid for the one ``pick``
    call; what :meth:`remember` keeps is valid as long as the same backends (names, order, weights) are offered.
    """

    __slots__ = ()

    def remember(self, key: Hashable, work_out: Callable[[Sequence[Backend]], _T]) -> _T:
        """``work_out(self)``, kept under ``key`` while the pool offers these same backends.

        For what a strategy works out from the backends' *names, order and weights* alone (never ``in_flight``,
        which changes with every request): round robin's name order, the dice's cumulative weights, a hash ring.
        The pool's sequence keeps it until its membership, a weight, a health verdict, a drain or an ejection
        changes, so the work is done once, not for every request. This one keeps nothing.
        """
        return work_out(self)


@dataclass(frozen=True)
class RequestInfo:
    """What a strategy may know about the request being placed."""

    method: str = "GET"
    path: str = "/"
    headers: Mapping[str, str] = field(default_factory=dict)
    client: str = "127.0.0.1"


class Strategy:
    """The small protocol every strategy implements. ``pick`` is required; ``observe`` optional."""

    name: str = "strategy"

    def pick(
        self,
        backends: Sequence[Backend],
        request: RequestInfo,
        now: float,
        rng: random.Random,
    ) -> Backend:
        """Return one of ``backends`` (never empty) for ``request``."""
        raise NotImplementedError

    def observe(self, backend: str, latency: float, ok: bool, now: float) -> None:
        """Learn from one finished attempt on ``backend``: its latency, whether it succeeded."""


# --- helpers shared by the strategies -------------------------------------------------------------


def _eligible(backends: Sequence[Backend]) -> Sequence[Backend]:
    """The backends that may take new work: weight 0 means draining, unless all have weight 0."""
    checked = _CHECKED_TYPES.get(type(backends))  # _is_checked, inlined: this runs for every attempt
    if checked or (checked is None and _is_checked(backends)):
        return backends
    if not backends:
        raise ValueError("backends is empty: a strategy needs at least one Backend to pick from")
    for backend in backends:
        if backend.weight < 0:
            raise ValueError(f"Backend {backend.name!r} has weight={backend.weight}; weight must be >= 0")
        if backend.in_flight < 0:
            raise ValueError(f"Backend {backend.name!r} has in_flight={backend.in_flight}; must be >= 0")
    with_weight = [b for b in backends if b.weight > 0]
    return with_weight or list(backends)


def _remembered(backends: Sequence[Backend], key: Hashable, work_out: Callable[[Sequence[Backend]], _T]) -> _T:
    """:meth:`CheckedBackends.remember` where the pool offers one, else ``work_out(backends)`` afresh."""
    if _is_checked(backends):
        return cast(CheckedBackends, backends).remember(key, work_out)
    return work_out(backends)


# Whether a type of sequence is a CheckedBackends, by type. ``isinstance`` against the ABC runs ABCMeta's check, a
# Python-level call that cost more than the rest of power of two's pick (it runs for every attempt); a dict lookup
# by type does not. (A type registered as a virtual subclass after it was first seen here would be missed.)
_CHECKED_TYPES: dict[type, bool] = {}


def _is_checked(backends: object) -> bool:
    kind = type(backends)
    checked = _CHECKED_TYPES.get(kind)
    if checked is None:
        checked = _CHECKED_TYPES[kind] = issubclass(kind, CheckedBackends)
    return checked


def _name_order(backends: Sequence[Backend]) -> tuple[list[str], list[int]]:
    """The backends' names in order, and the position of each in ``backends``."""
    positions = sorted(range(len(backends)), key=lambda i: backends[i].name)
    return [backends[i].name for i in positions], positions


def _weight(backend: Backend) -> int:
    """A backend's weight, where 0 (seen only when *all* are 0, see ``_eligible``) counts as 1."""
    return backend.weight or 1


def _choose_lowest(candidates: Sequence[Backend], score: Mapping[str, float], rng: random.Random) -> Backend:
    """The candidate with the lowest score; ties go to the dice, so equals share the work."""
    lowest = min(score[b.name] for b in candidates)
    tied = [b for b in candidates if score[b.name] == lowest]
    return tied[0] if len(tied) == 1 else rng.choice(tied)


def _stable_hash(text: str) -> int:
    """A 64-bit hash, the same in every process and run (Python's ``hash()`` is salted)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


# --- taking turns ---------------------------------------------------------------------------------


class RoundRobin(Strategy):
    """Each backend in turn, in name order.

    Shines when instances are alike and requests cost about the same: even, nothing to learn.
    Hurts when one instance is slow: it keeps getting its full share, so some users wait on it.
    """

    name = "round_robin"

    def __init__(self) -> None:
        # We remember the *name* served last, not a position in the list: when an instance drops
        # out (or comes back) between calls, "the next name after the last one" still walks
        # round without skipping anybody, whereas an index would shift onto another backend.
        self._last: str | None = None

    def pick(
        self,
        backends: Sequence[Backend],
        request: RequestInfo,
        now: float,
        rng: random.Random,
    ) -> Backend:
        candidates = _eligible(backends)
        # The names in order are the same from one request to the next (until the pool changes): worked out once.
        names, positions = _remembered(candidates, "name_order", _name_order)
        after_last = 0 if self._last is None else bisect_right(names, self._last)  # the first name after it
        chosen = candidates[positions[after_last if after_last < len(names) else 0]]  # past the end: wrap around
        self._last = chosen.name
        return chosen


class WeightedRoundRobin(Strategy):
    """Smooth weighted round robin (nginx's algorithm): turns in proportion to weight, spread out.

    Shines when instances differ in size (a big machine and a small one) but behave predictably.
    Hurts like round robin: weights are set by hand, so an instance that turns slow keeps its share.
    """

    name = "weighted_round_robin"

    def __init__(self) -> None:
        # Each backend's "current weight", its running credit. Kept by name so it survives an
        # instance dropping out for a moment (say, a retry that excludes the one that failed).
        self._current: dict[str, int] = {}

    def pick(
        self,
        backends: Sequence[Backend],
        request: RequestInfo,
        now: float,
        rng: random.Random,
    ) -> Backend:
        # Every turn each backend earns its weight in credit; the richest one serves and pays
        # back the total. Over sum(weights) turns each backend serves exactly `weight` times,
        # and big ones are interleaved with small ones (a a b a c a a for 5:1:1), not bunched.
        # Names and weights in name order are the same from one request to the next: worked out once (no
        # in_flight is read, so no snapshot of every backend is made for every request).
        candidates = _eligible(backends)
        names, positions = _remembered(candidates, "name_order", _name_order)
        weights = _remembered(candidates, "weights_in_name_order", lambda bs: [_weight(bs[i]) for i in positions])
        current = self._current
        total = 0
        richest, richest_credit = 0, 0
        for index, (name, weight) in enumerate(zip(names, weights, strict=True)):
            credit = current[name] = current.get(name, 0) + weight
            total += weight
            if index == 0 or credit > richest_credit:
                richest, richest_credit = index, credit
        current[names[richest]] -= total
        return candidates[positions[richest]]


# --- dice -----------------------------------------------------------------------------------------


class RandomChoice(Strategy):
    """Pick at random, in proportion to weight.

    Shines with many balancers and no shared state: nothing to coordinate, even on average.
    Hurts in the short run (by chance one instance gets several requests in a row), and a slow
    instance keeps its share just as under round robin.
    """

    name = "random"

    def pick(
        self,
        backends: Sequence[Backend],
        request: RequestInfo,
        now: float,
        rng: random.Random,
    ) -> Backend:
        candidates = _eligible(backends)
        cumulative = _remembered(candidates, "cumulative_weights", _cumulative_weights)
        return rng.choices(candidates, cum_weights=cumulative, k=1)[0]


def _cumulative_weights(backends: Sequence[Backend]) -> list[int]:
    return list(itertools.accumulate(_weight(b) for b in backends))


# --- looking at load ------------------------------------------------------------------------------


class LeastConnections(Strategy):
    """The backend with the fewest requests in flight per unit of weight; ties go to the dice.

    Shines when requests vary in cost: a slow instance piles up requests, so gets fewer new ones.
    Hurts when many balancers share stale counts (they all rush to the same "emptiest" instance),
    and an instance that fails fast looks empty and attracts traffic.
    """

    name = "least_connections"

    def pick(
        self,
        backends: Sequence[Backend],
        request: RequestInfo,
        now: float,
        rng: random.Random,
    ) -> Backend:
        # One pass: the lowest load so far, and every backend tied with it (ties go to the dice, so equals share).
        lowest = math.inf
        tied: list[Backend] = []
        for backend in _eligible(backends):
            load = backend.in_flight / (backend.weight or 1)
            if load < lowest:
                lowest, tied = load, [backend]
            elif load == lowest:
                tied.append(backend)
        return tied[0] if len(tied) == 1 else rng.choice(tied)


class PowerOfTwo(Strategy):
    """Power of two choices: draw two distinct backends at random, keep the one less busy.

    Shines at scale: nearly as good as least connections, yet balancers with stale counts do not
    herd onto one instance, because each compares only its own two random draws.
    Hurts with very few instances (with two it is just least connections), and like it is fooled
    by an instance that fails fast.
    """

    name = "power_of_two"

    def pick(
        self,
        backends: Sequence[Backend],
        request: RequestInfo,
        now: float,
        rng: random.Random,
    ) -> Backend:
        candidates = _eligible(backends)
        count = len(candidates)
        if count == 1:
            return candidates[0]
        # Two distinct positions, each equally likely: the first of `count`, the second of the `count - 1` others.
        # (What rng.sample(candidates, 2) does, without its general machinery: this runs for every request.)
        i = int(rng.random() * count)
        j = int(rng.random() * (count - 1))
        first, second = candidates[i], candidates[j + (j >= i)]
        return second if second.in_flight < first.in_flight else first


# --- same key, same instance ----------------------------------------------------------------------


class ConsistentHash(Strategy):
    """A hash ring: a request's key (a header, else the client address) keeps the same backend.

    Shines for caches and sessions: a user reaches the same warm instance, and when an instance
    dies only *its* keys move (to the next backend round the ring); everyone else stays put.
    Hurts when keys are uneven (one hot key overloads its instance); load is ignored entirely.
    """

    name = "consistent_hash"

    def __init__(self, header: str = "X-Hash-Key", replicas: int = 100) -> None:
        if not header:
            raise ValueError("header must be a non-empty header name, got ''")
        if replicas < 1:
            raise ValueError(f"replicas={replicas}; need at least 1 virtual node per backend")
        self.header = header
        # Each backend sits on the ring `replicas × weight` times ("virtual nodes"): with one
        # point each, a few backends would cut the ring into very unequal arcs.
        self.replicas = replicas
        self._rings: dict[tuple[tuple[str, int], ...], tuple[list[int], list[str]]] = {}

    def key_for(self, request: RequestInfo) -> str:
        """What is hashed: the configured header if the request has it, else the client address."""
        wanted = self.header.lower()
        for name, value in request.headers.items():
            if name.lower() == wanted and value:
                return value
        return request.client

    def pick(
        self,
        backends: Sequence[Backend],
        request: RequestInfo,
        now: float,
        rng: random.Random,
    ) -> Backend:
        candidates = _eligible(backends)
        points, owners = _remembered(candidates, self, self._ring)
        # Walk clockwise from the key's position to the next virtual node, wrapping at the top.
        index = bisect_right(points, _stable_hash(self.key_for(request))) % len(points)
        return candidates[owners[index]]

    def _ring(self, candidates: Sequence[Backend]) -> tuple[list[int], list[int]]:
        """Sorted ring positions and the owner of each (its position in ``candidates``), cached per set of backends."""
        members = tuple(sorted((b.name, _weight(b)) for b in candidates))
        ring = self._rings.get(members)
        if ring is None:
            # A point depends only on its own backend's name, so removing a backend removes only
            # its points: that is what keeps every other key where it was.
            placed = sorted(
                (_stable_hash(f"{name}#{i}"), name) for name, weight in members for i in range(self.replicas * weight)
            )
            ring = ([point for point, _ in placed], [name for _, name in placed])
            if len(self._rings) >= 32:  # bound the cache when membership keeps changing
                self._rings.clear()
            self._rings[members] = ring
        points, names = ring
        position = {b.name: index for index, b in enumerate(candidates)}
        return points, [position[name] for name in names]


# --- learning from latency ------------------------------------------------------------------------


class PeakEwma(Strategy):
    """Peak EWMA (Finagle, linkerd): cost = recent latency × (in flight + 1); cheapest serves.

    Shines when an instance turns slow but still answers: its estimate jumps at once, so traffic
    drains to the others with no health check needed. Hurts when latency is noisy or requests
    differ wildly in cost (a few slow requests get a healthy instance shunned for a while).

    How the estimate moves:

    - A sample *above* the estimate replaces it at once ("peak"): react to trouble immediately.
    - A sample below it is blended in with weight ``1 - exp(-Δt / tau)``, Δt being the time since
      the previous sample: the longer since we last heard, the more the new sample counts.
    - Between samples the estimate decays toward zero with time constant ``tau``, so a shunned
      instance eventually looks cheap again, gets tried, and shows it is fast (or jumps back up).
    - A failed attempt counts as at least ``failure_penalty`` seconds: a quick "connection
      refused" is bad news, not a fast answer.
    - A backend with no samples yet is assumed as fast as the fastest one we know
      (``default_latency`` if we know none): a newcomer gets tried soon, yet is not flooded
      before its first answer, since its cost grows with its in-flight count like anyone's.
    """

    name = "peak_ewma"

    def __init__(self, tau: float = 10.0, failure_penalty: float = 1.0, default_latency: float = 0.01) -> None:
        if not tau > 0:
            raise ValueError(f"tau={tau}; the decay time must be > 0 seconds")
        if not failure_penalty >= 0:
            raise ValueError(f"failure_penalty={failure_penalty}; must be >= 0 seconds")
        if not default_latency > 0:
            raise ValueError(f"default_latency={default_latency}; must be > 0 seconds")
        self.tau = tau
        self.failure_penalty = failure_penalty
        self.default_latency = default_latency
        self._ewma: dict[str, float] = {}  # latency estimate (s) as of the last sample
        self._stamp: dict[str, float] = {}  # lab time of the last sample

    def estimate(self, backend: str, now: float) -> float | None:
        """``backend``'s latency estimate at ``now`` (decayed since its last sample), or None."""
        if backend not in self._ewma:
            return None
        return self._ewma[backend] * self._decay(backend, now)

    def costs(self, backends: Sequence[Backend], now: float) -> dict[str, float]:
        """Each eligible backend's cost at ``now``: estimate × (in_flight + 1)."""
        candidates = _eligible(backends)
        estimates = {b.name: self.estimate(b.name, now) for b in candidates}
        known = [e for e in estimates.values() if e is not None]
        guess_for_unseen = min(known) if known else self.default_latency
        result: dict[str, float] = {}
        for backend in candidates:
            estimate = estimates[backend.name]
            latency = guess_for_unseen if estimate is None else estimate
            result[backend.name] = latency * (backend.in_flight + 1)
        return result

    def pick(
        self,
        backends: Sequence[Backend],
        request: RequestInfo,
        now: float,
        rng: random.Random,
    ) -> Backend:
        return _choose_lowest(_eligible(backends), self.costs(backends, now), rng)

    def observe(self, backend: str, latency: float, ok: bool, now: float) -> None:
        if not (latency >= 0 and math.isfinite(latency)):
            raise ValueError(f"latency={latency} for {backend!r}; must be finite and >= 0 seconds")
        sample = latency if ok else max(latency, self.failure_penalty)
        previous = self.estimate(backend, now)
        if previous is None or sample > previous:
            self._ewma[backend] = sample  # first sample, or the peak rule: trouble shows at once
        else:
            decay = self._decay(backend, now)
            self._ewma[backend] = self._ewma[backend] * decay + sample * (1 - decay)
        self._stamp[backend] = now

    def _decay(self, backend: str, now: float) -> float:
        """How much of the old estimate survives the time since ``backend``'s last sample."""
        elapsed = max(0.0, now - self._stamp[backend])  # a clock stepping back must not amplify
        return math.exp(-elapsed / self.tau)


# --- the registry ---------------------------------------------------------------------------------

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (
        RoundRobin,
        WeightedRoundRobin,
        RandomChoice,
        LeastConnections,
        PowerOfTwo,
        ConsistentHash,
        PeakEwma,
    )
}


def strategy_names() -> list[str]:
    """The built-in strategy names, from the simplest to the most informed."""
    return list(STRATEGIES)


def make_strategy(spec: str | Strategy | type[Strategy]) -> Strategy:
    """A strategy from a name (``"power_of_two"``), a class, or a ready object.

    - A name makes a fresh instance with default settings (case and ``-`` are forgiven).
    - A class with a ``pick`` method is instantiated with no arguments.
    - Any other object with a callable ``pick`` is returned as is: your own strategy need not
      subclass :class:`Strategy`. It may lack ``observe`` and ``name``; callers use ``getattr``.

    Anything else raises ``ValueError`` naming the bad value and listing the valid names.
    """
    valid = ", ".join(strategy_names())
    if isinstance(spec, str):
        key = spec.strip().lower().replace("-", "_").replace(" ", "_")
        if key not in STRATEGIES:
            raise ValueError(f"unknown strategy {spec!r}; valid names: {valid}")
        return STRATEGIES[key]()
    # A learner's own class need not subclass Strategy, so check for `pick` rather than the type;
    # the casts only tell the type checker that duck typing is intended.
    duck: object = spec
    if callable(getattr(duck, "pick", None)):
        if isinstance(duck, type):
            return cast(Strategy, duck())
        return cast(Strategy, duck)
    raise ValueError(
        f"strategy must be a name or an object with a pick() method, got {spec!r} "
        f"({type(spec).__name__}); valid names: {valid}"
    )
