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


class BalancerSelected(Message):
    """The user clicked a balancer's line in the front-door strip: it becomes the target of the front-door keys."""

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
    """A control (a fault, a toggle, ...) finished; ``error`` is None if it worked.

    ``done`` is a line for the log and its tone (``good``, ``bad``...) when it worked, for controls whose effect no
    event reports (a balancer's fault).
    """

    def __init__(self, what: str, error: str | None = None, done: tuple[str, str] | None = None) -> None:
        super().__init__()
        self.what = what
        self.error = error
        self.done = done
