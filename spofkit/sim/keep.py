"""A subscriber that keeps the events a report reads: all but the per-request ones.

A class in a module of its own so that ``bench/compile_sim.py`` can compile it: the bus calls it for every event,
two a simulated request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spofkit.events import Event


class KeepAllBut:
    """``bus.subscribe(KeepAllBut(types, into))`` appends to ``into`` every event whose type is not in ``types``."""

    def __init__(self, types: frozenset[type], into: list[Event]) -> None:
        self.types = types  # a set of types: quicker than isinstance, for every event
        self.into = into

    def __call__(self, event: Event) -> None:
        if type(event) not in self.types:
            self.into.append(event)
