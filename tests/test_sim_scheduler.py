"""The simulator's clock puts off the garbage collector's full collections while it runs, and only those."""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Iterator

import pytest

from spofkit.sim.scheduler import SimScheduler, full_collections_deferred


@pytest.fixture
def threshold() -> Iterator[tuple[int, int, int]]:
    """An unusual threshold of the oldest generation, to see it restored; the original one put back after."""
    original = gc.get_threshold()
    gc.set_threshold(original[0], original[1], 7)
    try:
        yield gc.get_threshold()
    finally:
        gc.set_threshold(*original)


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_a_run_puts_off_full_collections_and_gives_the_threshold_back(threshold: tuple[int, int, int]) -> None:
    scheduler = SimScheduler()
    seen: list[tuple[int, int, int]] = []
    scheduler.call_at(1.0, lambda: seen.append(gc.get_threshold()))
    scheduler.run()
    assert seen[0][:2] == threshold[:2], "the young generations are collected as before"
    assert seen[0][2] > 10**6, "no full collection while the timers run"
    assert gc.get_threshold() == threshold


def test_young_cycles_are_still_collected_during_a_run(threshold: tuple[int, int, int]) -> None:
    scheduler = SimScheduler()
    cycle: list[weakref.ref[Node]] = []
    alive_later: list[bool] = []

    def make_garbage_cycle() -> None:
        first, second = Node(), Node()
        first.other, second.other = second, first
        cycle.append(weakref.ref(first))

    def allocate_then_look() -> None:
        keep = [Node() for _ in range(50_000)]  # many young collections' worth of new objects
        alive_later.append(cycle[0]() is not None)
        del keep

    scheduler.call_at(1.0, make_garbage_cycle)
    scheduler.call_at(2.0, allocate_then_look)
    scheduler.run()
    assert alive_later == [False], "a cycle that died young went in a young collection, during the run"


def test_nested_and_failing_runs_leave_the_threshold_as_it_was(threshold: tuple[int, int, int]) -> None:
    outer, inner = SimScheduler(), SimScheduler()
    after_inner: list[int] = []

    def run_inner() -> None:
        inner.call_at(1.0, lambda: None)
        inner.run()
        after_inner.append(gc.get_threshold()[2])

    def fail() -> None:
        raise RuntimeError("a callback fails")

    outer.call_at(1.0, run_inner)
    outer.call_at(2.0, fail)
    with pytest.raises(RuntimeError, match="a callback fails"):
        outer.run()
    assert after_inner[0] > 10**6, "the inner run's end does not end the outer one's deferral"
    assert gc.get_threshold() == threshold


def test_runs_in_two_threads_give_the_threshold_back_once_both_end(threshold: tuple[int, int, int]) -> None:
    both_inside = threading.Barrier(2, timeout=10)
    first_done = threading.Event()
    during: list[int] = []

    def first() -> None:
        with full_collections_deferred():
            both_inside.wait()
        first_done.set()

    def second() -> None:
        with full_collections_deferred():
            both_inside.wait()
            assert first_done.wait(10)
            during.append(gc.get_threshold()[2])  # the first has ended, this one has not

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert during and during[0] > 10**6
    assert gc.get_threshold() == threshold


def test_a_collector_without_thresholds_runs_the_timers_as_usual(monkeypatch: pytest.MonkeyPatch) -> None:
    """PyPy's gc module has no get_threshold/set_threshold: the run goes on, and the deferral is simply not made."""
    import types

    import spofkit.sim.scheduler as scheduler_module

    touched: list[str] = []
    no_generations = types.SimpleNamespace(
        collect=gc.collect, set_threshold=lambda *args: touched.append("set_threshold")
    )
    monkeypatch.setattr(scheduler_module, "gc", no_generations)
    scheduler = SimScheduler()
    ran: list[float] = []
    scheduler.call_at(1.0, lambda: ran.append(scheduler.now()))
    scheduler.call_at(2.0, lambda: ran.append(scheduler.now()))
    assert scheduler.run() == 2.0
    assert ran == [1.0, 2.0]
    assert touched == [], "nothing was asked of a collector that has no thresholds"
