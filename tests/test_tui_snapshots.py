"""Screenshots of the dashboard compared with approved ones (pytest-textual-snapshot).

The app is fed a fixed scene (:mod:`tui.scene`): frozen lab time, fixed status, generated events, no live
lab, no randomness; so the picture is the same on every run. After a deliberate change of the look, run
``pytest tests/test_tui_snapshots.py --snapshot-update`` and review the new SVGs in ``tests/__snapshots__/``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

pytest.importorskip("textual")
pytest.importorskip("pytest_textual_snapshot")

from textual.pilot import Pilot

from spofkit.status import RISING
from tui.app import SpofkitApp
from tui.scene import NOW, _instance, pair_scene_source, scene_source, split_brain_status, wait_until_drawn
from tui.sources import FrozenSource

SnapCompare = Callable[..., bool]


async def drawn(pilot: Pilot[None]) -> None:
    assert isinstance(pilot.app, SpofkitApp)
    await wait_until_drawn(pilot.app, pilot)


async def drawn_with_help(pilot: Pilot[None]) -> None:
    await drawn(pilot)
    await pilot.press("question_mark")
    await pilot.pause()


async def drawn_then_added(pilot: Pilot[None]) -> None:
    """The scene, then a fifth instance joins (a lane more, the log a line shorter)."""
    await drawn(pilot)
    app = pilot.app
    assert isinstance(app, SpofkitApp) and isinstance(app.source, FrozenSource)
    status = app.source.status()
    assert status is not None
    app.source.move_to(NOW, dataclasses.replace(status, instances=[*status.instances, _instance("e", RISING)]))
    app.refresh_figures()
    await pilot.pause()
    await pilot.pause()


async def drawn_in_split_brain(pilot: Pilot[None]) -> None:
    """The pair scene, then lb1's adverts are cut: two masters, lb2 blocked."""
    await drawn(pilot)
    app = pilot.app
    assert isinstance(app, SpofkitApp) and isinstance(app.source, FrozenSource)
    app.source.move_to(NOW, split_brain_status())
    app.refresh_figures()
    await pilot.pause()
    await pilot.pause()


def test_main_screen(snap_compare: SnapCompare) -> None:
    assert snap_compare(SpofkitApp(scene_source()), terminal_size=(100, 32), run_before=drawn)


def test_main_screen_small_terminal(snap_compare: SnapCompare) -> None:
    assert snap_compare(SpofkitApp(scene_source()), terminal_size=(80, 24), run_before=drawn)


def test_help_screen(snap_compare: SnapCompare) -> None:
    assert snap_compare(SpofkitApp(scene_source()), terminal_size=(100, 32), run_before=drawn_with_help)


def test_small_terminal_after_an_instance_is_added(snap_compare: SnapCompare) -> None:
    assert snap_compare(SpofkitApp(scene_source()), terminal_size=(80, 24), run_before=drawn_then_added)


def test_help_screen_small_terminal(snap_compare: SnapCompare) -> None:
    assert snap_compare(SpofkitApp(scene_source()), terminal_size=(80, 24), run_before=drawn_with_help)


def test_pair_after_a_takeover(snap_compare: SnapCompare) -> None:
    assert snap_compare(SpofkitApp(pair_scene_source()), terminal_size=(100, 32), run_before=drawn)


def test_pair_after_a_takeover_small_terminal(snap_compare: SnapCompare) -> None:
    assert snap_compare(SpofkitApp(pair_scene_source()), terminal_size=(80, 24), run_before=drawn)


def test_pair_in_split_brain_small_terminal(snap_compare: SnapCompare) -> None:
    assert snap_compare(SpofkitApp(pair_scene_source()), terminal_size=(80, 24), run_before=drawn_in_split_brain)
