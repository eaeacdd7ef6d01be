"""The lab's background load stays within what the machine carries (issue 9): a capped rate, no burst after a stall."""

from __future__ import annotations

import time

import pytest
from conftest import wait_for

from spofkit.commands import MAX_LOAD_RATE, CommandError
from spofkit.lab import BACKGROUND_LOAD_MAX_LATENESS, Lab

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def lab() -> Lab:
    async with await Lab.start(3) as started:
        yield started  # type: ignore[misc]


@pytest.mark.parametrize("rate", [MAX_LOAD_RATE + 1, 10_000, -5, 0, float("nan"), "fast", True])
async def test_a_rate_the_machine_cannot_carry_is_refused_naming_rate(lab: Lab, rate: object) -> None:
    with pytest.raises(CommandError, match="rate") as refused:
        lab.start_background_load(rate)  # type: ignore[arg-type]
    assert refused.value.field == "rate"
    assert lab.status().load_rate is None  # nothing was started


async def test_set_load_rate_is_capped_too(lab: Lab) -> None:
    lab.start_background_load(20)
    with pytest.raises(CommandError, match="rate") as refused:
        lab.set_load_rate(MAX_LOAD_RATE * 2)
    assert refused.value.field == "rate"
    assert lab.status().load_rate == 20  # the load goes on at the rate it had
    lab.set_load_rate(MAX_LOAD_RATE)  # the cap itself is allowed
    assert lab.status().load_rate == MAX_LOAD_RATE
    await lab.stop_background_load()


async def test_after_a_stall_the_background_load_sends_no_burst(lab: Lab) -> None:
    # A burst of every overdue request, on the loop the balancer and its health checks share, is what made the
    # checks time out and every instance DOWN (503s for everyone) after the lab's process was descheduled.
    rate, stall = 400.0, 1.0
    generator = lab.start_background_load(rate)
    try:
        await wait_for(lambda: generator.recorded >= 200, timeout=10, message="load under way")
        assert generator.peak_in_flight > 0  # the count below is of requests really sent
        # The fault under test, not a wait: the lab's event loop stalls (its process descheduled on a busy machine).
        time.sleep(stall)
        stalled_at = generator.recorded
        await wait_for(lambda: generator.recorded >= stalled_at + 2 * rate, timeout=20, message="load after the stall")
    finally:
        await lab.stop_background_load()
    overdue = rate * stall
    # The requests due more than max_lateness before the loop woke up were recorded, not sent. Without that, every
    # overdue request is launched before any of them runs, so at least `overdue` would be in flight at once.
    assert generator.outcomes["client_overload"] >= overdue - rate * BACKGROUND_LOAD_MAX_LATENESS - 50
    # The generator counts its own peak at every launch, so no burst goes unseen, however late this test's task runs.
    peak = generator.peak_in_flight
    assert peak < overdue, f"{peak} requests in flight at once in a run with a {stall} s stall"
    assert sum(generator.outcomes.values()) == generator.recorded  # every request recorded, sent or not
