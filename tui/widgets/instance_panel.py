"""One instance's panel: its health as the balancer sees it, its fault, and what it is doing.

The border's colour is the instance's state (green up, red down, yellow falling, cyan rising, magenta
ejected, grey draining); the title says it in words, with the health checker's count while a transition is in
progress (``FALLING 2/3``: two failed checks in a row, the third one marks it down).
"""

from __future__ import annotations

from rich.text import Text
from textual.events import Click
from textual.widget import Widget

from spofkit.status import STATES, UP, InstanceStatus
from tui.messages import InstanceSelected
from tui.model import InstanceFigures
from tui.widgets.palette import CYAN, DIM, GREEN, RED, WHITE, YELLOW, state_label, state_look
from tui.widgets.sparkline import sparkline


class InstancePanel(Widget):
    """Shows one :class:`~spofkit.status.InstanceStatus` plus the figures the model computed for it.

    Its CSS classes carry the row's facts: ``state-<state>`` (one of :data:`spofkit.status.STATES`) colours the
    border, ``backup`` marks a backup member (the row's ``backup`` flag, which the title says in words too).
    """

    def __init__(self, name: str, *, id: str | None = None) -> None:
        super().__init__(id=id, classes=f"instance-panel state-{UP}")
        self.instance_name = name
        self.number = 0
        self.state = UP
        self._shown: tuple[InstanceStatus, InstanceFigures, int, int] | None = None

    def show(
        self,
        number: int,
        status: InstanceStatus,
        figures: InstanceFigures,
        served: int,
        failed: int,
    ) -> None:
        self.number = number
        self.state = status.state
        for state in STATES:
            self.set_class(state == status.state, f"state-{state}")
        self.set_class(status.backup, "backup")
        glyph, _ = state_look(status.state)
        label = state_label(status.state, status.health_successes, status.rise, status.health_failures, status.fall)
        key = f"{number} " if number <= 9 else ""
        self.border_title = f"{key}{status.name} {glyph} {label}" + (" · backup" if status.backup else "")
        # The fault sits in the bottom border, in red: the first thing to look for on a failing panel.
        fault = status.fault.upper() if status.fault else ""
        stopped = "" if status.running else "not running"
        self.border_subtitle = " · ".join(part for part in (fault, stopped) if part)
        self._shown = (status, figures, served, failed)
        self.refresh()

    @property
    def served_shown(self) -> int:
        """The "served" number on the panel (since the last counter reset)."""
        return self._shown[2] if self._shown else 0

    def render(self) -> Text:
        # Built here, not in show(): only now is the panel's width known for sure.
        if self._shown is None:
            return Text("…", style=DIM)
        status, figures, served, failed = self._shown
        width = max(10, self.content_size.width)
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append("served ", DIM)
        text.append(f"{served:<7,}", WHITE)
        text.append(f"{figures.attempts_per_second:.0f}/s", CYAN)
        text.append("\n")
        text.append("in-flight ", DIM)
        text.append(f"{status.in_flight}", WHITE)
        if status.concurrency is not None:  # an instance with capacity: its workers and its queue, as it counts them
            full = status.busy >= status.concurrency
            text.append("  busy ", DIM)
            text.append(f"{status.busy}/{status.concurrency}", YELLOW if full else WHITE)
            text.append("  queue ", DIM)
            text.append(f"{status.queued}", YELLOW if status.queued else WHITE)
        if failed:
            text.append("  failed ", DIM)
            text.append(f"{failed:,}", RED)
        text.append("\n")
        text.append("errors ", DIM)
        if figures.error_rate is None:
            text.append("–  ", DIM)
        else:
            rate_colour = RED if figures.error_rate >= 0.05 else (YELLOW if figures.error_rate > 0 else GREEN)
            text.append(f"{figures.error_rate:.0%} ", f"bold {rate_colour}")
        text.append(" share ", DIM)
        text.append("–" if figures.share is None else f"{figures.share:.0%}", CYAN)
        if status.shed:  # turned away at once: no worker free, no place in the queue (503)
            text.append("  shed ", DIM)
            text.append(f"{status.shed:,}", RED)
        text.append("\n")
        latest = next((v for v in reversed(figures.latency_series) if v > 0), None)
        latency = f" {latency_text(latest)}" if latest is not None else " –"
        line = sparkline(figures.latency_series, max(1, width - len(latency)))
        text.append(line, CYAN)
        text.append(latency, WHITE)
        return text

    def on_click(self, event: Click) -> None:
        self.post_message(InstanceSelected(self.instance_name))


def latency_text(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 1:
        return f"{seconds * 1000:.1f}ms" if seconds < 0.01 else f"{seconds * 1000:.0f}ms"
    return f"{seconds:.2f}s"
