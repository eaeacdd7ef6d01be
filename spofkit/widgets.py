"""Widgets: fail a node with a click and watch the lab react, in a notebook or on a classroom projector.

Every widget here is a *view* of a :class:`~spofkit.lab.Lab`: it reads ``lab.status()`` and the event stream
(``lab.events``) and acts through the lab's public methods, never through its internals. So what a widget
shows is what the TUI and the reports show.

- :class:`ClusterPanel` — one row per instance: its state (up / falling / down / rising / ejected / draining),
  its fault, served / in-flight / failed counters, and buttons to crash, hang, slow, gray, recover or restart
  it (the faults are :data:`spofkit.faults.PRESETS`, the same the TUI's keys inject); switches for health
  checks, retries and ejection; a strategy menu; a background load slider; the last events. Counters refresh
  on a timer while the lab runs; states change the moment an event says so.
- :class:`ExperimentRunner` — sliders for rate, duration and fault time, a fault menu, a **Run** button and a
  progress bar; it runs ``lab.run_load(...)`` and shows the report and its timeline plot.
- :func:`predict` — a "predict first" prompt: the learner locks in a guess (a number or a choice) before the
  experiment, and ``prediction.compare(measured)`` afterwards says how close it was.
- :class:`HealthExplorer` — sliders for interval / timeout / rise / fall and a flaky node's probe failure
  rate: the detection window bound against the false alarms per hour, computed by the real health state
  machine (no servers needed).

**How clicks reach the lab.** ipywidgets calls button callbacks synchronously, on the kernel's asyncio loop
(the same loop a notebook's top-level ``await`` runs on). A callback therefore *schedules* the lab coroutine
(:meth:`ClusterPanel.click_fault` returns the task) and never blocks; an exception ends up in the widget's
``errors`` list and its ``output`` area, not in a lost traceback.

**Testing without a browser.** Every button is an attribute (``panel.buttons[("b", "crash")]``,
``runner.run_button``); ``button.click()`` runs the same callback a browser click does. The methods behind them
(``click_fault``, ``run``, ``guess``) can be awaited directly.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import dataclasses
import html
import io
import random
from collections import deque
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from spofkit.events import ClientRequest, Event, HealthProbe, InstanceDown, InstanceUp, RequestCompleted
from spofkit.exercises import Feedback, recovery_window_bound
from spofkit.faults import PRESETS, Preset, make_fault
from spofkit.health import HealthSettings, HealthState
from spofkit.strategies import strategy_names

if TYPE_CHECKING:
    from spofkit.lab import Lab, LabStatus
    from spofkit.report import Report

# The fault buttons a panel shows unless told otherwise: names of presets (spofkit.faults.PRESETS), whose
# parameters are the ones the TUI's keys use too.
PANEL_FAULTS = ("crash", "hang", "slow", "gray")
STATE_COLORS = {
    "up": "#2e7d32",
    "falling": "#ef6c00",
    "down": "#c62828",
    "rising": "#f9a825",
    "ejected": "#6a1b9a",
    "draining": "#546e7a",
}
# Events too frequent to log one by one: they only move counters, which the timer refreshes.
QUIET_EVENTS = (RequestCompleted, ClientRequest, HealthProbe)

# The panel's columns: (heading, width). Fixed widths line the rows up under the headings like a table.
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
# ipywidgets gives every button, checkbox and slider a fixed width and lets a row squeeze them to fit: text
# then ends in "..." and a slider's track can shrink to nothing. These layouts size them to their text instead,
# never shrink them, and let a row that is too wide for the notebook wrap onto the next line.
ROW = {"flex_flow": "row wrap", "align_items": "center"}
FIXED = {"flex": "0 0 auto"}
SNUG = {"width": "auto", **FIXED}
# A row's figures keep their columns; only in a notebook narrower than all of them do they wrap.
FIGURES = {"flex": "0 1 auto", "flex_flow": "row wrap"}
LOAD_SLIDER_MAX = 500  # req/s: plenty for three instances on a laptop
BUTTON_PADDING = "0 8px"  # ipywidgets' 10 px, less: a row's six buttons fit beside its figures at 1280 px
# A radio option that is longer than the notebook is wide wraps onto a second line. ipywidgets gives every
# option a fixed height and floats its circle after the text, so a wrapped option spills over the next one and
# its circle lands beside the next option's text: a click picks the wrong answer. No layout setting reaches
# these, so a small style sheet does, scoped to spofkit's predictions: each option grows with its text and
# keeps its circle at the start of its first line.
PREDICTION_STYLE = """<style>
.spofkit-prediction .widget-radio-box label {
  display: flex; align-items: flex-start; height: auto; min-height: var(--jp-widgets-radio-item-height);
  line-height: 1.4; padding: 2px 0; white-space: normal; overflow-wrap: anywhere;
}
.spofkit-prediction .widget-radio-box input { order: -1; flex: none; height: 1.4em; margin-top: 0; }
</style>"""


# --- running lab coroutines from callbacks -----------------------------------------------------------

# What a click returns: the task running the lab coroutine (a concurrent future if clicked from another thread).
Scheduled = asyncio.Future[Any] | concurrent.futures.Future[Any]


class _Scheduler:
    """Runs coroutines on the loop the widget was made on and reports their failures in ``output``."""

    def __init__(self, output: widgets.Output) -> None:
        self.output = output
        self.errors: list[str] = []
        try:
            self.loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self.loop = None  # made outside a loop: adopt the first loop a callback runs on

    def schedule(self, coroutine: Coroutine[Any, Any, Any], what: str) -> Scheduled:
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        loop = self.loop or running
        if loop is None:
            coroutine.close()
            raise RuntimeError("no asyncio loop is running: use the widget inside Jupyter or an asyncio program")
        self.loop = loop
        if running is loop:
            task = loop.create_task(coroutine, name=f"spofkit-widget: {what}")
            task.add_done_callback(lambda done: self._report(done, what))
            return task
        # Called from another thread (ipykernel calls widget callbacks on its loop, so only other hosts get
        # here): run the coroutine on the lab's loop, and report from there.
        return asyncio.run_coroutine_threadsafe(self._reporting(coroutine, what), loop)

    async def _reporting(self, coroutine: Coroutine[Any, Any, Any], what: str) -> Any:
        try:
            return await coroutine
        except Exception as error:
            self._record(what, error)
            raise

    def _report(self, task: asyncio.Future[Any], what: str) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._record(what, task.exception())

    def _record(self, what: str, error: BaseException | None) -> None:
        message = f"{what} failed: {type(error).__name__}: {error}"
        self.errors.append(message)
        self.output.outputs = (*self.output.outputs, _stream(message + "\n", "stderr"))


def _stream(text: str, name: str = "stdout") -> dict[str, Any]:
    return {"output_type": "stream", "name": name, "text": text}


def _html_output(markup: str, text: str = "") -> dict[str, Any]:
    return {"output_type": "display_data", "data": {"text/html": markup, "text/plain": text or markup}, "metadata": {}}


def _figure_output(figure: Any) -> dict[str, Any]:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    png = base64.b64encode(buffer.getvalue()).decode("ascii")
    return {"output_type": "display_data", "data": {"image/png": png, "text/plain": "<timeline plot>"}, "metadata": {}}


def _badge(state: str) -> str:
    color = STATE_COLORS.get(state, "#424242")
    return (
        f"<span class='spofkit-state spofkit-state-{html.escape(state)}' style='background:{color};color:white;"
        f"padding:1px 8px;border-radius:8px;font-weight:bold'>{html.escape(state.upper())}</span>"
    )


# --- the cluster panel -------------------------------------------------------------------------------


class _InstanceRow:
    """The widgets of one instance's row."""

    def __init__(self, name: str, actions: dict[str, str], on_click: Callable[[str, str], Any]) -> None:
        """``actions`` maps each button's action to its tooltip."""
        self.name = name
        cells = [widgets.HTML(layout=widgets.Layout(width=width, **FIXED)) for _heading, width in COLUMNS]
        self.label, self.state, self.fault, self.health, self.served, self.in_flight, self.failed = cells
        self.label.value = f"<b>{html.escape(name)}</b>"
        self.buttons: dict[str, widgets.Button] = {}
        for action, tooltip in actions.items():
            button = widgets.Button(
                description=action.replace("_", " "),
                tooltip=f"{action} {name}: {tooltip}",
                button_style="success" if action in ("recover", "restart") else "danger",
                layout=widgets.Layout(padding=BUTTON_PADDING, **SNUG),
            )
            button.add_class(f"spofkit-{action}-{name}")
            button.on_click(lambda _button, action=action: on_click(name, action))
            self.buttons[action] = button
        # The figures and the buttons are two groups: when the notebook is narrow the buttons go under the
        # figures, and the figures stay lined up under the headings.
        self.box = widgets.HBox(
            [
                widgets.HBox(cells, layout=widgets.Layout(**FIGURES)),
                widgets.HBox(list(self.buttons.values()), layout=widgets.Layout(**ROW)),
            ],
            layout=widgets.Layout(**ROW),
        )
        self.box.add_class(f"spofkit-row-{name}")

    def show(self, status: Any) -> None:
        _set(self.state, _badge(status.state))
        fault = html.escape(status.fault or "-")
        if not getattr(status, "running", True):
            fault += " <span title='its server is not running' style='color:#c62828'>(dead)</span>"
        _set(self.fault, fault)
        if status.state in ("falling", "up"):
            health = f"fail {status.health_failures}/{status.fall}"
        else:
            health = f"pass {status.health_successes}/{status.rise}"
        _set(self.health, health)
        _set(self.served, str(status.served))
        _set(self.in_flight, str(status.in_flight))
        _set(self.failed, str(status.failed))


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


