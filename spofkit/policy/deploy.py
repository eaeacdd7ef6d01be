"""A deploy's plan, with no I/O: which instances are replaced together, the steps a batch goes through, in order,
and when a restarted batch counts as ready.

Both drivers carry out this one plan: :mod:`spofkit.deploy` on live processes, :mod:`spofkit.sim` in virtual
time. So the order, the rule for "ready" and the words of every :class:`~spofkit.events.DeployStep` are the same
in both, and a learner who watched one deploy has watched the other.

A **rolling** deploy, batch after batch (the next batch starts once this one is done):

=============  ===============================================================================================
``drain``      the balancers stop giving the batch new requests and let the ones in flight finish
``restart``    each instance of the batch is restarted (a new process: the new version)
``ready?``     back in the pool, *not yet up*: ready once every balancer has seen it pass ``rise`` checks
               (without health checks it rejoins up at once, and there is nothing to wait for or announce)
``warm-up``    with slow start, its share of traffic grows over ``slow_start`` seconds
``done``       UP and serving its full share
=============  ===============================================================================================

**All at once**, the naive way for comparison: one batch, one step, ``restart``, nothing drained, nobody waited for.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from spofkit.events import Event, InstanceUp

ROLLING = "rolling"
ALL_AT_ONCE = "all-at-once"
WAYS = (ROLLING, ALL_AT_ONCE)

DRAIN = "drain"
RESTART = "restart"
READY = "ready?"
WARM_UP = "warm-up"
DONE = "done"


@dataclass(frozen=True)
class Step:
    """One step of one batch: what the driver does to ``names``, and what each one's DeployStep says."""

    what: str  # DRAIN, RESTART, READY, WARM_UP or DONE
    names: tuple[str, ...]
    detail: str
    wait: bool = True  # READY: wait for the health checks (False: rejoin up at once, and announce nothing)
    seconds: float = 0.0  # WARM_UP: how long
    # The DeployStep is published as the step begins, except a rolling restart's: once restarted (live, it names
    # the new process). All at once, the restart is announced first, for the outage that follows.
    before: bool = True


def deploy_plan(
    names: Sequence[str], batch: int = 1, *, how: str = ROLLING, rise: int | None = None, slow_start: float = 0.0
) -> list[list[Step]]:
    """The batches of a deploy of ``names``, each a list of steps; ``rise`` is the health checks' (None: no checks)."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a whole number >= 1, got {batch!r}")
    if how not in WAYS:
        raise ValueError(f"how must be one of {', '.join(WAYS)}, got {how!r}")
    if how == ALL_AT_ONCE:
        return [[Step(RESTART, tuple(names), "all at once, without draining")]] if names else []
    plan = []
    for first in range(0, len(names), batch):
        group = tuple(names[first : first + batch])
        steps = [
            Step(DRAIN, group, "no new requests; the ones in flight finish"),
            Step(RESTART, group, "restarted", before=False),
            Step(READY, group, f"back in the pool, waiting for {rise} passed checks", wait=rise is not None),
        ]
        if slow_start > 0:
            steps.append(Step(WARM_UP, group, f"slow start: its share grows over {slow_start:g}s", seconds=slow_start))
        steps.append(Step(DONE, group, "UP and serving its full share"))
        plan.append(steps)
    return plan


class ReadyEverywhere:
    """Whether a restarted batch is ready: every running balancer has published InstanceUp for each of its instances.

    One balancer's checks passing is not enough: a balancer that has not yet seen the instance pass still
    counts it down (it rejoined *not yet up*), and the next batch going down meanwhile would leave it short.
    A crashed balancer checks nothing and serves nobody, so it is not waited for (with none running, a batch is
    ready at once: there is nobody to be ready for).
    """

    def __init__(self, names: Iterable[str], balancers: Iterable[str]) -> None:
        balancers = tuple(balancers)
        self.missing = {(name, balancer) for name in names for balancer in balancers}

    def heard(self, event: Event) -> None:
        if isinstance(event, InstanceUp):
            self.missing.discard((event.instance, event.balancer))

    @property
    def ready(self) -> bool:
        return not self.missing
