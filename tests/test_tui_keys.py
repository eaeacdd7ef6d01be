"""Every key of the dashboard, pressed against a real lab: the key must change the lab, and the screen must show it.

Each test starts the app on its own in-process lab (3 instances, light load, fast health checks so a crash is
noticed in well under a second), presses keys with Textual's pilot, and waits for the effect with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("textual")

from conftest import wait_for
from textual.events import Key
from textual.pilot import Pilot

from spofkit.commands import CommandError, Recover, SetLoad
from spofkit.events import FaultInjected, HealthProbe, InstanceDown, InstanceRestarted
from spofkit.faults import PRESETS
from spofkit.health import HealthSettings
from spofkit.lab import Lab, LabStatus
from spofkit.strategies import strategy_names
from tui.app import SpofkitApp
from tui.scene import screen_text
from tui.sources import ControlError, LabSource
from tui.widgets.client_view import ClientView
from tui.widgets.help_screen import HelpScreen
from tui.widgets.instance_panel import InstancePanel

FAST_CHECKS = HealthSettings(interval=0.1, timeout=0.2, rise=2, fall=2)
DEADLINE = 15.0  # generous: other test suites share this 2-core machine


@contextlib.asynccontextmanager
async def dashboard(rate: float = 20.0, **lab_options: Any) -> AsyncIterator[tuple[SpofkitApp, Pilot[None], LabSource]]:
    options: dict[str, Any] = {"instances": 3, "health": FAST_CHECKS, **lab_options}
    source = LabSource(rate=rate, **options)
    app = SpofkitApp(source)
    async with app.run_test(size=(100, 32)) as pilot:
        try:
            await wait_for(lambda: app.lab_ready and app.panels_shown(), DEADLINE, message="dashboard drawn")
            yield app, pilot, source
        finally:
            await app.shutdown()
    assert source.lab is None, "the lab must be stopped when the dashboard goes"


def status(source: LabSource) -> LabStatus:
    """The lab's latest snapshot (the lab runs on its own thread: read its snapshots, not its insides)."""
    snapshot = source.status()
    assert snapshot is not None
    return snapshot


def panel(app: SpofkitApp, name: str) -> InstancePanel:
    return app.query_one(f"#panel-{name}", InstancePanel)


async def test_number_keys_and_arrows_select_an_instance() -> None:
    async with dashboard() as (app, pilot, _):
        assert app.selected == "a"
        await pilot.press("2")
        assert app.selected == "b"
        assert panel(app, "b").has_class("selected") and not panel(app, "a").has_class("selected")
        await pilot.press("right")
        assert app.selected == "c"
        await pilot.press("right")  # wraps around
        assert app.selected == "a"
        await pilot.press("left", "up")
        assert app.selected == "b"
        await pilot.press("9")  # no such instance: selection stays
        assert app.selected == "b"


async def test_clicking_a_panel_selects_it() -> None:
    async with dashboard() as (app, pilot, _):
        await pilot.click("#panel-c")
        assert app.selected == "c"


async def test_crash_key_marks_the_selected_instance_down_and_recover_brings_it_back() -> None:
    async with dashboard() as (app, pilot, source):
        await pilot.press("2", "c")
        await wait_for(lambda: panel(app, "b").has_class("state-down"), DEADLINE, message="b panel shows DOWN")
        assert "DOWN" in str(panel(app, "b").border_title)
        assert "CRASH" in str(panel(app, "b").border_subtitle)
        assert source.lab is not None
        history = list(source.lab.events.history)
        injected = next(e for e in history if isinstance(e, FaultInjected) and e.instance == "b")
        down = next(e for e in history if isinstance(e, InstanceDown) and e.instance == "b")
        # Detected by the health checker within its detection window (slack for a busy machine).
        assert down.at - injected.at <= FAST_CHECKS.detection_window_bound() + 2.0

        await pilot.press("r")
        await wait_for(lambda: panel(app, "b").has_class("state-up"), DEADLINE, message="b panel back UP")
        assert status(source).instance("b").fault is None
        assert not panel(app, "b").border_subtitle


async def test_hang_key_is_detected_by_timeouts() -> None:
    async with dashboard() as (app, pilot, source):
        await pilot.press("3", "h")
        await wait_for(lambda: panel(app, "c").has_class("state-down"), DEADLINE, message="hung c shows DOWN")
        assert status(source).instance("c").fault == "hang"


