"""The cluster panel: fail a node with a click and watch the lab react, in a notebook or on a projector.

From the top, as a request travels: the lab's switches (the strategy, health checks, retries, ejection, a
background load slider); the front door (:mod:`~spofkit.widgets.front_door`: one line for a single balancer, a
row per balancer of a pair with its role and buttons to crash, hang or cut the adverts of it); one row per
instance (:mod:`~spofkit.widgets.instance_row`: its state, fault and counters, how full it is when it has a
capacity, and buttons to crash, hang, slow, gray, recover or restart it); the deploy buttons
(:mod:`~spofkit.widgets.deploys`: a rolling restart, the naive restart-all) with the running deploy's steps;
the last events, in the words every view uses (``event.describe()``).

The panel is a *view that sends commands*. It reads ``lab.status()`` and the event stream ``lab.events``, and
every control it offers becomes one :mod:`command <spofkit.commands>` handed to ``lab.apply``: the **crash**
button of ``b`` is ``InjectFault("b", "crash")``, the retries checkbox is ``ChangeSettings(retries=...)``, the
load slider is ``SetLoad(rate=...)``, **cut adverts** of ``lb1`` is ``BalancerFault("lb1", "advert_loss")``,
**rolling restart** is ``Deploy(batch=1)``. The TUI's keys and the admin API send the same commands, so the lab
cannot tell (and need not care) who pressed what. A command the lab refuses (an instance removed a moment
before the click) is shown in the panel with the lab's reason.

Counters refresh on a timer while the lab runs; states change the moment an event says so.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import html
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from spofkit.commands import (
    BalancerFault,
    BalancerRecover,
    BalancerRestart,
    ChangeSettings,
    Command,
    CommandError,
    InjectFault,
    Recover,
    Restart,
    SetLoad,
    SetStrategy,
)
from spofkit.events import PER_REQUEST_EVENTS, DeployStep, Event
from spofkit.faults import PRESETS, Preset
from spofkit.status import LabStatus, is_serving
from spofkit.strategies import strategy_names
from spofkit.widgets._display import FIGURES, FIXED, LOG_STYLE, ROW, SNUG, set_html
from spofkit.widgets._scheduling import ClickScheduler, Scheduled
from spofkit.widgets.deploys import DEPLOYS, DeployControls
from spofkit.widgets.front_door import BALANCER_ACTIONS, BALANCER_FAULTS, BalancerRow, FrontDoorView
from spofkit.widgets.instance_row import CAPACITY_HEADING, COLUMNS, InstanceRow

if TYPE_CHECKING:
    from spofkit.lab import Lab

# The fault buttons a panel shows unless told otherwise: names of presets (spofkit.faults.PRESETS), whose
# parameters are the ones the TUI's keys use too.
PANEL_FAULTS = ("crash", "hang", "slow", "gray")
LOAD_SLIDER_MAX = 500  # req/s: plenty for three instances on a laptop
# The protections a checkbox switches on and off: each is a field of ChangeSettings (and of the lab's status).
SWITCHES = ("health_checks", "retries", "ejection")


def fault_buttons(faults: Sequence[str] | Mapping[str, Mapping[str, Any]]) -> dict[str, Preset]:
    """The presets behind a panel's fault buttons: ``faults`` names presets, or maps them to other parameters.

    Raises ``ValueError`` for a name that is not a preset, and :class:`~spofkit.faults.FaultError` (naming the
    field) for parameters the fault does not take, before any button is drawn.
    """
    if isinstance(faults, str):  # a lone "crash" would otherwise be read as the names "c", "r", "a", ...
        raise TypeError(f"faults must list preset names, e.g. [{faults!r}], got the string {faults!r}")
    overrides = dict(faults) if isinstance(faults, Mapping) else dict.fromkeys(faults)
    unknown = [name for name in overrides if name not in PRESETS]
    if unknown:
        raise ValueError(f"faults names no preset: {unknown}; the presets are {list(PRESETS)}")
    chosen = {}
    for name, params in overrides.items():
        preset = PRESETS[name] if params is None else dataclasses.replace(PRESETS[name], params=dict(params))
        preset.fault()  # check the parameters now, not at the first click
        chosen[name] = preset
    return chosen


class ClusterPanel(widgets.VBox):  # type: ignore[misc]  # ipywidgets is untyped
    """A live control panel for a lab: per-instance state, counters and fault buttons.

    ``faults`` picks the fault buttons: names of :data:`spofkit.faults.PRESETS` (``["crash", "too_slow"]``), or
    a dict from such a name to the parameters its button should use instead (``{"slow": {"ms": 50}}``).
    ``refresh_interval`` is how often counters are re-read while the lab runs. ``show_front_door`` and
    ``show_deploys`` switch the balancers' section and the deploy buttons off (both are shown by default).

    **Testing without a browser.** Every button is an attribute (``panel.buttons[("b", "crash")]``,
    ``panel.balancer_buttons[("lb1", "advert_loss")]``, ``panel.deploy_buttons["rolling"]``) and
    ``button.click()`` runs the same callback a browser click does. The methods behind the controls
    (:meth:`click_fault`, :meth:`click_balancer`, :meth:`click_deploy`, :meth:`choose_strategy`, :meth:`switch`,
    :meth:`set_load`) return the scheduled task: ``await`` it to wait until the lab has applied the command.
    """

    def __init__(
        self,
        lab: Lab,
        *,
        faults: Sequence[str] | Mapping[str, Mapping[str, Any]] | None = None,
        refresh_interval: float = 0.5,
        show_settings: bool = True,
        log_lines: int = 8,
        show_front_door: bool = True,
        show_deploys: bool = True,
    ) -> None:
        if not refresh_interval > 0:
            raise ValueError(f"refresh_interval must be > 0 seconds, got {refresh_interval!r}")
        self.lab = lab
        self.faults = fault_buttons(PANEL_FAULTS if faults is None else faults)
        self.actions = (*self.faults, "recover", "restart")
        self._tooltips = {
            **{name: preset.description for name, preset in self.faults.items()},
            "recover": "undo the fault (a crashed server is started again)",
            "restart": "stop its server and start it again on the same port",
        }
        self.refresh_interval = refresh_interval
        self.output = widgets.Output()
        self._scheduler = ClickScheduler(self.output)
        self.rows: dict[str, InstanceRow] = {}
        self.buttons: dict[tuple[str, str], widgets.Button] = {}
        self.header = widgets.HTML()
        self.event_log = widgets.HTML()
        self._log_lines: deque[str] = deque(maxlen=log_lines)
        self._rows_box = widgets.VBox()
        self._syncing = False
        self._pair = False  # the lab has a pair of balancers: the log says whose view an event is
        # Controls whose command has not been applied yet: showing the lab's (older) value would undo the click.
        self._pending: Counter[str] = Counter()
        self.controls = self._make_controls() if show_settings else widgets.HBox()
        headings = [self._heading(heading, widgets.Layout(width=width, **FIXED)) for heading, width in COLUMNS]
        # Over the rows' capacity cells, shown while some instance has a capacity (the cells are as wide as
        # their text, so the heading only needs to start where they do).
        self.capacity_heading = self._heading(CAPACITY_HEADING, widgets.Layout(display="none", **SNUG))
        self.headings = widgets.HBox(
            [widgets.HBox([*headings, self.capacity_heading], layout=widgets.Layout(**FIGURES))]
        )
        self.front_door = FrontDoorView(self.click_balancer)
        self.deploys = DeployControls(self.click_deploy)
        self.front_door.box.layout.display = None if show_front_door else "none"
        self._show_front_door = show_front_door
        self.deploys.box.layout.display = None if show_deploys else "none"
        super().__init__(
            [
                self.header,
                self.controls,
                self.front_door.box,
                self.headings,
                self._rows_box,
                self.deploys.box,
                self.event_log,
                self.output,
            ]
        )
        self.add_class("spofkit-cluster-panel")
        self._closed = False
        self._timer: asyncio.Task[None] | None = None
        self._unsubscribe = lab.events.subscribe(self._on_event)
        self.refresh()
        self._start_timer()

    @staticmethod
    def _heading(text: str, layout: widgets.Layout) -> widgets.HTML:
        return widgets.HTML(f"<span style='color:#616161'>{html.escape(text)}</span>", layout=layout)

    @property
    def errors(self) -> list[str]:
        """What went wrong in clicks so far (also shown in the panel)."""
        return self._scheduler.errors

    def row(self, name: str) -> InstanceRow:
        try:
            return self.rows[name]
        except KeyError:
            raise KeyError(f"no instance named {name!r} in the panel; known: {sorted(self.rows)}") from None

    def balancer_row(self, name: str) -> BalancerRow:
        """The row of balancer ``name`` (a lab with a pair has one per balancer; a single balancer has a line)."""
        return self.front_door.row(name)

    @property
    def balancer_buttons(self) -> dict[tuple[str, str], widgets.Button]:
        """The balancers' buttons, by (balancer, action): ``("lb1", "crash")``, ``("lb2", "advert_loss")``..."""
        return self.front_door.buttons

    @property
    def deploy_buttons(self) -> dict[str, widgets.Button]:
        """The deploy buttons: ``rolling``, ``all-at-once`` and (shown with a pair) ``balancers``."""
        return self.deploys.buttons

    # --- acting: every control sends one command ----------------------------------------------------

    def send(self, make_command: Callable[[], Command], what: str, control: str | None = None) -> Scheduled:
        """Make a command and hand it to ``lab.apply``; return the task. ``what`` names it if it is refused.

        The command is made inside the task, so that one refusing its own fields (an unknown strategy name)
        is shown in the panel like one the lab refuses (an instance removed a moment before the click).
        ``control`` names the switch or menu that sent it: the panel shows it as the learner set it until
        the lab has applied the command, then as the lab has it (the old value, if the command was refused).
        """
        if control is not None:
            self._pending[control] += 1
        try:
            return self._scheduler.schedule(self._apply(make_command, control), what)
        except RuntimeError:  # no loop to run it on: the command never started, so it is not pending
            if control is not None:
                self._pending[control] -= 1
            raise

    async def _apply(self, make_command: Callable[[], Command], control: str | None) -> dict[str, Any]:
        try:
            return await self.lab.apply(make_command())
        finally:
            if control is not None:
                self._pending[control] -= 1
            self.refresh()

    def click_fault(self, name: str, action: str) -> Scheduled:
        """What the button ``action`` (a fault preset's name, ``recover`` or ``restart``) of ``name`` does:
        ``InjectFault`` with the preset's kind and parameters, ``Recover`` or ``Restart``."""
        if action not in self.actions:
            raise ValueError(f"action must be one of {list(self.actions)}, got {action!r}")
        if action == "recover":
            return self.send(lambda: Recover(name), f"recover {name}")
        if action == "restart":
            return self.send(lambda: Restart(name), f"restart {name}")
        preset = self.faults[action]
        return self.send(lambda: InjectFault(name, preset.kind, preset.params), f"{action} {name}")

    def click_balancer(self, name: str, action: str) -> Scheduled:
        """What the button ``action`` of balancer ``name`` does: ``crash``, ``hang`` and ``advert_loss`` (the
        button **cut adverts**) are ``BalancerFault(name, action)``; ``recover`` is ``BalancerRecover(name)``
        and ``restart`` is ``BalancerRestart(name)``."""
        if action not in BALANCER_ACTIONS:
            raise ValueError(f"action must be one of {list(BALANCER_ACTIONS)}, got {action!r}")
        what = f"{BALANCER_ACTIONS[action][0]} {name}"
        if action == "recover":
            return self.send(lambda: BalancerRecover(name), what)
        if action == "restart":
            return self.send(lambda: BalancerRestart(name), what)
        assert action in BALANCER_FAULTS
        return self.send(lambda: BalancerFault(name, action), what)

    def click_deploy(self, key: str) -> Scheduled:
        """What a deploy button does: ``rolling`` sends ``Deploy(batch=1)``, ``all-at-once``
        ``Deploy(how="all-at-once")``, ``balancers`` ``Deploy(target="balancers")``. The deploy buttons are
        disabled until the lab has finished it (or refused it: a deploy is already running, HTTP 409)."""
        if key not in DEPLOYS:
            raise ValueError(f"deploy must be one of {list(DEPLOYS)}, got {key!r}")
        # Disabled at once, in the click: a double click in the browser must not send a second deploy.
        self.deploys.started(key, self.lab.status())
        try:
            return self._scheduler.schedule(self._deploy(key), DEPLOYS[key].label)
        except RuntimeError:  # no loop to run it on: nothing started
            self.deploys.finished(key, None, self.lab.status())
            raise

    async def _deploy(self, key: str) -> dict[str, Any]:
        result = None
        try:
            result = await self.lab.apply(DEPLOYS[key].command)
            return result
        finally:
            if not self._closed:
                self.deploys.finished(key, result, self.lab.status())
                self.refresh()

    def choose_strategy(self, strategy: str) -> Scheduled:
        """What picking ``strategy`` in the menu does: ``SetStrategy(strategy)``.

        The menu also lists a strategy of the learner's own once the lab uses it (set from code); a view only
        knows its name, and a command carries spofkit's strategies by name, so picking it again is refused.
        """

        def command() -> SetStrategy:
            if strategy not in strategy_names():
                raise CommandError(
                    "strategy",
                    f"{strategy!r} is a strategy of your own: the menu can only pick spofkit's by name; "
                    f"set yours again from code, e.g. await lab.apply(SetStrategy(YourStrategy()))",
                )
            return SetStrategy(strategy)

        return self.send(command, f"strategy {strategy}", control="strategy")

    def switch(self, setting: str, on: bool) -> Scheduled:
        """What a checkbox does: ``ChangeSettings`` with ``setting`` (``health_checks``, ``retries`` or
        ``ejection``) on or off."""
        if setting not in SWITCHES:
            raise ValueError(f"setting must be one of {list(SWITCHES)}, got {setting!r}")
        what = f"{setting.replace('_', ' ')} {'on' if on else 'off'}"
        return self.send(lambda: ChangeSettings(**{setting: bool(on)}), what, control=setting)

    def set_load(self, rate: float) -> Scheduled:
        """What the load slider does: ``SetLoad(rate=rate)``, background load at ``rate`` req/s (0 stops it)."""
        return self.send(lambda: SetLoad(rate=float(rate)), f"load {rate:g} req/s", control="load")

    def _make_controls(self) -> widgets.HBox:
        status = self.lab.status()
        self.strategy = widgets.Dropdown(
            options=sorted({*strategy_names(), status.strategy}),
            value=status.strategy,
            description="strategy",
            style={"description_width": "initial"},
            layout=widgets.Layout(width="236px", **FIXED),  # room for the longest, weighted_round_robin
        )
        switch = {"indent": False, "layout": widgets.Layout(margin="2px 12px 2px 2px", **SNUG)}
        self.health_checks = widgets.Checkbox(value=status.health_checks, description="health checks", **switch)
        self.retries = widgets.Checkbox(value=status.retries, description="retries", **switch)
        self.ejection = widgets.Checkbox(value=status.ejection, description="ejection", **switch)
        self.load = widgets.IntSlider(
            value=int(status.load_rate or 0),
            min=0,
            max=LOAD_SLIDER_MAX,
            step=10,
            description="load req/s",
            continuous_update=False,
            style={"description_width": "initial"},
            # About 170 px of track: 3 req/s a pixel, so a drag lands near where it is dropped.
            layout=widgets.Layout(width="300px", **FIXED),
        )
        self._when_changed(self.strategy, self.choose_strategy)
        for setting in SWITCHES:
            self._when_changed(getattr(self, setting), functools.partial(self.switch, setting))
        self._when_changed(self.load, self.set_load)
        return widgets.HBox(
            [self.strategy, self.health_checks, self.retries, self.ejection, self.load], layout=widgets.Layout(**ROW)
        )

    def _when_changed(self, control: widgets.Widget, act: Callable[[Any], Scheduled]) -> None:
        """Call ``act(new value)`` when the learner changes ``control`` (not when the panel shows the lab's)."""
        control.observe(lambda change: None if self._syncing else act(change["new"]), names="value")

    # --- showing -------------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-read ``lab.status()`` and update every row (rows come and go with the instances)."""
        if self._closed:
            return
        status = self.lab.status()
        names = [s.name for s in status.instances]
        if names != list(self.rows):
            for name in names:
                if name not in self.rows:
                    self.rows[name] = InstanceRow(name, self._tooltips, self.click_fault)
                    for action, button in self.rows[name].buttons.items():
                        self.buttons[(name, action)] = button
            # A row that goes is not closed: a click already on its way from the browser still arrives, and
            # the lab's refusal ("no instance named 'c'") is shown rather than the click silently dropped.
            for name in [name for name in self.rows if name not in names]:
                del self.rows[name]
                for key in [key for key in self.buttons if key[0] == name]:
                    del self.buttons[key]
            self._rows_box.children = [self.rows[name].box for name in names]
        for instance in status.instances:
            self.rows[instance.name].show(instance, health_checks=status.health_checks)
        with_capacity = any(instance.concurrency is not None for instance in status.instances)
        self.capacity_heading.layout.display = None if with_capacity else "none"
        set_html(self.header, self._header(status))
        self._pair = len(status.balancers) > 1 or self._pair  # a stopped lab has none: its last lines stay as they were
        if self._show_front_door:
            self.front_door.show(status)
        self.deploys.show(status)
        self._sync_controls(status)

    def _sync_controls(self, status: LabStatus) -> None:
        """Show settings changed elsewhere (a notebook cell, the TUI, the admin API) as well as by clicks."""
        if not hasattr(self, "strategy"):  # made with show_settings=False
            return
        self._syncing = True
        try:
            if status.strategy not in self.strategy.options:
                self.strategy.options = sorted({*self.strategy.options, status.strategy})
            for control, value in (
                ("strategy", status.strategy),
                ("health_checks", status.health_checks),
                ("retries", status.retries),
                ("ejection", status.ejection),
                ("load", min(int(status.load_rate or 0), LOAD_SLIDER_MAX)),
            ):
                widget = getattr(self, control)
                if not self._pending[control] and widget.value != value:
                    widget.value = value
        finally:
            self._syncing = False

    def _header(self, status: LabStatus) -> str:
        if not self.lab.instance_names:
            return "<b>spofkit lab</b> — stopped"
        serving = sum(1 for s in status.instances if is_serving(s.state))
        load = f"{status.load_rate:g} req/s" if status.load_rate else "off"
        return (
            f"<b>spofkit lab</b> at {html.escape(status.balancer_url)} — t = {status.at:.1f} s — "
            f"{serving}/{len(status.instances)} serving — strategy {html.escape(status.strategy)} — load {load}"
        )

    def _on_event(self, event: Event) -> None:
        # Per-request events come many a second: they only move counters, which the timer refreshes.
        if isinstance(event, PER_REQUEST_EVENTS) or self._closed:
            return
        if isinstance(event, DeployStep):
            self.deploys.heard(event)
        self._log_lines.append(f"{event.at:7.2f}s  {html.escape(self._log_line(event))}")
        log = "\n".join(self._log_lines)
        set_html(self.event_log, f"<pre style='{LOG_STYLE}'>{log}</pre>")
        self.refresh()
        self._start_timer()  # an instance added after a lull: keep counting

    def _log_line(self, event: Event) -> str:
        """``event.describe()``; in a pair, a balancer's event says whose it is: each has its own health checks
        and pool, so "c marked UP" comes twice, once from each."""
        line = event.describe()
        balancer = getattr(event, "balancer", None)
        if self._pair and isinstance(balancer, str) and not line.startswith(balancer):
            return f"{balancer}: {line}"
        return line

    def _start_timer(self) -> None:
        if self._closed or (self._timer is not None and not self._timer.done()):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (plain Python): refresh() by hand
        self._timer = loop.create_task(self._refresh_loop(), name="spofkit-panel-refresh")

    async def _refresh_loop(self) -> None:
        # Counters change with every request; states are pushed by events. Stop once the lab has stopped.
        while not self._closed and self.lab.instance_names:
            self.refresh()
            await asyncio.sleep(self.refresh_interval)
        self.refresh()

    def close(self) -> None:
        """Stop listening to the lab and close the widgets."""
        self._closed = True
        # A panel whose __init__ failed (bad ``faults``) is closed by ipywidgets when collected: it has neither.
        unsubscribe = getattr(self, "_unsubscribe", None)
        if unsubscribe is not None:
            unsubscribe()
        timer = getattr(self, "_timer", None)
        if timer is not None:
            timer.cancel()
        super().close()
