"""What the dashboard needs from a lab, and nothing more: events, status snapshots, and commands.

The dashboard is a *view*. It never balances, never probes: it subscribes to a lab's event stream, reads its
status snapshots and sends it :mod:`commands <spofkit.commands>`. :class:`DataSource` is that contract; the
modules beside this one fulfil it for a lab in this process (:mod:`tui.sources.lab`), a lab behind an admin API
(:mod:`tui.sources.remote`) and a frozen scene (:mod:`tui.sources.frozen`).

Every control is one method, :meth:`DataSource.apply`, taking one command: the same objects a notebook hands to
``Lab.apply`` and the admin API takes at ``POST /commands``. A key press builds a command; the source carries it.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

from spofkit.commands import Command
from spofkit.events import Event
from spofkit.status import LabStatus

Subscriber = Callable[[Event], None]
Unsubscribe = Callable[[], None]

# Requests per second the dashboard's own background load starts at (the +/- keys step from here).
DEFAULT_LOAD_RATE = 30.0


class ControlError(Exception):
    """The lab could not be asked at all (not started, not reachable); the message says why.

    A lab that was asked and said no raises :class:`~spofkit.commands.CommandError` instead, naming the field.
    """


class DataSource(abc.ABC):
    """A lab as the dashboard sees it. All times are lab seconds."""

    #: One line saying what is being watched, for the status bar.
    description: str = ""

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect or start the lab. Raises with a clear message if that is impossible."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Let go of everything started by :meth:`start`. Safe to call twice."""

    @abc.abstractmethod
    def subscribe(self, subscriber: Subscriber) -> Unsubscribe:
        """Call ``subscriber(event)`` for every future event; it must be quick (it may run inside the lab)."""

    @abc.abstractmethod
    def now(self) -> float:
        """The lab's clock."""

    @abc.abstractmethod
    def status(self) -> LabStatus | None:
        """The latest status snapshot, or None before the first one arrived."""

    @abc.abstractmethod
    async def apply(self, command: Command) -> dict[str, Any]:
        """Send ``command`` to the lab; return the lab's JSON-ready answer (what it did).

        Raises :class:`~spofkit.commands.CommandError` if the lab refused it (its message says why, its
        ``field`` names the culprit) and :class:`ControlError` if the lab could not be asked.
        """
