"""A frozen scene: a fixed status and fixed events at a frozen lab time, the same picture on every run.

For tests and screenshots (:mod:`tui.scene` builds the README's picture with it). Nothing runs: commands change
nothing, they are recorded in :attr:`FrozenSource.commands`, so a test can check which command a key sent even
though no lab answered. Set :attr:`FrozenSource.refusal` to have every command refused with that error, to see
how the screen shows a refusal.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from spofkit.commands import Command, CommandError
from spofkit.events import Event
from spofkit.status import LabStatus
from tui.sources.base import DataSource, Subscriber, Unsubscribe


class FrozenSource(DataSource):
    """``status`` and ``events`` at lab time ``now`` (default: the status's time)."""

    def __init__(self, status: LabStatus, events: Sequence[Event] = (), now: float | None = None) -> None:
        self._status = status
        self._events = list(events)
        self._now = status.at if now is None else now
        self.commands: list[Command] = []
        self.refusal: CommandError | None = None
        self.description = "frozen scene"

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def subscribe(self, subscriber: Subscriber) -> Unsubscribe:
        for event in self._events:  # a late joiner gets the whole scene at once
            subscriber(event)
        return lambda: None

    def now(self) -> float:
        return self._now

    def status(self) -> LabStatus | None:
        return self._status

    def move_to(self, now: float, status: LabStatus | None = None) -> None:
        """Move the frozen clock to ``now`` and, if given, show ``status`` instead: a scene a test can step
        through (no events are added; the lab "went quiet")."""
        self._now = now
        if status is not None:
            self._status = status

    async def apply(self, command: Command) -> dict[str, Any]:
        """Record ``command``; raise :attr:`refusal` if one is set. Nothing changes, so the answer is empty."""
        self.commands.append(command)
        if self.refusal is not None:
            raise self.refusal
        return {}
