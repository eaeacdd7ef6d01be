"""Load-balancing strategies, tested as pure objects: plain calls, a seeded rng, a fake ``now``."""

from __future__ import annotations

import collections
import os
import random
import subprocess
import sys
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spofkit.strategies import (
    STRATEGIES,
    Backend,
    ConsistentHash,
    LeastConnections,
    PeakEwma,
    PowerOfTwo,
    RandomChoice,
    RequestInfo,
    RoundRobin,
    Strategy,
    WeightedRoundRobin,
    make_strategy,
    strategy_names,
)

REQUEST = RequestInfo()


def backends(*names: str, **weights: int) -> list[Backend]:
    return [Backend(name, weight=weights.get(name, 1)) for name in names]


def picks(
    strategy: Strategy,
    pool: Sequence[Backend],
    count: int,
    seed: int = 7,
    request: RequestInfo = REQUEST,
) -> list[str]:
    rng = random.Random(seed)
    return [strategy.pick(pool, request, 0.0, rng).name for _ in range(count)]


# --- round robin -------------------------------------------------------------------------------


def test_round_robin_takes_turns_in_name_order_and_shares_fairly() -> None:
    chosen = picks(RoundRobin(), backends("c", "a", "b"), 300)
    assert chosen[:6] == ["a", "b", "c", "a", "b", "c"]
    assert collections.Counter(chosen) == {"a": 100, "b": 100, "c": 100}


def test_round_robin_keeps_going_round_when_backends_come_and_go() -> None:
    rr = RoundRobin()
    rng = random.Random(1)
    full = backends("a", "b", "c")
    assert rr.pick(full, REQUEST, 0.0, rng).name == "a"
    assert rr.pick(full, REQUEST, 0.0, rng).name == "b"
    # c went down: wrap round to a rather than crash or repeat b.
    assert rr.pick(backends("a", "b"), REQUEST, 0.0, rng).name == "a"
    # a went down too; b is next after a.
    assert rr.pick(backends("b"), REQUEST, 0.0, rng).name == "b"
    # Everyone is back: c, whose turn was skipped, comes next.
    assert [rr.pick(full, REQUEST, 0.0, rng).name for _ in range(4)] == ["c", "a", "b", "c"]


def test_round_robin_does_not_starve_anyone_after_churn() -> None:
    rr = RoundRobin()
    rng = random.Random(3)
    names = ["a", "b", "c", "d", "e"]
    for _ in range(200):  # random outages
        alive = [n for n in names if rng.random() < 0.6] or ["a"]
        rr.pick(backends(*alive), REQUEST, 0.0, rng)
    # Once the set is stable, every member is served exactly once per lap.
    lap = picks(rr, backends(*names), len(names) * 4)
    for start in range(0, len(lap), len(names)):
        assert sorted(lap[start : start + len(names)]) == names


# --- weighted round robin ----------------------------------------------------------------------


def test_weighted_round_robin_is_nginx_smooth_sequence() -> None:
    wrr = WeightedRoundRobin()
    one_cycle = ["a", "a", "b", "a", "c", "a", "a"]
    assert picks(wrr, backends("a", "b", "c", a=5), 14) == one_cycle * 2


def test_weighted_round_robin_exact_shares_over_a_cycle() -> None:
    chosen = picks(WeightedRoundRobin(), backends("a", "b", "c", a=3, b=2, c=1), 600)
    assert collections.Counter(chosen) == {"a": 300, "b": 200, "c": 100}
    # Smooth: the heavy backend is never served more than twice in a row at 3:2:1.
    runs_of_a = "".join(chosen).replace("b", " ").replace("c", " ").split()
    assert max(len(run) for run in runs_of_a) <= 2


def test_weight_zero_is_never_picked_unless_all_are_zero() -> None:
    for strategy in (WeightedRoundRobin(), RandomChoice(), RoundRobin(), LeastConnections()):
        assert "b" not in picks(strategy, backends("a", "b", "c", b=0), 60)
    all_zero = backends("a", "b", a=0, b=0)
    assert set(picks(WeightedRoundRobin(), all_zero, 10)) == {"a", "b"}
    assert set(picks(RandomChoice(), all_zero, 50)) == {"a", "b"}


# --- random ------------------------------------------------------------------------------------


def test_random_choice_follows_weights() -> None:
    chosen = picks(RandomChoice(), backends("a", "b", a=3), 4000, seed=11)
    share_of_a = chosen.count("a") / len(chosen)
    assert 0.70 < share_of_a < 0.80  # expected 0.75


