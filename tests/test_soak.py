"""A soak test: the lab's background load keeps memory flat while every request is still counted (issue 9).

The background load runs for up to an hour (the TUI, the widgets, ``PUT /load``), so anything it keeps *per
request* grows without end: before the fix the open loop held every finished request's task (with its coroutine,
its context and a weak reference in asyncio's task set) until the run ended, ~0.7 KiB a request, 40–46 MiB a
minute at 1,000 req/s. What it may keep is bounded: the last ``keep_last`` records, the event history, the retry
budget's window, connections kept alive. This test warms those up, then measures memory per request.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import statistics
import tracemalloc

import pytest
from conftest import wait_for

from spofkit.events import ClientRequest, Event
from spofkit.lab import Lab

pytestmark = pytest.mark.timeout(90)

RATE = 300.0  # req/s: a steady load even with tracemalloc on, on a busy 2-core machine
KEEP_LAST = 1000  # records kept: small, so the kept window is full before the measurement starts
# The event history (5,000 events, two per request) is full after ~2,500 requests; then every bounded window is.
WARM_UP_REQUESTS = 2700
STRETCHES, STRETCH_REQUESTS = 6, 1000  # ~20 s at RATE, measured stretch by stretch
# Memory growth per 10,000 requests in the median stretch. Before the fix this test measured 6.2 MiB per 10,000
# (0.64 KiB a request: a Task, its coroutine, its context, a weak reference) in every stretch; with it, ~0.05 MiB.
# The bound is a third of the leak. The median, not the total: a burst of connections (each ~10 KiB over client,
# balancer and instance; bounded, and kept alive for a while) or a dict resizing lands in one stretch, a leak in all.
MAX_GROWTH_PER_10K = 2 * 2**20
# After stopping, memory is back to where it was before the load, give or take what is kept on purpose: the last
# KEEP_LAST records and 5,000 events of history (~1.5 MiB together) and the balancer's idle kept-alive connections.
MAX_AFTER_STOP = 4 * 2**20
QUIET_IN_FLIGHT = 10  # sample memory only when few requests are in flight: each one holds several KiB meanwhile


def traced_now() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def load_generator_tasks() -> int:
    """The load generator's asyncio Tasks still alive, finished or not (asyncio.all_tasks() counts only unfinished
    ones); the servers' tasks, one per connection, are not counted."""
    return sum(
        1
        for obj in gc.get_objects()
        if isinstance(obj, asyncio.Task) and getattr(obj.get_coro(), "__qualname__", "").startswith("LoadGenerator.")
    )


async def test_background_load_memory_stays_flat_and_every_request_is_counted() -> None:
    published = 0

    def count(event: Event) -> None:
        nonlocal published
        if isinstance(event, ClientRequest):
            published += 1

    tracemalloc.start()
    try:
        async with await Lab.start(3) as lab:
            lab.events.subscribe(count)
            before_load = traced_now()
            generator = lab.start_background_load(RATE, keep_last=KEEP_LAST)

            async def sample_after(requests: int) -> tuple[int, int]:
                """(requests recorded, traced bytes) once ``requests`` are recorded and few are in flight."""

                def reached() -> bool:
                    return generator.recorded >= requests and generator.in_flight <= QUIET_IN_FLIGHT

                await wait_for(reached, timeout=30, message=f"{requests} requests recorded")
                return generator.recorded, traced_now()

            # Sampling stalls the loop for a moment (a full gc with tracemalloc on); the requests due meanwhile go out
            # together on new connections, which the client keeps alive. Let the first such burst be part of the
            # warm-up, not of the measurement.
            await sample_after(WARM_UP_REQUESTS // 2)
            samples = [await sample_after(WARM_UP_REQUESTS)]
            warm_tasks = load_generator_tasks()
            for _ in range(STRETCHES):
                samples.append(await sample_after(samples[-1][0] + STRETCH_REQUESTS))
            end_tasks = load_generator_tasks()

            per_10k = [
                (memory - previous_memory) / (requests - previous_requests) * 10_000
                for (previous_requests, previous_memory), (requests, memory) in itertools.pairwise(samples)
            ]
            median = statistics.median(per_10k)
            assert median <= MAX_GROWTH_PER_10K, (
                f"traced memory grew {median / 2**20:.2f} MiB per 10,000 requests in the median stretch after "
                f"warm-up (bound {MAX_GROWTH_PER_10K / 2**20:.2f} MiB); by stretch: "
                + ", ".join(f"{growth / 2**20:.2f}" for growth in per_10k)
            )
            # The sharpest sign of the old leak: one Task object kept per finished request.
            measured = samples[-1][0] - samples[0][0]
            assert end_tasks - warm_tasks <= QUIET_IN_FLIGHT, (
                f"{end_tasks - warm_tasks} more load generator Tasks alive after {measured} more requests"
            )

            # The figures are still complete: every request counted and published, only the records bounded.
            assert len(generator.records) == KEEP_LAST
            assert sum(generator.outcomes.values()) == generator.recorded
            assert generator.outcomes["ok"] > 0, dict(generator.outcomes)  # a starved machine may fail some, not all

            await lab.stop_background_load()
            assert not generator.running and generator.in_flight == 0
            assert published == generator.recorded  # nothing sent went unrecorded or unpublished
            after_stop = traced_now()
            assert after_stop - before_load <= MAX_AFTER_STOP, (
                f"after stopping, traced memory is {(after_stop - before_load) / 2**20:.2f} MiB above where it was "
                f"before the load (bound {MAX_AFTER_STOP / 2**20:.2f} MiB)"
            )
    finally:
        tracemalloc.stop()
