"""Live instances with capacity: real servers on 127.0.0.1, real workers, a real queue, real 503s.

The simulator's :class:`~spofkit.capacity.Capacity` (workers, a bounded queue, work times) is the live instances'
too. What is checked here, from outside, with a real HTTP client:

- 2 workers and 2 places in the queue, 6 slow requests at once: 2 are served at once, 2 wait and are served after
  them, 2 are answered 503 at once (in process, and in a child process of its own).
- health checks wait in the same queue (and are shed with 503 when it is full); a hung request keeps its worker;
  a crash cuts the queued requests too, and the instance comes back with every worker free.
- work times are drawn from the instance's own seeded stream (each request takes at least the time its twin
  stream drew).
- the live twin of the simulator's capacity check: 3 instances of 2 workers x 50 ms (40 req/s each, 120 in all,
  80 left after one crashes). At 40 req/s (half what is left) nothing fails; at 100 req/s (125 % of what is left)
  the survivors shed load. Wider margins than the simulator's 0.95 / 1.05 (tests/test_sim_models.py): a live
  request's work takes a little longer than ``work_ms`` (timer lateness, the answer's own writing), and the
  machine is shared, so a rate just below the capacity left would fail now and then for reasons of its own.
- latency grows with utilisation: one worker, exponential work (mean 10 ms), at 20 % and then 80 % utilisation
  on the same lab: the mean latency is more than 1.5 times as high (queueing theory, D/M/1, says about 2.5 for
  these draws; the live instance's own overheads add queueing, so it is usually more).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from conftest import wait_for

from spofkit.capacity import Capacity, ServiceTime
from spofkit.faults import Crash, Hang
from spofkit.instance import Instance, ServiceInstance
from spofkit.isolation import make_instance
from spofkit.lab import Lab

pytestmark = [pytest.mark.usefixtures("no_child_processes"), pytest.mark.timeout(180)]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as client:
        yield client


class Answer:
    """One request as the client saw it: status, JSON body, X-Served-By, and when the answer was complete."""

    def __init__(self, status: int, body: dict[str, Any], served_by: str | None, done_at: float) -> None:
        self.status, self.body, self.served_by, self.done_at = status, body, served_by, done_at


async def get(session: aiohttp.ClientSession, url: str) -> Answer:
    async with session.get(url) as response:
        body = await response.json()
        return Answer(response.status, body, response.headers.get("X-Served-By"), time.monotonic())


async def occupancy(instance: Instance) -> tuple[int, int]:
    stats = await instance.refresh_stats()  # a process instance's counters live in its child
    return stats["busy"], stats["queued"]


@pytest.mark.parametrize("isolation", ["inprocess", "process"])
async def test_two_workers_and_two_places_serve_two_queue_two_and_shed_two(
    isolation: str, session: aiohttp.ClientSession
) -> None:
    work = 1.5  # long enough that all six have arrived while the first two are being served
    capacity = Capacity(concurrency=2, queue=2, work_ms=work * 1000)
    async with make_instance("a", isolation, capacity=capacity, seed=1) as instance:
        began = time.monotonic()
        requests = [asyncio.create_task(get(session, f"{instance.url}/slow/{i}")) for i in range(6)]
        # While they are under way: two workers taken, two requests waiting, never more.
        await wait_for(lambda: _full(instance), timeout=10, message="2 busy, 2 queued")
        answers = await asyncio.gather(*requests)
        stats = await instance.refresh_stats()

    served = sorted((a for a in answers if a.status == 200), key=lambda a: a.done_at)
    shed = [a for a in answers if a.status == 503]
    assert (len(served), len(shed)) == (4, 2), [a.status for a in answers]
    assert all(a.served_by == "a" for a in answers)
    for answer in shed:  # answered at once, before any request had done its work, as JSON saying why
        assert answer.done_at < served[0].done_at
        assert answer.body == {"error": "overloaded: every worker is busy and the queue is full", "instance": "a"}
    # Two served at once, two after them: the queued ones waited for a worker, then did their own work.
    assert served[1].done_at - began >= work
    assert served[2].done_at - served[0].done_at >= work * 0.99
    assert served[3].done_at - began >= 2 * work
    assert (stats["served"], stats["shed"], stats["errors"]) == (4, 2, 2)
    assert (stats["busy"], stats["queued"]) == (0, 0)


async def _full(instance: Instance) -> bool:
    return await occupancy(instance) == (2, 2)


async def test_health_checks_wait_in_the_same_queue_and_are_shed_when_it_is_full(
    session: aiohttp.ClientSession,
) -> None:
    """As in the simulator: a check takes a worker (but does no work), so an overloaded instance answers its checks
    late or with 503: which is how a balancer's health checks come to see overload."""
    async with ServiceInstance("a", capacity=Capacity(concurrency=1, queue=1, work_ms=1000), seed=1) as instance:
        began = time.monotonic()
        working = asyncio.create_task(get(session, f"{instance.url}/work"))
        await wait_for(lambda: instance.busy == 1)
        check = asyncio.create_task(get(session, f"{instance.url}/health"))
        await wait_for(lambda: instance.queued == 1)
        shed_check = await get(session, f"{instance.url}/health")  # no worker, no place: shed at once
        assert shed_check.status == 503 and not check.done()
        waited = await check
        assert waited.status == 200 and waited.body == {"status": "ok", "instance": "a"}
        assert waited.done_at - began >= 1.0  # it waited for the worker the request held
        assert (await working).status == 200
        assert (instance.served, instance.shed) == (1, 1)  # checks are not counted as served, as before


