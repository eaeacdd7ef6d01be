"""A deploy's plan (spofkit.policy.deploy): the batches, the steps in order, the rule for "ready"; and both
drivers carrying out that one plan."""

from __future__ import annotations

import asyncio

import pytest
from conftest import wait_for

from spofkit.commands import Deploy
from spofkit.events import DeployStep, InstanceDown, InstanceUp
from spofkit.policy import HealthSettings
from spofkit.policy.deploy import (
    ALL_AT_ONCE,
    DONE,
    DRAIN,
    READY,
    RESTART,
    WARM_UP,
    ReadyEverywhere,
    deploy_plan,
)
from spofkit.sim import SimLab

NAMES = ["a", "b", "c", "d", "e"]


def test_a_rolling_plan_goes_batch_by_batch_through_the_steps_in_order() -> None:
    plan = deploy_plan(NAMES, 2, rise=3)
    assert [steps[0].names for steps in plan] == [("a", "b"), ("c", "d"), ("e",)]  # the last batch is smaller
    for steps in plan:
        assert [step.what for step in steps] == [DRAIN, RESTART, READY, DONE]
        assert all(step.names == steps[0].names for step in steps)
    ready = plan[0][2]
    assert ready.wait and ready.detail == "back in the pool, waiting for 3 passed checks"


def test_slow_start_adds_a_warm_up_and_no_health_checks_means_nothing_to_wait_for() -> None:
    steps = deploy_plan(NAMES, 5, slow_start=2.5)[0]
    assert [step.what for step in steps] == [DRAIN, RESTART, READY, WARM_UP, DONE]
    assert steps[3].seconds == 2.5 and "2.5s" in steps[3].detail
    assert steps[2].wait is False  # rise=None: no checks, the instance rejoins up at once


def test_all_at_once_is_one_restart_of_everything_and_no_draining() -> None:
    plan = deploy_plan(NAMES, 1, how=ALL_AT_ONCE, rise=2)
    assert len(plan) == 1 and [step.what for step in plan[0]] == [RESTART]
    assert plan[0][0].names == tuple(NAMES) and "without draining" in plan[0][0].detail
    assert deploy_plan([], 1, how=ALL_AT_ONCE) == [] == deploy_plan([], 3)


@pytest.mark.parametrize(
    ("kwargs", "named"), [({"batch": 0}, "batch"), ({"batch": True}, "batch"), ({"how": "yolo"}, "how")]
)
def test_a_bad_plan_is_refused_naming_what(kwargs: dict[str, object], named: str) -> None:
    options: dict[str, object] = {"batch": 1, **kwargs}
    with pytest.raises(ValueError, match=named):
        deploy_plan(NAMES, **options)  # type: ignore[arg-type]


def test_ready_means_every_balancer_saw_every_instance_of_the_batch_come_up() -> None:
    ready = ReadyEverywhere(["a", "b"], ["lb1", "lb2"])
    assert not ready.ready
    for event in (
        InstanceUp(1.0, "a", balancer="lb1"),
        InstanceUp(1.1, "b", balancer="lb1"),
        InstanceUp(1.2, "c", balancer="lb2"),  # not of this batch
        InstanceDown(1.3, "a", balancer="lb2"),  # not up
        InstanceUp(1.4, "a", balancer="lb2"),
    ):
        ready.heard(event)
        assert not ready.ready  # b has not come up on lb2 yet: one balancer's checks are not enough
    assert ready.missing == {("b", "lb2")}
    ready.heard(InstanceUp(1.5, "b", balancer="lb2"))
    assert ready.ready


