"""The request flow: clients → balancer → instances, drawn as lanes, with requests moving along them.

::

     clients ━━━━━━━━━━ LB ┳───────●──────●────────────●── ▶ a ● UP
                           ┣────────────●─────────────✗   ▶ b ✖ DOWN
                           ┗──────◆─────────────────◆──── ▶ c ● UP

Each mark is a real request the balancer answered (a sample of them at high rates): green when served,
yellow when served *after a retry*, red when it failed. A retried request runs down the lane of the
instance that failed it, leaves a red ``✗`` there, and hops sideways to the lane of the instance that
finally served it — the failover, made visible.

The balancer's box says who clients reach: ``LB`` for a lab with one balancer (red while it cannot answer);
for a pair, the name of the one holding the service address (``lb2`` after a takeover), ``no LB`` while nobody
holds it, ``2 MASTERS`` in split brain (see :func:`tui.widgets.front_door.door_label`).

Marks do not move by themselves: a mark's position is a pure function of the lab time ``now`` and the time
its request completed, so a frozen clock gives a still picture (the snapshot tests rely on that).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.strip import Strip
from textual.widget import Widget

from spofkit.status import DOWN, EJECTED, InstanceStatus, is_serving
from tui.model import Trip
from tui.widgets.palette import (
    DIM,
    GREY,
    MAGENTA,
    OUTCOME_LOOK,
    RED,
    WHITE,
    state_label,
    state_look,
    style,
)

LANE_SECONDS = 0.6  # how long a mark takes to run the length of a lane, whatever the terminal's width
SCAR_SECONDS = 0.6  # how long a "✗" stays where an attempt failed
MAX_TRIPS = 400  # marks alive at once, at most (the model already thins them out)
CLIENT_LABEL = " clients "
BALANCER_LABEL = " LB "

Cell = tuple[int, int]  # (row, column)


@dataclass(frozen=True)
class Lane:
    """One instance's lane: its name and health as the last status snapshot said."""

    name: str
    state: str
    label: str  # "UP", "RISING 1/2", ...
    backup: bool = False


@dataclass(frozen=True)
class Layout:
    """Where things are for a given width and lane list (recomputed only when either changes)."""

    width: int
    rows: int
    client_start: int
    label_width: int  # the balancer's box, just before the trunk
    trunk: int  # the column where the balancer fans out to the lanes
    lane_end: int  # last column of a lane (marks stop here)
    tail: int  # first column of the "▶ name state" label

    @property
    def lane_length(self) -> int:
        return max(1, self.lane_end - self.trunk)


