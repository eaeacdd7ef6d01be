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
5. Only then the next batch. With ``batch`` >= the number of instances this is the naive restart-all.

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
from spofkit.events import DeployStep, Event, InstanceUp
from spofkit.status import ACTIVE, CRASHED

if TYPE_CHECKING:
    from spofkit.lab import Lab

# How long a restarted instance may take to pass its health checks before the deploy gives up on it.
READY_TIMEOUT = 30.0


class DeployFailed(RuntimeError):
    """A step did not complete: the deploy stopped there, and the instances not yet deployed are untouched."""


async def rolling_restart(lab: Lab, batch: int = 1, *, ready_timeout: float = READY_TIMEOUT) -> dict[str, Any]:
    """Steps 1–5 above, ``batch`` instances at a time. Returns which instances were deployed and how long it took."""
    started = lab.now()
    names = list(lab.instances)
    done: list[str] = []
    for first in range(0, len(names), batch):
        group = [name for name in names[first : first + batch] if name in lab.instances]
        await asyncio.gather(*(_replace(lab, name, ready_timeout) for name in group))
        done.extend(group)
    return {"deployed": done, "batch": batch, "seconds": round(lab.now() - started, 3)}


async def _replace(lab: Lab, name: str, ready_timeout: float) -> None:
    step = _announcer(lab, name)
    spec = dict(lab.front.configuration.members[name])
    url = spec.pop("url")
    spec.pop("initially_up", None)
    step("drain", "no new requests; the ones in flight finish")
    await lab.front.remove_member(name)
    async with lab.commands_lock:
        instance = lab.instances[name]
        await instance.restart()
    step("restart", f"new process, pid {instance.pid}" if instance.pid else "restarted")
    checks_on = lab.front.configuration.health is not None
    balancers = [node.name for node in lab.front.nodes.values() if node.running]
    came_up = _waiter(lab, name, balancers) if checks_on else None
    await lab.front.add_member(name, url, initially_up=not checks_on, **spec)
    if came_up is not None:
        step("ready?", f"back in the pool, waiting for {lab.front.configuration.health.rise} passed checks")  # type: ignore[union-attr]
        try:
            await asyncio.wait_for(came_up.wait(), ready_timeout)
        except asyncio.TimeoutError:
            raise DeployFailed(f"{name} did not pass its health checks within {ready_timeout:g}s") from None
        finally:
            came_up.close()
    warm = lab.front.configuration.slow_start
    if warm > 0:
        step("warm-up", f"slow start: its share grows over {warm:g}s")
        await asyncio.sleep(warm)  # a timer: the slow start itself runs in the balancers' policy
    step("done", "UP and serving its full share")


class _UpEverywhere:
    """Set once every balancer in ``balancers`` has published InstanceUp for ``name``."""

    def __init__(self, lab: Lab, name: str, balancers: list[str]) -> None:
        self.missing = set(balancers)
        self.name = name
        self.ready = asyncio.Event()
        self._unsubscribe = lab.events.subscribe(self._heard)

    def _heard(self, event: Event) -> None:
        if isinstance(event, InstanceUp) and event.instance == self.name:
            self.missing.discard(event.balancer)
            if not self.missing:
                self.ready.set()

    async def wait(self) -> None:
        await self.ready.wait()

    def close(self) -> None:
        self._unsubscribe()


def _waiter(lab: Lab, name: str, balancers: list[str]) -> _UpEverywhere:
    return _UpEverywhere(lab, name, balancers)


def _announcer(lab: Lab, name: str) -> Callable[[str, str], None]:
    def step(what: str, detail: str) -> None:
        lab.events.publish(DeployStep(lab.now(), name, what, detail))

    return step


async def restart_all(lab: Lab) -> dict[str, Any]:
    """The naive way, for comparison: every instance restarted at once, nothing drained, nobody waited for."""
    started = lab.now()
    names = list(lab.instances)
    async with lab.commands_lock:
        for name in names:
            lab.events.publish(DeployStep(lab.now(), name, "restart", "all at once, without draining"))
        await asyncio.gather(*(lab.instances[name].restart() for name in names))
    return {"deployed": names, "batch": len(names), "seconds": round(lab.now() - started, 3)}


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