def _set(widget: widgets.HTML, value: str) -> None:
    if widget.value != value:  # only changed values travel to the browser
        widget.value = value


class ClusterPanel(widgets.VBox):  # type: ignore[misc]  # ipywidgets is untyped
    """A live control panel for a lab: per-instance state, counters and fault buttons.

    ``faults`` picks the fault buttons: names of :data:`spofkit.faults.PRESETS` (``["crash", "too_slow"]``), or
    a dict from such a name to the parameters its button should use instead (``{"slow": {"ms": 50}}``).
    ``panel.buttons[("b", "crash")].click()`` does what a click does; ``await panel.click_fault("b", "crash")``
    does it and waits. ``refresh_interval`` is how often counters are re-read while the lab runs.
    """

    def __init__(
        self,
        lab: Lab,
        *,
        faults: Sequence[str] | Mapping[str, Mapping[str, Any]] | None = None,
        refresh_interval: float = 0.5,
        show_settings: bool = True,
        log_lines: int = 8,
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
        self._scheduler = _Scheduler(self.output)
        self.rows: dict[str, _InstanceRow] = {}
        self.buttons: dict[tuple[str, str], widgets.Button] = {}
        self.header = widgets.HTML()
        self.event_log = widgets.HTML()
        self._log_lines: deque[str] = deque(maxlen=log_lines)
        self._rows_box = widgets.VBox()
        self._syncing = False
        self.controls = self._make_controls() if show_settings else widgets.HBox()
        headings = [
            widgets.HTML(
                f"<span style='color:#616161'>{html.escape(heading)}</span>",
                layout=widgets.Layout(width=width, **FIXED),
            )
            for heading, width in COLUMNS
        ]
        self.headings = widgets.HBox([widgets.HBox(headings, layout=widgets.Layout(**FIGURES))])
        super().__init__([self.header, self.controls, self.headings, self._rows_box, self.event_log, self.output])
        self.add_class("spofkit-cluster-panel")
        self._closed = False
        self._timer: asyncio.Task[None] | None = None
        self._unsubscribe = lab.events.subscribe(self._on_event)
        self.refresh()
        self._start_timer()

    @property
    def errors(self) -> list[str]:
        """What went wrong in clicks so far (also shown in the panel)."""
        return self._scheduler.errors

    def row(self, name: str) -> _InstanceRow:
        try:
            return self.rows[name]
        except KeyError:
            raise KeyError(f"no instance named {name!r} in the panel; known: {sorted(self.rows)}") from None

    # --- acting --------------------------------------------------------------------------------------

    def click_fault(self, name: str, action: str) -> Scheduled:
        """What the button ``action`` (a fault preset's name, ``recover`` or ``restart``) of ``name`` does.

        Returns the scheduled task; ``await`` it to wait until the lab has acted.
        """
        if action not in self.actions:
            raise ValueError(f"action must be one of {list(self.actions)}, got {action!r}")
        if action == "recover":
            work = self.lab.recover(name)
        elif action == "restart":
            work = self.lab.restart(name)
        else:
            preset = self.faults[action]
            work = self.lab.inject(name, preset.kind, **preset.params)
        return self._scheduler.schedule(self._then_refresh(work), f"{action} {name}")

    async def _then_refresh(self, work: Coroutine[Any, Any, Any]) -> None:
        try:
            await work
        finally:
            self.refresh()

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
        # While _sync_controls shows a change made in code, the observers must not call the lab back.
        self.strategy.observe(
            lambda change: None if self._syncing else self.lab.set_strategy(change["new"]), names="value"
        )
        self.health_checks.observe(
            lambda change: (
                None
                if self._syncing
                else self._scheduler.schedule(
                    self._then_refresh(self.lab.set_health_checks(change["new"])), "health checks switch"
                )
            ),
            names="value",
        )
        self.retries.observe(
            lambda change: None if self._syncing else self.lab.set_retries(change["new"]), names="value"
        )
        self.ejection.observe(
            lambda change: None if self._syncing else self.lab.set_ejection(change["new"]), names="value"
        )
        self.load.observe(lambda change: self.set_load(change["new"]), names="value")
        return widgets.HBox(
            [self.strategy, self.health_checks, self.retries, self.ejection, self.load], layout=widgets.Layout(**ROW)
        )

    def set_load(self, rate: float) -> Scheduled | None:
        """Background load at ``rate`` req/s (0 stops it): what the load slider does."""
        running = self.lab.status().load_rate is not None
        if rate <= 0:
            return self._scheduler.schedule(self.lab.stop_background_load(), "stop load") if running else None
        if running:
            self.lab.set_load_rate(rate)
        else:
            self.lab.start_background_load(rate)
        return None

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
                    self.rows[name] = _InstanceRow(name, self._tooltips, self.click_fault)
                    for action, button in self.rows[name].buttons.items():
                        self.buttons[(name, action)] = button
            for name in list(self.rows):
                if name not in names:
                    del self.rows[name]
                    for key in [k for k in self.buttons if k[0] == name]:
                        del self.buttons[key]
            self._rows_box.children = [self.rows[name].box for name in names]
        for instance in status.instances:
            self.rows[instance.name].show(instance)
        _set(self.header, self._header(status))
        self._sync_controls(status)

    def _sync_controls(self, status: LabStatus) -> None:
        """Show switches flipped in code (``lab.set_retries(True)`` ...) as well as those flipped by clicks."""
        if not hasattr(self, "strategy"):  # made with show_settings=False
            return
        self._syncing = True
        try:
            if status.strategy not in self.strategy.options:
                self.strategy.options = sorted({*self.strategy.options, status.strategy})
            for widget, value in (
                (self.strategy, status.strategy),
                (self.health_checks, status.health_checks),
                (self.retries, status.retries),
                (self.ejection, status.ejection),
            ):
                if widget.value != value:
                    widget.value = value
        finally:
            self._syncing = False

    def _header(self, status: LabStatus) -> str:
        if not self.lab.instances:
            return "<b>spofkit lab</b> — stopped"
        up = sum(1 for s in status.instances if s.state in ("up", "falling"))
        load = f"{status.load_rate:g} req/s" if status.load_rate else "off"
        return (
            f"<b>spofkit lab</b> at {html.escape(status.balancer_url)} — t = {status.at:.1f} s — "
            f"{up}/{len(status.instances)} serving — strategy {html.escape(status.strategy)} — load {load}"
        )

    def _on_event(self, event: Event) -> None:
        if isinstance(event, QUIET_EVENTS) or self._closed:
            return
        self._log_lines.append(f"{event.at:7.2f}s  {html.escape(event.describe())}")
        # pre-wrap: a long line wraps in a narrow notebook instead of running off its edge.
        log = "\n".join(self._log_lines)
        _set(self.event_log, f"<pre style='margin:0;font-size:85%;white-space:pre-wrap'>{log}</pre>")
        self.refresh()
        self._start_timer()  # an instance added after a lull: keep counting

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
        while not self._closed and self.lab.instances:
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


# --- the experiment runner ---------------------------------------------------------------------------

# The runner's fault menu: the presets (the same faults, with the same parameters, as the panel's buttons and
# the TUI's keys), then reset, which has no preset and runs with its defaults (every answer cut off).
FAULT_MENU = ("none", *PRESETS, "reset")


class ExperimentRunner(widgets.VBox):  # type: ignore[misc]  # ipywidgets is untyped
    """Sliders and a Run button around ``lab.run_load``; shows the report and its timeline plot.

    After a run the faulted instance is recovered (``recover_after=True``), so the next run starts from a
    healthy lab. ``reports`` keeps every report; ``on_report`` callbacks get each new one.
    """

    def __init__(
        self,
        lab: Lab,
        *,
        rate: int = 100,
        duration: float = 5.0,
        fault: str = "crash",
        instance: str | None = None,
        fault_at: float = 1.0,
        fault_params: dict[str, dict[str, Any]] | None = None,
        max_rate: int = 500,
        max_duration: float = 20.0,
        recover_after: bool = True,
        title: str = "",
    ) -> None:
        if fault not in FAULT_MENU:
            raise ValueError(f"fault must be one of {FAULT_MENU}, got {fault!r}")
        if not 0 < duration <= max_duration:
            raise ValueError(f"duration must be in (0, {max_duration}], got {duration!r}")
        if not 0 <= fault_at <= duration:
            raise ValueError(f"fault_at must be within the run (0..{duration}), got {fault_at!r}")
        if not 1 <= rate <= max_rate:
            raise ValueError(f"rate must be 1..{max_rate} req/s, got {rate!r}")
        names = lab.instance_names
        instance = instance if instance is not None else (names[1] if len(names) > 1 else names[0])
        if instance not in names:
            raise ValueError(f"instance must be one of {names}, got {instance!r}")
        self.lab = lab
        self.title = title
        # The parameters of each menu entry: the preset's, unless ``fault_params`` gives others.
        self.fault_params: dict[str, dict[str, Any]] = {name: dict(p.params) for name, p in PRESETS.items()}
        for entry, params in (fault_params or {}).items():
            if entry not in FAULT_MENU[1:]:
                raise ValueError(f"fault_params names no fault of the menu: {entry!r}; the menu has {FAULT_MENU[1:]}")
            make_fault(_fault_kind(entry), **params)  # a wrong parameter fails here, naming it
            self.fault_params[entry] = dict(params)
        self.recover_after = recover_after
        self.reports: list[Report] = []
        self.on_report: list[Callable[[Report], None]] = []
        style = {"description_width": "110px"}
        wide = widgets.Layout(width="420px")
        self.rate = widgets.IntSlider(rate, min=1, max=max_rate, description="rate (req/s)", style=style, layout=wide)
        self.duration = widgets.FloatSlider(
            duration, min=1.0, max=max_duration, step=0.5, description="duration (s)", style=style, layout=wide
        )
        self.fault_at = widgets.FloatSlider(
            fault_at, min=0.0, max=max_duration, step=0.25, description="fault at (s)", style=style, layout=wide
        )
        menu = widgets.Layout(width="240px", **FIXED)
        self.fault = widgets.Dropdown(options=FAULT_MENU, value=fault, description="fault", style=style, layout=menu)
        self.instance = widgets.Dropdown(
            options=names, value=instance, description="instance", style=style, layout=menu
        )
        self.run_button = widgets.Button(
            description="Run", button_style="primary", icon="play", layout=widgets.Layout(**SNUG)
        )
        self.run_button.add_class("spofkit-run")
        self.progress = widgets.FloatProgress(
            value=0.0,
            min=0.0,
            max=1.0,
            description="progress",
            style=style,
            layout=widgets.Layout(width="300px", **FIXED),
        )
        self.status = widgets.HTML("ready")
        self.output = widgets.Output()
        self._scheduler = _Scheduler(self.output)
        self.run_button.on_click(lambda _button: self.click_run())
        header = [widgets.HTML(f"<b>{html.escape(title)}</b>")] if title else []
        super().__init__(
            [
                *header,
                self.rate,
                self.duration,
                widgets.HBox([self.fault, self.instance], layout=widgets.Layout(**ROW)),
                self.fault_at,
                widgets.HBox([self.run_button, self.progress, self.status], layout=widgets.Layout(**ROW)),
                self.output,
            ]
        )
        self.add_class("spofkit-experiment")

    @property
    def errors(self) -> list[str]:
        return self._scheduler.errors

    @property
    def last_report(self) -> Report | None:
        return self.reports[-1] if self.reports else None

    def click_run(self) -> Scheduled:
        """What the Run button does: schedule :meth:`run` and return its task."""
        return self._scheduler.schedule(self.run(), "run")

    def faults(self) -> list[tuple[float, str, str, dict[str, Any]]]:
        """The fault schedule the sliders describe."""
        if self.fault.value == "none":
            return []
        at = min(float(self.fault_at.value), float(self.duration.value))
        entry = str(self.fault.value)
        return [(at, str(self.instance.value), _fault_kind(entry), dict(self.fault_params.get(entry, {})))]

    async def run(self) -> Report:
        """Run one experiment with the sliders' values; show and return its report."""
        self.run_button.disabled = True
        self.progress.value = 0.0
        self.status.value = "running..."
        faults = self.faults()
        try:
            report = await self.lab.run_load(
                rate=float(self.rate.value),
                duration=float(self.duration.value),
                faults=faults,
                on_progress=self._progress,
            )
            if self.recover_after:
                for _at, name, _kind, _params in faults:
                    await self.lab.recover(name)
        except BaseException:
            self.status.value = "failed (see below)"
            raise
        finally:
            self.run_button.disabled = False
        self.progress.value = 1.0
        self.reports.append(report)
        self.status.value = f"done: availability {report.availability:.2%}, {report.failed} of {report.requests} failed"
        self._show(report)
        for callback in self.on_report:
            callback(report)
        return report

    def _progress(self, fraction: float) -> None:
        self.progress.value = max(0.0, min(1.0, fraction))

    def _show(self, report: Report) -> None:
        from matplotlib.figure import Figure  # here, so importing the widgets needs no matplotlib

        from spofkit.report import plot_timeline

        figure = Figure(figsize=(8, 3))
        plot_timeline(report, ax=figure.subplots(), title=self.title or "what the client saw")
        self.output.outputs = (_html_output(report._repr_html_(), report.to_text()), _figure_output(figure))


def _fault_kind(entry: str) -> str:
    """The fault kind a menu entry injects: a preset's kind (``too_slow`` is a ``slow``), else the entry."""
    return PRESETS[entry].kind if entry in PRESETS else entry


# --- predict first -----------------------------------------------------------------------------------


class Prediction(widgets.VBox):  # type: ignore[misc]  # ipywidgets is untyped
    """A "predict first" prompt. Lock in a guess before the experiment; ``compare`` it with the result after.

    With ``choices`` the guess is one of them; without, it is a number (in ``unit``).
    """

    def __init__(self, question: str, choices: Sequence[str] | None = None, *, unit: str = "") -> None:
        self.question = question
        self.choices = list(choices) if choices is not None else None
        self.unit = unit
        if self.choices is not None:
            if len(self.choices) < 2:
                raise ValueError(f"choices must list at least two answers, got {choices!r}")
            # As wide as the notebook (not ipywidgets' 300 px), so an answer wraps only when it has to.
            self.input: widgets.Widget = widgets.RadioButtons(
                options=self.choices, value=None, layout=widgets.Layout(width="auto", max_width="100%")
            )
        else:
            self.input = widgets.FloatText(value=0.0, description=unit or "guess")
        self.lock_button = widgets.Button(
            description="Lock in my prediction",
            button_style="info",
            layout=widgets.Layout(align_self="flex-start", **SNUG),  # as wide as its text, not the notebook
        )
        self.lock_button.add_class("spofkit-predict")
        self.lock_button.on_click(lambda _button: self.lock())
        self.status = widgets.HTML("<i>Make a guess, then lock it in before running the experiment.</i>")
        self.value: str | float | None = None
        style_sheet = widgets.HTML(PREDICTION_STYLE, layout=widgets.Layout(display="none"))
        super().__init__(
            [
                style_sheet,
                widgets.HTML(f"<b>Predict first:</b> {html.escape(question)}"),
                self.input,
                self.lock_button,
                self.status,
            ]
        )
        self.add_class("spofkit-prediction")

    def lock(self) -> None:
        """Record what the input shows as the prediction."""
        value = self.input.value
        if value is None:
            self.status.value = "<i>Pick an answer first.</i>"
            return
        self.value = value if self.choices is not None else float(value)
        self.input.disabled = True
        self.lock_button.disabled = True
        self.status.value = f"Locked in: <b>{html.escape(self._show(self.value))}</b>. Now run the experiment."

    def guess(self, value: str | float) -> None:
        """Enter ``value`` and lock it in (what a learner does with the mouse)."""
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"guess must be one of {self.choices}, got {value!r}")
        self.input.value = value
        self.lock()

    def compare(self, measured: str | float | None, *, tolerance: float = 0.25) -> Feedback:
        """How the locked-in guess compares with ``measured`` (a number within ``tolerance``, relative).

        ``measured=None`` (the experiment did not produce the number, e.g. a fault never detected) says so.
        """
        if measured is None:
            given = "no prediction locked in" if self.value is None else self._show(self.value)
            return Feedback(
                False, "nothing was measured", given, "the experiment did not produce this number; run it again"
            )
        expected = self._show(measured)
        if self.value is None:
            return Feedback(
                False,
                expected,
                "no prediction locked in",
                "next time commit to a guess first: a surprise is what makes a result stick",
            )
        given = self._show(self.value)
        if self.choices is not None:
            ok = self.value == measured
            return Feedback(ok, expected, given, "" if ok else "look at the plot: where do the red bars come from?")
        number = float(measured)
        ok = abs(float(self.value) - number) <= tolerance * max(abs(number), 1e-9)
        if ok:
            return Feedback(True, expected, given, note=f"within {tolerance:.0%} of the measurement")
        direction = "high" if float(self.value) > number else "low"
        return Feedback(False, expected, given, f"your guess was {direction}; which step of the reasoning was off?")

    def _show(self, value: str | float) -> str:
        if isinstance(value, str):
            return value
        return f"{value:.4g} {self.unit}".rstrip()