@pytest.mark.parametrize(("key", "kind"), [("s", "slow"), ("e", "error"), ("g", "gray"), ("f", "flap")])
async def test_fault_keys_inject_their_fault_on_the_selected_instance(key: str, kind: str) -> None:
    async with dashboard() as (app, pilot, source):
        await pilot.press("2", key)
        await wait_for(lambda: status(source).instance("b").fault == kind, DEADLINE, message=f"{kind} injected")
        await wait_for(lambda: kind.upper() in str(panel(app, "b").border_subtitle), DEADLINE, message="shown")
        assert status(source).instance("a").fault is None


def events_on(source: LabSource, kind: type[Any], name: str, since: float = 0.0) -> list[Any]:
    assert source.lab is not None
    return [e for e in list(source.lab.events.history) if isinstance(e, kind) and e.instance == name and e.at >= since]


def clients_text(app: SpofkitApp) -> str:
    return app.query_one(ClientView).render().plain


def p99_ms(app: SpofkitApp) -> float:
    """The p99 on the clients panel, in milliseconds (0 while it shows none)."""
    match = re.search(r"p99 ([\d.]+)(ms|s)", clients_text(app))
    if match is None:
        return 0.0
    return float(match[1]) * (1000.0 if match[2] == "s" else 1.0)


async def test_slow_key_keeps_the_instance_up_while_p99_shows_it_and_too_slow_marks_it_down() -> None:
    # The lab's teaching checks (timeout 0.3 s): "slow" (+200 ms) answers them in time, "too slow" (+600 ms) not.
    checks = HealthSettings()
    assert PRESETS["slow"].params["ms"] + PRESETS["slow"].params["jitter_ms"] < checks.timeout * 1000
    async with dashboard(health=checks) as (app, pilot, source):
        await pilot.press("2", "s")
        await wait_for(lambda: status(source).instance("b").fault == "slow", DEADLINE, message="b slowed")
        since = events_on(source, FaultInjected, "b")[-1].at
        await wait_for(
            lambda: len(events_on(source, HealthProbe, "b", since)) >= 5, DEADLINE, message="five checks of slow b"
        )
        probes = events_on(source, HealthProbe, "b", since)[:5]
        assert min(probe.duration for probe in probes) >= 0.15, probes  # the checks did see it slow...
        # ...and passed (one late answer on a busy machine is tolerated: three in a row would mark it DOWN).
        assert sum(probe.ok for probe in probes) >= 4, probes
        assert not events_on(source, InstanceDown, "b", since)  # it stayed UP all along
        assert not panel(app, "b").has_class("state-down")
        await wait_for(lambda: p99_ms(app) >= 150, DEADLINE, message="p99 on the clients panel shows +200 ms")

        await pilot.press("S")
        await wait_for(lambda: panel(app, "b").has_class("state-down"), DEADLINE, message="too slow b DOWN")
        too_slow = events_on(source, FaultInjected, "b")[-1]
        assert (too_slow.fault, too_slow.params["ms"]) == ("slow", 600.0)
        assert events_on(source, InstanceDown, "b", too_slow.at)


async def test_restart_key_restarts_the_selected_instance() -> None:
    async with dashboard() as (app, pilot, source):
        await pilot.press("1", "R")
        assert source.lab is not None
        lab = source.lab
        await wait_for(
            lambda: any(isinstance(e, InstanceRestarted) and e.instance == "a" for e in lab.events.history),
            DEADLINE,
            message="a restarted",
        )
        await wait_for(lambda: "restarted" in log_text(app), DEADLINE, message="restart in the log")


async def test_add_and_remove_keys_change_the_instance_count() -> None:
    async with dashboard() as (app, pilot, source):
        await pilot.press("a")
        await wait_for(lambda: len(status(source).instances) == 4, DEADLINE, message="4 instances")
        await wait_for(lambda: app.query("#panel-d"), DEADLINE, message="a panel for d")
        await pilot.press("2", "d")
        await wait_for(lambda: len(status(source).instances) == 3, DEADLINE, message="b removed")
        assert "b" not in [row.name for row in status(source).instances]
        await wait_for(lambda: not app.query("#panel-b"), DEADLINE, message="b's panel gone")
        assert app.selected in ("a", "c", "d")


