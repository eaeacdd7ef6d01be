"""The front-door keys, pressed against a real pair of balancers: the key changes the lab, the screen shows it.

Each test starts the dashboard on its own in-process lab with ``balancers=2`` (lb1 the primary, lb2 its backup,
adverts every 0.2 s), a light load and fast health checks, presses keys with Textual's pilot and reads the front
door strip, the flow's balancer box, the log and the clients' panel — what a learner reads — with deadlines.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("textual")

from conftest import wait_for
from textual.pilot import Pilot

from spofkit.events import BalancerRoleChanged, ClientRequest, DeployStep
from spofkit.health import HealthSettings
from spofkit.policy.pair import PairSettings
from spofkit.status import BalancerStatus, LabStatus
from tui.app import SpofkitApp
from tui.scene import screen_text
from tui.sources import LabSource
from tui.widgets.client_view import ClientView
from tui.widgets.flow import FlowView
from tui.widgets.front_door import FrontDoorStrip
from tui.widgets.palette import RED

pytestmark = pytest.mark.timeout(120)

FAST_CHECKS = HealthSettings(interval=0.1, timeout=0.2, rise=2, fall=2)
DEADLINE = 15.0  # generous: other test suites share this 2-core machine
MASTER_DOWN = PairSettings(priority=100).master_down_interval  # lb2 takes over after this long without adverts
# What the screen adds to the pair's own takeover time: a status snapshot (0.1 s) and a figures refresh (0.25 s),
# plus room for a busy machine.
SCREEN_MARGIN = 1.5


@contextlib.asynccontextmanager
async def pair_dashboard(**lab_options: Any) -> AsyncIterator[tuple[SpofkitApp, Pilot[None], LabSource]]:
    options: dict[str, Any] = {"instances": 3, "balancers": 2, "health": FAST_CHECKS, **lab_options}
    source = LabSource(rate=20.0, **options)
    app = SpofkitApp(source)
    async with app.run_test(size=(100, 32)) as pilot:
        try:
            await wait_for(lambda: app.lab_ready and app.panels_shown(), DEADLINE, message="dashboard drawn")
            await wait_for(lambda: line_of(app, "lb1").startswith("lb1 ◉ MASTER"), DEADLINE, message="lb1 master")
            yield app, pilot, source
        finally:
            await app.shutdown()
    assert source.lab is None, "the lab must be stopped when the dashboard goes"


def strip(app: SpofkitApp) -> str:
    return app.query_one(FrontDoorStrip).plain


def line_of(app: SpofkitApp, name: str) -> str:
    """The strip's line for balancer ``name``, from its name on, its spaces squeezed: ``lb2 ◉ MASTER ● running``."""
    for line in strip(app).splitlines():
        words = line.split()
        if name in words:
            return " ".join(words[words.index(name) :])
    return ""


def door(app: SpofkitApp) -> str:
    """The flow's balancer box, as it reads."""
    return app.query_one(FlowView).door[0].strip()


def log_text(app: SpofkitApp) -> str:
    from tui.widgets.event_log import EventLog

    return "\n".join(strip.text for strip in app.query_one(EventLog).lines)


def status(source: LabSource) -> LabStatus:
    snapshot = source.status()
    assert snapshot is not None
    return snapshot


def balancer(source: LabSource, name: str) -> BalancerStatus:
    return status(source).balancer(name)


def rate_shown(app: SpofkitApp, name: str) -> int:
    found = re.search(r"(\d+)/s", line_of(app, name))
    assert found, line_of(app, name)
    return int(found[1])


async def test_the_strip_shows_both_balancers_and_the_flow_names_the_one_clients_reach() -> None:
    async with pair_dashboard() as (app, pilot, source):
        assert line_of(app, "lb2").startswith("lb2 ○ BACKUP ● running")
        assert f"holds {status(source).balancer_url.split('//')[1]}" in line_of(app, "lb1")
        assert door(app) == "lb1"
        await wait_for(lambda: rate_shown(app, "lb1") >= 10, DEADLINE, message="lb1 answers the load")
        assert rate_shown(app, "lb2") == 0  # a backup gets no traffic
        # Each balancer checks the instances itself: a crashed instance is marked down by both, each line says whose.
        await pilot.press("2", "c")
        await wait_for(
            lambda: "lb1: b marked DOWN" in log_text(app) and "lb2: b marked DOWN" in log_text(app),
            DEADLINE,
            message="both balancers' verdicts in the log",
        )


