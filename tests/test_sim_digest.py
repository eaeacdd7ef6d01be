"""The event-log digest: every event counts, in order, exactly; odd values do not break it."""

from __future__ import annotations

from spofkit.events import FaultInjected, InstanceDown, SettingChanged
from spofkit.sim.digest import EventDigest


def digest_of(*events: object) -> str:
    digest = EventDigest()
    for event in events:
        digest(event)  # type: ignore[arg-type]
    return digest.hexdigest()


def test_the_same_events_give_the_same_digest_and_any_change_another() -> None:
    down = InstanceDown(1.25, "b", "2 failed checks", "lb1")
    fault = FaultInjected(1.0, "b", "slow", {"ms": 200.0, "jitter_ms": 0.0})
    base = digest_of(fault, down)
    assert base == digest_of(FaultInjected(1.0, "b", "slow", {"ms": 200.0, "jitter_ms": 0.0}), down)
    assert digest_of(down, fault) != base  # order counts
    assert digest_of(fault, InstanceDown(1.25 + 1e-12, "b", "2 failed checks", "lb1")) != base  # floats exactly
    assert digest_of(FaultInjected(1.0, "b", "slow", {"ms": 201.0, "jitter_ms": 0.0}), down) != base
    assert digest_of(fault) != base  # a missing event counts


def test_a_value_marshal_cannot_write_is_hashed_by_its_repr() -> None:
    class Odd:
        def __repr__(self) -> str:
            return "Odd()"

    odd = SettingChanged(2.0, "strategy_object", Odd())
    assert digest_of(odd) == digest_of(SettingChanged(2.0, "strategy_object", Odd()))
    assert digest_of(odd) != digest_of(SettingChanged(2.0, "strategy_object", "Odd()!"))


def test_batches_do_not_change_the_digest_of_a_long_log() -> None:
    events = [InstanceDown(i * 0.5, "a", "", "lb1") for i in range(30_000)]  # several batches
    assert digest_of(*events) == digest_of(*events)
    assert digest_of(*events) != digest_of(*events[:-1])
