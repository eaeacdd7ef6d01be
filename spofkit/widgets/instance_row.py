"""One instance's row in the cluster panel: its state as a coloured badge, its fault, counters, and buttons.

An instance with a capacity (a number of workers, :mod:`spofkit.capacity`) also shows how full it is, as the
instance itself counts: ``busy 3/4 · queue 2 · shed 17`` (workers busy of all, requests waiting for one, requests
turned away at once with 503 since it started). One without a limit shows nothing there.

The row only shows what :meth:`Lab.status() <spofkit.lab.Lab.status>` says about the instance (an
:class:`~spofkit.status.InstanceStatus`) and hands its button clicks to the panel, which turns them into
commands. The words for the states, and which of them get traffic, are :mod:`spofkit.status`'s.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from typing import Any

import ipywidgets as widgets

from spofkit.status import DOWN, DRAINING, EJECTED, FALLING, RISING, UP, InstanceStatus
from spofkit.widgets._display import FIGURES, FIXED, ROW, SNUG, set_html

# A badge's colour for each state: green serves, orange may stop serving, red does not, yellow may start again;
# purple and grey are out for a reason other than the health checks (ejected by real failures, draining).
STATE_COLORS = {
    UP: "#2e7d32",
    FALLING: "#ef6c00",
    DOWN: "#c62828",
    RISING: "#f9a825",
    EJECTED: "#6a1b9a",
    DRAINING: "#546e7a",
}
UNKNOWN_STATE_COLOR = "#424242"
# The row's columns: (heading, width). Fixed widths line the rows up under the headings like a table.
# With the file browser open, a 900 px wide JupyterLab leaves about 470 px for a cell's output: they fit.
COLUMNS = (
    ("", "20px"),
    ("state", "92px"),  # DRAINING
    ("fault", "92px"),  # crash (dead)
    ("health", "60px"),  # pass 0/2
    ("served", "56px"),
    ("in flight", "56px"),
    ("failed", "48px"),
)
CAPACITY_HEADING = "capacity"  # the column after COLUMNS, shown only for instances with a capacity
FULL_COLOR = "#ef6c00"  # every worker busy, or requests waiting: orange, as a state that may stop serving
SHED_COLOR = "#c62828"  # requests turned away: red, as failed ones
BUTTON_PADDING = "0 8px"  # ipywidgets' 10 px, less: a row's six buttons fit beside its figures at 1280 px
# Buttons that make an instance well again are green; the rest break it, and are red.
HEALING_ACTIONS = ("recover", "restart")


def badge(state: str) -> str:
    """The state as a coloured label, e.g. a green ``UP``."""
    color = STATE_COLORS.get(state, UNKNOWN_STATE_COLOR)
    return (
        f"<span class='spofkit-state spofkit-state-{html.escape(state)}' style='background:{color};color:white;"
        f"padding:1px 8px;border-radius:8px;font-weight:bold'>{html.escape(state.upper())}</span>"
    )


def health_count(status: InstanceStatus, checks_on: bool = True) -> str:
    """The health checks' running count: failed probes in a row towards ``fall``, or, once DOWN, passed ones
    towards ``rise``. The checker counts one or the other, never both; an EJECTED or DRAINING member may be
    either, so the counts themselves decide (passive ejection often hits a member whose checks all pass)."""
    if not checks_on:
        return "off"
    if status.health_successes or status.state == DOWN:
        return f"pass {status.health_successes}/{status.rise}"
    return f"fail {status.health_failures}/{status.fall}"


def capacity_text(status: InstanceStatus) -> str:
    """How full an instance with a capacity is, as HTML: ``busy 3/4 · queue 2 · shed 17`` (all workers busy and
    a queue in orange, requests shed in red). An instance without a limit (``concurrency`` None): ``""``."""
    if status.concurrency is None:
        return ""

    def figure(text: str, color: str | None) -> str:
        return f"<b style='color:{color}'>{text}</b>" if color else text

    busy = figure(f"{status.busy}/{status.concurrency}", FULL_COLOR if status.busy >= status.concurrency else None)
    queued = figure(str(status.queued), FULL_COLOR if status.queued else None)
    shed = figure(f"{status.shed:,}", SHED_COLOR if status.shed else None)
    return f"<span style='white-space:nowrap'>busy {busy} · queue {queued} · shed {shed}</span>"


class InstanceRow:
    """The widgets of one instance's row. ``actions`` maps each button's action to its tooltip;
    ``on_click(name, action)`` is called when one is clicked."""

    def __init__(self, name: str, actions: Mapping[str, str], on_click: Callable[[str, str], Any]) -> None:
        self.name = name
        cells = [widgets.HTML(layout=widgets.Layout(width=width, **FIXED)) for _heading, width in COLUMNS]
        self.label, self.state, self.fault, self.health, self.served, self.in_flight, self.failed = cells
        self.label.value = f"<b>{html.escape(name)}</b>"
        # As wide as its figures (they grow: shed 1,234,567); hidden until the instance has a capacity.
        self.capacity = widgets.HTML(layout=widgets.Layout(display="none", **SNUG))
        self.buttons: dict[str, widgets.Button] = {}
        for action, tooltip in actions.items():
            button = widgets.Button(
                description=action.replace("_", " "),
                tooltip=f"{action} {name}: {tooltip}",
                button_style="success" if action in HEALING_ACTIONS else "danger",
                layout=widgets.Layout(padding=BUTTON_PADDING, **SNUG),
            )
            button.add_class(f"spofkit-{action}-{name}")
            button.on_click(lambda _button, action=action: on_click(name, action))
            self.buttons[action] = button
        # The figures and the buttons are two groups: when the notebook is narrow the buttons go under the
        # figures, and the figures stay lined up under the headings.
        self.box = widgets.HBox(
            [
                widgets.HBox([*cells, self.capacity], layout=widgets.Layout(**FIGURES)),
                widgets.HBox(list(self.buttons.values()), layout=widgets.Layout(**ROW)),
            ],
            layout=widgets.Layout(**ROW),
        )
        self.box.add_class(f"spofkit-row-{name}")

    def show(self, status: InstanceStatus, *, health_checks: bool = True) -> None:
        """Show ``status``; ``health_checks`` says whether the lab's checks are on (off: no counts to show)."""
        set_html(self.state, badge(status.state))
        fault = html.escape(status.fault or "-")
        if not status.running:
            fault += " <span title='its server is not running' style='color:#c62828'>(dead)</span>"
        set_html(self.fault, fault)
        set_html(self.health, health_count(status, health_checks))
        set_html(self.served, str(status.served))
        set_html(self.in_flight, str(status.in_flight))
        set_html(self.failed, str(status.failed))
        set_html(self.capacity, capacity_text(status))
        self.capacity.layout.display = None if status.concurrency is not None else "none"