async def test_crash_key_kills_lb1_and_the_strip_shows_lb2_master_within_the_master_down_interval() -> None:
    async with pair_dashboard() as (app, pilot, source):
        pressed = source.now()
        await pilot.press("C")  # lb1 is selected: the front door keys act on it
        await wait_for(
            lambda: line_of(app, "lb2").startswith("lb2 ◉ MASTER") and "CRASHED" in line_of(app, "lb1"),
            DEADLINE,
            message="the strip shows lb2 MASTER and lb1 crashed",
        )
        shown_after = source.now() - pressed
        assert shown_after <= MASTER_DOWN + SCREEN_MARGIN, f"{shown_after:.2f}s"
        assert door(app) == "lb2"
        assert balancer(source, "lb1").state == "crashed"
        assert source.lab is not None
        takeover = next(
            e
            for e in source.lab.events.history
            if isinstance(e, BalancerRoleChanged) and e.role == "master" and e.balancer == "lb2" and e.at >= pressed
        )
        assert takeover.describe() in log_text(app)  # "lb2 is now MASTER: no advert from lb1 for 0.7…s"
        assert "lb1 crashed" in log_text(app)
        await wait_for(lambda: rate_shown(app, "lb2") >= 10, DEADLINE, message="lb2 answers the load now")


async def test_recover_key_starts_a_crashed_balancer_again_and_the_primary_takes_the_address_back() -> None:
    async with pair_dashboard() as (app, pilot, _):
        await pilot.press("C")
        await wait_for(lambda: "CRASHED" in line_of(app, "lb1"), DEADLINE, message="lb1 crashed")
        await pilot.press("U")
        # With preempt (the default) the primary takes the address back once it is running again.
        await wait_for(lambda: line_of(app, "lb1").startswith("lb1 ◉ MASTER ● running"), DEADLINE, message="lb1 back")
        await wait_for(lambda: line_of(app, "lb2").startswith("lb2 ○ BACKUP"), DEADLINE, message="lb2 backup again")
        assert "lb1 started again" in log_text(app)
        assert door(app) == "lb1"


async def test_hang_key_leaves_a_master_that_answers_nothing_and_nobody_takes_over() -> None:
    async with pair_dashboard() as (app, pilot, source):
        await wait_for(lambda: rate_shown(app, "lb1") >= 10, DEADLINE, message="lb1 answers the load")
        await pilot.press("H")
        await wait_for(lambda: "HANG" in line_of(app, "lb1"), DEADLINE, message="lb1 shown hung")
        hung_at = source.now()
        await wait_for(lambda: rate_shown(app, "lb1") == 0, DEADLINE, message="lb1 answers nothing any more")
        # Its adverts go on: two master-down intervals later lb2 is still a backup. A gray failure of the front door.
        await wait_for(lambda: source.now() - hung_at > 2 * MASTER_DOWN, DEADLINE)
        assert line_of(app, "lb1").startswith("lb1 ◉ MASTER ◑ HANG")
        assert line_of(app, "lb2").startswith("lb2 ○ BACKUP ● running")
        assert app.query_one(FlowView).door == (" lb1 ", RED)  # clients reach it, and it cannot answer
        await pilot.press("U")
        await wait_for(lambda: rate_shown(app, "lb1") >= 10, DEADLINE, message="lb1 answers again")
        assert "lb1 ◉ MASTER ● running" in line_of(app, "lb1")


async def test_split_brain_key_makes_both_master_and_lb2_blocked_on_loopback_then_recover_heals() -> None:
    async with pair_dashboard() as (app, pilot, source):
        await pilot.press("X")  # cut lb1's adverts: neither hears the other
        await wait_for(
            lambda: line_of(app, "lb2").startswith("lb2 ⊗ MASTER ⊗ BLOCKED"), MASTER_DOWN + DEADLINE, message="lb2"
        )
        assert line_of(app, "lb1").startswith("lb1 ◉ MASTER ≠ ADVERT LOSS")
        assert "cannot take" in line_of(app, "lb2")  # the kernel refused the second listener
        assert door(app) == "2 MASTERS"
        assert {b.role for b in status(source).balancers} == {"master"}
        await pilot.press("U")
        await wait_for(lambda: line_of(app, "lb2").startswith("lb2 ○ BACKUP"), DEADLINE, message="healed")
        assert door(app) == "lb1"


