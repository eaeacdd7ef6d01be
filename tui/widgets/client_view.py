"""The clients' view: what a user of the service felt, whatever happened behind the balancer, out of sight.

This is the number the whole lab is about. An instance can crash, and if redundancy and failover work,
the availability here stays at 100%; switch retries and health checks off, and the same crash shows up here
as failed requests.
"""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from tui.model import ClientFigures
from tui.widgets.instance_panel import latency_text
from tui.widgets.palette import DIM, GREEN, RED, WHITE, YELLOW
from tui.widgets.sparkline import stacked_columns


class ClientView(Widget):
    """Availability, a success/failure sparkline and p50/p99 latency over the last seconds."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "clients"
        self.figures: ClientFigures | None = None

    def show(self, figures: ClientFigures) -> None:
        self.figures = figures
        self.border_title = "clients" if figures.source == "clients" else "balancer answers"
        self.refresh()

    def render(self) -> Text:
        # Built here, not in show(): only now is the widget's size known for sure.
        if self.figures is None:
            return Text("waiting for requests…", style=DIM)
        figures = self.figures
        width = max(16, self.content_size.width)
        height = self.content_size.height
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f"availability {figures.window}s ", DIM)
        if figures.availability is None:
            text.append("–", DIM)
        else:
            a = figures.availability
            colour = GREEN if a >= 0.999 else (YELLOW if a >= 0.99 else RED)
            text.append(f"{a:.2%}", f"bold {colour}")
        text.append("\n")
        text.append("ok ", DIM)
        text.append(f"{figures.ok_per_second:.0f}/s", f"bold {GREEN}")
        text.append("   fail ", DIM)
        text.append(f"{figures.failed_per_second:.1f}/s", f"bold {RED}" if figures.failed_per_second else DIM)
        text.append("\n")
        totals = [o + f for o, f in zip(figures.ok_series, figures.failed_series, strict=True)]
        chart_height = max(1, height - 3)
        subtitle = f"req/s, last {min(width, len(totals))}s"
        if subtitle != self.border_subtitle:  # known only now that the width is: set it after this paint
            self.call_after_refresh(setattr, self, "border_subtitle", subtitle)
        styles = {0: "", 1: GREEN, 2: f"bold {RED}", 3: f"bold {RED} on {GREEN}"}
        for row in stacked_columns(figures.failed_series, totals, width, chart_height):
            for char, part in row:
                text.append(char, styles[part])
            text.append("\n")
        text.append("p50 ", DIM)
        text.append(f"{latency_text(figures.p50):<8}", WHITE)
        text.append("p99 ", DIM)
        text.append(latency_text(figures.p99), WHITE)
        return text
