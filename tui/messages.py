"""The messages the dashboard's parts send each other, in one place.

Textual widgets talk by posting messages up the DOM; the app handles them in ``on_<message_name>`` methods.
"""

from __future__ import annotations

from textual.message import Message


class InstanceSelected(Message):
    """The user clicked an instance's panel: it becomes the target of the fault keys."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


class SourceReady(Message):
    """The lab is running (or the remote one answered): events and status can be read."""


class SourceFailed(Message):
    """The lab could not be started or reached; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


class ControlFinished(Message):
    """A control (a fault, a toggle, ...) finished; ``error`` is None if it worked."""

    def __init__(self, what: str, error: str | None = None) -> None:
        super().__init__()
        self.what = what
        self.error = error