async def test_pick_key_and_a_click_select_the_balancer_the_keys_act_on() -> None:
    async with pair_dashboard() as (app, pilot, _):
        assert app.selected_balancer == "lb1"
        await pilot.press("l")
        assert app.selected_balancer == "lb2"
        await pilot.press("C")  # crashes the backup: lb1 keeps the address, nobody notices but the strip
        await wait_for(lambda: "CRASHED" in line_of(app, "lb2"), DEADLINE, message="lb2 crashed")
        assert line_of(app, "lb1").startswith("lb1 ◉ MASTER ● running")
        await pilot.press("l")
        assert app.selected_balancer == "lb1"
        await pilot.click("#frontdoor", offset=(20, 1))  # lb2's line
        assert app.selected_balancer == "lb2"


async def test_deploy_key_rolls_through_the_instances_and_the_clients_panel_reports_no_failure() -> None:
    # Process isolation: each restart is a new process that takes a moment to start, as in a real deploy (in
    # process a restart is over in a few milliseconds and the whole deploy in a fraction of a second).
    async with pair_dashboard(isolation="process") as (app, pilot, source):
        assert source.lab is not None
        await wait_for(lambda: source.now() > 2.0, DEADLINE)  # a steady load before the deploy
        started = source.now()
        await pilot.press("D")
        await wait_for(lambda: "rolling restart finished: a, b, c" in log_text(app), 90, message="deploy finished")
        finished = source.now()
        log = log_text(app)
        for name in "abc":
            for step in ("drain", "restart", "ready?", "done"):
                assert f"deploy {name}: {step}" in log, f"no {step} line for {name}"
        # The line saying it finished comes after the steps it sums up.
        assert log.index("deploy c: done") < log.index("rolling restart finished")
        steps = [e for e in source.lab.events.history if isinstance(e, DeployStep)]
        assert [s.step for s in steps if s.instance == "a"] == ["drain", "restart", "ready?", "done"]
        # What the clients' panel draws: per whole second, requests served (green) and failed (red). Every second
        # of the deploy, once the last one is complete: some served, none failed; and 100 % over its window.
        await wait_for(lambda: source.now() > finished + 1.2, DEADLINE)
        app.refresh_figures()
        await pilot.pause()
        figures = app.query_one(ClientView).figures
        assert figures is not None and figures.source == "clients"
        last_second = figures.last_second  # the newest whole second, the series' last entry
        deploy_seconds = range(math.floor(started), math.floor(finished) + 1)
        index = [len(figures.failed_series) - 1 - (last_second - second) for second in deploy_seconds]
        during = [e for e in source.lab.events.history if isinstance(e, ClientRequest) and started <= e.at <= finished]
        failures = [(round(e.at, 2), e.error) for e in during if not e.ok]
        drawn = {second: figures.failed_series[i] for second, i in zip(deploy_seconds, index, strict=True)}
        assert all(count == 0 for count in drawn.values()), f"drawn failures {drawn}; requests that failed {failures}"
        # Served in each drawn second of it: at least half of what 20 req/s gives (a deploy of under a second can
        # fall in one second's bucket, and an answer can land just across its edge).
        assert sum(figures.ok_series[i] for i in index) >= 0.5 * 20.0 * len(index), figures.ok_series
        assert "availability 10s 100.00%" in screen_text(app)
        # The truth the panel reports: requests were sent all through the deploy (at least half of what 20 req/s
        # sends in its time, however long it took: under a second on a quiet machine) and none failed.
        assert len(during) >= max(5, 0.5 * 20.0 * (finished - started)), (len(during), finished - started)
        assert not [e for e in during if not e.ok]
        # A second deploy while one runs is refused, and the screen says why.
        await pilot.press("D", "D")
        await wait_for(lambda: "rolling restart failed" in log_text(app), 90, message="the second one refused")
        await wait_for(lambda: log_text(app).count("rolling restart finished") == 2, 90, message="the first one ends")