@pytest.mark.parametrize(("batch", "slow_start"), [(1, 0.0), (2, 0.0), (2, 1.5)])
def test_the_simulator_carries_out_the_plan_step_by_step(batch: int, slow_start: float) -> None:
    health = HealthSettings(interval=0.5, timeout=0.1, rise=2, fall=2)
    lab = SimLab(5, health=health, slow_start=slow_start, seed=0)
    lab.apply_sync(Deploy(batch=batch))
    carried = [(e.step, e.instance, e.detail) for e in lab.events.history if isinstance(e, DeployStep)]
    planned = [
        (step.what, name, step.detail)
        for steps in deploy_plan(NAMES, batch, rise=health.rise, slow_start=slow_start)
        for step in steps
        for name in step.names
    ]
    assert carried == planned
    times = {(e.step, e.instance): e.at for e in lab.events.history if isinstance(e, DeployStep)}
    for earlier, later in zip(NAMES[:-batch], NAMES[batch:], strict=True):
        assert times[(DONE, earlier)] <= times[(DRAIN, later)]  # the next batch waits for this one
    if slow_start:
        assert times[(DONE, "a")] - times[(WARM_UP, "a")] == pytest.approx(slow_start)


async def test_the_live_lab_carries_out_the_same_plan_with_batches_of_two() -> None:
    from spofkit.lab import Lab

    health = HealthSettings(interval=0.2, timeout=0.15, rise=2, fall=2)
    lab = await Lab.start(3, health=health)
    try:
        result = await lab.apply(Deploy(batch=2))
        carried = [(e.step, e.instance, e.detail) for e in lab.events.history if isinstance(e, DeployStep)]
    finally:
        await lab.stop()
    planned = [
        (step.what, name, step.detail)
        for steps in deploy_plan(["a", "b", "c"], 2, rise=health.rise)
        for step in steps
        for name in step.names
    ]
    assert result["deployed"] == ["a", "b", "c"]
    assert [(what, name) for what, name, _ in carried] == [(what, name) for what, name, _ in planned]
    # The words are the plan's, but a live restart names the new process it made.
    assert [c for c, p in zip(carried, planned, strict=True) if c != p and c[0] != RESTART] == []


def test_all_at_once_is_announced_before_the_restarts_in_the_simulator_as_live() -> None:
    from spofkit.events import InstanceRestarted

    lab = SimLab(3, health=HealthSettings(interval=0.2, timeout=0.15, rise=2, fall=2), seed=0)
    lab.apply_sync(Deploy(how="all-at-once"))
    order = [
        (e.kind, e.instance)
        for e in lab.events.history
        if isinstance(e, InstanceRestarted) or (isinstance(e, DeployStep) and e.step == RESTART)
    ]
    for name in ("a", "b", "c"):
        assert order.index(("DeployStep", name)) < order.index(("InstanceRestarted", name))


def test_a_crashed_balancer_is_not_waited_for() -> None:
    from spofkit.commands import BalancerFault

    health = HealthSettings(interval=0.2, timeout=0.15, rise=2, fall=2)
    lab = SimLab(3, health=health, balancers=2, seed=0)
    lab.apply_sync(BalancerFault("lb2", "crash"))
    started = lab.now()
    answer = lab.apply_sync(Deploy(batch=1))  # lb2 checks nothing: only lb1 has to see each one pass
    assert answer["deployed"] == ["a", "b", "c"]
    assert lab.now() - started < 3 * (health.rise + 1) * health.interval + 1.0  # not three 30 s timeouts


async def test_a_live_deploy_leaves_out_an_instance_being_removed() -> None:
    import aiohttp

    from spofkit.lab import Lab
    from spofkit.policy import RetrySettings

    health = HealthSettings(interval=0.2, timeout=0.15, rise=2, fall=2)
    lab = await Lab.start(3, health=health, ejection=None, retries=RetrySettings(per_try_timeout=3.0))
    try:
        await lab.inject("b", "hang")
        async with aiohttp.ClientSession() as client:
            hung = [asyncio.ensure_future(client.get(lab.balancer_url + "/")) for _ in range(3)]  # one hangs on b
            await wait_for(lambda: lab.status().instance("b").in_flight >= 1, 5, message="a request hangs on b")
            removal = asyncio.ensure_future(lab.remove_instance("b", drain_timeout=10.0))
            await wait_for(lambda: "b" not in lab.front.configuration.members, 5, message="b is being drained")
            assert "b" in lab.instances  # still draining: out of the pool, not yet gone
            answer = await lab.apply(Deploy(how="all-at-once"))
            assert answer["deployed"] == ["a", "c"]  # b was left alone, not a KeyError
            await removal
            for response in hung:
                (await response).release()
    finally:
        await lab.stop()