async def test_the_lab_source_applies_commands_on_the_labs_thread_and_hands_back_refusals() -> None:
    source = LabSource(rate=5.0, instances=2, health=FAST_CHECKS)
    await source.start()
    try:
        assert status(source).load_rate == 5.0  # the source's own load is a command too
        answer = await source.apply(SetLoad(rate=7.0))
        assert answer == {"load_rate": 7.0, "load_paused": False}
        assert status(source).load_rate == 7.0  # a fresh snapshot, taken right after the command
        with pytest.raises(CommandError, match=r"no instance named 'zz'") as refused:
            await source.apply(Recover("zz"))
        assert refused.value.status == 404
    finally:
        await source.stop()
    with pytest.raises(ControlError, match="not running"):
        await source.apply(Recover("a"))


async def test_five_concurrent_adds_on_a_real_lab_start_five_distinct_instances() -> None:
    async with await Lab.start(instances=3, health=FAST_CHECKS) as lab:
        names = await asyncio.gather(*(lab.add_instance() for _ in range(5)))
        assert sorted(names) == ["d", "e", "f", "g", "h"]
        rows = {row.name: row for row in lab.status().instances}
        assert sorted(rows) == ["a", "b", "c", "d", "e", "f", "g", "h"]
        assert all(rows[name].running for name in names)
        assert len({row.url for row in rows.values()}) == 8  # eight servers, none lost or shared
        with pytest.raises(ValueError, match="'d' is already in use"):
            await lab.add_instance("d")


async def test_add_key_pressed_five_times_quickly_adds_five_instances() -> None:
    async with dashboard() as (app, _, source):
        # Five keys in one read of the terminal: all five queued before the first add has finished (pilot.press
        # would wait for each key to be handled, and the adds would not overlap).
        for _ in range(5):
            app.post_message(Key("a", "a"))
        new = ["d", "e", "f", "g", "h"]
        await wait_for(lambda: len(status(source).instances) == 8, DEADLINE, message="8 instances")
        await wait_for(
            lambda: all(app.query(f"#panel-{name}") and panel(app, name).has_class("state-up") for name in new),
            DEADLINE,
            message="five new panels, all UP",
        )
        assert all(row.running for row in status(source).instances)
        assert not any("not running" in str(panel(app, name).border_subtitle) for name in new)
        assert "failed" not in log_text(app) and "already" not in screen_text(app)


async def test_strategy_key_cycles_the_balancers_strategy() -> None:
    async with dashboard() as (_, pilot, source):
        names = strategy_names()
        before = status(source).strategy
        await pilot.press("b")
        expected = names[(names.index(before) + 1) % len(names)]
        await wait_for(lambda: status(source).strategy == expected, DEADLINE, message=f"strategy {expected}")
        await pilot.press("b")
        following = names[(names.index(expected) + 1) % len(names)]
        await wait_for(lambda: status(source).strategy == following, DEADLINE, message=f"strategy {following}")


async def test_keys_pressed_twice_quickly_step_twice() -> None:
    async with dashboard() as (app, _, source):
        names = strategy_names()
        before = status(source)
        # Two presses in one read of the terminal: the second comes before the lab has answered the first.
        for action in (app.action_strategy, app.action_strategy, app.action_retries, app.action_retries):
            action()
        expected = names[(names.index(before.strategy) + 2) % len(names)]
        await wait_for(lambda: status(source).strategy == expected, DEADLINE, message=f"strategy {expected}")
        await wait_for(lambda: status(source).retries == before.retries, DEADLINE, message="retries back")
        assert status(source).strategy == expected


async def test_retries_and_health_check_keys_toggle_the_protections() -> None:
    async with dashboard() as (app, pilot, source):
        assert status(source).retries and status(source).health_checks
        await pilot.press("t")
        await wait_for(lambda: not status(source).retries, DEADLINE, message="retries off")
        await pilot.press("k")
        await wait_for(lambda: not status(source).health_checks, DEADLINE, message="checks off")
        await wait_for(lambda: "retries  OFF" in status_bar_text(app), DEADLINE, message="status bar shows OFF")
        await pilot.press("t", "k")
        await wait_for(lambda: status(source).retries, DEADLINE, message="retries on again")
        await wait_for(lambda: status(source).health_checks, DEADLINE, message="checks on again")


