"""A balancer that was stalled itself does not mark healthy instances DOWN (rule 4 of spofkit.policy.health).

When a process stops for a moment (a busy machine, a long pause), the probe it had under way times out *late*:
the answer may have been waiting in the socket, but the event loop runs the overdue timeout first. Counting that
probe blamed the instance for the checker's stall; with quick checks every instance went DOWN at once.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from conftest import wait_for

from spofkit.events import HealthProbe, InstanceDown
from spofkit.health import STALL_MARGIN, HealthChecker, stalled
from spofkit.lab import Lab
from spofkit.policy import HealthSettings

STALL = 0.5  # seconds the balancer's event loop is blocked, with a probe under way

QUICK = HealthSettings(interval=0.2, timeout=0.1, rise=1, fall=1)  # one failed probe is enough to mark DOWN


def test_stalled_is_a_timeout_that_fired_much_later_than_due() -> None:
    assert stalled(1.1, 0.1)  # a second late: the checker stood still
    assert not stalled(0.1, 0.1) and not stalled(0.12, 0.1)  # on time, or a busy loop's few ms
    assert not stalled(0.3 + STALL_MARGIN, 0.3)  # late by less than the timeout itself
    assert stalled(0.7, 0.3)


def checker_of(lab: Lab) -> HealthChecker:
    node: Any = lab.front.nodes["lb1"]
    return node.balancer.checker  # type: ignore[no-any-return]


async def test_a_probe_timed_out_by_the_balancers_own_stall_is_asked_again_not_counted() -> None:
    async with await Lab.start(3, health=QUICK) as lab:
        checker = checker_of(lab)
        probe = checker.probe
        stalls: list[str] = []

        async def probe_during_a_stall(base_url: str, settings: HealthSettings) -> tuple[bool, str]:
            if not stalls:
                stalls.append(base_url)
                # The fault under test: this process stops for STALL seconds while the probe is under way.
                asyncio.get_running_loop().call_soon(time.sleep, STALL)
            return await probe(base_url, settings)

        checker.probe = probe_during_a_stall  # type: ignore[method-assign]
        await wait_for(lambda: bool(stalls), 10, message="a probe was sent during the stall")
        probes_after = len([e for e in lab.events.history if isinstance(e, HealthProbe)]) + 6
        await wait_for(lambda: len([e for e in lab.events.history if isinstance(e, HealthProbe)]) >= probes_after, 10)
        assert not [e for e in lab.events.history if isinstance(e, InstanceDown)], "nobody was down but us"
        assert all(instance.state == "up" for instance in lab.status().instances)


async def test_a_crash_is_still_detected_while_every_probe_comes_back_late() -> None:
    # A checker that is always stalled excuses one probe, then counts: a dead instance is found one probe later.
    async with await Lab.start(3, health=QUICK) as lab:
        checker = checker_of(lab)
        probe = checker.probe

        async def always_late(base_url: str, settings: HealthSettings) -> tuple[bool, str]:
            if base_url == lab.instances["b"].url:
                asyncio.get_running_loop().call_soon(time.sleep, 0.25)  # every probe of b waits for a stall
            return await probe(base_url, settings)

        await lab.inject("b", "hang")
        checker.probe = always_late  # type: ignore[method-assign]
        await wait_for(lambda: [e for e in lab.events.history if isinstance(e, InstanceDown)], 10, message="b DOWN")
        (down,) = [e for e in lab.events.history if isinstance(e, InstanceDown)]
        assert down.instance == "b"
