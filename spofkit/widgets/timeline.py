"""A timeline to scrub: a run, recorded, to step through moment by moment (in the spirit of RaftScope).

A simulated run is over in a fraction of a second; what happened inside it — a queue filling up, a retry storm
feeding itself long after its trigger — is gone before anyone could look. So the run is recorded, and then
scrubbed like a video:

- :class:`RunRecorder` records a run as every view sees it: each event of the stream (``lab.events``), and, every
  ``every`` seconds of lab time, a :class:`Moment`: each instance's state and fault and what the balancer has in
  flight there (``lab.status()``) and, in a simulated lab, the instance's own gauges — workers busy, requests
  queued (``lab.instance_loads()``). It reads nothing else of the lab, and changes nothing: a recorded run is the
  same run (the same digest).
- :class:`Recording` holds what was recorded and answers questions about a moment: the instances then, the
  events around it, the next event after it.
- :class:`Timeline` is the widget: a slider over lab time (seek), buttons to step to the previous or next event
  or by a short step, a table of the instances at that moment, the events around it, and the run's plots
  (:func:`plot_recording`) with a line at that moment.

::

    with RunRecorder(lab, every=0.02) as recorder:
        report = lab.run_load_sync(rate=420, duration=10, faults=[(2.0, "b", "crash", {})])
    Timeline(recorder.recording)

**Testing without a browser.** The buttons are attributes (``timeline.buttons["next"]``...), ``button.click()``
runs what a browser click runs, and :meth:`Timeline.seek`, :meth:`Timeline.step`, :meth:`Timeline.next_event`
and :meth:`Timeline.previous_event` can be called directly; ``timeline.at`` is the moment shown.
"""

from __future__ import annotations

import bisect
import html
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol

import ipywidgets as widgets

from spofkit.events import (
    PER_REQUEST_EVENTS,
    ClientRequest,
    Event,
    EventBus,
    FaultCleared,
    FaultInjected,
    RequestCompleted,
    RequestRetried,
    SettingChanged,
)
from spofkit.status import LabStatus
from spofkit.widgets._display import FIXED, LOG_STYLE, ROW, SNUG, figure_output, set_html
from spofkit.widgets.instance_row import badge

# More per-request events than this, and the recording keeps only the notable ones (faults, verdicts...): a
# lesson's run has tens of thousands; a million would be a run to summarise, not to scrub.
MAX_REQUEST_EVENTS = 500_000
# The plots count answers and attempts in bins this long (seconds): short enough to see a storm start.
PLOT_BIN = 0.25
# How many events the log shows before and after the moment.
LOG_EVENTS = 4
CURSOR_COLOUR = "black"


class ObservableLab(Protocol):
    """What a recorder needs of a lab (a :class:`~spofkit.lab.Lab` or a :class:`~spofkit.sim.SimLab`)."""

    events: EventBus

    def status(self) -> LabStatus: ...


@dataclass(frozen=True)
class InstanceMoment:
    """One instance at one moment.

    ``state``, ``fault`` and ``in_flight`` are the serving balancer's view (``lab.status()``); ``busy``,
    ``queued`` and ``workers`` are the instance's own gauges (None when the lab has none: a live lab today).
    """

    name: str
    state: str
    fault: str | None
    in_flight: int
    busy: int | None = None
    queued: int | None = None
    workers: int | None = None


@dataclass(frozen=True)
class Moment:
    """Every instance at lab time ``at``."""

    at: float
    instances: tuple[InstanceMoment, ...]

    def instance(self, name: str) -> InstanceMoment:
        for moment in self.instances:
            if moment.name == name:
                return moment
        raise KeyError(f"no instance named {name!r} at {self.at:.3f} s; known: {[m.name for m in self.instances]}")


