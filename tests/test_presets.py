"""The fault presets that keys and buttons inject say what they do: checked against the health check settings."""

from __future__ import annotations

from spofkit.faults import PRESETS, Slow
from spofkit.health import HealthSettings


def test_every_preset_builds_its_fault() -> None:
    for preset in PRESETS.values():
        assert preset.fault().kind == preset.kind


def test_slow_stays_under_the_health_check_timeout_and_too_slow_goes_over_it() -> None:
    timeout_ms = HealthSettings().timeout * 1000
    slow, too_slow = PRESETS["slow"].fault(), PRESETS["too_slow"].fault()
    assert isinstance(slow, Slow) and isinstance(too_slow, Slow)
    assert slow.ms + slow.jitter_ms < timeout_ms * 0.9  # room for the probe's own time
    assert too_slow.ms - too_slow.jitter_ms > timeout_ms
