"""The rise/fall state machine and the detection-window bound, with plain calls (no sockets, no clock)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spofkit.health import DOWN, UP, HealthSettings, HealthState


def feed(state: HealthState, results: list[bool]) -> list[str | None]:
    return [state.record(ok) for ok in results]


def test_up_instance_goes_down_after_fall_consecutive_failures() -> None:
    state = HealthState(rise=2, fall=3)
    assert feed(state, [False, False]) == [None, None]
    assert state.phase == "falling" and state.failures == 2
    assert state.record(False) == DOWN
    assert state.state == DOWN and state.phase == DOWN


def test_a_success_resets_the_fall_count() -> None:
    state = HealthState(rise=2, fall=3)
    feed(state, [False, False, True, False, False])
    assert state.state == UP
    assert state.failures == 2


def test_down_instance_needs_rise_consecutive_successes() -> None:
    state = HealthState(rise=2, fall=1, state=DOWN)
    assert state.record(True) is None
    assert state.phase == "rising"
    assert state.record(False) is None  # a failure resets the rise count
    assert state.successes == 0
    assert feed(state, [True, True]) == [None, UP]
    assert state.phase == UP


def test_probe_interval_follows_the_phase() -> None:
    settings = HealthSettings(interval=1.0, fastinter=0.2, downinter=3.0, rise=2, fall=2)
    state = HealthState(settings.rise, settings.fall)
    assert state.next_interval(settings) == 1.0
    state.record(False)
    assert state.next_interval(settings) == 0.2  # falling: confirm quickly
    state.record(False)
    assert state.next_interval(settings) == 3.0  # down: probe less often
    state.record(True)
    assert state.next_interval(settings) == 0.2  # rising


def test_detection_window_bound() -> None:
    settings = HealthSettings(interval=1.0, timeout=0.5, fall=3)
    # next probe within 1s, it and two more each up to 0.5s, spaced 1s apart
    assert settings.detection_window_bound() == pytest.approx(1.0 + 2 * 1.0 + 0.5)
    quick = HealthSettings(interval=1.0, fastinter=0.1, timeout=0.5, fall=3)
    # a probe that times out delays the next one, so the spacing is at least the timeout
    assert quick.detection_window_bound() == pytest.approx(1.0 + 2 * 0.5 + 0.5)


@pytest.mark.parametrize(
    "field, value",
    [
        ("interval", 0),
        ("timeout", -1),
        ("rise", 0),
        ("fall", 1.5),
        ("jitter", 1.0),
        ("path", "health"),
    ],
)
def test_bad_settings_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        HealthSettings(**{field: value})  # type: ignore[arg-type]


@given(
    rise=st.integers(1, 5),
    fall=st.integers(1, 5),
    results=st.lists(st.booleans(), max_size=60),
)
def test_state_changes_only_after_enough_consecutive_results(rise: int, fall: int, results: list[bool]) -> None:
    """Property: the machine is DOWN exactly when its last run of failures reached ``fall`` and no later run
    of successes reached ``rise``; each change is reported once, at the probe that caused it."""
    state = HealthState(rise=rise, fall=fall)
    expected = UP
    run_ok, run_fail = 0, 0
    for ok in results:
        run_ok, run_fail = (run_ok + 1, 0) if ok else (0, run_fail + 1)
        change = state.record(ok)
        before = expected
        if expected == UP and run_fail >= fall:
            expected, run_fail = DOWN, 0
        elif expected == DOWN and run_ok >= rise:
            expected, run_ok = UP, 0
        assert state.state == expected
        assert change == (expected if expected != before else None)
        assert 0 <= state.failures < fall and 0 <= state.successes < rise
        assert state.failures == 0 or state.state == UP
        assert state.successes == 0 or state.state == DOWN
