"""Zero-downtime deploys: replacing every instance (or balancer) while clients keep being served.

Every new version means restarting every process. Done naively — restart them all at once — it is an outage of
its own, planned and self-inflicted. A **rolling restart** replaces them a ``batch`` at a time, so the rest
carry the load meanwhile:

1. **Drain** the batch: the balancers stop giving it new requests and let the ones in flight finish
   (removing it from the pool does exactly that).
2. **Restart** it (a new process in process isolation: the new version).
3. **Readiness**: put it back in the pool *not yet up*, so it gets traffic only once the health checks have seen
   it pass ``rise`` checks — a process that is running is not yet a process that can serve.
4. **Warm-up**: with ``slow_start``, its share of traffic then grows over that many seconds.
5. Only then the next batch. (``how="all-at-once"`` is the naive restart-all, for comparison: no draining, no
   waiting, an outage.)

The plan — the batches, the steps in order, the rule for "ready" (every balancer saw it pass) and what each step
says — is :mod:`spofkit.policy.deploy`'s, and the simulator carries out the same plan in virtual time; this
module does it to live processes.

The balancers themselves are upgraded by a **planned takeover**: restart the backup first, then ask the master
to resign (a priority-0 advert: the backup takes the address after its skew, a fraction of an unplanned
takeover), and restart the old master, which rejoins as backup (or, with preempt, takes the address back the same
gentle way).

Each step is published as a :class:`~spofkit.events.DeployStep`, so views and logs can follow it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from spofkit.balancer_node import ACTIVE_PASSIVE
from spofkit.events import DeployStep, Event
from spofkit.policy.deploy import (
    ALL_AT_ONCE,
    DRAIN,
    READY,
    RESTART,
    ROLLING,
    WARM_UP,
    ReadyEverywhere,
    Step,
    deploy_plan,
)
from spofkit.status import ACTIVE, CRASHED

if TYPE_CHECKING:
    from spofkit.lab import Lab

# How long a restarted instance may take to pass its health checks before the deploy gives up on it.
READY_TIMEOUT = 30.0


class DeployFailed(RuntimeError):
    """A step did not complete: the deploy stopped there, and the instances not yet deployed are untouched."""


async def rolling_restart(lab: Lab, batch: int = 1, *, ready_timeout: float = READY_TIMEOUT) -> dict[str, Any]:
    """Steps 1–5 above, ``batch`` instances at a time. Returns which instances were deployed and how long it took."""
    return await _deploy(lab, batch, ROLLING, ready_timeout)


async def restart_all(lab: Lab) -> dict[str, Any]:
    """The naive way, for comparison: every instance restarted at once, nothing drained, nobody waited for."""
    return await _deploy(lab, max(1, len(lab.instances)), ALL_AT_ONCE, READY_TIMEOUT)


async def _deploy(lab: Lab, batch: int, how: str, ready_timeout: float) -> dict[str, Any]:
    """Carry out :func:`spofkit.policy.deploy.deploy_plan` on the live lab, batch after batch."""
    started = lab.now()
    configuration = lab.front.configuration
    health = configuration.health
    plan = deploy_plan(
        list(lab.instances),
        batch,
        how=how,
        rise=health.rise if health is not None else None,
        slow_start=configuration.slow_start,
    )
    done: list[str] = []
    for steps in plan:
        # One removed meanwhile, or being removed (drained, out of the pool already), is skipped.
        group = [name for name in steps[0].names if name in lab.instances and name in configuration.members]
        if not group:
            continue
        members = {name: dict(configuration.members[name]) for name in group}
        for step in steps:
            await _carry_out(lab, step, members, ready_timeout)
        done.extend(group)
    return {"deployed": done, "batch": batch, "seconds": round(lab.now() - started, 3)}


async def _carry_out(lab: Lab, step: Step, members: dict[str, dict[str, Any]], ready_timeout: float) -> None:
    """One step of the plan for every instance of the batch (in ``members``: their pool options, from before)."""
    names = list(members)

    def announce(detail: str | None = None) -> None:
        for name in names:
            lab.events.publish(DeployStep(lab.now(), name, step.what, detail or step.detail))

    if step.what == DRAIN:
        announce()
        await asyncio.gather(*(lab.front.remove_member(name) for name in names))
    elif step.what == RESTART:
        if step.before:
            announce()
        async with lab.commands_lock:
            await asyncio.gather(*(lab.instances[name].restart() for name in names))
        if not step.before:
            for name in names:
                pid = lab.instances[name].pid
                lab.events.publish(
                    DeployStep(lab.now(), name, step.what, f"new process, pid {pid}" if pid else step.detail)
                )
    elif step.what == READY:
        await _rejoin(lab, step, members, ready_timeout, announce)
    elif step.what == WARM_UP:
        announce()
        await asyncio.sleep(step.seconds)  # a timer: the slow start itself runs in the balancers' policy
    else:
        announce()


async def _rejoin(
    lab: Lab,
    step: Step,
    members: dict[str, dict[str, Any]],
    ready_timeout: float,
    announce: Callable[[], None],
) -> None:
    """Back in the pool, not yet up; then wait until every running balancer has seen each pass its checks."""
    balancers = [node.name for node in lab.front.nodes.values() if node.running]
    ready = ReadyEverywhere(members, balancers)
    woken = asyncio.Event()

    def heard(event: Event) -> None:
        ready.heard(event)
        if ready.ready:
            woken.set()

    if ready.ready:  # no balancer running: nobody to wait for
        woken.set()

    unsubscribe = lab.events.subscribe(heard) if step.wait else None
    try:
        for name, options in members.items():
            spec = dict(options)
            url = spec.pop("url")
            spec.pop("initially_up", None)
            await lab.front.add_member(name, url, initially_up=not step.wait, **spec)
        if not step.wait:
            return
        announce()
        try:
            await asyncio.wait_for(woken.wait(), ready_timeout)
        except asyncio.TimeoutError:
            waiting = sorted({name for name, _ in ready.missing})
            raise DeployFailed(
                f"{', '.join(waiting)} did not pass the health checks within {ready_timeout:g}s"
            ) from None
    finally:
        if unsubscribe is not None:
            unsubscribe()


async def upgrade_balancers(lab: Lab) -> dict[str, Any]:
    """A planned takeover, balancer by balancer: the backup first, then the master after it has resigned."""
    started = lab.now()
    front = lab.front
    order = sorted(front.nodes, key=lambda name: front.node(name).status().address is not None)  # backups first
    for name in order:
        lab.events.publish(DeployStep(lab.now(), name, "restart", "the new version, rejoining the pair"))
        node = front.node(name)
        if node.status().address is not None and len(front.nodes) > 1:
            lab.events.publish(DeployStep(lab.now(), name, "resign", "hands the address over before it stops"))
            with contextlib.suppress(Exception):
                await node.stop(graceful=True)
        await front.restart(name)
        await _until_settled(lab)
    if front.front_door.preempt and front.mode == ACTIVE_PASSIVE:
        # With preempt on, the primary takes the address back once it has rejoined: the deploy is done after that.
        await _until_settled(lab, holder=front.names[0])
    return {"deployed": order, "seconds": round(lab.now() - started, 3)}


async def _until_settled(lab: Lab, timeout: float = 10.0, holder: str | None = None) -> None:
    """Wait until exactly one running balancer (``holder``, if given) holds the service address, or every one
    does, for active-active."""
    deadline = lab.now() + timeout
    while lab.now() < deadline:
        statuses = [s for s in lab.front.statuses() if s.state != CRASHED]
        holders = [s for s in statuses if s.address is not None]
        one = len(holders) == 1 and (holder is None or holders[0].name == holder)
        if holders and (one or all(s.role == ACTIVE for s in holders)):
            return
        await asyncio.sleep(0.02)
    raise DeployFailed("the pair did not settle on one master after the restart")