@dataclass
class Recording:
    """A recorded run: its ``events`` (in order) and its ``moments`` (snapshots, in order), from ``start`` to
    ``end`` (lab seconds). ``truncated`` says per-request events stopped being kept (see
    :data:`MAX_REQUEST_EVENTS`); the notable ones are always kept."""

    every: float
    start: float = 0.0
    end: float = 0.0
    events: list[Event] = field(default_factory=list)
    moments: list[Moment] = field(default_factory=list)
    truncated: bool = False
    # The events a log shows and the step buttons stop at: all but the per-request ones (requests, retries,
    # probes), in order.
    notable: list[Event] = field(default_factory=list)

    @property
    def instance_names(self) -> list[str]:
        """Every instance seen in the run, in the order first seen."""
        names: dict[str, None] = {}
        for moment in self.moments:
            for instance in moment.instances:
                names.setdefault(instance.name, None)
        return list(names)

    @property
    def has_gauges(self) -> bool:
        """Were the instances' own gauges (busy, queued) recorded? (A simulated lab has them.)"""
        return any(instance.queued is not None for moment in self.moments for instance in moment.instances)

    def moment_at(self, at: float) -> Moment:
        """The instances as the last snapshot at or before ``at`` saw them (the first one, before it)."""
        if not self.moments:
            raise ValueError("the recording has no snapshots: record a run first")
        index = bisect.bisect_right(self.moments, at + 1e-9, key=lambda moment: moment.at) - 1
        return self.moments[max(index, 0)]

    def next_event(self, at: float) -> Event | None:
        """The first notable event after ``at`` (None: there is none)."""
        index = bisect.bisect_right(self.notable, at + 1e-9, key=lambda event: event.at)
        return self.notable[index] if index < len(self.notable) else None

    def previous_event(self, at: float) -> Event | None:
        """The last notable event before ``at`` (None: there is none)."""
        index = bisect.bisect_left(self.notable, at - 1e-9, key=lambda event: event.at)
        return self.notable[index - 1] if index > 0 else None

    def events_around(self, at: float, count: int = LOG_EVENTS) -> tuple[list[Event], list[Event]]:
        """The ``count`` notable events up to ``at`` (included), and the ``count`` after it."""
        notable = self.notable
        split = bisect.bisect_right(notable, at + 1e-9, key=lambda event: event.at)
        return notable[max(0, split - count) : split], notable[split : split + count]

    def requests_between(self, since: float, until: float) -> dict[str, int]:
        """What the requests did in (``since``, ``until``]: ``answered`` and ``failed`` client requests (by the
        time their answer came), ``attempts`` the balancer made for the requests it finished then, and its
        ``retries``."""
        counts = {"answered": 0, "failed": 0, "attempts": 0, "retries": 0}
        for event in self.events:
            if not since < event.at <= until:
                continue
            if isinstance(event, ClientRequest):
                counts["answered"] += 1
                counts["failed"] += not event.ok
            elif isinstance(event, RequestCompleted):
                counts["attempts"] += event.attempts
            elif isinstance(event, RequestRetried):
                counts["retries"] += 1
        return counts

    def series(self, gauge: str) -> tuple[list[float], dict[str, list[float]]]:
        """One gauge (``in_flight``, ``busy`` or ``queued``) of every instance over time: (times, by name).

        An instance not there at a moment (added later, removed) has NaN there; so has a gauge not recorded."""
        if gauge not in ("in_flight", "busy", "queued"):
            raise ValueError(f"gauge must be 'in_flight', 'busy' or 'queued', got {gauge!r}")
        times = [moment.at for moment in self.moments]
        values: dict[str, list[float]] = {name: [] for name in self.instance_names}
        for moment in self.moments:
            present = {instance.name: getattr(instance, gauge) for instance in moment.instances}
            for name, column in values.items():
                value = present.get(name)
                column.append(float("nan") if value is None else float(value))
        return times, values