def predict(question: str, choices: Sequence[str] | None = None, *, unit: str = "") -> Prediction:
    """A predict-first prompt: ``p = predict("What share of requests fail?", unit="%")`` then later
    ``p.compare(measured)``."""
    return Prediction(question, choices, unit=unit)


# --- progress and plots for notebook cells ----------------------------------------------------------


class ProgressBar(widgets.FloatProgress):  # type: ignore[misc]  # ipywidgets is untyped
    """A progress bar that is also the ``on_progress`` callback: ``await lab.run_load(..., on_progress=bar)``."""

    def __call__(self, fraction: float) -> None:
        self.value = max(0.0, min(1.0, fraction))
        self.bar_style = "success" if self.value >= 1.0 else ""


def progress_bar(description: str = "running") -> ProgressBar:
    """Show a progress bar in the notebook and return it, to hand to ``run_load(on_progress=...)``."""
    from IPython.display import display

    # "initial": the label is as wide as its text ("with health checks"), not cut at ipywidgets' 80 px.
    bar = ProgressBar(
        value=0.0,
        min=0.0,
        max=1.0,
        description=description,
        style={"description_width": "initial"},
        layout=widgets.Layout(width="420px", max_width="100%"),
    )
    display(bar)  # type: ignore[no-untyped-call]
    return bar


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