def make_layout(width: int, rows: int, tail_width: int, label_width: int = len(BALANCER_LABEL)) -> Layout:
    client_start = len(CLIENT_LABEL)
    client_length = max(3, width // 9)
    trunk = client_start + client_length + label_width
    tail = max(trunk + 6, width - tail_width)
    return Layout(width, max(1, rows), client_start, label_width, trunk, tail - 3, tail)


def trip_path(trip: Trip, layout: Layout, row_of: dict[str, int]) -> tuple[list[Cell], list[int]]:
    """The cells a mark visits, in order, and the indexes where an attempt failed (a "✗" goes there)."""
    path: list[Cell] = [(0, c) for c in range(layout.client_start, layout.trunk - layout.label_width)]
    rows = [row_of[name] for name in trip.lanes if name in row_of]
    failures: list[int] = []
    if not rows:  # refused at the balancer: the mark dies at the fan-out point
        path.append((0, layout.trunk))
        if trip.outcome == "failed":
            failures.append(len(path) - 1)
        return path, failures
    path.extend((r, layout.trunk) for r in range(0, rows[0] + 1))
    path.extend((rows[0], c) for c in range(layout.trunk + 1, layout.lane_end))
    for previous, row in itertools.pairwise(rows):
        # The attempt on `previous` failed: mark it, then hop sideways to the next lane.
        failures.append(len(path) - 1)
        hop = layout.lane_end - 1
        step = 1 if row > previous else -1
        path.extend((r, hop) for r in range(previous + step, row + step, step))
        path.append((row, layout.lane_end))
    if trip.outcome != "failed":
        path.append((rows[-1], layout.lane_end))
    else:
        failures.append(len(path) - 1)
    return path, failures


class FlowView(Widget):
    """The lanes and the moving marks. Feed it trips (:meth:`add_trips`) and lanes (:meth:`set_lanes`)."""

    DEFAULT_CSS = """
    FlowView { height: auto; }
    """

    def __init__(self, clock: Callable[[], float], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.clock = clock
        self.lanes: list[Lane] = []
        self.selected: str | None = None
        self.door: tuple[str, str] = (BALANCER_LABEL, WHITE)  # the balancer box's text and colour
        self.frames_drawn = 0  # how many pictures were actually painted (the benchmark reads this)
        self._trips: list[tuple[Trip, list[Cell], list[int]]] = []
        self._layout: Layout | None = None
        self._rows: list[list[Segment]] = []
        self._still: list[list[tuple[str, Style]]] | None = None  # the lanes without marks, drawn once

    # --- feeding -------------------------------------------------------------------------------------

    def set_lanes(self, lanes: list[Lane], selected: str | None) -> None:
        if lanes != self.lanes or selected != self.selected:
            resized = len(lanes) != len(self.lanes)
            self.lanes, self.selected = lanes, selected
            self._layout = None  # rows moved: paths must be recomputed
            self._still = None
            self.refresh(layout=resized)

    def set_door(self, label: str, colour: str) -> None:
        """What the balancer's box says (``LB``, ``lb2``, ``no LB``...) and its colour."""
        if (label, colour) != self.door:
            self.door = (label, colour)
            self._layout = None  # its width moves the trunk: paths must be recomputed
            self._still = None
            self.refresh()

    def add_trips(self, trips: Iterable[Trip]) -> None:
        layout = self._current_layout()
        row_of = {lane.name: row for row, lane in enumerate(self.lanes)}
        for trip in trips:
            path, failures = trip_path(trip, layout, row_of)
            self._trips.append((trip, path, failures))
        if len(self._trips) > MAX_TRIPS:
            del self._trips[: len(self._trips) - MAX_TRIPS]

    @property
    def busy(self) -> bool:
        """True while any mark is still on the move (so the picture must be redrawn)."""
        return bool(self._trips)

    # --- geometry ------------------------------------------------------------------------------------

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return max(1, len(self.lanes))

    def _tail_width(self) -> int:
        name = max((len(lane.name) for lane in self.lanes), default=1)
        label = max((len(lane.label) for lane in self.lanes), default=4)
        return min(4 + name + 3 + label, 24)

    def _current_layout(self) -> Layout:
        width = max(40, self.size.width)
        layout = self._layout
        label_width = len(self.door[0])
        rows = max(1, len(self.lanes))
        if layout is None or (layout.width, layout.rows, layout.label_width) != (width, rows, label_width):
            layout = self._layout = make_layout(width, len(self.lanes), self._tail_width(), label_width)
            self._still = None
            row_of = {lane.name: row for row, lane in enumerate(self.lanes)}
            self._trips = [(t, *trip_path(t, layout, row_of)) for t, _, _ in self._trips]
        return layout

    # --- painting ------------------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        # A refresh repaints every line top to bottom: build the whole picture once, at line 0.
        if y == 0 or not self._rows:
            self._paint(self.clock())
        if y >= len(self._rows):
            return Strip.blank(self.size.width)
        return Strip(self._rows[y]).adjust_cell_length(self.size.width)

    def _paint(self, now: float) -> None:
        """Draw the lanes, then every mark where it is at lab time ``now``."""
        self.frames_drawn += 1
        layout = self._current_layout()
        if self._still is None:
            self._still = self._background(layout)
        grid = [list(row) for row in self._still]
        speed = layout.lane_length / LANE_SECONDS  # cells per second
        alive = []
        for trip, path, failures in self._trips:
            travelled = (now - trip.started) * speed
            if travelled > len(path) + SCAR_SECONDS * speed:
                continue  # long gone
            alive.append((trip, path, failures))
            glyph, colour = OUTCOME_LOOK.get(trip.outcome, ("●", WHITE))
            for index in failures:
                if index <= travelled <= index + SCAR_SECONDS * speed:
                    row, col = path[index]
                    grid[row][col] = ("✗", style(RED, bold=True))
            if 0 <= travelled < len(path):
                row, col = path[int(travelled)]
                if grid[row][col][0] != "✗":
                    grid[row][col] = (glyph, style(colour, bold=True))
        self._trips = alive
        self._rows = [_segments(row) for row in grid]

    def _background(self, layout: Layout) -> list[list[tuple[str, Style]]]:
        """The still parts: labels, the balancer's fan-out, one lane per instance and its health."""
        blank = Style()
        grid = [[(" ", blank) for _ in range(layout.width)] for _ in range(layout.rows)]
        label_style = style(WHITE, bold=True)
        for col, char in enumerate(CLIENT_LABEL):
            grid[0][col] = (char, label_style)
        wire = style(WHITE)
        label, colour = self.door
        for col in range(layout.client_start, layout.trunk - len(label)):
            grid[0][col] = ("━", wire)
        for offset, char in enumerate(label):
            grid[0][layout.trunk - len(label) + offset] = (char, style(colour, bold=True, reverse=True))
        lanes = self.lanes or [Lane("", DOWN, "no instances")]
        last = len(lanes) - 1
        for row, lane in enumerate(lanes):
            fan = "━" if last == 0 else ("┳" if row == 0 else ("┗" if row == last else "┣"))
            grid[row][layout.trunk] = (fan, wire)
            line, line_style = _lane_look(lane.state)
            for col in range(layout.trunk + 1, layout.lane_end + 1):
                grid[row][col] = (line, line_style)
            glyph, colour = state_look(lane.state)
            selected = lane.name == self.selected
            tail = [
                ("▶ ", line_style),
                (lane.name, style(colour, bold=True, reverse=selected)),
                (" ", Style()),
                (glyph + " ", style(colour, bold=True)),
                (lane.label + (" bk" if lane.backup else ""), style(colour, bold=True)),
            ]
            col = layout.tail - 2
            for text, text_style in tail:
                for char in text:
                    if col < layout.width:
                        grid[row][col] = (char, text_style)
                    col += 1
        return grid


def lanes_from_status(instances: Iterable[InstanceStatus]) -> list[Lane]:
    """One lane per status row: its state, its label (``RISING 1/2``) and its backup flag, as the row says."""
    return [
        Lane(
            row.name,
            row.state,
            state_label(row.state, row.health_successes, row.rise, row.health_failures, row.fall),
            row.backup,
        )
        for row in instances
    ]


def _lane_look(state: str) -> tuple[str, Style]:
    """A lane carrying traffic is a solid line; one that does not is dashed, in the colour of its state."""
    if is_serving(state):
        return "─", style(GREY)
    if state == EJECTED:
        return "╌", style(MAGENTA)
    if state == DOWN:
        return "╌", style(RED, dim=True)
    return "╌", style(DIM)


def _segments(row: list[tuple[str, Style]]) -> list[Segment]:
    """Merge neighbouring cells of the same style into one segment (fewer objects per frame)."""
    segments: list[Segment] = []
    text, current = "", None
    for char, cell_style in row:
        if cell_style is current or cell_style == current:
            text += char
            continue
        if text:
            segments.append(Segment(text, current))
        text, current = char, cell_style
    if text:
        segments.append(Segment(text, current))
    return segments
