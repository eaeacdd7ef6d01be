"""Shared test helpers.

* ``wait_for(predicate, timeout, interval)``: poll a condition with a deadline instead of sleeping a fixed time.
  Import it with ``from conftest import wait_for`` (pytest puts ``tests/`` on ``sys.path``) or take the
  ``wait_for`` fixture. ``wait_until(predicate, timeout, what)`` is the same for code that is not async (a browser
  driven by Playwright's sync API, a terminal read through tmux, a subprocess).
* ``no_child_processes``: a fixture that fails the test if it leaves a child process (running or zombie)
  behind. Use it with ``pytestmark = pytest.mark.usefixtures("no_child_processes")`` or as an argument.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

Predicate = Callable[[], Any]  # returns a truthy value, or an awaitable of one


async def wait_for(
    predicate: Predicate,
    timeout: float = 5.0,
    interval: float = 0.02,
    message: str | None = None,
) -> Any:
    """Return the predicate's first truthy value; raise AssertionError after ``timeout`` seconds.

    ``predicate`` may be a plain function or a coroutine function. Exceptions it raises propagate.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            what = message or getattr(predicate, "__name__", repr(predicate))
            raise AssertionError(f"condition not met within {timeout:.1f}s: {what} (last value {value!r})")
        await asyncio.sleep(interval)


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """The blocking twin of :func:`wait_for`: the predicate's first truthy value, or AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g}s: {what} (last value {value!r})")
        time.sleep(interval)
    return value


@pytest.fixture(name="wait_for")
def wait_for_fixture() -> Callable[..., Awaitable[Any]]:
    return wait_for


def child_pids(parent: int | None = None) -> set[int]:
    """Processes whose parent is ``parent`` (default: this one), zombies included. Linux /proc."""
    parent = os.getpid() if parent is None else parent
    children = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # it exited while we looked
        # "pid (comm) state ppid ...": comm may hold spaces or parentheses, so split after the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[1]) == parent:
            children.add(int(entry.name))
    return children


@pytest.fixture
def no_child_processes() -> Iterator[None]:
    """Fail the test if a child process it started is still there (alive or unreaped) a moment after."""
    before = child_pids()
    yield
    deadline = time.monotonic() + 5.0
    leaked = child_pids() - before
    while leaked and time.monotonic() < deadline:
        time.sleep(0.05)  # a reaper thread may still be finishing: give it a moment
        leaked = child_pids() - before
    assert not leaked, f"test left child processes behind: {sorted(leaked)}"