class RunRecorder:
    """Record a run of ``lab``: its events, and a :class:`Moment` every ``every`` seconds of lab time.

    A snapshot is taken at the first event at or after each tick (events come many times a second under load;
    nothing changes between them), after every notable event (a fault, a verdict: the moment at its time shows
    what it did), at the start, and at :meth:`stop`. Use it as a context manager around the
    run, or call :meth:`start` and :meth:`stop`; the result is :attr:`recording`.
    """

    def __init__(self, lab: ObservableLab, *, every: float = 0.02, max_request_events: int = MAX_REQUEST_EVENTS):
        if isinstance(every, bool) or not isinstance(every, (int, float)) or not every > 0:
            raise ValueError(f"every must be a number of seconds > 0, got {every!r}")
        if isinstance(max_request_events, bool) or not isinstance(max_request_events, int) or max_request_events < 0:
            raise ValueError(f"max_request_events must be a whole number >= 0, got {max_request_events!r}")
        self.lab = lab
        self.every = float(every)
        self.max_request_events = max_request_events
        self.recording = Recording(self.every)
        self._request_events = 0
        self._next_snapshot = 0.0
        self._unsubscribe: Any = None
        # A simulated lab reports its instances' own gauges; a live one (today) does not.
        self._loads = getattr(lab, "instance_loads", None)

    def start(self) -> RunRecorder:
        if self._unsubscribe is not None:
            raise RuntimeError("this recorder is already recording")
        now = self.lab.events.now()
        self.recording.start = self.recording.end = now
        self._snapshot(now)
        self._unsubscribe = self.lab.events.subscribe(self._on_event)
        return self

    def stop(self) -> Recording:
        """Stop recording (a last snapshot now); returns the recording."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
            now = self.lab.events.now()
            self.recording.end = max(self.recording.end, now)
            self._snapshot(now)
        return self.recording

    def __enter__(self) -> RunRecorder:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def _on_event(self, event: Event) -> None:
        recording = self.recording
        if isinstance(event, PER_REQUEST_EVENTS):
            if self._request_events >= self.max_request_events:
                recording.truncated = True
            else:
                self._request_events += 1
                recording.events.append(event)
        else:
            recording.events.append(event)
            recording.notable.append(event)
        recording.end = max(recording.end, event.at)
        # A notable event takes a moment of its own too (the one at its time shows what it did: an ejection at
        # the moment of the crash, say); the per-request ones only when a tick is due.
        if event.at >= self._next_snapshot or not isinstance(event, PER_REQUEST_EVENTS):
            self._snapshot(event.at)

    def _snapshot(self, at: float) -> None:
        status = self.lab.status()
        loads = {load.name: load for load in self._loads()} if self._loads is not None else {}
        rows = []
        for row in status.instances:
            load = loads.get(row.name)
            rows.append(
                InstanceMoment(
                    name=row.name,
                    state=row.state,
                    fault=row.fault,
                    in_flight=row.in_flight,
                    busy=load.busy if load else None,
                    queued=load.queued if load else None,
                    workers=load.workers if load else None,
                )
            )
        moments = self.recording.moments
        if moments and moments[-1].at == at:
            moments[-1] = Moment(at, tuple(rows))  # the later look at the same moment is the truer one
        else:
            moments.append(Moment(at, tuple(rows)))
        # The next tick after this one (not this time + every: the ticks stay on the grid).
        self._next_snapshot = max(self._next_snapshot, (int(at / self.every) + 1) * self.every)


# --- the plots ------------------------------------------------------------------------------------------


def _binned(events: Iterable[Event], start: float, end: float) -> tuple[list[float], dict[str, list[float]]]:
    """Per second, in bins of PLOT_BIN: ok and failed answers (when the answer came), and the attempts the
    balancer made (when it made them: a request's first when it arrived, each retry when it was sent)."""
    bins = max(1, int((end - start) / PLOT_BIN + 0.999999))
    counts = {"ok": [0.0] * bins, "failed": [0.0] * bins, "attempts": [0.0] * bins}

    def add(series: str, at: float) -> None:
        counts[series][min(bins - 1, max(0, int((at - start) / PLOT_BIN)))] += 1 / PLOT_BIN

    for event in events:
        if isinstance(event, ClientRequest):
            add("ok" if event.ok else "failed", event.at)
        elif isinstance(event, RequestCompleted):
            add("attempts", event.at - event.latency)
        elif isinstance(event, RequestRetried):
            add("attempts", event.at)
    return [start + i * PLOT_BIN for i in range(bins)], counts


def plot_recording(recording: Recording, at: float | None = None, figure: Any = None) -> Any:
    """The run's plots, one above the other on one time axis; a line at ``at`` if given.

    1. what the clients got, per second: answers that were ok, that failed, and the attempts the balancer made
       for them (far above the answers: retries are multiplying the load);
    2. requests queued at each instance (if the lab recorded its instances' gauges);
    3. what the balancer has in flight at each instance.

    Faults, their repairs and changes of the load or of a setting are grey dashed lines. Returns the matplotlib
    Figure (a new one unless ``figure`` is given); its ``cursors`` attribute holds the lines at ``at``, for
    :class:`Timeline` to move.
    """
    from matplotlib.figure import Figure

    panels = 3 if recording.has_gauges else 2
    if figure is None:
        figure = Figure(figsize=(8, 1.2 + 1.6 * panels), layout="constrained")
    axes = figure.subplots(panels, 1, sharex=True)
    times, counts = _binned(recording.events, recording.start, recording.end)
    answers = axes[0]
    answers.step(times, counts["attempts"], where="post", color="tab:purple", ls="--", label="attempts")
    answers.step(times, counts["ok"], where="post", color="tab:green", label="ok")
    answers.step(times, counts["failed"], where="post", color="tab:red", label="failed")
    answers.set_ylabel("per second")
    answers.set_title("what the clients got, and the attempts made for it")
    gauges = [("queued", "queued at the instance"), ("in_flight", "in flight (the balancer's view)")]
    for ax, (gauge, title) in zip(axes[1:], gauges[-(panels - 1) :], strict=True):
        moment_times, values = recording.series(gauge)
        for name, column in values.items():
            ax.step(moment_times, column, where="post", label=name)
        ax.set_ylabel("requests")
        ax.set_title(title)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
        ax.set_ylim(bottom=0)
    causes = [
        event.at for event in recording.notable if isinstance(event, (FaultInjected, FaultCleared, SettingChanged))
    ]
    for number, at_cause in enumerate(causes):
        for ax in axes:
            label = "a fault or a change" if number == 0 and ax is answers else None
            ax.axvline(at_cause, color="grey", ls="--", lw=1, label=label)
    answers.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    axes[-1].set_xlabel("lab time (s)")
    axes[-1].set_xlim(recording.start, max(recording.end, recording.start + PLOT_BIN))
    figure.cursors = [ax.axvline(recording.start if at is None else at, color=CURSOR_COLOUR, lw=1.5) for ax in axes]
    for cursor in figure.cursors:
        cursor.set_visible(at is not None)
    return figure


# --- the widget --------------------------------------------------------------------------------------------


def _gauge_bar(value: int | None, full: int, colour: str) -> str:
    """``value`` as a number and a small bar (``full`` fills it)."""
    if value is None:
        return "<span style='color:#9e9e9e'>–</span>"
    width = 0 if full <= 0 else round(48 * min(1.0, value / full))
    return (
        f"<span style='display:inline-block;width:2.5em;text-align:right'>{value}</span> "
        f"<span style='display:inline-block;vertical-align:middle;width:48px;height:8px;background:#eeeeee'>"
        f"<span style='display:block;width:{width}px;height:8px;background:{colour}'></span></span>"
    )


class Timeline(widgets.VBox):  # type: ignore[misc]  # ipywidgets is untyped
    """Scrub through a :class:`Recording`: seek with the slider, step with the buttons, read the moment.

    ``at`` is the first moment shown (the start of the run by default); ``step`` the seconds the ``− step`` and
    ``+ step`` buttons move; ``title`` a line above it all.
    """

    def __init__(self, recording: Recording, *, at: float | None = None, step: float = 0.1, title: str = "") -> None:
        if not isinstance(recording, Recording):
            raise TypeError(f"Timeline shows a Recording (RunRecorder(...).recording), got {recording!r}")
        if not recording.moments or recording.end <= recording.start:
            raise ValueError("the recording is empty: record a run with RunRecorder first")
        if isinstance(step, bool) or not isinstance(step, (int, float)) or not step > 0:
            raise ValueError(f"step must be a number of seconds > 0, got {step!r}")
        self.recording = recording
        self.step_seconds = float(step)
        self.at = recording.start
        self.slider = widgets.FloatSlider(
            value=recording.start,
            min=recording.start,
            max=recording.end,
            step=0.001,
            readout_format=".3f",
            description="lab time (s)",
            continuous_update=False,
            style={"description_width": "initial"},
            layout=widgets.Layout(width="360px", min_width="260px", flex="1 1 auto"),
        )
        self.buttons = {
            "previous": widgets.Button(description="◀ previous event", tooltip="go to the event before this moment"),
            "back": widgets.Button(description=f"− {step:g} s", tooltip=f"{step:g} s earlier"),
            "forward": widgets.Button(description=f"+ {step:g} s", tooltip=f"{step:g} s later"),
            "next": widgets.Button(description="next event ▶", tooltip="go to the next event after this moment"),
        }
        for button in self.buttons.values():
            button.layout = widgets.Layout(**SNUG)
        self.buttons["previous"].on_click(lambda _button: self.previous_event())
        self.buttons["back"].on_click(lambda _button: self.step(-self.step_seconds))
        self.buttons["forward"].on_click(lambda _button: self.step(self.step_seconds))
        self.buttons["next"].on_click(lambda _button: self.next_event())
        self.slider.observe(self._slid, names="value")
        self.heading = widgets.HTML(f"<b>{html.escape(title)}</b>" if title else "")
        self.moment_line = widgets.HTML()
        self.table = widgets.HTML()
        self.event_log = widgets.HTML()
        self.plot = widgets.Output()
        self._figure: Any = None
        stepping = widgets.HBox(
            [self.buttons["previous"], self.buttons["back"], self.buttons["forward"], self.buttons["next"]],
            layout=widgets.Layout(**ROW, **FIXED),
        )
        controls = widgets.HBox([self.slider, stepping], layout=widgets.Layout(**ROW))
        super().__init__([self.heading, controls, self.moment_line, self.table, self.event_log, self.plot])
        self.add_class("spofkit-timeline")
        self.seek(recording.start if at is None else at)

    # --- moving in time ------------------------------------------------------------------------------

    def seek(self, at: float) -> None:
        """Show the moment ``at`` (kept within the run)."""
        if isinstance(at, bool) or not isinstance(at, (int, float)):
            raise ValueError(f"at must be a lab time in seconds, got {at!r}")
        recording = self.recording
        self.at = min(max(float(at), recording.start), recording.end)
        self._syncing = True
        try:
            self.slider.value = self.at
        finally:
            self._syncing = False
        self.update()

    def step(self, seconds: float) -> None:
        """Move ``seconds`` later (earlier if negative)."""
        self.seek(self.at + seconds)

    def next_event(self) -> Event | None:
        """Go to the next notable event after this moment; returns it (None, and stay, if there is none)."""
        event = self.recording.next_event(self.at)
        if event is not None:
            self.seek(event.at)
        return event

    def previous_event(self) -> Event | None:
        """Go to the notable event before this moment; returns it (None, and stay, if there is none)."""
        event = self.recording.previous_event(self.at)
        if event is not None:
            self.seek(event.at)
        return event

    _syncing = False

    def _slid(self, change: dict[str, Any]) -> None:
        # The browser rounds to the slider's step: a value within half a step of ours is ours, not a new seek.
        if not self._syncing and abs(change["new"] - self.at) > self.slider.step / 2:
            self.seek(change["new"])

    # --- what is shown -----------------------------------------------------------------------------------

    def update(self) -> None:
        """Redraw the moment: its line, the instances' table, the events around it, the cursor on the plots."""
        recording, at = self.recording, self.at
        moment = recording.moment_at(at)
        recent = recording.requests_between(at - PLOT_BIN, at)
        set_html(
            self.moment_line,
            f"<b>{at:.3f} s</b> — in the {PLOT_BIN * 1000:.0f} ms before: {recent['answered']} answered "
            f"({recent['failed']} failed), {recent['attempts']} attempts, {recent['retries']} retries",
        )
        set_html(self.table, self._table(moment))
        set_html(self.event_log, self._log(at))
        self._draw(at)

    def _table(self, moment: Moment) -> str:
        gauges = self.recording.has_gauges
        fullest = max(
            [instance.queued or 0 for m in self.recording.moments for instance in m.instances] + [1]
        )  # the queue bars are scaled to the deepest queue of the run
        headings = ["", "state", "fault", "in flight"] + (["busy", "queued"] if gauges else [])
        rows = []
        for instance in moment.instances:
            cells = [
                f"<b>{html.escape(instance.name)}</b>",
                badge(instance.state),
                html.escape(instance.fault or "–"),
                str(instance.in_flight),
            ]
            if gauges:
                workers = instance.workers or max(instance.busy or 0, 1)
                cells.append(_gauge_bar(instance.busy, workers, "#1565c0"))
                cells.append(_gauge_bar(instance.queued, fullest, "#ef6c00"))
            rows.append("".join(f"<td style='padding:1px 8px;white-space:nowrap'>{cell}</td>" for cell in cells))
        head = "".join(f"<th style='padding:1px 8px;text-align:left;color:#616161'>{h}</th>" for h in headings)
        note = (
            "<div style='color:#616161;font-size:85%'>in flight: what the balancer waits for there; busy: its "
            "workers at work (also for attempts the balancer gave up on); queued: waiting for a worker</div>"
            if gauges
            else ""
        )
        body = "".join(f"<tr>{row}</tr>" for row in rows)
        return f"<table style='border-collapse:collapse'><tr>{head}</tr>{body}</table>{note}"

    def _log(self, at: float) -> str:
        before, after = self.recording.events_around(at)
        lines = []
        for event in before:
            lines.append(f"  {event.at:8.3f} s  {event.describe()}")
        lines.append(f"▶ {at:8.3f} s  (this moment)")
        for event in after:
            lines.append(f"  {event.at:8.3f} s  {event.describe()}")
        if self.recording.truncated:
            lines.append("(a long run: only the first per-request events were kept)")
        text = html.escape("\n".join(lines))
        return f"<pre style='{LOG_STYLE}'>{text}</pre>"

    def _draw(self, at: float) -> None:
        if self._figure is None:
            self._figure = plot_recording(self.recording, at)
            self._figure.canvas.draw()
            # Only the cursor moves from now on: keep the layout worked out once (a third of each redraw's time).
            self._figure.set_layout_engine("none")
        for cursor in self._figure.cursors:
            cursor.set_xdata([at, at])
            cursor.set_visible(True)
        self.plot.outputs = (figure_output(self._figure),)

    def figure(self) -> Any:
        """The plots as shown now (with the line at this moment): a matplotlib Figure."""
        self._draw(self.at)
        return self._figure


__all__ = [
    "InstanceMoment",
    "Moment",
    "Recording",
    "RunRecorder",
    "Timeline",
    "plot_recording",
]
