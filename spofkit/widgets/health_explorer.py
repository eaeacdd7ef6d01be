"""Exploring health check settings: faster detection, or fewer false alarms on a flaky node. Pick one.

A short ``interval`` and a small ``fall`` notice a dead instance quickly (the detection window bound comes from
:meth:`HealthSettings.detection_window_bound`). But a healthy instance loses a probe now and then (a dropped
packet, a GC pause), and with ``fall=1`` every lost probe throws it out of the pool: a *false alarm*.

:func:`simulate_false_alarms` counts those false alarms without any server: it drives the real
:class:`~spofkit.policy.health.HealthMonitor` (the schedule and the rise/fall rules the live checker follows) on a
virtual clock, with probes that fail at random. :class:`HealthExplorer` puts sliders on the settings and plots
both numbers against ``fall``.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from spofkit.events import Event, InstanceDown
from spofkit.policy.health import HealthMonitor, HealthSettings
from spofkit.widgets._display import figure_output

FLAKY = "flaky"  # the one instance the simulation watches


def run_flaky_checks(
    settings: HealthSettings,
    probe_failure_probability: float,
    duration: float,
    rng: random.Random,
    emit: Callable[[Event], None],
) -> None:
    """Health-check a healthy-but-flaky instance for ``duration`` seconds of virtual time; ``emit`` gets the events.

    Each probe fails on its own with ``probe_failure_probability``; a failed probe runs into its ``timeout``, a
    passing one answers at once. When probes are due, and what their results mean, is the
    :class:`~spofkit.policy.health.HealthMonitor`'s to say: ``emit`` receives its ``HealthProbe`` for every probe
    and an ``InstanceDown`` / ``InstanceUp`` whenever it changes its verdict. Pure: every random draw (which probes
    fail, the monitor's jitter) comes from ``rng``, so a seed gives the same run every time.
    """
    if not 0 <= probe_failure_probability <= 1:
        raise ValueError(f"probe_failure_probability must be in [0, 1], got {probe_failure_probability!r}")
    if not duration > 0:
        raise ValueError(f"duration must be > 0 seconds, got {duration!r}")
    monitor = HealthMonitor(settings, rng, emit)
    monitor.add(FLAKY, now=0.0)
    while True:
        due = monitor.next_probe_at(FLAKY)
        if due is None or due >= duration:
            return
        monitor.probe_started(FLAKY, due)
        if rng.random() < probe_failure_probability:
            monitor.probe_finished(FLAKY, False, "timeout", due + settings.timeout)
        else:
            monitor.probe_finished(FLAKY, True, "200", due)


def simulate_false_alarms(
    settings: HealthSettings, probe_failure_probability: float, duration: float, rng: random.Random
) -> int:
    """How often a healthy-but-flaky instance is wrongly marked DOWN in ``duration`` seconds.

    The ``InstanceDown`` events of :func:`run_flaky_checks`, counted. Raises ``ValueError`` for a probability
    outside [0, 1] or a duration that is not positive.
    """
    alarms = 0

    def count(event: Event) -> None:
        nonlocal alarms
        if isinstance(event, InstanceDown):
            alarms += 1

    run_flaky_checks(settings, probe_failure_probability, duration, rng, count)
    return alarms


class HealthExplorer(widgets.VBox):  # type: ignore[misc]  # ipywidgets is untyped
    """Sliders for the check settings: detection window bound vs false alarms on a flaky node.

    Faster detection (short interval, small fall) means a flaky but healthy node is thrown out more often.
    The numbers come from :meth:`HealthSettings.detection_window_bound`,
    :meth:`HealthSettings.recovery_window_bound` and :func:`simulate_false_alarms` (seeded with ``seed``, over
    ``hours`` of virtual time).
    """

    def __init__(
        self,
        *,
        interval: float = 0.5,
        timeout: float = 0.3,
        rise: int = 2,
        fall: int = 3,
        probe_failure_probability: float = 0.05,
        hours: float = 1.0,
        seed: int = 0,
    ) -> None:
        if not hours > 0:
            raise ValueError(f"hours must be > 0, got {hours!r}")
        style = {"description_width": "150px"}
        wide = widgets.Layout(width="440px")
        self.hours = hours
        self.seed = seed
        self.interval = widgets.FloatSlider(
            interval, min=0.1, max=5.0, step=0.1, description="interval (s)", style=style, layout=wide
        )
        self.timeout = widgets.FloatSlider(
            timeout, min=0.05, max=2.0, step=0.05, description="timeout (s)", style=style, layout=wide
        )
        self.rise = widgets.IntSlider(rise, min=1, max=10, description="rise", style=style, layout=wide)
        self.fall = widgets.IntSlider(fall, min=1, max=10, description="fall", style=style, layout=wide)
        self.flakiness = widgets.FloatSlider(
            probe_failure_probability,
            min=0.0,
            max=0.5,
            step=0.01,
            description="probe fails (chance)",
            style=style,
            layout=wide,
        )
        self.summary = widgets.HTML()
        self.plot = widgets.Output()
        # An hour of probes takes a few milliseconds to simulate, the ten falls of the plot a few tenths of a
        # second: remember them, so a slider moved back and forth answers at once.
        self._alarms: dict[tuple[HealthSettings, float], float] = {}
        for slider in (self.interval, self.timeout, self.rise, self.fall, self.flakiness):
            slider.continuous_update = False
            slider.observe(lambda _change: self.update(), names="value")
        super().__init__([self.interval, self.timeout, self.rise, self.fall, self.flakiness, self.summary, self.plot])
        self.add_class("spofkit-health-explorer")
        self.update()

    def settings(self, fall: int | None = None) -> HealthSettings:
        """The settings the sliders show (with another ``fall``, if given)."""
        return HealthSettings(
            interval=float(self.interval.value),
            timeout=float(self.timeout.value),
            rise=int(self.rise.value),
            fall=int(self.fall.value if fall is None else fall),
        )

    def false_alarms_per_hour(self, fall: int | None = None) -> float:
        """How often a healthy node failing the chance of probes the slider shows is marked DOWN, per hour."""
        key = (self.settings(fall), float(self.flakiness.value))
        if key not in self._alarms:
            alarms = simulate_false_alarms(*key, self.hours * 3600, random.Random(self.seed))
            self._alarms[key] = alarms / self.hours
        return self._alarms[key]

    def update(self) -> None:
        """Recompute the numbers and the plot from the sliders."""
        settings = self.settings()
        alarms = self.false_alarms_per_hour()
        self.summary.value = (
            f"detection window bound: <b>{settings.detection_window_bound():.2f} s</b> — "
            f"recovery bound: <b>{settings.recovery_window_bound():.2f} s</b> — "
            f"false alarms on a healthy node that fails {float(self.flakiness.value):.0%} of probes: "
            f"<b>{alarms:.1f} per hour</b>"
        )
        self.plot.outputs = (figure_output(self.figure()),)

    def figure(self) -> Any:
        """Detection window bound and false alarms per hour, for fall = 1..10 at the current settings."""
        from matplotlib.figure import Figure

        falls = list(range(1, 11))
        bounds = [self.settings(f).detection_window_bound() for f in falls]
        alarms = [self.false_alarms_per_hour(f) for f in falls]
        figure = Figure(figsize=(8, 3))
        left = figure.subplots()
        left.plot(falls, bounds, "o-", color="tab:blue", label="detection window bound (s)")
        left.set_xlabel("fall (failed probes in a row to mark DOWN)")
        left.set_ylabel("detection window (s)", color="tab:blue")
        right = left.twinx()
        right.plot(falls, alarms, "s--", color="tab:red", label="false alarms / hour")
        right.set_ylabel("false alarms per hour", color="tab:red")
        left.axvline(int(self.fall.value), color="grey", linestyle=":")
        left.set_title("faster detection or fewer false alarms: pick one")
        with contextlib.suppress(ValueError):
            figure.tight_layout()
        return figure
