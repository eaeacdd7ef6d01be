"""The event log: what happened, in lab time, newest at the bottom.

Health transitions, faults, ejections, strategy and settings changes get a line each; retries and client
failures (there can be hundreds a second) get one summary line per second.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.widgets import RichLog

from tui.model import LogLine
from tui.widgets.palette import DIM, TONE_COLOUR, WHITE


class EventLog(RichLog):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, max_lines=500, wrap=False, markup=False, auto_scroll=True)
        self.border_title = "events (lab time)"
        self.can_focus = False

    def on_mount(self) -> None:
        # Stay on the newest line when the log gets shorter (a lane added above it), not only when a line
        # is written; otherwise the newest lines hide below the edge until the next one arrives.
        self.anchor()

    def add(self, lines: Iterable[LogLine]) -> None:
        for line in lines:
            text = Text(no_wrap=True)
            text.append(f"{line.at:7.2f}s ", DIM)
            text.append(line.text, TONE_COLOUR.get(line.tone, WHITE))
            self.write(text)
