"""Running a lab's coroutines from a widget's callbacks, and saying what went wrong where the learner looks.

ipywidgets calls a button's callback synchronously, on the kernel's asyncio loop (the loop a notebook's
top-level ``await`` runs on). A callback therefore must not wait for the lab: it *schedules* the coroutine
(``await lab.apply(command)``) as a task and returns at once. Nobody awaits that task, so an exception in it
would be a traceback in the kernel's log that the learner never sees. :class:`ClickScheduler` catches it and
writes it in the widget's own output area instead: a refused command (:class:`~spofkit.commands.CommandError`,
e.g. "no instance named 'c'") as its message, anything else with its type.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import html
from collections.abc import Coroutine
from typing import Any

import ipywidgets as widgets

from spofkit.commands import CommandError
from spofkit.widgets._display import html_output

# What a click returns: the task running the lab coroutine (a concurrent future if clicked from another thread).
Scheduled = asyncio.Future[Any] | concurrent.futures.Future[Any]


class ClickScheduler:
    """Runs coroutines on the loop the widget was made on and reports their failures in ``output``.

    ``errors`` keeps every report, one line each, e.g. ``crash c refused: no instance named 'c'; known: [...]``.
    """

    def __init__(self, output: widgets.Output) -> None:
        self.output = output
        self.errors: list[str] = []
        try:
            self.loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self.loop = None  # made outside a loop: adopt the first loop a callback runs on

    def schedule(self, coroutine: Coroutine[Any, Any, Any], what: str) -> Scheduled:
        """Run ``coroutine`` (``what`` names it in reports, e.g. ``"crash b"``); return its task at once.

        Awaiting the task gives the coroutine's result or raises its exception (reported in ``output`` too).
        """
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        loop = self.loop or running
        if loop is None:
            coroutine.close()
            raise RuntimeError("no asyncio loop is running: use the widget inside Jupyter or an asyncio program")
        self.loop = loop
        if running is loop:
            task = loop.create_task(coroutine, name=f"spofkit-widget: {what}")
            task.add_done_callback(lambda done: self._report(done, what))
            return task
        # Called from another thread (ipykernel calls widget callbacks on its loop, so only other hosts get
        # here): run the coroutine on the lab's loop, and report from there.
        return asyncio.run_coroutine_threadsafe(self._reporting(coroutine, what), loop)

    async def _reporting(self, coroutine: Coroutine[Any, Any, Any], what: str) -> Any:
        try:
            return await coroutine
        except Exception as error:
            self.record(what, error)
            raise

    def _report(self, task: asyncio.Future[Any], what: str) -> None:
        # Asking for the exception also marks it as seen: no "exception was never retrieved" in the log.
        error = None if task.cancelled() else task.exception()
        if error is not None:
            self.record(what, error)

    def record(self, what: str, error: BaseException) -> None:
        """Show in the widget's output that ``what`` did not work, and why."""
        if isinstance(error, CommandError):  # the lab said no, and said why: that is the whole story
            message = f"{what} refused: {error.message}"
        else:
            message = f"{what} failed: {type(error).__name__}: {error}"
        self.errors.append(message)
        self.output.outputs = (*self.output.outputs, html_output(problem_markup(message), message))


def problem_markup(message: str) -> str:
    """``message`` in the red of an error, wrapped between words (a stderr stream would break inside them)."""
    return (
        "<div class='spofkit-problem' style='background:#fdecea;color:#b71c1c;padding:2px 8px;margin:2px 0;"
        f"white-space:pre-wrap;overflow-wrap:break-word'>{html.escape(message)}</div>"
    )
