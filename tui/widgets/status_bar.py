"""The top line: which strategy, which protections are on, how much load, what time it is in the lab."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from spofkit.status import LabStatus
from tui.widgets.palette import BLACK, CYAN, DIM, GREEN, RED, WHITE, YELLOW


class StatusBar(Widget):
    """One line. Not a ``Static``: its ``update`` lays out the whole screen again, four times a second."""

    plain = ""  # the text shown, without colours (for tests and screen readers)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._message: tuple[str, str] | None = (" spofkit", YELLOW)
        self._shown: tuple[LabStatus, float, str] | None = None

    def show_message(self, message: str, colour: str = YELLOW) -> None:
        self._message = (f" spofkit  {message}", colour)
        self.refresh()

    def show(self, status: LabStatus, now: float, description: str) -> None:
        self._message = None
        self._shown = (status, now, description)
        self.refresh()

    def render(self) -> Text:
        if self._message is not None or self._shown is None:
            message, colour = self._message or (" spofkit", YELLOW)
            text = Text(message, style=f"bold {colour}", no_wrap=True, overflow="ellipsis")
        else:
            text = self._status_line(*self._shown)
        self.plain = text.plain
        return text

    def _status_line(self, status: LabStatus, now: float, description: str) -> Text:
        # Narrow terminals lose the labels and the description first; the switches and the time stay.
        wide = self.size.width >= 100
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(" spofkit ", f"bold {BLACK} on {CYAN}")
        text.append("  strategy " if wide else " ", DIM)
        text.append(status.strategy, f"bold {WHITE}")
        switches = (("retries", status.retries), ("checks", status.health_checks), ("eject", status.ejection))
        for label, on in switches:
            text.append(f"  {label} ", DIM)
            text.append(" ON " if on else " OFF ", f"bold {BLACK} on {GREEN if on else RED}")
        text.append("  load " if wide else "  ", DIM)
        if status.load_rate is None:
            text.append("none", YELLOW)
        elif status.load_paused:
            text.append(f"PAUSED ({status.load_rate:g}/s)", f"bold {YELLOW}")
        else:
            text.append(f"{status.load_rate:g} req/s" if wide else f"{status.load_rate:g}/s", f"bold {WHITE}")
        text.append(f"  t={now:.1f}s", WHITE)
        if wide:
            text.append(f"  {description}", DIM)
        return text
