"""The front door in the cluster panel: the balancers in front of the instances, and buttons to break them.

A lab with one balancer has a single point of failure in front of its redundant instances: the panel says so in
one line. A lab with a pair (``Lab.start(balancers=2)``) gets a row per balancer: its role (MASTER holds the
service address, BACKUP listens for the master's adverts, ACTIVE serves beside the other), its state, its
process, whether it holds the address, how many requests it took; and buttons that break it the three ways a
front door breaks — **crash** (its adverts stop: the backup takes over after the master-down interval),
**hang** (it accepts connections and never answers, yet keeps advertising: nobody takes over), **cut adverts**
(a partition: the backup hears nothing and becomes master too — split brain) — and **recover** or **restart** it.

Like the instance rows, this section only shows what :meth:`Lab.status() <spofkit.lab.Lab.status>` says (each
balancer's :class:`~spofkit.status.BalancerStatus`) and hands clicks to the panel, which sends the commands
(``BalancerFault``, ``BalancerRecover``, ``BalancerRestart``).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as widgets

from spofkit.status import BalancerStatus, LabStatus
from spofkit.widgets._display import FIGURES, FIXED, ROW, SNUG, set_html
from spofkit.widgets.instance_row import BUTTON_PADDING, HEALING_ACTIONS, UNKNOWN_STATE_COLOR

# A balancer's buttons: action -> (label, tooltip). The first three are BalancerFault kinds.
BALANCER_ACTIONS = {
    "crash": ("crash", "kill it (kill -9 in process isolation): its adverts stop, a backup takes over"),
    "hang": ("hang", "it accepts connections but never answers, and goes on advertising: nobody takes over"),
    "advert_loss": (
        "cut adverts",
        "its adverts are lost (a partition): the other hears nothing and becomes master too, a split brain",
    ),
    "recover": ("recover", "undo the fault (a crashed balancer is started again)"),
    "restart": ("restart", "a fresh balancer (a new process), configured like the other, rejoining the pair"),
}
BALANCER_FAULTS = ("crash", "hang", "advert_loss")
# A role's colour: green serves the address, grey waits to take over, red is out.
ROLE_COLORS = {
    "master": "#2e7d32",
    "active": "#00838f",
    "backup": "#546e7a",
    "single": "#424242",
    "stopped": "#c62828",
}
ROLE_MEANINGS = {
    "master": "holds the service address and serves it",
    "active": "serves the service address beside the other balancer",
    "backup": "listens for the master's adverts; takes the address when they stop",
    "single": "the only balancer: nothing takes over when it fails",
    "stopped": "not taking part in the pair",
}
STATE_COLORS = {
    "running": "#2e7d32",
    "hang": "#ef6c00",
    "advert_loss": "#ef6c00",
    "blocked": "#c62828",
    "crashed": "#c62828",
}
STATE_MEANINGS = {
    "running": "answers requests and sends its adverts",
    "hang": "accepts connections and never answers; its adverts go on",
    "advert_loss": "serves, but its adverts are lost on the way: the other hears nothing",
    "blocked": "thinks it is master, but the other holds the service address",
    "crashed": "its process is gone: no requests, no adverts",
}
# The row's columns: (heading, width), lined up under the headings like the instance rows.
BALANCER_COLUMNS = (
    ("", "36px"),
    ("role", "84px"),  # STOPPED
    ("state", "92px"),  # advert loss
    ("pid", "60px"),
    ("address", "64px"),  # holds it
    ("requests", "64px"),
)


def role_badge(role: str) -> str:
    """The role as a coloured label, e.g. a green ``MASTER``, with what it means as its tooltip."""
    color = ROLE_COLORS.get(role, UNKNOWN_STATE_COLOR)
    meaning = html.escape(ROLE_MEANINGS.get(role, role), quote=True)
    return (
        f"<span class='spofkit-role spofkit-role-{html.escape(role)}' title='{meaning}' style='background:{color};"
        f"color:white;padding:1px 8px;border-radius:8px;font-weight:bold'>{html.escape(role.upper())}</span>"
    )


def state_text(state: str) -> str:
    """The balancer's state in words (``advert loss``), coloured, with what it means as its tooltip."""
    color = STATE_COLORS.get(state, UNKNOWN_STATE_COLOR)
    meaning = html.escape(STATE_MEANINGS.get(state, state), quote=True)
    weight = "normal" if state == "running" else "bold"
    return (
        f"<span class='spofkit-balancer-state' title='{meaning}' style='color:{color};font-weight:{weight}'>"
        f"{html.escape(state.replace('_', ' '))}</span>"
    )


def service_address(url: str) -> str:
    """``http://127.0.0.1:8080`` as ``127.0.0.1:8080``: the address, as the pair's rules speak of it."""
    return url.removeprefix("http://")


def _names(statuses: Sequence[BalancerStatus]) -> str:
    return " and ".join(html.escape(status.name) for status in statuses)


