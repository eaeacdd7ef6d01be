"""The pool's ready list: worked out once and kept until something it depends on changes.

A pool no longer looks at every member for every request. These tests hold it to the rules it had when it did:
against a reference that applies rules 1–4 afresh for every choice, the same member is chosen at every step, for
every strategy, through health changes, drains, ejections (and their running out), membership changes and changes
made to a member by hand.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from spofkit.policy import EjectionSettings, RequestInfo
from spofkit.policy.pool import Member, NoInstance, Pool
from spofkit.policy.strategies import Backend, strategy_names

EJECTION = EjectionSettings(consecutive_failures=2, base_time=0.5, max_time=2.0)


def reference_choose(pool: Pool, request: RequestInfo, now: float) -> str:
    """Rules 1–4 worked out from scratch, as the pool did before it kept a ready list."""
    eligible = pool.eligible(now)
    if not eligible:
        raise NoInstance(503, "none")
    candidates = [m for m in eligible if not m.full]
    if not candidates:
        raise NoInstance(503, "full")
    backends = [Backend(m.name, m.weight, m.in_flight) for m in candidates]
    return pool.strategy.pick(backends, request, now, pool.strategy_rng).name


def chosen(choose: Callable[[Pool, RequestInfo, float], str], pool: Pool, request: RequestInfo, now: float) -> str:
    try:
        return choose(pool, request, now)
    except NoInstance as none:
        return f"NoInstance {none.status}"


def pool_choose(pool: Pool, request: RequestInfo, now: float) -> str:
    return pool.choose(request, now).name


@pytest.mark.parametrize("strategy", strategy_names())
def test_the_ready_list_chooses_as_the_rules_worked_out_afresh_would(strategy: str) -> None:
    plan = random.Random(7)
    pools = [Pool(lambda e: None, strategy=strategy, ejection=EJECTION) for _ in range(2)]
    cached, fresh = pools
    names = [f"i{n:02d}" for n in range(30)]
    for pool in pools:
        for index, name in enumerate(names):
            pool.add(name, f"sim://{name}", 0.0, weight=1 + index % 3, backup=index >= 27)
    in_flight: list[tuple[str, float]] = []
    now = 0.0
    requests = [RequestInfo(headers={"X-Hash-Key": f"user{k}"}) for k in range(7)]
    outcomes = []
    for step in range(3000):
        now += plan.random() * 0.01
        roll = plan.random()
        if roll < 0.02:  # a health verdict flips
            name, healthy = plan.choice(names), plan.random() < 0.5
            for pool in pools:
                pool.set_healthy(name, healthy, now)
        elif roll < 0.025:  # a change made by hand, as a test or a lesson may
            name = plan.choice(names)
            field, value = plan.choice([("draining", True), ("draining", False), ("weight", 0), ("weight", 2)])
            for pool in pools:
                if name in pool.members:
                    setattr(pool.members[name], field, value)
        elif roll < 0.03:  # a member leaves, or comes back
            name = plan.choice(names)
            for pool in pools:
                if name in pool.members and len(pool.members) > 3:
                    pool.remove(name, now)
                elif name not in pool.members:
                    pool.add(name, f"sim://{name}", now)
        elif roll < 0.35 and in_flight:  # an attempt ends; bad members (i0x) fail, so they get ejected
            name, _ = in_flight.pop(plan.randrange(len(in_flight)))
            ok = not name.startswith("i0") or plan.random() < 0.2
            for pool in pools:
                if name in pool.members:
                    pool.attempt_finished(pool.members[name], ok, 0.01, now)
                    pool.ejections_ended(now) if plan.random() < 0.5 else None
        else:
            request = requests[step % len(requests)]
            a = chosen(pool_choose, cached, request, now)
            b = chosen(reference_choose, fresh, request, now)
            assert a == b, f"step {step} ({strategy}): the ready list chose {a}, the rules afresh {b}"
            outcomes.append(a)
            if not a.startswith("NoInstance"):
                for pool in pools:
                    pool.attempt_started(pool.members[a])
                in_flight.append((a, now))
    # The walk went through the cases it is meant to: ejections, and members taken out of the ready list.
    assert len(set(outcomes)) > 10
    assert cached.outliers._records and any(r.times_ejected for r in cached.outliers._records.values())


def test_an_ejection_running_out_makes_the_member_eligible_again_without_being_announced() -> None:
    pool = Pool(lambda e: None, strategy="round_robin", ejection=EjectionSettings(consecutive_failures=1, base_time=1))
    for name in "abc":
        pool.add(name, f"sim://{name}", 0.0)
    a = pool.member("a")
    pool.attempt_started(a)
    pool.attempt_finished(a, False, 0.01, 0.5)  # ejected until 1.5
    assert {pool.choose(RequestInfo(), 0.6).name for _ in range(6)} == {"b", "c"}
    assert "a" in {pool.choose(RequestInfo(), 1.5).name for _ in range(6)}  # nobody called ejections_ended


def test_a_member_changed_by_hand_is_seen_at_the_next_choice() -> None:
    pool = Pool(lambda e: None, strategy="random")
    for name in "ab":
        pool.add(name, f"sim://{name}", 0.0)
    pool.choose(RequestInfo(), 0.0)
    pool.member("a").draining = True
    assert {pool.choose(RequestInfo(), 0.1).name for _ in range(20)} == {"b"}
    pool.member("b").max_conns = 1
    pool.attempt_started(pool.member("b"))
    with pytest.raises(NoInstance, match="max_conns"):
        pool.choose(RequestInfo(), 0.2)
    pool.member("b").backup = True  # the only primary left is draining: the backup serves
    pool.member("b").max_conns = None
    assert pool.choose(RequestInfo(), 0.3).name == "b"


def test_a_removed_member_no_longer_reaches_its_old_pool() -> None:
    pool = Pool(lambda e: None)
    member = pool.add("a", "sim://a", 0.0)
    pool.add("b", "sim://b", 0.0)
    pool.remove("a", 0.0)
    member.draining = True  # a stale reference: harmless, and the pool's counts stay right
    assert pool._primaries == 1
    assert isinstance(member, Member) and "draining=True" in repr(member)


@pytest.mark.parametrize(("strategy", "most"), [("round_robin", 1), ("random", 1), ("power_of_two", 2)])
def test_a_choice_reads_the_same_few_members_at_any_pool_size(
    strategy: str, most: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a strategy works out from names and weights is kept with the ready list (``remember``): a round-robin
    turn reads one member of a thousand, not all of them (it sorted and snapshotted every member per request)."""
    import spofkit.policy.pool as pool_module

    reads = 0
    real_snapshot = pool_module._snapshot

    def counted(member: Member) -> Backend:
        nonlocal reads
        reads += 1
        return real_snapshot(member)

    monkeypatch.setattr(pool_module, "_snapshot", counted)
    pool = Pool(lambda e: None, strategy=strategy)
    for index in range(1000):
        pool.add(f"i{index:04d}", f"sim://i{index:04d}", 0.0, weight=1 + index % 2)
    request = RequestInfo()
    pool.choose(request, 1.0)  # the first choice works out the order (or the weights) once
    reads = 0
    names = [pool.choose(request, 1.0 + step * 1e-3).name for step in range(200)]
    assert reads <= most * 200 + 200, reads  # (bisect and the dice read a handful more, not a thousand)
    if strategy == "round_robin":
        assert names == [f"i{index:04d}" for index in range(1, 201)]  # still every member in name order
    pool.set_healthy("i0500", False, 2.0)  # a change: worked out afresh, without the member that went down
    assert all(pool.choose(request, 2.0 + step * 1e-3).name != "i0500" for step in range(1000))
