"""The ``?`` screen: every key, what it does, and what to look for when you press it."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.widgets.key_bar import display_key
from tui.widgets.palette import CYAN, DIM, GREEN, GREY, MAGENTA, RED, WHITE, YELLOW


class HelpScreen(ModalScreen[None]):
    """Lists the app's bindings (keys, description, explanation from each binding's ``tooltip``)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "close", "close", show=False),
    ]

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style=f"bold {CYAN}", no_wrap=True)
        table.add_column(style=f"bold {WHITE}", no_wrap=True)
        table.add_column(style=WHITE)
        # One row per binding, or per group of bindings (1-9 select); keys of a row listed together.
        keys_of: dict[str, list[str]] = {}
        explanation_of: dict[str, str] = {}
        for binding in self.app.BINDINGS:
            if not isinstance(binding, Binding):
                continue
            title = binding.group.description if binding.group else binding.description
            keys = [display_key(self.app, binding.with_key(key)) for key in binding.key.split(",")]
            keys_of.setdefault(title, []).extend(keys)
            explanation_of.setdefault(title, binding.tooltip)
        for title, keys in keys_of.items():
            shown = f"{keys[0]}-{keys[-1]}" if len(keys) > 3 else " ".join(keys)
            table.add_row(shown, title, explanation_of[title])
        intro = Text.assemble(
            ("Fault keys act on the selected instance", f"bold {WHITE}"),
            (" (heavy border; 1-9, arrows or a click).\n", DIM),
            ("On the lanes: ", DIM),
            ("● served  ", f"bold {GREEN}"),
            ("◆ served after a retry  ", f"bold {YELLOW}"),
            ("■ failed  ", f"bold {RED}"),
            ("✗ an attempt failed here", f"bold {RED}"),
            ("\nStates: ", DIM),
            ("● UP  ", f"bold {GREEN}"),
            ("◑ FALLING n/fall  ", f"bold {YELLOW}"),
            ("✖ DOWN  ", f"bold {RED}"),
            ("◐ RISING n/rise  ", f"bold {CYAN}"),
            ("⊘ EJECTED  ", f"bold {MAGENTA}"),
            ("◌ DRAINING", f"bold {GREY}"),
        )
        with VerticalScroll(id="help-body"):
            yield Static(intro, id="help-intro")
            yield Static(table, id="help-table")
            yield Static(Text("esc / ? / q: close this screen", style=DIM), id="help-close")

    def on_mount(self) -> None:
        body = self.query_one("#help-body", VerticalScroll)
        body.border_title = "spofkit keys"
        body.focus()  # so the arrow keys scroll this screen, not the selection behind it

    def action_close(self) -> None:
        self.dismiss(None)