def test_random_choice_is_reproducible_with_the_same_seed() -> None:
    pool = backends("a", "b", "c")
    assert picks(RandomChoice(), pool, 50, seed=5) == picks(RandomChoice(), pool, 50, seed=5)


# --- least connections and power of two --------------------------------------------------------


def test_least_connections_prefers_the_least_loaded() -> None:
    pool = [Backend("a", in_flight=5), Backend("b", in_flight=1), Backend("c", in_flight=3)]
    assert set(picks(LeastConnections(), pool, 20)) == {"b"}


def test_least_connections_counts_load_per_unit_of_weight() -> None:
    # a: 4 in flight on weight 4 = 1 per unit; b: 2 on weight 1 = 2 per unit.
    pool = [Backend("a", weight=4, in_flight=4), Backend("b", weight=1, in_flight=2)]
    assert set(picks(LeastConnections(), pool, 20)) == {"a"}


def test_least_connections_breaks_ties_with_the_rng() -> None:
    pool = [Backend("a", in_flight=1), Backend("b", in_flight=1), Backend("c", in_flight=4)]
    chosen = collections.Counter(picks(LeastConnections(), pool, 400))
    assert set(chosen) == {"a", "b"}
    assert chosen["a"] > 100 and chosen["b"] > 100


def test_power_of_two_never_picks_the_busiest_and_spreads_over_the_rest() -> None:
    pool = [Backend("a", in_flight=9), Backend("b"), Backend("c"), Backend("d", in_flight=1)]
    chosen = collections.Counter(picks(PowerOfTwo(), pool, 600))
    # The busiest loses every comparison it is drawn into.
    assert "a" not in chosen
    # Idle b and c win most, but the choice stays random (no herding onto one of them).
    assert chosen["b"] > 150 and chosen["c"] > 150
    assert chosen["b"] + chosen["c"] > chosen["d"]


def test_power_of_two_with_one_or_two_backends() -> None:
    assert picks(PowerOfTwo(), backends("solo"), 3) == ["solo"] * 3
    pair = [Backend("a", in_flight=2), Backend("b", in_flight=0)]
    assert set(picks(PowerOfTwo(), pair, 20)) == {"b"}


# --- consistent hash ---------------------------------------------------------------------------


def keyed(key: str) -> RequestInfo:
    return RequestInfo(headers={"X-Hash-Key": key})


def mapping(ring: ConsistentHash, pool: Sequence[Backend], keys: Sequence[str]) -> dict[str, str]:
    rng = random.Random(0)
    return {key: ring.pick(pool, keyed(key), 0.0, rng).name for key in keys}


KEYS = [f"user-{i}" for i in range(2000)]
FIVE = backends("a", "b", "c", "d", "e")


def test_consistent_hash_sends_a_key_to_the_same_backend_every_time() -> None:
    first = mapping(ConsistentHash(), FIVE, KEYS)
    assert mapping(ConsistentHash(), FIVE, KEYS) == first  # a fresh ring agrees
    assert mapping(ConsistentHash(), list(reversed(FIVE)), KEYS) == first  # order does not matter
    # With 100 virtual nodes each, five backends share the keys roughly evenly.
    shares = collections.Counter(first.values())
    assert set(shares) == {"a", "b", "c", "d", "e"}
    assert all(200 < count < 700 for count in shares.values()), shares


def test_consistent_hash_removing_a_backend_moves_only_its_keys() -> None:
    ring = ConsistentHash()
    before = mapping(ring, FIVE, KEYS)
    after = mapping(ring, [b for b in FIVE if b.name != "c"], KEYS)
    moved = {key for key in KEYS if before[key] != after[key]}
    assert moved == {key for key in KEYS if before[key] == "c"}
    # c's keys spread over the survivors instead of all landing on one of them.
    assert len({after[key] for key in moved}) >= 3
    # When c comes back, its keys come back to it.
    assert mapping(ring, FIVE, KEYS) == before


def test_consistent_hash_is_the_same_in_another_process() -> None:
    # Python's hash() is salted per process; the ring must not be, or two balancers would disagree.
    script = (
        "from spofkit.strategies import *; import random\n"
        "pool = [Backend(n) for n in 'abcde']\n"
        "ring = ConsistentHash()\n"
        "print(''.join(ring.pick(pool, RequestInfo(headers={'X-Hash-Key': f'k{i}'}), 0.0,"
        " random.Random(0)).name for i in range(40)))\n"
    )
    outputs = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        outputs.add(done.stdout.strip())
    here = mapping(ConsistentHash(), FIVE, [f"k{i}" for i in range(40)])
    assert outputs == {"".join(here.values())}


