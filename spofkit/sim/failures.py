"""Random failures: instances (and whole zones or racks) that break and are repaired, again and again.

Real machines fail at random. A **failure process** alternates *up* times (mean: the MTBF, mean time between
failures) and *repair* times (mean: the MTTR), drawn from a distribution:

- ``exponential``: no memory — an instance that has run a year is as likely to fail tomorrow as a new one;
- ``weibull`` with a ``shape``: ``shape > 1`` wears out (failures grow likelier with age), ``shape < 1`` fails
  young (infant mortality). Its scale is chosen so the mean is still the MTBF (or MTTR).

In the long run an instance is up ``A = MTBF / (MTBF + MTTR)`` of the time, whatever the distribution. Two
independent instances are both down ``(1 - A)²`` of the time — which is why redundancy works, *if* failures are
independent. A :class:`FailureGroup` is what breaks that assumption: a zone, a rack, a switch, whose failure takes
all its instances down together.

An instance is down while any of its causes (its own failure, or a group's) is; it comes back when the last one
is repaired. The draws of each cause come from a random stream of its own, so adding a group does not change
when the instances fail on their own. :func:`failure_plan` lists the changes up to a horizon: the simulator and
the live driver of a scenario apply the same list (a crash, then a recover), so both see the same failures.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from spofkit.policy.balancer import rng_for
from spofkit.sim.capacity import ModelError, quantized

FAILURE_DISTRIBUTIONS = ("exponential", "weibull")
# A year: a larger MTBF or MTTR is a typo (seconds were meant, not milliseconds).
MAX_MEAN_SECONDS = 366 * 86400.0
# The shortest mean up time or repair: 10 ms (shorter ones are a mistake, and would fail the instance for ever at once).
MIN_MEAN_SECONDS = 0.01


@dataclass(frozen=True)
class FailureProcess:
    """Up times with mean ``mtbf`` and repairs with mean ``mttr`` (seconds), both from ``distribution``."""

    mtbf: float
    mttr: float
    distribution: str = "exponential"
    shape: float = 1.0  # Weibull's shape k (1 is the exponential)

    def __post_init__(self) -> None:
        for name in ("mtbf", "mttr"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ModelError(name, f"{name} must be a number of seconds, got {value!r}")
            if not MIN_MEAN_SECONDS <= value <= MAX_MEAN_SECONDS:
                raise ModelError(
                    name,
                    f"{name} must be at least {MIN_MEAN_SECONDS:g} s and at most a year ({MAX_MEAN_SECONDS:g} s), "
                    f"got {value!r}",
                )
            object.__setattr__(self, name, float(value))
        if self.distribution not in FAILURE_DISTRIBUTIONS:
            raise ModelError(
                "distribution",
                f"distribution must be one of {', '.join(FAILURE_DISTRIBUTIONS)}, got {self.distribution!r}",
            )
        shape = self.shape
        if isinstance(shape, bool) or not isinstance(shape, (int, float)) or not 0.1 <= shape <= 20:
            raise ModelError("shape", f"shape must be a number 0.1..20, got {shape!r}")
        if self.distribution == "exponential" and shape != 1.0:
            raise ModelError("shape", "an exponential distribution has no shape (use distribution = 'weibull')")
        object.__setattr__(self, "shape", float(shape))

    @property
    def availability(self) -> float:
        """The long-run share of time up: MTBF / (MTBF + MTTR)."""
        return self.mtbf / (self.mtbf + self.mttr)

    def draw(self, mean: float, rng: random.Random) -> float:
        if self.distribution == "exponential":
            return quantized(rng.expovariate(1.0 / mean))
        scale = mean / math.gamma(1.0 + 1.0 / self.shape)
        return quantized(rng.weibullvariate(scale, self.shape))

    def intervals(self, rng: random.Random, start: float = 0.0) -> Iterator[tuple[float, float]]:
        """Endless ``(fails_at, repaired_at)`` pairs, from ``start`` (up at first)."""
        now = start
        while True:
            fails_at = now + self.draw(self.mtbf, rng)
            now = fails_at + self.draw(self.mttr, rng)
            yield fails_at, now


@dataclass(frozen=True)
class FailureGroup:
    """Instances that fail together (a zone, a rack): one failure process for the lot."""

    name: str
    instances: tuple[str, ...]
    process: FailureProcess

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ModelError("name", f"a group needs a name, got {self.name!r}")
        if not self.instances:
            raise ModelError("instances", f"group {self.name!r} lists no instances")
        object.__setattr__(self, "instances", tuple(self.instances))


@dataclass(frozen=True, order=True)
class FailureChange:
    """At ``at``, ``instance`` goes down (``down=True``: it crashes) or comes back (a recover)."""

    at: float
    instance: str = field(compare=False)
    down: bool = field(compare=False)
    cause: str = field(compare=False)


def cause_rng(seed: int, cause: str) -> random.Random:
    """The random stream of one cause of failure: ``instance:<name>`` or ``group:<name>``."""
    return rng_for(seed, f"failures/{cause}")


def causes_of(
    instances: Sequence[str], process: FailureProcess | None, groups: Sequence[FailureGroup]
) -> dict[str, tuple[FailureProcess, tuple[str, ...]]]:
    """Every cause of failure: its process and the instances it takes down, in a fixed order."""
    causes: dict[str, tuple[FailureProcess, tuple[str, ...]]] = {}
    if process is not None:
        for name in instances:
            causes[f"instance:{name}"] = (process, (name,))
    for group in groups:
        causes[f"group:{group.name}"] = (group.process, group.instances)
    return causes


def failure_plan(
    instances: Sequence[str],
    process: FailureProcess | None,
    groups: Sequence[FailureGroup] = (),
    *,
    horizon: float,
    seed: int = 0,
) -> list[FailureChange]:
    """The crashes and recoveries of ``instances`` from time 0 to ``horizon``, in time order.

    An instance goes down when its first cause starts and comes back when its last cause ends.
    """
    unknown = [name for group in groups for name in group.instances if name not in instances]
    if unknown:
        raise ModelError("instances", f"groups name instances the lab does not have: {sorted(set(unknown))}")
    down_for: dict[str, list[tuple[float, float, str]]] = {name: [] for name in instances}
    for cause, (cause_process, members) in causes_of(instances, process, groups).items():
        for fails_at, repaired_at in cause_process.intervals(cause_rng(seed, cause)):
            if fails_at >= horizon:
                break
            for name in members:
                down_for[name].append((fails_at, repaired_at, cause))
    changes: list[FailureChange] = []
    for name in instances:
        changes.extend(_merged(name, sorted(down_for[name]), horizon))
    changes.sort(key=lambda change: (change.at, instances.index(change.instance), not change.down))
    return changes


def _merged(name: str, spans: list[tuple[float, float, str]], horizon: float) -> Iterator[FailureChange]:
    """Overlapping down times of one instance, as one crash and one recover each."""
    index = 0
    while index < len(spans):
        start, end, cause = spans[index]
        index += 1
        while index < len(spans) and spans[index][0] <= end:
            end = max(end, spans[index][1])
            index += 1
        yield FailureChange(start, name, True, cause)
        if end < horizon:
            yield FailureChange(end, name, False, cause)


@dataclass(frozen=True)
class UpTime:
    """Shares of ``[0, horizon]`` from a plan: each instance's, and the service's (at least ``needed`` up)."""

    per_instance: Mapping[str, float]
    service: float  # the share of time at least ``needed`` instances were up
    needed: int


def up_time(changes: Sequence[FailureChange], instances: Sequence[str], horizon: float, needed: int = 1) -> UpTime:
    """Sweep a plan from 0 to ``horizon``: how long each instance, and the service, were up (as shares)."""
    if not 1 <= needed <= len(instances):
        raise ModelError("needed", f"needed must be 1..{len(instances)}, got {needed!r}")
    up = dict.fromkeys(instances, 0.0)
    down_since: dict[str, float] = {}
    service_up, service_down_since = 0.0, None
    running = len(instances)
    last = 0.0
    for change in changes:
        if change.at > horizon:
            break
        if running >= needed:
            service_up += change.at - last
        last = change.at
        if change.down:
            down_since[change.instance] = change.at
            running -= 1
        else:
            up[change.instance] -= change.at - down_since.pop(change.instance)
            running += 1
    if running >= needed:
        service_up += horizon - last
    del service_down_since
    for name, since in down_since.items():
        up[name] -= horizon - since
    shares = {name: (horizon + minus) / horizon for name, minus in up.items()}
    return UpTime(shares, service_up / horizon, needed)
