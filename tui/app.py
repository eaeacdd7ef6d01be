"""The dashboard app: the screen layout, the keys, and the two clocks that drive the picture.

It holds no lab logic. It reads a :class:`~tui.sources.DataSource` (events + status snapshots) and sends it
:mod:`commands <spofkit.commands>`, one per key (``c`` is ``InjectFault(selected, "crash")``, ``t`` is
``ChangeSettings(retries=...)``, ``+`` is ``SetLoad(rate=...)``; the front door's keys act on the selected
*balancer*, ``C`` is ``BalancerFault(selected, "crash")``, or deploy, ``D`` is ``Deploy(batch=1)``):

- every event is appended to an inbox as it happens (cheap: the lab may publish thousands a second);
- ``FRAME_RATE`` times a second the inbox is folded into the :class:`~tui.model.LabModel` and the lanes are
  redrawn (the animation);
- ``FIGURES_RATE`` times a second the status snapshot is read and the panels, the clients' view, the status
  bar and the log are updated (numbers that change faster than that cannot be read anyway).

Run it with :func:`run`; ``spofkit tui`` does.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from typing import Any, ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Container, Horizontal
from textual.events import Resize
from textual.reactive import reactive
from textual.theme import Theme
from textual.timer import Timer

from spofkit.commands import (
    MAX_LOAD_RATE,
    AddInstance,
    BalancerFault,
    BalancerRecover,
    BalancerRestart,
    ChangeSettings,
    Command,
    Deploy,
    InjectFault,
    Recover,
    RemoveInstance,
    Restart,
    SetLoad,
    SetStrategy,
)
from spofkit.events import Event
from spofkit.faults import PRESETS
from spofkit.status import LabStatus
from spofkit.strategies import strategy_names
from tui.messages import BalancerSelected, ControlFinished, InstanceSelected, SourceFailed, SourceReady
from tui.model import LabModel, LogLine
from tui.sources import DEFAULT_LOAD_RATE, DataSource, LabSource, RemoteSource
from tui.widgets.client_view import ClientView
from tui.widgets.event_log import EventLog
from tui.widgets.flow import FlowView, lanes_from_status
from tui.widgets.front_door import FrontDoorStrip, door_label
from tui.widgets.help_screen import HelpScreen
from tui.widgets.instance_panel import InstancePanel
from tui.widgets.key_bar import KeyBar
from tui.widgets.palette import BALANCER_CRASHED, BLACK, CYAN, DIM, GREEN, GREY, MAGENTA, PANEL, RED, WHITE, YELLOW
from tui.widgets.status_bar import StatusBar

FRAME_RATE = 25.0
FIGURES_RATE = 4.0
# Seconds a setting asked for by key is trusted over a status snapshot that does not show it yet.
SETTING_PATIENCE = 3.0
PANEL_WIDTH = 26  # a panel's smallest comfortable width; the grid puts as many side by side as fit
INBOX_LIMIT = 50_000  # if frames stall, the oldest unread events are dropped rather than memory growing

# Load steps for the +/- keys (requests per second), up to what one machine carries (commands.MAX_LOAD_RATE).
RATE_STEPS = tuple(
    step for step in (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 50.0, 100.0, 200.0, 300.0, 500.0) if step <= MAX_LOAD_RATE
)

HIGH_CONTRAST = Theme(
    name="spofkit-contrast",
    primary=CYAN,
    secondary=MAGENTA,
    accent=YELLOW,
    warning=YELLOW,
    error=RED,
    success=GREEN,
    foreground=WHITE,
    background=BLACK,
    surface=BLACK,
    panel=PANEL,
    dark=True,
    # Scrollbars that read as scrollbars: a grey thumb on a dark grey track. Textual's default here, a dark
    # teal thumb on black, is invisible on a projector except for the half-block glyphs at its ends, which
    # look like stray characters (e.g. beside the panels once they no longer fit in one row at 80x24).
    variables={
        "scrollbar": DIM,
        "scrollbar-hover": GREY,
        "scrollbar-active": CYAN,
        "scrollbar-background": PANEL,
        "scrollbar-background-hover": PANEL,
        "scrollbar-background-active": PANEL,
        "scrollbar-corner-color": PANEL,
    },
)

_SELECT = Binding.Group("select")
_SLOW = Binding.Group("slow")
_RATE = Binding.Group("rate", compact=True)


def _fault_key(key: str, preset: str, description: str, watch: str = "", group: Binding.Group | None = None) -> Binding:
    """A key that injects one of :data:`spofkit.faults.PRESETS` (its numbers live there, not here)."""
    explanation = PRESETS[preset].description + (f"; {watch}" if watch else "")
    return Binding(key, f"fault('{preset}')", description, tooltip=explanation, group=group)


# The front door's keys: they act on the selected balancer (or deploy). The footer shows them for a pair; a lab with
# one balancer keeps the footer it always had (the keys work there too, and the help lists them).
FRONT_DOOR_BINDINGS: list[Binding] = [
    Binding("l", "select_balancer", "pick LB", tooltip="select the next balancer (lb1, lb2): the target of C H X U N"),
    Binding(
        "C",
        "balancer_fault('crash')",
        "crash LB",
        tooltip="kill it (a real kill -9 in process isolation): the backup takes over",
    ),
    Binding(
        "H",
        "balancer_fault('hang')",
        "hang LB",
        tooltip="it accepts, never answers, and its adverts go on: nobody takes over",
    ),
    Binding(
        "X",
        "balancer_fault('advert_loss')",
        "split brain",
        tooltip="cut its adverts: neither hears the other, both become MASTER",
    ),
    Binding("U", "balancer_recover", "recover LB", tooltip="undo its fault; a crashed one is started again"),
    Binding(
        "N",
        "balancer_restart",
        "restart LB",
        show=False,
        tooltip="a new balancer (a new process) in its place, rejoining the pair",
    ),
    Binding(
        "D",
        "deploy('rolling')",
        "deploy",
        tooltip="rolling restart, one instance at a time: drain, restart, ready?, done",
    ),
    Binding(
        "exclamation_mark",
        "deploy('all-at-once')",
        "restart all",
        show=False,
        tooltip="the naive deploy: every instance restarted at once, nothing drained",
    ),
    Binding(
        "B",
        "deploy('balancers')",
        "upgrade LBs",
        show=False,
        tooltip="upgrade the balancers: the backup first, then the master resigns",
    ),
]
# What each front-door fault does, for the log (no event reports a balancer's fault: the lab just applies it).
BALANCER_FAULT_DONE = {
    "crash": "{name} crashed: {how}",
    "hang": "{name} hangs: it accepts and never answers, and its adverts go on",
    "advert_loss": "{name}'s adverts cut: it and its partner hear nothing from each other",
}


class SpofkitApp(App[None]):
    """The dashboard. ``source`` is what it shows and where its commands go; see :mod:`tui.sources`."""

    CSS_PATH = "app.tcss"
    TITLE = "spofkit"
    ENABLE_COMMAND_PALETTE = False

    BINDINGS: ClassVar[list[BindingType]] = [
        *(
            Binding(
                str(n),
                f"select({n})",
                "select",
                show=False,
                group=_SELECT,
                tooltip="select instance 1-9 (the number in its panel title)",
            )
            for n in range(1, 10)
        ),
        Binding("left,up", "select_by(-1)", "previous", show=False, tooltip="select the previous instance"),
        Binding("right,down", "select_by(1)", "next", show=False, tooltip="select the next instance"),
        _fault_key("c", "crash", "crash"),
        _fault_key("h", "hang", "hang"),
        _fault_key("s", "slow", "slow", group=_SLOW),
        _fault_key("S", "too_slow", "too slow", group=_SLOW),
        _fault_key("e", "error", "error"),
        _fault_key("g", "gray", "gray", "a gray failure"),
        _fault_key("f", "flap", "flap", "watch rise/fall hysteresis"),
        Binding("r", "recover", "recover", tooltip="undo the fault (a crashed instance starts again)"),
        Binding("R", "restart", "restart", show=False, tooltip="restart it (a new OS process in process isolation)"),
        Binding("a", "add", "add", tooltip="start a new instance; traffic once checks pass"),
        Binding("d", "remove", "drain", tooltip="no new requests, let in-flight finish, remove it"),
        Binding("b", "strategy", "strategy", tooltip="cycle the balancing strategy"),
        Binding("t", "retries", "retries", tooltip="retries on/off: off, failed attempts reach clients"),
        Binding(
            "k",
            "health_checks",
            "checks",
            tooltip="health checks on/off: off, only passive ejection (if on) notices a crash",
        ),
        Binding("j", "ejection", "eject", tooltip="passive ejection on/off: off, only checks remove a bad one"),
        Binding("plus,equals_sign", "rate(1)", "faster", group=_RATE, tooltip="raise (+) / lower (-) the request rate"),
        Binding("minus", "rate(-1)", "slower", group=_RATE, tooltip="raise (+) / lower (-) the request rate"),
        Binding("p", "pause", "pause", tooltip="pause / resume the load"),
        Binding("z", "reset", "reset", show=False, tooltip="zero the counters (served, rates, availability)"),
        *FRONT_DOOR_BINDINGS,
        Binding("question_mark", "help", "help", tooltip="this screen"),
        Binding("q,ctrl+c", "quit", "quit", tooltip="stop the lab and leave"),
    ]

    selected: reactive[str | None] = reactive(None)
    selected_balancer: reactive[str | None] = reactive(None)

    def __init__(
        self,
        source: DataSource,
        *,
        frame_rate: float = FRAME_RATE,
        figures_rate: float = FIGURES_RATE,
    ) -> None:
        super().__init__()
        self.source = source
        self.frame_rate = frame_rate
        self.figures_rate = figures_rate
        self.model = LabModel()
        self.lab_ready = False
        self.start_error: str | None = None
        # Settings asked for but maybe not yet in a status snapshot: (value, until when to trust it over the
        # snapshot). A key pressed twice quickly then steps twice, instead of repeating the first step.
        self._asked: dict[str, tuple[Any, float]] = {}
        self._inbox: collections.deque[Event] = collections.deque(maxlen=INBOX_LIMIT)
        self._unsubscribe: Callable[[], None] | None = None
        self._clocks: list[Timer] = []
        self._panels: dict[str, InstancePanel] = {}
        self._baseline: dict[str, tuple[int, int]] = {}  # served/failed at the last counter reset
        self._stopping = False
        self._grid_shape = (0, 0)

    # --- layout --------------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        yield FrontDoorStrip(lambda name: self.model.balancer_rate(name, self.source.now()), id="frontdoor")
        yield FlowView(self.source.now, id="flow")
        yield Container(id="instances")
        with Horizontal(id="bottom"):
            yield ClientView(id="clients")
            yield EventLog(id="log")
        yield KeyBar(self._footer_bindings(pair=False), id="keys")

    def _footer_bindings(self, *, pair: bool) -> list[Binding]:
        every = [b for b in self.BINDINGS if isinstance(b, Binding)]
        return every if pair else [b for b in every if b not in FRONT_DOOR_BINDINGS]

    def on_mount(self) -> None:
        self.register_theme(HIGH_CONTRAST)
        self.theme = HIGH_CONTRAST.name
        self.query_one(StatusBar).show_message(f"starting… ({self.source.description})")
        self.run_worker(self._start_source(), name="start-source", exit_on_error=False)

    async def _start_source(self) -> None:
        try:
            await self.source.start()
        except Exception as error:  # shown on screen: the user can read it and quit
            self.post_message(SourceFailed(str(error) or type(error).__name__))
            return
        self.post_message(SourceReady())

    def on_source_ready(self, message: SourceReady) -> None:
        status = self.source.status()
        pair = status is not None and len(status.balancers) > 1
        self.model.name_balancers = pair  # before the history arrives: its log lines then say whose view they are
        if pair:
            self.query_one(KeyBar).show_bindings(self._footer_bindings(pair=True))
        self._unsubscribe = self.source.subscribe(self._inbox.append)
        self.lab_ready = True
        self.draw_frame()  # take in what arrived on subscribing (a late joiner's history) before the welcome
        if status is not None:
            names = ", ".join(row.name for row in status.instances)
            count = len(status.instances)
            welcome = f"watching {count} instance{'s' if count != 1 else ''} ({names}), {status.strategy}; ? for keys"
            if pair:
                welcome = f"{welcome}; front door: {' and '.join(b.name for b in status.balancers)}"
            self.model.new_log.append(LogLine(status.at, welcome, "info"))
        self._clocks = [
            self.set_interval(1 / self.frame_rate, self.draw_frame, name="frame"),
            self.set_interval(1 / self.figures_rate, self.refresh_figures, name="figures"),
        ]
        self.refresh_figures()

    def on_source_failed(self, message: SourceFailed) -> None:
        # Nothing to watch: leave at once, with the reason on the terminal and a failing exit status.
        self.start_error = message.reason
        self.exit(return_code=1, message=f"spofkit tui: could not start: {message.reason}")

    # --- the two clocks ------------------------------------------------------------------------------

    def draw_frame(self) -> None:
        """Fold new events into the model; redraw the lanes if anything moves."""
        inbox, model = self._inbox, self.model
        while inbox:
            model.ingest(inbox.popleft())
        flow = self.query_one(FlowView)
        trips = model.take_trips()
        if trips:
            flow.add_trips(trips)
        if flow.busy or trips:
            flow.refresh()

    def refresh_figures(self) -> None:
        """Read a status snapshot; update everything that shows numbers."""
        status = self.source.status()
        if status is None:
            return
        now = self.source.now()
        self.draw_frame()
        self.model.summarise(now)
        self.query_one(EventLog).add(self.model.take_log())
        self.query_one(StatusBar).show(status, now, self.source.description)
        self._sync_front_door(status)
        self._sync_panels(status, now)
        self.query_one(ClientView).show(self.model.client_figures(now, history=60))

    def _sync_front_door(self, status: LabStatus) -> None:
        names = [b.name for b in status.balancers]
        if self.selected_balancer not in names:
            self.selected_balancer = names[0] if names else None
        self.query_one(FrontDoorStrip).show(status.balancers, status.balancer_url, self.selected_balancer)
        self.query_one(FlowView).set_door(*door_label(status.balancers))

    def _sync_panels(self, status: LabStatus, now: float) -> None:
        names = [row.name for row in status.instances]
        container = self.query_one("#instances", Container)
        for name in list(self._panels):
            if name not in names:
                self._panels.pop(name).remove()
                self.model.forget(name)
        for row in status.instances:
            if row.name not in self._panels:  # the lab lists new instances last: mounting at the end keeps its order
                panel = InstancePanel(row.name, id=f"panel-{row.name}")
                self._panels[row.name] = panel
                container.mount(panel)
        self._fit_grid()
        if self.selected not in names:
            self.selected = names[0] if names else None
        for number, row in enumerate(status.instances, start=1):
            served0, failed0 = self._baseline.get(row.name, (0, 0))
            self._panels[row.name].show(
                number,
                row,
                self.model.instance_figures(row.name, now),
                max(0, row.served - served0),
                max(0, row.failed - failed0),
            )
        self.query_one(FlowView).set_lanes(lanes_from_status(status.instances), self.selected)

    def panels_shown(self) -> bool:
        """True once every instance of the latest status has its panel on screen."""
        status = self.source.status()
        if status is None:
            return False
        panels = [self._panels.get(row.name) for row in status.instances]
        return all(panel is not None and panel.is_mounted and panel.number for panel in panels)

    def _fit_grid(self) -> None:
        """As many panels side by side as fit; as many rows as the screen's height allows (the rest scroll)."""
        count = max(1, len(self._panels))
        columns = max(1, min(count, self.size.width // PANEL_WIDTH))
        rows = -(-count // columns)
        # On a small screen one row of panels shows (it scrolls; the lanes still show every instance).
        visible_rows = 1 if self.size.height < 32 else (2 if self.size.height < 44 else 4)
        shape = (columns, min(rows, visible_rows) * 6)
        if shape != self._grid_shape:  # restyling forces a new layout of the whole screen: only on change
            self._grid_shape = shape
            container = self.query_one("#instances", Container)
            container.styles.grid_size_columns, container.styles.height = shape

    def on_resize(self, event: Resize) -> None:
        if self._panels:
            self._fit_grid()

    # --- selection -----------------------------------------------------------------------------------

    def _names(self) -> list[str]:
        status = self.source.status()
        return [row.name for row in status.instances] if status else []

    def watch_selected(self, name: str | None) -> None:
        for panel_name, panel in self._panels.items():
            panel.set_class(panel_name == name, "selected")
        if name in self._panels:
            self._panels[name].scroll_visible(animate=False)
        status = self.source.status()
        if status is not None:
            self.query_one(FlowView).set_lanes(lanes_from_status(status.instances), name)

    def on_instance_selected(self, message: InstanceSelected) -> None:
        self.selected = message.name

    def watch_selected_balancer(self, name: str | None) -> None:
        status = self.source.status()
        if status is not None:
            self.query_one(FrontDoorStrip).show(status.balancers, status.balancer_url, name)

    def on_balancer_selected(self, message: BalancerSelected) -> None:
        self.selected_balancer = message.name

    def action_select_balancer(self) -> None:
        status = self.source.status()
        names = [b.name for b in status.balancers] if status else []
        if len(names) < 2:
            self.notify("this lab has one balancer (spofkit tui --balancers 2 starts a pair)", severity="warning")
            return
        index = names.index(self.selected_balancer) if self.selected_balancer in names else -1
        self.selected_balancer = names[(index + 1) % len(names)]

    def action_select(self, number: int) -> None:
        names = self._names()
        if 1 <= number <= len(names):
            self.selected = names[number - 1]
        else:
            self.notify(f"there is no instance {number} (there are {len(names)})", severity="warning")

    def action_select_by(self, step: int) -> None:
        names = self._names()
        if not names:
            return
        index = names.index(self.selected) if self.selected in names else 0
        self.selected = names[(index + step) % len(names)]

    # --- controls: each key builds a command and sends it, in the background; a refusal is shown ----------

    def _send(
        self,
        what: str,
        command: Command,
        done: Callable[[dict[str, Any]], tuple[str, str]] | None = None,
    ) -> None:
        """Send ``command`` to the lab without waiting for it; ``what`` names it on screen if it fails.

        ``done(answer)`` gives the log line and its tone once it worked, for commands no event reports.
        """

        async def run() -> None:
            try:
                answer = await self.source.apply(command)
            except Exception as error:  # CommandError (the lab said no) or ControlError (it could not be asked)
                self.post_message(ControlFinished(what, str(error) or type(error).__name__))
            else:
                self.post_message(ControlFinished(what, done=done(answer) if done else None))

        self.run_worker(run(), group="controls", exit_on_error=False)

    def on_control_finished(self, message: ControlFinished) -> None:
        if message.error is not None:
            self.notify(f"{message.what}: {message.error}", severity="error", timeout=4)
            self.query_one(EventLog).add([LogLine(self.source.now(), f"{message.what} failed: {message.error}", "bad")])
        elif message.done is not None:
            self.draw_frame()  # the events the command caused come first in the log, then the line saying it is done
            text, tone = message.done
            self.model.new_log.append(LogLine(self.source.now(), text, tone))
        self.refresh_figures()

    def _target(self) -> str | None:
        if not self.lab_ready:
            self.notify("the lab is not running yet", severity="warning")
            return None
        if self.selected is None:
            self.notify("no instance selected", severity="warning")
        return self.selected

    def action_fault(self, preset_name: str) -> None:
        """Inject the fault preset ``preset_name`` (a key of :data:`spofkit.faults.PRESETS`) on the selection."""
        name = self._target()
        if name is not None:
            preset = PRESETS[preset_name]
            self._send(f"{preset.name.replace('_', ' ')} {name}", InjectFault(name, preset.kind, preset.params))

    def action_recover(self) -> None:
        name = self._target()
        if name is not None:
            self._send(f"recover {name}", Recover(name))

    def action_restart(self) -> None:
        name = self._target()
        if name is not None:
            self._send(f"restart {name}", Restart(name))

    def action_add(self) -> None:
        if self.lab_ready:
            self._send("add instance", AddInstance())

    def action_remove(self) -> None:
        name = self._target()
        if name is None:
            return
        if len(self._names()) <= 1:
            self.notify("keep at least one instance", severity="warning")
            return
        self._send(f"remove {name}", RemoveInstance(name))

    # --- the front door: the selected balancer's faults, and deploys ----------------------------------------

    def _balancer_target(self) -> str | None:
        if not self.lab_ready:
            self.notify("the lab is not running yet", severity="warning")
            return None
        status = self.source.status()
        if status is None or not status.balancers:
            self.notify("this lab does not report its balancers", severity="warning")
            return None
        return self.selected_balancer or status.balancers[0].name

    def _balancer_pid(self, name: str) -> int | None:
        status = self.source.status()
        balancer = next((b for b in status.balancers if b.name == name), None) if status else None
        return balancer.pid if balancer else None

    def action_balancer_fault(self, kind: str) -> None:
        """Break the selected balancer: ``crash``, ``hang`` or ``advert_loss`` (``BalancerFault``)."""
        name = self._balancer_target()
        if name is None:
            return
        pid = self._balancer_pid(name)
        how = f"kill -9 of pid {pid}" if pid else "its sockets closed, its connections cut"
        line = BALANCER_FAULT_DONE[kind].format(name=name, how=how)
        self._send(f"{kind.replace('_', ' ')} {name}", BalancerFault(name, kind), lambda _: (line, "bad"))

    def action_balancer_recover(self) -> None:
        name = self._balancer_target()
        if name is None:
            return
        status = self.source.status()
        crashed = status is not None and any(b.name == name and b.state == BALANCER_CRASHED for b in status.balancers)
        line = f"{name} started again" if crashed else f"{name} recovered"
        self._send(f"recover {name}", BalancerRecover(name), lambda answer: (_with_pid(line, answer), "good"))

    def action_balancer_restart(self) -> None:
        name = self._balancer_target()
        if name is not None:
            line = f"{name} restarted"
            self._send(f"restart {name}", BalancerRestart(name), lambda answer: (_with_pid(line, answer), "good"))

    def action_deploy(self, how: str) -> None:
        """``rolling`` (``Deploy(batch=1)``), ``all-at-once``, or ``balancers`` (the pair, by planned takeover)."""
        if not self.lab_ready:
            self.notify("the lab is not running yet", severity="warning")
            return
        command = Deploy(target="balancers") if how == "balancers" else Deploy(batch=1, how=how)
        what = {"rolling": "rolling restart", "all-at-once": "restart all at once", "balancers": "upgrade balancers"}
        tone = "warn" if how == "all-at-once" else "good"  # finished, but clients will have felt it
        self._send(what[how], command, lambda answer: (_deployed(what[how], answer), tone))

    def _setting(self, key: str, shown: Any) -> Any:
        """The value of setting ``key`` to step from: the last one asked for, until the status shows it."""
        asked = self._asked.get(key)
        if asked is not None and asked[0] != shown and time.monotonic() < asked[1]:
            return asked[0]
        self._asked.pop(key, None)
        return shown

    def _ask(self, key: str, value: Any) -> Any:
        self._asked[key] = (value, time.monotonic() + SETTING_PATIENCE)
        return value

    def action_strategy(self) -> None:
        status = self.source.status()
        if status is None:
            return
        names = strategy_names()
        current = self._setting("strategy", status.strategy)
        following = names[(names.index(current) + 1) % len(names)] if current in names else names[0]
        self._send(f"strategy {following}", SetStrategy(self._ask("strategy", following)))

    def _toggle(self, key: str, what: str) -> None:
        """Switch protection ``key`` (a field of :class:`~spofkit.commands.ChangeSettings`) the other way."""
        status = self.source.status()
        if status is not None:
            wanted = self._ask(key, not self._setting(key, getattr(status, key)))
            self._send(what, ChangeSettings(**{key: wanted}))

    def action_retries(self) -> None:
        self._toggle("retries", "retries")

    def action_health_checks(self) -> None:
        self._toggle("health_checks", "health checks")

    def action_ejection(self) -> None:
        self._toggle("ejection", "ejection")

    def action_rate(self, direction: int) -> None:
        status = self.source.status()
        if status is None:
            return
        # Step from the rate asked for last, not from a snapshot that may not show it yet: + + + goes
        # 30 → 50 → 100 → 200, instead of asking for 50 three times.
        current = self._setting("load_rate", status.load_rate or DEFAULT_LOAD_RATE)
        rate = self._ask("load_rate", next_rate(current, direction))
        self._send(f"rate {rate:g}/s", SetLoad(rate=rate))

    def action_pause(self) -> None:
        status = self.source.status()
        if status is not None:
            wanted = self._ask("load_paused", not self._setting("load_paused", status.load_paused))
            self._send("pause" if wanted else "resume", SetLoad(paused=wanted))

    def action_reset(self) -> None:
        status = self.source.status()
        self.model.reset()
        if status is not None:
            self._baseline = {row.name: (row.served, row.failed) for row in status.instances}
        self.model.new_log.append(LogLine(self.source.now(), "counters reset", "info"))
        self.refresh_figures()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    async def action_quit(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        self.query_one(StatusBar).show_message("stopping the lab…")
        await self.shutdown()
        self.exit()

    async def shutdown(self) -> None:
        """Stop the timers, unsubscribe, stop the source. Safe to call twice."""
        for timer in self._clocks:
            timer.stop()
        self._clocks = []
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.workers.cancel_all()
        await self.source.stop()


def _with_pid(line: str, answer: dict[str, Any]) -> str:
    """``line``, and the new process's pid if the lab's answer (a balancer's status row) has one."""
    pid = answer.get("pid")
    return f"{line} (pid {pid})" if pid else line


def _deployed(what: str, answer: dict[str, Any]) -> str:
    """The log line for a finished deploy, from the lab's answer: what was deployed, how long it took."""
    names = ", ".join(str(name) for name in answer.get("deployed", []))
    seconds = answer.get("seconds")
    took = f" in {seconds:.1f}s" if isinstance(seconds, (int, float)) else ""
    return f"{what} finished: {names or 'nothing'}{took}"


def next_rate(current: float, direction: int) -> float:
    """The next step of :data:`RATE_STEPS` above (``direction > 0``) or below ``current``."""
    if direction > 0:
        return next((step for step in RATE_STEPS if step > current + 1e-9), RATE_STEPS[-1])
    return next((step for step in reversed(RATE_STEPS) if step < current - 1e-9), RATE_STEPS[0])


def make_source(
    connect: str | None = None, *, rate: float = DEFAULT_LOAD_RATE, token: str | None = None, **lab_options: Any
) -> DataSource:
    """A :class:`RemoteSource` for ``connect`` (``token``: its admin token), else a :class:`LabSource`."""
    if connect:
        if lab_options:
            raise ValueError(f"lab options {sorted(lab_options)} cannot be used with connect={connect!r}")
        return RemoteSource(connect, start_load=rate, token=token)
    return LabSource(rate=rate, **lab_options)


def run(connect: str | None = None, *, rate: float = DEFAULT_LOAD_RATE, **lab_options: Any) -> int:
    """Open the dashboard on a new in-process lab (``lab_options`` go to ``Lab.start``) or on ``connect``.

    Whatever way the app ends (``q``, an error), the lab it started is stopped before this returns, so no
    server or child process outlives it. Returns the exit status: 0, or 1 when the lab could not be started
    or reached (the reason is printed).
    """
    source = make_source(connect, rate=rate, **lab_options)

    async def main() -> int:
        app = SpofkitApp(source)
        try:
            await app.run_async()
        finally:
            await source.stop()
        return app.return_code or 0

    return asyncio.run(main())