def test_consistent_hash_key_from_header_any_case_else_client() -> None:
    ring = ConsistentHash()
    assert ring.key_for(RequestInfo(headers={"x-hash-key": "alice"})) == "alice"
    assert ring.key_for(RequestInfo(headers={}, client="10.0.0.7")) == "10.0.0.7"
    assert ring.key_for(RequestInfo(headers={"X-Hash-Key": ""}, client="10.0.0.7")) == "10.0.0.7"
    by_session = ConsistentHash(header="X-Session")
    assert by_session.key_for(RequestInfo(headers={"X-Session": "s1", "X-Hash-Key": "k"})) == "s1"
    # The same client with no header always lands on the same backend.
    rng = random.Random(0)
    same_client = RequestInfo(client="10.1.2.3")
    assert len({ring.pick(FIVE, same_client, 0.0, rng).name for _ in range(20)}) == 1


def test_consistent_hash_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="replicas=0"):
        ConsistentHash(replicas=0)
    with pytest.raises(ValueError, match="header"):
        ConsistentHash(header="")


# --- peak EWMA ---------------------------------------------------------------------------------


def test_peak_ewma_moves_traffic_away_from_a_slow_backend_and_back_after_decay() -> None:
    ewma = PeakEwma(tau=10.0)
    pool = backends("a", "b", "c")
    for backend in ("a", "b"):
        ewma.observe(backend, 0.010, ok=True, now=0.0)
    ewma.observe("c", 1.0, ok=True, now=0.0)  # c turned slow

    rng = random.Random(2)
    soon = collections.Counter(ewma.pick(pool, REQUEST, 0.5, rng).name for _ in range(200))
    assert "c" not in soon
    assert soon["a"] > 50 and soon["b"] > 50  # the fast two share the work

    # a and b keep answering fast; c is not asked, so its old bad sample fades (1.0 × e^-10).
    for backend in ("a", "b"):
        ewma.observe(backend, 0.010, ok=True, now=99.0)
    assert ewma.pick(pool, REQUEST, 100.0, rng).name == "c"
    # c proves fast again and stays in rotation.
    for backend in ("a", "b", "c"):
        ewma.observe(backend, 0.010, ok=True, now=100.0)
    later = collections.Counter(ewma.pick(pool, REQUEST, 100.0, rng).name for _ in range(300))
    assert set(later) == {"a", "b", "c"}


def test_peak_ewma_peaks_at_once_and_comes_down_gradually() -> None:
    ewma = PeakEwma(tau=10.0)
    ewma.observe("a", 0.010, ok=True, now=0.0)
    ewma.observe("a", 0.500, ok=True, now=0.1)
    assert ewma.estimate("a", now=0.1) == pytest.approx(0.5)  # the spike replaces the average
    ewma.observe("a", 0.010, ok=True, now=0.2)
    # One fast sample soon after barely moves it: the spike is not forgotten at once.
    assert ewma.estimate("a", now=0.2) == pytest.approx(0.5, rel=0.02)
    for step in range(1, 301):
        ewma.observe("a", 0.010, ok=True, now=0.2 + step * 0.1)
    estimate = ewma.estimate("a", now=30.2)
    assert estimate is not None and estimate < 0.05  # 30 s of fast answers bring it down


def test_peak_ewma_counts_failures_as_a_penalty() -> None:
    ewma = PeakEwma(failure_penalty=2.0)
    ewma.observe("a", 0.001, ok=False, now=0.0)  # refused quickly: still bad news
    ewma.observe("b", 0.050, ok=True, now=0.0)
    assert ewma.estimate("a", now=0.0) == pytest.approx(2.0)
    assert set(picks(ewma, backends("a", "b"), 20)) == {"b"}


def test_peak_ewma_cost_grows_with_in_flight() -> None:
    ewma = PeakEwma()
    ewma.observe("fast", 0.010, ok=True, now=0.0)
    ewma.observe("slower", 0.030, ok=True, now=0.0)
    busy_fast = [Backend("fast", in_flight=5), Backend("slower", in_flight=0)]
    assert ewma.costs(busy_fast, now=0.0) == pytest.approx({"fast": 0.06, "slower": 0.03})
    assert set(picks(ewma, busy_fast, 10)) == {"slower"}


def test_peak_ewma_tries_an_unseen_backend_without_flooding_it() -> None:
    ewma = PeakEwma()
    ewma.observe("a", 0.002, ok=True, now=0.0)  # faster than default_latency (0.01)
    ewma.observe("b", 0.004, ok=True, now=0.0)
    idle = backends("a", "b", "new")
    assert "new" in picks(ewma, idle, 20)  # as good as the best known: it gets tried
    busy_newcomer = [Backend("a"), Backend("b"), Backend("new", in_flight=3)]
    assert "new" not in picks(ewma, busy_newcomer, 20)
    # Knowing nothing at all, everyone is equal and the dice decide.
    assert set(picks(PeakEwma(), backends("a", "b", "c"), 60)) == {"a", "b", "c"}


