"""The front door strip on frozen scenes, read back from the screen as text: one balancer, a pair, split brain.

The scenes (:mod:`tui.scene`) are still: a test reads the screen, changes the status (``FrozenSource.move_to``)
and reads it again. Commands are recorded, not run, so a test can check what a front-door key asked the lab for.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable

import pytest

pytest.importorskip("textual")

from textual.pilot import Pilot

from spofkit.commands import BalancerFault, BalancerRecover, BalancerRestart, Command, CommandError, Deploy
from spofkit.status import LabStatus
from tui.app import SpofkitApp
from tui.scene import (
    NOW,
    _balancer,
    pair_balancers,
    pair_scene_source,
    scene_source,
    scene_status,
    screen_text,
    split_brain_status,
    wait_until_drawn,
)
from tui.sources import FrozenSource
from tui.widgets.event_log import EventLog
from tui.widgets.flow import FlowView
from tui.widgets.front_door import FrontDoorStrip, door_label
from tui.widgets.palette import RED, WHITE

SMALL, LARGE = (80, 24), (100, 32)


@contextlib.asynccontextmanager
async def scene(
    make: Callable[[], FrozenSource] = pair_scene_source, size: tuple[int, int] = LARGE, *, notifications: bool = False
) -> AsyncIterator[tuple[SpofkitApp, Pilot[None], FrozenSource]]:
    source = make()
    app = SpofkitApp(source)
    async with app.run_test(size=size, notifications=notifications) as pilot:
        try:
            await wait_until_drawn(app, pilot)
            yield app, pilot, source
        finally:
            await app.shutdown()


async def show(app: SpofkitApp, pilot: Pilot[None], source: FrozenSource, status: LabStatus) -> str:
    source.move_to(NOW, status)
    app.refresh_figures()
    await pilot.pause()
    await pilot.pause()
    return screen_text(app)


def rows(text: str) -> list[str]:
    return text.splitlines()


def row_with(text: str, *words: str) -> int:
    """The screen row holding all ``words`` (the first such)."""
    return next(i for i, line in enumerate(rows(text)) if all(word in line for word in words))


def squeezed(line: str) -> str:
    return " ".join(line.split())


def log_text(app: SpofkitApp) -> str:
    return "\n".join(strip.text for strip in app.query_one(EventLog).lines)


# --- one balancer: one line, where the blank line was -------------------------------------------------------


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "100x32"])
async def test_one_balancer_takes_one_line_and_the_layout_below_stays_where_it_was(size: tuple[int, int]) -> None:
    async with scene(scene_source, size) as (app, _, _):
        text = screen_text(app)
        lines = rows(text)
        assert squeezed(lines[1]).startswith("front door lb1 ◉ SINGLE ● running")
        assert "holds 127.0.0.1:8080" in lines[1]
        # The rows of the dashboard as they were before the strip: the flow on row 2, the panels below it.
        assert lines[2].startswith(" clients ━") and " LB " in lines[2]
        assert row_with(text, "1 a ● UP") == 7
        assert row_with(text, "clients ─", "events (lab time)") == (13 if size == SMALL else 19)
        assert "crash LB" not in text and "deploy" not in text  # the footer of a one-balancer lab is as it was
        wide = size[0] >= 100
        assert ("a single point of failure" in lines[1]) == wide  # said where there is room


async def test_one_crashed_balancer_turns_the_lb_box_red() -> None:
    assert door_label([_balancer("lb1")]) == (" LB ", WHITE)
    assert door_label([_balancer("lb1", state="crashed", address=None)]) == (" LB ", RED)
    assert door_label([_balancer("lb1", state="hang")]) == (" LB ", RED)
    async with scene(scene_source) as (app, pilot, source):
        text = await show(app, pilot, source, scene_status([_balancer("lb1", state="crashed", address=None)]))
        assert "lb1 ○ – ✖ CRASHED" in squeezed(rows(text)[1])
        assert app.query_one(FlowView).door == (" LB ", RED)


# --- a pair --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "100x32"])
async def test_a_pair_after_a_takeover_shows_lb1_crashed_and_lb2_master_holding_the_address(
    size: tuple[int, int],
) -> None:
    async with scene(pair_scene_source, size) as (app, _, _):
        text = screen_text(app)
        lines = rows(text)
        assert squeezed(lines[1]).startswith("front door lb1 ○ – ✖ CRASHED 0/s exit status -9")
        lb2 = squeezed(lines[2])
        assert lb2.startswith("lb2 ◉ MASTER ● running") and "holds 127.0.0.1:8080 pid 4243" in lb2
        assert int(lb2.split("/s")[0].split()[-1]) >= 25  # its answers per second, from the events (30/s load)
        assert lines[3].startswith(" clients ━") and " lb2 " in lines[3]  # the flow's box: who clients reach
        for key in ("l pick LB", "C crash LB", "H hang LB", "X split brain", "U recover LB", "D deploy"):
            assert key in text, f"{key!r} not in the footer"
        assert "q quit" in text
        assert "lb2: b marked DOWN" in log_text(app)  # each balancer's view says whose it is


def reversed_names(strip: FrontDoorStrip) -> list[str]:
    """The words the strip shows in reverse video (the selected balancer's name)."""
    text = strip.render()
    return [text.plain[span.start : span.end].strip() for span in text.spans if "reverse" in str(span.style)]


async def test_the_selected_balancer_has_its_name_reversed_and_l_moves_it() -> None:
    async with scene() as (app, pilot, _):
        strip = app.query_one(FrontDoorStrip)
        assert reversed_names(strip) == ["lb1"]
        await pilot.press("l")
        assert app.selected_balancer == "lb2"
        assert reversed_names(strip) == ["lb2"]
        await pilot.press("l")
        assert reversed_names(strip) == ["lb1"]
        await pilot.click("#frontdoor", offset=(20, 1))  # lb2's line
        assert app.selected_balancer == "lb2"
        assert reversed_names(strip) == ["lb2"]


async def test_split_brain_shows_two_masters_one_blocked_and_the_box_says_so() -> None:
    async with scene(pair_scene_source, SMALL) as (app, pilot, source):
        text = await show(app, pilot, source, split_brain_status())
        lines = rows(text)
        assert squeezed(lines[1]).startswith("front door lb1 ◉ MASTER ≠ ADVERT LOSS")
        assert squeezed(lines[2]).startswith("lb2 ⊗ MASTER ⊗ BLOCKED")
        assert "cannot take 127.0.0" in lines[2]  # why, as the lab says it (cut at 80 columns)
        assert " 2 MASTERS " in lines[3]
        assert app.query_one(FlowView).door == (" 2 MASTERS ", RED)


async def test_nobody_holding_the_address_reads_no_lb() -> None:
    lb1, lb2 = pair_balancers()
    backup = dataclasses.replace(lb2, role="backup", address=None)
    assert door_label([lb1, backup]) == (" no LB ", RED)
    async with scene() as (app, pilot, source):
        text = await show(app, pilot, source, scene_status([lb1, backup]))
        assert " no LB " in rows(text)[3]


async def test_active_active_shows_both_holding_and_the_box_names_both() -> None:
    both = [_balancer("lb1", role="active"), _balancer("lb2", role="active")]
    assert door_label(both) == (" lb1+lb2 ", WHITE)
    async with scene() as (app, pilot, source):
        text = await show(app, pilot, source, scene_status(both))
        assert squeezed(rows(text)[1]).startswith("front door lb1 ◉ ACTIVE ● running")
        assert squeezed(rows(text)[2]).startswith("lb2 ◉ ACTIVE ● running")
        assert " lb1+lb2 " in rows(text)[3]


async def test_a_running_backups_left_over_note_is_not_shown() -> None:
    # A balancer that once could not take the address keeps its note after it became backup again.
    lb1 = _balancer("lb1", role="master")
    lb2 = _balancer("lb2", role="backup", address=None, note="cannot take 127.0.0.1:8080: Address in use")
    async with scene() as (app, pilot, source):
        text = await show(app, pilot, source, scene_status([lb1, lb2]))
        line = squeezed(rows(text)[2])
        assert line.startswith("lb2 ○ BACKUP ● running") and line.endswith("/s standby")
        assert "cannot take" not in text


async def test_a_lab_that_does_not_report_its_balancers_shows_where_clients_go() -> None:
    async with scene(scene_source) as (app, pilot, source):
        text = await show(app, pilot, source, scene_status([]))
        assert squeezed(rows(text)[1]) == "front door 127.0.0.1:8080"
        await pilot.press("C")
        await pilot.pause()
        assert source.commands == []  # nothing to aim at


# --- the keys' commands -----------------------------------------------------------------------------------------

FRONT_DOOR_COMMANDS: list[tuple[tuple[str, ...], Command]] = [
    (("C",), BalancerFault("lb1", "crash")),
    (("H",), BalancerFault("lb1", "hang")),
    (("X",), BalancerFault("lb1", "advert_loss")),
    (("U",), BalancerRecover("lb1")),
    (("N",), BalancerRestart("lb1")),
    (("l", "C"), BalancerFault("lb2", "crash")),
    (("l", "U"), BalancerRecover("lb2")),
    (("D",), Deploy(batch=1)),
    (("exclamation_mark",), Deploy(how="all-at-once")),
    (("B",), Deploy(target="balancers")),
]


@pytest.mark.parametrize(
    ("keys", "command"), FRONT_DOOR_COMMANDS, ids=["".join(keys) for keys, _ in FRONT_DOOR_COMMANDS]
)
async def test_each_front_door_key_sends_its_command(keys: tuple[str, ...], command: Command) -> None:
    async with scene() as (_, pilot, source):
        await pilot.press(*keys)
        await pilot.pause()
        assert source.commands == [command]


async def test_a_balancer_fault_that_worked_gets_a_log_line_naming_the_process_killed() -> None:
    async with scene() as (app, pilot, source):
        await show(app, pilot, source, split_brain_status())  # lb1 runs as pid 4242 there
        await pilot.press("C")
        await pilot.pause()
        await pilot.pause()
        app.refresh_figures()
        assert "lb1 crashed: kill -9 of pid 4242" in log_text(app)
        await pilot.press("l", "X")
        await pilot.pause()
        await pilot.pause()
        app.refresh_figures()
        assert "lb2's adverts cut" in log_text(app)


async def test_a_refused_balancer_command_is_shown_with_the_labs_reason() -> None:
    async with scene(notifications=True) as (app, pilot, source):
        source.refusal = CommandError("balancer", "no balancer named 'lb1'; known: ['lb2']", status=404)
        await pilot.press("U")
        await pilot.pause()
        await pilot.pause()
        assert "recover lb1 failed: no balancer named 'lb1'" in log_text(app)
        assert "recover lb1: no balancer named 'lb1'" in screen_text(app)  # the pop-up


async def test_pick_key_in_a_one_balancer_lab_says_there_is_only_one() -> None:
    async with scene(scene_source, notifications=True) as (app, pilot, _):
        await pilot.press("l")
        await pilot.pause()
        assert app.selected_balancer == "lb1"
        assert "this lab has one balancer" in screen_text(app)
