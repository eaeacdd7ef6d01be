"""One definition of what each fault does (faults.effect), and the answers that are derived from it."""

from __future__ import annotations

import random

import pytest

from spofkit.exercises import health_check_notices
from spofkit.faults import MIN_FLAP_PERIOD, Effect, FaultError, effect, make_fault
from spofkit.health import HealthSettings


def meets(kind: str, *, health_check: bool = False, elapsed: float = 0.0, **params: float) -> Effect:
    return effect(make_fault(kind, **params), health_check=health_check, elapsed=elapsed, dice=random.Random(1))


def test_each_fault_does_what_its_docstring_says() -> None:
    assert meets("crash").refused
    assert meets("hang").hangs
    assert meets("slow", ms=200).delay == pytest.approx(0.2)
    assert meets("error", rate=1.0, status=503).status == 503
    assert meets("error", rate=1.0, status=503, health_check=True).status == 503  # errors hit checks too
    assert meets("gray", rate=1.0, status=503).status == 503
    assert meets("gray", rate=1.0, status=503, health_check=True).status is None  # a gray failure spares checks
    assert meets("reset", rate=1.0).cut_off and not meets("reset", rate=1.0, health_check=True).cut_off
    assert meets("warmup", seconds=10, extra_ms=400, elapsed=5).delay == pytest.approx(0.2)
    assert effect(None, health_check=False, elapsed=0.0, dice=random.Random()) == Effect()


def test_a_flap_is_down_then_up_in_periods() -> None:
    assert [meets("flap", period=2, elapsed=t).refused for t in (0.0, 1.9, 2.0, 3.9, 4.0)] == [
        True,
        True,
        False,
        False,
        True,
    ]
    assert make_fault("flap", period=2).next_change(2.5) == pytest.approx(4.0)
    with pytest.raises(FaultError) as error:
        make_fault("flap", period=MIN_FLAP_PERIOD / 2)
    assert error.value.field == "period"


def test_health_check_notices_follows_the_effects_also_for_flap_and_warmup() -> None:
    settings = HealthSettings(timeout=0.3)
    assert health_check_notices(make_fault("flap", period=2), settings)
    assert health_check_notices(make_fault("warmup", seconds=5, extra_ms=600), settings)
    assert not health_check_notices(make_fault("warmup", seconds=5, extra_ms=100), settings)
    assert health_check_notices(make_fault("error", rate=1.0, status=500), settings)
    assert not health_check_notices(make_fault("error", rate=0.99, status=500), settings)
    assert not health_check_notices(make_fault("slow", ms=250, jitter_ms=40), settings)  # the luckiest is 210 ms