def test_peak_ewma_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="tau=0"):
        PeakEwma(tau=0)
    with pytest.raises(ValueError, match="failure_penalty"):
        PeakEwma(failure_penalty=-1)
    with pytest.raises(ValueError, match=r"latency=-0\.5"):
        PeakEwma().observe("a", -0.5, ok=True, now=0.0)


# --- shared rules ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", strategy_names())
def test_every_strategy_rejects_an_empty_pool(name: str) -> None:
    with pytest.raises(ValueError, match="backends is empty"):
        make_strategy(name).pick([], REQUEST, 0.0, random.Random(0))


@pytest.mark.parametrize("name", strategy_names())
def test_every_strategy_names_a_negative_weight(name: str) -> None:
    with pytest.raises(ValueError, match=r"'b' has weight=-1"):
        make_strategy(name).pick(backends("a", "b", b=-1), REQUEST, 0.0, random.Random(0))


# --- registry ----------------------------------------------------------------------------------


def test_registry_lists_every_strategy_under_its_own_name() -> None:
    assert strategy_names() == [
        "round_robin",
        "weighted_round_robin",
        "random",
        "least_connections",
        "power_of_two",
        "consistent_hash",
        "peak_ewma",
    ]
    for name, cls in STRATEGIES.items():
        assert cls.name == name
        made = make_strategy(name)
        assert type(made) is cls
        assert made is not make_strategy(name)  # fresh state every time


def test_make_strategy_forgives_case_and_dashes() -> None:
    assert isinstance(make_strategy("Power-Of-Two"), PowerOfTwo)


def test_make_strategy_rejects_unknown_names_and_listing_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown strategy 'fastest'.*round_robin.*peak_ewma"):
        make_strategy("fastest")
    with pytest.raises(ValueError, match=r"got 42 \(int\).*round_robin"):
        make_strategy(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="got None"):
        make_strategy(None)  # type: ignore[arg-type]


class AlwaysFirst:
    """A learner's own strategy: does not subclass Strategy, has no observe."""

    name = "always_first"

    def pick(self, backends: Sequence[Backend], request: RequestInfo, now: float, rng: random.Random) -> Backend:
        return backends[0]


def test_make_strategy_accepts_a_duck_typed_strategy() -> None:
    mine = AlwaysFirst()
    returned: object = make_strategy(mine)  # type: ignore[arg-type]
    assert returned is mine  # as is, so the learner can inspect its state afterwards
    made = make_strategy(AlwaysFirst)  # type: ignore[arg-type]
    assert isinstance(made, AlwaysFirst)
    assert made.pick(backends("x", "y"), REQUEST, 0.0, random.Random(0)).name == "x"
    ready = PeakEwma(tau=2.0)
    assert make_strategy(ready) is ready


# --- property: whatever happens, a strategy answers with a member of the pool -------------------

NAMES = ["a", "b", "c", "d", "e", "f"]

pools = st.lists(
    st.builds(
        Backend,
        name=st.sampled_from(NAMES),
        weight=st.integers(min_value=0, max_value=4),
        in_flight=st.integers(min_value=0, max_value=20),
    ),
    min_size=1,
    max_size=6,
    unique_by=lambda b: b.name,
)
requests = st.builds(
    RequestInfo,
    headers=st.dictionaries(st.sampled_from(["X-Hash-Key", "Other"]), st.text(max_size=8)),
    client=st.sampled_from(["10.0.0.1", "10.0.0.2", "::1"]),
)
steps = st.tuples(pools, requests, st.floats(min_value=0, max_value=5), st.booleans())


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(strategy_names()),
    seed=st.integers(min_value=0, max_value=2**32),
    script=st.lists(steps, min_size=1, max_size=25),
)
def test_every_strategy_always_picks_an_eligible_member_of_the_pool(
    name: str, seed: int, script: list[tuple[list[Backend], RequestInfo, float, bool]]
) -> None:
    strategy = make_strategy(name)
    rng = random.Random(seed)
    now = 0.0
    for pool, request, latency, ok in script:
        chosen = strategy.pick(pool, request, now, rng)
        assert chosen in pool
        if any(b.weight > 0 for b in pool):
            assert chosen.weight > 0  # weight 0 means draining
        strategy.observe(chosen.name, latency, ok, now)
        now += rng.random()
