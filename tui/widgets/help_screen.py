"""The ``?`` screen: every key, what it does, and what to look for when you press it.

On a small terminal (80×24) the list is longer than the screen: it scrolls (↑ ↓, PgUp PgDn, space, Home End,
the mouse wheel), and its bottom border says so while there is more below.
"""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from spofkit.status import FALLING, RISING, STATES
from tui.widgets.key_bar import display_key
from tui.widgets.palette import CYAN, DIM, GREEN, RED, WHITE, YELLOW, state_look


class HelpScreen(ModalScreen[None]):
    """Lists the app's bindings (keys, description, explanation from each binding's ``tooltip``)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "close", "close", show=False),
        Binding("space", "page_down", "page down", show=False),
    ]

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style=f"bold {CYAN}", no_wrap=True)
        table.add_column(style=f"bold {WHITE}", no_wrap=True)
        table.add_column(style=WHITE)
        # One row per binding, or per group of bindings that do one thing (1-9 select, + - rate); keys of a
        # row listed together. Bindings of a group that differ in what they do (s slow, S too slow) get a row each.
        keys_of: dict[str, list[str]] = {}
        explanation_of: dict[str, str] = {}
        tooltips_of_group: dict[str, set[str]] = {}
        for binding in self.app.BINDINGS:
            if isinstance(binding, Binding) and binding.group:
                tooltips_of_group.setdefault(binding.group.description, set()).add(binding.tooltip)
        for binding in self.app.BINDINGS:
            if not isinstance(binding, Binding):
                continue
            one_thing = binding.group and len(tooltips_of_group[binding.group.description]) == 1
            title = binding.group.description if binding.group and one_thing else binding.description
            keys = [display_key(self.app, binding.with_key(key)) for key in binding.key.split(",")]
            keys_of.setdefault(title, []).extend(keys)
            explanation_of.setdefault(title, binding.tooltip)
        for title, keys in keys_of.items():
            shown = f"{keys[0]}-{keys[-1]}" if len(keys) > 3 else " ".join(keys)
            table.add_row(shown, title, explanation_of[title])
        # Each line fits 80 columns (the smallest terminal the app is made for), so none wraps there.
        intro = Text.assemble(
            ("Fault keys hit the selected instance", f"bold {WHITE}"),
            (" (heavy border; 1-9, arrows, click).\n", DIM),
            ("C H X U N hit the selected balancer", f"bold {WHITE}"),
            (" (its name reversed in the front door; l, click).\n", DIM),
            ("Lanes: ", DIM),
            ("● served  ", f"bold {GREEN}"),
            ("◆ served after a retry  ", f"bold {YELLOW}"),
            ("■ failed  ", f"bold {RED}"),
            ("✗ an attempt failed", f"bold {RED}"),
            ("\nStates: ", DIM),
            *state_legend(),
        )
        with VerticalScroll(id="help-body"):
            yield Static(intro, id="help-intro")
            yield Static(table, id="help-table")
            yield Static(Text("esc / ? / q: close this screen", style=DIM), id="help-close")

    def on_mount(self) -> None:
        body = self.query_one("#help-body", VerticalScroll)
        body.border_title = "spofkit keys"
        body.focus()  # so the arrow keys scroll this screen, not the selection behind it
        self.watch(body, "scroll_y", self._show_scroll_hint)
        self.watch(body, "virtual_size", self._show_scroll_hint)
        self.call_after_refresh(self._show_scroll_hint)

    def on_resize(self) -> None:
        self.call_after_refresh(self._show_scroll_hint)

    def _show_scroll_hint(self, *_: object) -> None:
        """Say in the bottom border whether more keys are below (a cut-off list looks complete otherwise)."""
        body = self.query_one("#help-body", VerticalScroll)
        if body.scroll_y < body.max_scroll_y:
            body.border_subtitle = "more below: ↓ PgDn space · esc close"
        elif body.max_scroll_y > 0:
            body.border_subtitle = "end · ↑ PgUp back · esc close"
        else:
            body.border_subtitle = "esc close"

    def action_page_down(self) -> None:
        self.query_one("#help-body", VerticalScroll).scroll_page_down()

    def action_close(self) -> None:
        self.dismiss(None)


def state_legend() -> list[tuple[str, str]]:
    """Every state of :mod:`spofkit.status`, in its order, as a panel shows it: ``● UP``, ``◑ FALLING n/fall``…"""
    counts = {FALLING: " n/fall", RISING: " n/rise"}
    legend = []
    for number, state in enumerate(STATES, start=1):
        glyph, colour = state_look(state)
        gap = " " if number < len(STATES) else ""
        legend.append((f"{glyph} {state.upper()}{counts.get(state, '')}{gap}", f"bold {colour}"))
    return legend