async def test_a_hung_request_keeps_its_worker_and_a_crash_cuts_the_queue(session: aiohttp.ClientSession) -> None:
    async with ServiceInstance("a", capacity=Capacity(concurrency=1, queue=1), seed=1) as instance:
        await instance.inject(Hang())
        hung = asyncio.create_task(get(session, f"{instance.url}/stuck"))
        await wait_for(lambda: instance.busy == 1)
        queued = asyncio.create_task(get(session, f"{instance.url}/behind"))
        await wait_for(lambda: instance.queued == 1)
        assert (await get(session, f"{instance.url}/third")).status == 503  # the hang holds the only worker
        await instance.recover()  # the hung request goes on, then the one behind it
        assert [(await hung).status, (await queued).status] == [200, 200]

        await instance.inject(Hang())
        cut = [asyncio.create_task(get(session, f"{instance.url}/{i}")) for i in range(2)]
        await wait_for(lambda: (instance.busy, instance.queued) == (1, 1))
        await instance.inject(Crash())
        for request in cut:  # served or waiting, every open connection dies with the process
            with pytest.raises(aiohttp.ClientError):
                await request
        assert (instance.busy, instance.queued, instance.in_flight) == (0, 0, 0)
        await instance.recover()  # a new process: every worker free, no fault
        answers = await asyncio.gather(*(get(session, f"{instance.url}/again") for _ in range(2)))
        assert [a.status for a in answers] == [200, 200]  # one served, one waited: no worker was lost in the crash
        assert (instance.busy, instance.queued) == (0, 0)


@pytest.mark.parametrize(
    "capacity",
    [
        Capacity(work_ms=30, spread_ms=25),  # lognormal
        Capacity(concurrency=1, work_ms=20, distribution="exponential"),
    ],
    ids=["lognormal", "exponential"],
)
async def test_work_times_come_from_the_instances_own_seeded_stream(
    capacity: Capacity, session: aiohttp.ClientSession
) -> None:
    """One request at a time, so nothing waits: each takes at least the work time the same stream draws."""
    twin = ServiceTime(capacity, random.Random("5/work"))
    expected = [twin.draw() for _ in range(12)]
    assert max(expected) > 1.5 * min(expected)  # really drawn, not fixed
    async with ServiceInstance("a", capacity=capacity, seed=5) as instance:
        for drawn in expected:
            began = time.monotonic()
            assert (await get(session, instance.url)).status == 200
            assert time.monotonic() - began >= drawn