async def test_ejection_key_toggles_passive_ejection() -> None:
    async with dashboard() as (app, pilot, source):
        assert status(source).ejection
        await pilot.press("j")
        await wait_for(lambda: not status(source).ejection, DEADLINE, message="ejection off")
        await wait_for(lambda: "eject  OFF" in status_bar_text(app), DEADLINE, message="status bar shows it")
        await pilot.press("j")
        await wait_for(lambda: status(source).ejection, DEADLINE, message="ejection on again")


async def test_rate_keys_raise_and_lower_the_load() -> None:
    async with dashboard() as (_, pilot, source):
        assert status(source).load_rate == 20.0
        await pilot.press("plus")
        await wait_for(lambda: status(source).load_rate == 30.0, DEADLINE, message="rate 30")
        await pilot.press("minus", "minus")
        await wait_for(lambda: status(source).load_rate == 10.0, DEADLINE, message="rate 10")


async def test_rate_key_pressed_three_times_quickly_steps_three_times() -> None:
    async with dashboard(rate=30.0) as (app, _, source):
        for _ in range(3):  # three presses in one read of the terminal: before the lab answered the first
            app.action_rate(1)
        await wait_for(lambda: status(source).load_rate == 200.0, DEADLINE, message="rate 200")
        await wait_for(lambda: "load rate → 200/s" in log_text(app), DEADLINE, message="200/s logged")
        logged = re.findall(r"load rate → (\d+)/s", log_text(app))
        assert logged[-3:] == ["50", "100", "200"], log_text(app)


async def test_pause_key_pauses_and_resumes_the_load() -> None:
    async with dashboard() as (app, pilot, source):
        await wait_for(lambda: "ok 0/s" not in clients_text(app), DEADLINE, message="traffic on the clients panel")
        await pilot.press("p")
        await wait_for(lambda: status(source).load_paused, DEADLINE, message="paused")
        paused_at = source.now()
        await wait_for(lambda: "PAUSED" in status_bar_text(app), DEADLINE, message="PAUSED shown")
        await wait_for(lambda: "load paused" in log_text(app), DEADLINE, message="'load paused' logged")
        # A rate is about now: it falls to 0 a second after the last request, not ten (the availability window).
        # Generous deadline for a busy machine; the exact bound is checked on a frozen clock (test_tui_screen).
        await wait_for(lambda: "ok 0/s" in clients_text(app), 4.0, message="clients panel reads ok 0/s")
        assert source.now() - paused_at < 4.0
        await pilot.press("p")
        await wait_for(lambda: not status(source).load_paused, DEADLINE, message="resumed")
        await wait_for(lambda: "load resumed" in log_text(app), DEADLINE, message="'load resumed' logged")
        assert "→ ON" not in log_text(app) and "→ OFF" not in log_text(app)


async def test_reset_key_zeroes_the_counters() -> None:
    async with dashboard() as (app, pilot, source):
        await wait_for(lambda: panel(app, "a").served_shown > 5, DEADLINE, message="a served some requests")
        before = status(source).instance("a").served
        await pilot.press("z")
        assert panel(app, "a").served_shown <= status(source).instance("a").served - before
        assert panel(app, "a").served_shown < before
        await wait_for(lambda: "counters reset" in log_text(app), DEADLINE, message="reset logged")


async def test_help_key_opens_and_closes_the_help_screen() -> None:
    async with dashboard() as (app, pilot, _):
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_quit_key_stops_the_lab_and_leaves() -> None:
    source = LabSource(rate=20.0, instances=2, health=FAST_CHECKS)
    app = SpofkitApp(source)
    async with app.run_test(size=(100, 32)) as pilot:
        await wait_for(lambda: app.lab_ready, DEADLINE, message="lab started")
        await pilot.press("q")
        await wait_for(lambda: source.lab is None, DEADLINE, message="lab stopped")
    assert app.return_code == 0


def log_text(app: SpofkitApp) -> str:
    from tui.widgets.event_log import EventLog

    return "\n".join(strip.text for strip in app.query_one(EventLog).lines)


def status_bar_text(app: SpofkitApp) -> str:
    from tui.widgets.status_bar import StatusBar

    return app.query_one(StatusBar).plain