# --- exploring health check settings -----------------------------------------------------------------


def simulate_false_alarms(
    settings: HealthSettings, probe_failure_probability: float, duration: float, rng: random.Random
) -> int:
    """How often a healthy-but-flaky instance is wrongly marked DOWN in ``duration`` seconds.

    Each probe fails on its own with ``probe_failure_probability`` (a lost packet, a GC pause); the real
    :class:`HealthState` decides. Probes come every ``interval`` while up, ``fastinter`` while a count runs,
    ``downinter`` while down, as in the checker. Pure: the randomness comes from ``rng``.
    """
    if not 0 <= probe_failure_probability <= 1:
        raise ValueError(f"probe_failure_probability must be in [0, 1], got {probe_failure_probability!r}")
    if not duration > 0:
        raise ValueError(f"duration must be > 0 seconds, got {duration!r}")
    state = HealthState(settings.rise, settings.fall)
    now, alarms = 0.0, 0
    while now < duration:
        if state.record(rng.random() >= probe_failure_probability) == "down":
            alarms += 1
        now += state.next_interval(settings)
    return alarms


class HealthExplorer(widgets.VBox):  # type: ignore[misc]  # ipywidgets is untyped
    """Sliders for the check settings: detection window bound vs false alarms on a flaky node.

    Faster detection (short interval, small fall) means a flaky but healthy node is thrown out more often.
    The numbers come from :meth:`HealthSettings.detection_window_bound` and :func:`simulate_false_alarms`.
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
        for slider in (self.interval, self.timeout, self.rise, self.fall, self.flakiness):
            slider.continuous_update = False
            slider.observe(lambda _change: self.update(), names="value")
        super().__init__([self.interval, self.timeout, self.rise, self.fall, self.flakiness, self.summary, self.plot])
        self.add_class("spofkit-health-explorer")
        self.update()

    def settings(self, fall: int | None = None) -> HealthSettings:
        return HealthSettings(
            interval=float(self.interval.value),
            timeout=float(self.timeout.value),
            rise=int(self.rise.value),
            fall=int(self.fall.value if fall is None else fall),
        )

    def false_alarms_per_hour(self, fall: int | None = None) -> float:
        duration = self.hours * 3600
        alarms = simulate_false_alarms(
            self.settings(fall), float(self.flakiness.value), duration, random.Random(self.seed)
        )
        return alarms / self.hours

    def update(self) -> None:
        """Recompute the numbers and the plot from the sliders."""
        settings = self.settings()
        alarms = self.false_alarms_per_hour()
        self.summary.value = (
            f"detection window bound: <b>{settings.detection_window_bound():.2f} s</b> — "
            f"recovery bound: <b>{recovery_window_bound(settings):.2f} s</b> — "
            f"false alarms on a healthy node that fails {float(self.flakiness.value):.0%} of probes: "
            f"<b>{alarms:.1f} per hour</b>"
        )
        self.plot.outputs = (_figure_output(self.figure()),)

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


__all__ = [
    "ClusterPanel",
    "ExperimentRunner",
    "HealthExplorer",
    "Prediction",
    "ProgressBar",
    "plot_instance_states",
    "predict",
    "progress_bar",
    "simulate_false_alarms",
]