def summary(status: LabStatus) -> str:
    """One line about the front door as a whole: who holds the service address, and what is wrong with that.

    For one balancer: that it is a single point of failure. For a pair: which balancer serves, or that none
    does (clients' connections are refused), or that both think they are master (split brain).
    """
    address = html.escape(service_address(status.balancer_url))
    balancers = status.balancers
    if len(balancers) == 1:
        alone = balancers[0]
        pid = f", pid {alone.pid}" if alone.pid else ""
        if alone.state == "crashed":
            return (
                f"front door: one balancer, {html.escape(alone.name)}, <b style='color:#c62828'>crashed</b>: "
                f"nothing answers on {address}"
            )
        return (
            f"front door: one balancer, {html.escape(alone.name)} ({html.escape(alone.state.replace('_', ' '))}"
            f"{pid}, {alone.requests} requests) on {address} — a single point of failure"
        )
    alive = [b for b in balancers if b.state != "crashed"]
    holders = [b for b in alive if b.address is not None]
    masters = [b for b in alive if b.role == "master"]
    if not holders:
        return f"front door: <b style='color:#c62828'>nobody holds {address}</b>: clients' connections are refused"
    if len(masters) > 1:
        return (
            f"front door: <b style='color:#c62828'>split brain</b>: {_names(masters)} both think they are "
            f"master; {_names(holders)} holds {address}"
        )
    if len(holders) > 1:
        return f"front door: {_names(holders)} both serve {address} (active-active)"
    holder = holders[0]
    line = f"front door: {html.escape(holder.name)} holds {address}"
    if holder.state == "hang":
        line += " — <b style='color:#ef6c00'>but it hangs</b>: connections are accepted, never answered"
    return line


class BalancerRow:
    """The widgets of one balancer's row; ``on_click(name, action)`` is called when a button is clicked."""

    def __init__(self, name: str, on_click: Callable[[str, str], Any]) -> None:
        self.name = name
        cells = [widgets.HTML(layout=widgets.Layout(width=width, **FIXED)) for _heading, width in BALANCER_COLUMNS]
        self.label, self.role, self.state, self.pid, self.address, self.requests = cells
        self.label.value = f"<b>{html.escape(name)}</b>"
        self.buttons: dict[str, widgets.Button] = {}
        for action, (label, tooltip) in BALANCER_ACTIONS.items():
            button = widgets.Button(
                description=label,
                tooltip=f"{label} {name}: {tooltip}",
                button_style="success" if action in HEALING_ACTIONS else "danger",
                layout=widgets.Layout(padding=BUTTON_PADDING, **SNUG),
            )
            # "balancer" in the class: an instance could be named lb1 too, and its buttons are spofkit-crash-lb1.
            button.add_class(f"spofkit-balancer-{action}-{name}")
            button.on_click(lambda _button, action=action: on_click(name, action))
            self.buttons[action] = button
        self.box = widgets.HBox(
            [
                widgets.HBox(cells, layout=widgets.Layout(**FIGURES)),
                widgets.HBox(list(self.buttons.values()), layout=widgets.Layout(**ROW)),
            ],
            layout=widgets.Layout(**ROW),
        )
        self.box.add_class(f"spofkit-balancer-row-{name}")

    def show(self, status: BalancerStatus) -> None:
        # A crashed balancer keeps the role it had in its status; it plays none now, and a dead "MASTER" beside
        # the new one would read as a split brain.
        set_html(self.role, role_badge("stopped" if status.state == "crashed" else status.role))
        set_html(self.state, state_text(status.state))
        set_html(self.pid, str(status.pid) if status.pid else "-")
        holds = status.address is not None and status.state != "crashed"
        set_html(self.address, "<b style='color:#2e7d32'>holds it</b>" if holds else "-")
        set_html(self.requests, str(status.requests))


class FrontDoorView:
    """The panel's front-door section (``box``): one line for a single balancer; for a pair, that line, a row
    per balancer, and why a balancer is in a bad state (its ``note``). Hidden while the lab has no balancer."""

    def __init__(self, on_click: Callable[[str, str], Any]) -> None:
        self._on_click = on_click
        self.summary = widgets.HTML()
        self.rows: dict[str, BalancerRow] = {}
        self.buttons: dict[tuple[str, str], widgets.Button] = {}
        headings = [
            widgets.HTML(
                f"<span style='color:#616161'>{html.escape(heading)}</span>",
                layout=widgets.Layout(width=width, **FIXED),
            )
            for heading, width in BALANCER_COLUMNS
        ]
        self.headings = widgets.HBox([widgets.HBox(headings, layout=widgets.Layout(**FIGURES))])
        self._rows_box = widgets.VBox()
        self.notes = widgets.HTML()
        self.box = widgets.VBox([self.summary, self.headings, self._rows_box, self.notes])
        self.box.add_class("spofkit-front-door")

    def row(self, name: str) -> BalancerRow:
        try:
            return self.rows[name]
        except KeyError:
            raise KeyError(f"no balancer named {name!r} in the panel; known: {sorted(self.rows)}") from None

    def show(self, status: LabStatus) -> None:
        balancers = status.balancers
        self.box.layout.display = None if balancers else "none"
        if not balancers:
            return
        set_html(self.summary, summary(status))
        pair = len(balancers) > 1
        self.headings.layout.display = None if pair else "none"
        names = [b.name for b in balancers] if pair else []  # one balancer: its line says it all
        if names != list(self.rows):
            for name in names:
                if name not in self.rows:
                    self.rows[name] = BalancerRow(name, self._on_click)
                    for action, button in self.rows[name].buttons.items():
                        self.buttons[(name, action)] = button
            for name in [name for name in self.rows if name not in names]:
                del self.rows[name]
                for key in [key for key in self.buttons if key[0] == name]:
                    del self.buttons[key]
            self._rows_box.children = [self.rows[name].box for name in names]
        for balancer in balancers if pair else ():
            self.rows[balancer.name].show(balancer)
        # A running balancer's note is history (why it was blocked once): only a state that needs it says why.
        notes = [
            f"{html.escape(b.name)}: {html.escape(b.note)}"
            for b in balancers
            if pair and b.note and b.state != "running"
        ]
        set_html(self.notes, "<br>".join(f"<span style='color:#616161'>{note}</span>" for note in notes))
        self.notes.layout.display = None if notes else "none"
