"""The footer: every key the dashboard understands, wrapped over as many lines as the width needs.

Textual's own ``Footer`` shows one line and cuts off what does not fit; on a projector in a classroom all the
keys should be in sight, so this footer wraps. It reads the app's ``BINDINGS`` (one source of truth with the
help screen); bindings sharing a ``Binding.Group`` are shown once, e.g. ``1-9 select`` or ``+- rate``. A group
that is not ``compact`` (``s slow`` and ``S too slow``) is shown as one item (``sS slow``) only when showing
its keys one by one would take another line.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import App
from textual.binding import Binding
from textual.geometry import Size
from textual.widget import Widget

from tui.widgets.palette import BLACK, CYAN, WHITE


def display_key(app: App[object], binding: Binding) -> str:
    """How the first of a binding's keys is shown: ``?`` for ``question_mark``, ``+`` for ``plus``."""
    first = binding.key.split(",")[0].strip()
    return app.get_key_display(binding.with_key(first))


def key_items(app: App[object], bindings: Sequence[Binding], *, merge_all: bool = True) -> list[tuple[str, str]]:
    """``(keys, description)`` for every binding shown in the footer, in order. Groups are merged into one
    item; with ``merge_all=False`` only the ``compact`` ones are."""
    items: list[tuple[str, str]] = []
    groups: dict[str, list[str]] = {}
    for binding in bindings:
        if not binding.show:
            continue
        key = display_key(app, binding)
        if binding.group is None or not (merge_all or binding.group.compact):
            items.append((key, binding.description))
            continue
        name = binding.group.description
        if name not in groups:
            groups[name] = []
            items.append(("", name))  # placeholder, filled below
        groups[name].append(key)
    result = []
    for keys, description in items:
        if keys == "" and description in groups:
            group_keys = groups[description]
            keys = f"{group_keys[0]}-{group_keys[-1]}" if len(group_keys) > 3 else "".join(group_keys)
        result.append((keys, description))
    return result


class KeyBar(Widget):
    DEFAULT_CSS = """
    KeyBar { height: auto; }
    """

    def __init__(self, bindings: Sequence[Binding], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._shown_bindings = list(bindings)

    def show_bindings(self, bindings: Sequence[Binding]) -> None:
        """Show these bindings from now on (a pair's front-door keys join once the lab says it has two)."""
        self._shown_bindings = list(bindings)
        self.refresh(layout=True)

    def _lines(self, width: int) -> list[Text]:
        every_key = self._wrap(key_items(self.app, self._shown_bindings, merge_all=False), width)
        merged = self._wrap(key_items(self.app, self._shown_bindings), width)
        return every_key if len(every_key) <= len(merged) else merged

    @staticmethod
    def _wrap(items: list[tuple[str, str]], width: int) -> list[Text]:
        lines: list[Text] = [Text(no_wrap=True)]
        for keys, description in items:
            piece_length = len(keys) + 2 + len(description) + 1
            if lines[-1].cell_len and lines[-1].cell_len + piece_length - 1 > width:
                lines.append(Text(no_wrap=True))
            line = lines[-1]
            line.append(f" {keys} ", f"bold {BLACK} on {CYAN}")
            line.append(f"{description} ", WHITE)
        for line in lines:
            line.rstrip()
        return lines

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self._lines(max(20, width)))

    def render(self) -> Text:
        return Text("\n").join(self._lines(max(20, self.size.width)))