async def test_the_lab_gives_every_instance_its_capacity_and_work_time_still_means_fixed_work() -> None:
    capacity = Capacity(concurrency=2, queue=3, work_ms=5)
    async with await Lab.start(2, capacity=capacity, backups=1) as lab:
        assert [instance.capacity for instance in lab.instances.values()] == [capacity] * 3
        added = await lab.add_instance()
        assert lab.instances[added].capacity == capacity
    async with await Lab.start(1, work_time=0.02) as lab:
        assert lab.instances["a"].capacity == Capacity(work_ms=20.0)  # no limit, fixed work, as always
    with pytest.raises(ValueError, match="not both"):
        Lab(work_time=0.02, capacity=capacity)
    with pytest.raises(ValueError, match="not both"):
        ServiceInstance("a", work_time=0.02, capacity=capacity)
    with pytest.raises(TypeError, match="Capacity"):
        ServiceInstance("a", capacity={"concurrency": 2})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="work_time"):
        ServiceInstance("a", work_time=float("nan"))


@pytest.mark.parametrize(("rate", "fails"), [(40.0, False), (100.0, True)])
async def test_load_above_the_capacity_left_after_a_crash_fails_and_below_it_does_not(rate: float, fails: bool) -> None:
    """3 instances of 2 workers x 50 ms: 120 req/s, 80 left when b crashes at 1 s. The live twin of the
    simulator's check (tests/test_sim_models.py), at 0.5 and 1.25 times the capacity left."""
    capacity = Capacity(concurrency=2, queue=4, work_ms=50.0)
    assert capacity.requests_per_second == 40.0
    async with await Lab.start(3, capacity=capacity, seed=5) as lab:
        report = await lab.run_load(rate, 5.0, faults=[(1.0, "b", "crash", {})])
    assert report.detection_window is not None and report.run_start is not None
    # From 3 s into the run, b is long marked down (fall 3 x 0.5 s after the crash at 1 s): a and c carry it all.
    after = [bucket for bucket in report.timeline if bucket.second >= report.run_start + 3.0]
    sent_after, failed_after = sum(b.ok + b.failed for b in after), sum(b.failed for b in after)
    if fails:
        assert failed_after > 0.05 * sent_after, report.to_text()
        # Shed by full queues (503), or 502 once the retry found the other queue full too: answers, not timeouts.
        assert set(report.errors_by_kind) <= {"http_502", "http_503"}, report.errors_by_kind
    else:
        assert report.failed == 0, report.to_text()


async def test_latency_grows_with_utilisation() -> None:
    """One worker, exponential work (10 ms on average): 20 req/s is 20 % of its capacity, 80 req/s is 80 %.

    The mean latency at 80 % is more than 1.5 times that at 20 %, in one lab, one run after the other. For the
    very work times the instance draws (its seeded stream), the queue alone (requests at i / rate, one worker,
    first come first served) predicts the ratio; live it is at least about that, because the instance's own
    overheads lengthen each service a little and so add queueing.
    """
    capacity = Capacity(concurrency=1, queue=500, work_ms=10.0, distribution="exponential")
    rates, duration = (20.0, 80.0), 6.0
    async with await Lab.start(1, capacity=capacity, health=None, seed=1) as lab:
        predicted = _queue_model(capacity, lab.instances["a"].seed, rates, duration)
        measured = []
        for rate in rates:
            records = await lab.load_generator().run_open_loop(rate, duration)
            assert all(r.ok for r in records)
            measured.append(statistics.fmean(r.latency for r in records))
    low, high = measured
    assert predicted[1] / predicted[0] > 2.0, predicted  # these draws queue a lot at 80 %
    assert high / low > 1.5, (measured, predicted)
    for live, model in zip(measured, predicted, strict=True):
        assert live >= 0.9 * model, (measured, predicted)  # never much quicker than the work it drew


def _queue_model(capacity: Capacity, seed: int, rates: tuple[float, ...], duration: float) -> list[float]:
    """Mean response time of one first-come-first-served worker, requests at i / rate, the instance's draws."""
    service = ServiceTime(capacity, random.Random(f"{seed}/work"))
    means = []
    for rate in rates:
        free_at, latencies = 0.0, []
        for i in range(round(rate * duration)):
            arrives = i / rate
            free_at = max(arrives, free_at) + service.draw()
            latencies.append(free_at - arrives)
        means.append(statistics.fmean(latencies))
    return means
