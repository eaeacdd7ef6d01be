"""Plots for notebook cells that read the event stream.

:func:`plot_instance_states` draws, for each instance, when the health checker had it UP and when DOWN, from the
``InstanceUp`` / ``InstanceDown`` events a run published: the picture of a flapping node, or of detection taking
``fall`` probes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from spofkit.events import Event, InstanceDown, InstanceUp


def plot_instance_states(events: Sequence[Event], names: Sequence[str], ax: Any = None, title: str = "") -> Any:
    """When each instance was UP (high) or DOWN (low) according to the health checker's events.

    Reads ``InstanceDown`` / ``InstanceUp`` from ``events`` (e.g. ``list(lab.events.history)``); every instance
    starts UP. Returns the matplotlib Axes.
    """
    if ax is None:
        import matplotlib.pyplot as plt

        _figure, ax = plt.subplots(figsize=(8, 0.6 + 0.5 * len(names)))
    changes = [e for e in events if isinstance(e, (InstanceUp, InstanceDown))]
    end = max((e.at for e in events), default=1.0)
    for row, name in enumerate(names):
        times, levels = [0.0], [1.0]
        for event in changes:
            if event.instance == name:
                times.append(event.at)
                levels.append(1.0 if isinstance(event, InstanceUp) else 0.0)
        times.append(end)
        levels.append(levels[-1])
        base = row * 1.5
        ax.step(times, [base + level for level in levels], where="post", label=name)
        ax.text(0, base + 0.5, f"{name} ", ha="right", va="center")
    # Fixed limits: an instance that never changes state must not autoscale its label out of the axes.
    ax.set_ylim(-0.25, 1.5 * (len(names) - 1) + 1.25)
    ax.set_yticks([])
    ax.set_xlabel("lab time (s)")
    ax.set_title(title or "UP (high) / DOWN (low), as the health checker decided")
    return ax
