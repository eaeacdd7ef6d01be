"""The dashboard on a frozen scene, read back from its screen as text: what a learner would read, step by step.

The scene (:mod:`tui.scene`) is still; a test moves its clock or changes its status (``FrozenSource.move_to``)
and reads the screen again. Commands are recorded, not run (``FrozenSource.commands``), so a test can check what
a key asked the lab for, even when the lab would not have answered yet.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import AsyncIterator

import pytest

pytest.importorskip("textual")

from textual.pilot import Pilot

from spofkit.commands import (
    AddInstance,
    ChangeSettings,
    Command,
    CommandError,
    InjectFault,
    Recover,
    RemoveInstance,
    Restart,
    SetLoad,
    SetStrategy,
)
from spofkit.faults import PRESETS
from spofkit.status import RISING
from spofkit.strategies import strategy_names
from tui.app import SpofkitApp
from tui.scene import NOW, _instance, scene_source, screen_text, wait_until_drawn
from tui.sources import FrozenSource
from tui.widgets.event_log import EventLog
from tui.widgets.help_screen import HelpScreen


@contextlib.asynccontextmanager
async def scene(
    size: tuple[int, int] = (100, 32), *, notifications: bool = False
) -> AsyncIterator[tuple[SpofkitApp, Pilot[None], FrozenSource]]:
    source = scene_source()
    app = SpofkitApp(source)
    async with app.run_test(size=size, notifications=notifications) as pilot:
        try:
            await wait_until_drawn(app, pilot)
            yield app, pilot, source
        finally:
            await app.shutdown()


async def redraw(app: SpofkitApp, pilot: Pilot[None]) -> str:
    app.refresh_figures()
    await pilot.pause()
    await pilot.pause()
    return screen_text(app)


def panel_rates(text: str) -> list[str]:
    """The "served N  R/s" figures of the instance panels on screen."""
    return re.findall(r"served [\d,]+\s+(\d+/s)", text)


async def test_rates_and_shares_on_screen_fall_to_zero_a_second_after_traffic_stops() -> None:
    async with scene() as (app, pilot, source):
        text = screen_text(app)
        assert "ok 30/s" in text
        assert panel_rates(text)[0] != "0/s"  # a was serving
        assert re.search(r"share 0%", text)  # b crashed and was ejected: it gets nothing

        source.move_to(NOW + 1.1)  # the scene's traffic stopped at 42 s
        text = await redraw(app, pilot)
        assert "ok 0/s" in text, text
        assert "fail 0.0/s" in text
        assert set(panel_rates(text)) == {"0/s"}, text
        assert "share –" in text and not re.search(r"share \d+%", text)
        assert re.search(r"availability 10s 99\.\d\d%", text)  # how the last ten seconds went: still readable


async def test_plus_pressed_three_times_asks_for_each_next_rate() -> None:
    async with scene() as (_, pilot, source):
        await pilot.press("plus", "plus", "plus")  # the scene's status keeps saying 30/s: the lab "has not answered"
        await pilot.pause()
        assert source.commands == [SetLoad(rate=50.0), SetLoad(rate=100.0), SetLoad(rate=200.0)]
        await pilot.press("minus")
        await pilot.pause()
        assert source.commands[-1] == SetLoad(rate=100.0)


async def test_pause_pressed_twice_pauses_then_resumes() -> None:
    async with scene() as (_, pilot, source):
        await pilot.press("p", "p")
        await pilot.pause()
        assert source.commands == [SetLoad(paused=True), SetLoad(paused=False)]


@pytest.mark.parametrize(
    ("key", "params"),
    [("s", {"ms": 200.0, "jitter_ms": 30.0}), ("S", {"ms": 600.0, "jitter_ms": 50.0})],
    ids=["slow", "too-slow"],
)
async def test_slow_keys_inject_the_shared_presets(key: str, params: dict[str, float]) -> None:
    async with scene() as (_, pilot, source):
        await pilot.press("1", key)
        await pilot.pause()
        assert source.commands == [InjectFault("a", "slow", params)]


# What each key sends, with b (number 2) selected, on the scene: round robin, retries, checks and ejection on,
# 30 requests/s, not paused. The fault keys send spofkit.faults.PRESETS, parameters and all.
FAULT_KEYS = {"c": "crash", "h": "hang", "s": "slow", "S": "too_slow", "e": "error", "g": "gray", "f": "flap"}
KEY_COMMANDS: list[tuple[str, Command]] = [
    *((key, InjectFault("b", PRESETS[preset].kind, PRESETS[preset].params)) for key, preset in FAULT_KEYS.items()),
    ("r", Recover("b")),
    ("R", Restart("b")),
    ("a", AddInstance()),
    ("d", RemoveInstance("b")),
    ("b", SetStrategy(strategy_names()[(strategy_names().index("round_robin") + 1) % len(strategy_names())])),
    ("t", ChangeSettings(retries=False)),
    ("k", ChangeSettings(health_checks=False)),
    ("j", ChangeSettings(ejection=False)),
    ("plus", SetLoad(rate=50.0)),
    ("minus", SetLoad(rate=20.0)),
    ("p", SetLoad(paused=True)),
]


@pytest.mark.parametrize(("key", "command"), KEY_COMMANDS, ids=[key for key, _ in KEY_COMMANDS])
async def test_each_key_sends_its_command(key: str, command: Command) -> None:
    async with scene() as (_, pilot, source):
        await pilot.press("2", key)
        await pilot.pause()
        assert source.commands == [command]


async def test_a_refused_command_is_shown_with_the_labs_reason() -> None:
    async with scene(notifications=True) as (app, pilot, source):  # the pop-up a learner sees, too
        source.refusal = CommandError("name", "no instance named 'b'; known: ['a', 'c', 'd']", status=404)
        await pilot.press("2", "c")
        await pilot.pause()
        await pilot.pause()
        assert source.commands == [InjectFault("b", "crash")]
        reason = "no instance named 'b'; known: ['a', 'c', 'd']"
        log = "\n".join(strip.text for strip in app.query_one(EventLog).lines)
        assert f"crash b failed: {reason}" in log, log
        text = screen_text(app)
        assert "crash b: no instance named 'b'" in text, text  # the pop-up


async def test_the_log_keeps_its_newest_line_in_view_when_a_lane_is_added() -> None:
    # At 80x24 the log is a few lines high; a new lane above it makes it one line shorter. It must stay on its
    # newest line (not leave it hidden below the edge, its scrollbar's thumb half-way: odd glyphs on the edge).
    async with scene(size=(80, 24)) as (app, pilot, source):
        newest = "clients saw 1 failure"
        assert newest in screen_text(app)
        status = source.status()
        assert status is not None
        source.move_to(NOW, dataclasses.replace(status, instances=[*status.instances, _instance("e", RISING)]))
        text = await redraw(app, pilot)
        assert "▶ e ◐ RISING 0/2" in text
        assert newest in text, text
        log = app.query_one(EventLog)
        assert log.scroll_y == log.max_scroll_y > 0


HELP_ROWS = [
    "1-9    select",
    "← ↑    previous",
    "→ ↓    next",
    "c      crash",
    "h      hang",
    "s      slow         +200 ms",
    "S      too slow     +600 ms",
    "e      error",
    "g      gray",
    "f      flap",
    "r      recover",
    "R      restart",
    "a      add",
    "d      drain",
    "b      strategy",
    "t      retries",
    "k      checks",
    "j      eject",
    "+ = -  rate",
    "p      pause",
    "z      reset",
    "l      pick LB",
    "C      crash LB",
    "H      hang LB",
    "X      split brain",
    "U      recover LB",
    "N      restart LB",
    "D      deploy",
    "!      restart all",
    "B      upgrade LBs",
    "?      help",
    "q ^c   quit",
]


async def test_help_at_80x24_says_there_is_more_and_scrolls_to_every_key() -> None:
    async with scene(size=(80, 24)) as (app, pilot, _):
        await pilot.press("question_mark")
        await pilot.pause()
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        first = screen_text(app)
        assert "more below: ↓ PgDn space" in first
        assert "q ^c   quit" not in first  # it does not all fit: it must scroll
        seen = first
        for _ in range(10):  # bounded: the list is two screens long
            if "esc / ? / q: close this screen" in screen_text(app):
                break
            await pilot.press("space")
            await pilot.pause()
            seen += screen_text(app)
        last = screen_text(app)
        assert "esc / ? / q: close this screen" in last and "end · ↑ PgUp back" in last
        missing = [row for row in HELP_ROWS if row not in seen]
        assert not missing, f"help rows never shown: {missing}"
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
