"""The dashboard attached to a lab through its admin API (``spofkit tui --connect URL``).

The lab and its admin server run in this test's process; the dashboard only sees them through HTTP: the
status endpoint, the event stream, and ``POST /commands``, where every key's command goes.
"""

from __future__ import annotations

import pytest

pytest.importorskip("textual")

import contextlib
import json
from collections.abc import AsyncIterator

from conftest import wait_for

from spofkit import wire
from spofkit.admin import AdminServer
from spofkit.commands import CommandError, InjectFault, Recover, SetLoad
from spofkit.events import Event, InstanceDown
from spofkit.health import HealthSettings
from spofkit.lab import Lab
from tui.app import SpofkitApp, make_source
from tui.sources import ControlError, RemoteSource
from tui.widgets.event_log import EventLog
from tui.widgets.instance_panel import InstancePanel

DEADLINE = 15.0
TOKEN = "test-token-0123456789"
FAST_CHECKS = HealthSettings(interval=0.1, timeout=0.2, rise=2, fall=2)


@contextlib.asynccontextmanager
async def served_lab() -> AsyncIterator[tuple[Lab, AdminServer]]:
    """A lab of three behind a real admin API on 127.0.0.1, with a known token."""
    async with await Lab.start(3, health=FAST_CHECKS) as lab:
        admin = AdminServer(lab, token=TOKEN)
        await admin.start()
        try:
            yield lab, admin
        finally:
            await admin.stop()


async def test_attached_dashboard_shows_the_remote_lab_and_drives_it() -> None:
    lab = await Lab.start(3, health=FAST_CHECKS)
    admin = AdminServer(lab, token=TOKEN)
    await admin.start()
    try:
        source = make_source(admin.url, rate=20.0, token=admin.token)
        assert isinstance(source, RemoteSource)
        app = SpofkitApp(source)
        async with app.run_test(size=(100, 32)) as pilot:
            try:
                await wait_for(lambda: app.lab_ready and app.panels_shown(), DEADLINE, message="drawn")
                # The lab had no load: attaching started some, and the events stream in.
                await wait_for(lambda: lab.status().load_rate == 20.0, DEADLINE, message="load started")
                await wait_for(lambda: app.model.clients_seen, DEADLINE, message="client events arrive")

                await pilot.press("2", "c")
                panel = app.query_one("#panel-b", InstancePanel)
                await wait_for(lambda: panel.has_class("state-down"), DEADLINE, message="b shows DOWN")
                assert lab.status().instance("b").fault == "crash"
                await pilot.press("r")
                await wait_for(lambda: panel.has_class("state-up"), DEADLINE, message="b shows UP again")

                await pilot.press("b", "t", "k", "j", "minus", "p")
                await wait_for(lambda: lab.status().strategy != "round_robin", DEADLINE, message="strategy")
                await wait_for(lambda: not lab.status().retries, DEADLINE, message="retries off")
                await wait_for(lambda: not lab.status().health_checks, DEADLINE, message="checks off")
                await wait_for(lambda: not lab.status().ejection, DEADLINE, message="ejection off")
                await wait_for(lambda: lab.status().load_rate == 10.0, DEADLINE, message="rate lowered")
                await wait_for(lambda: lab.status().load_paused, DEADLINE, message="load paused")

                await pilot.press("a")
                await wait_for(lambda: len(lab.status().instances) == 4, DEADLINE, message="instance added")
                await wait_for(lambda: app.query("#panel-d"), DEADLINE, message="its panel appears")
            finally:
                await app.shutdown()
        # The load the dashboard started is stopped when it leaves; the lab itself keeps running.
        assert lab.status().load_rate is None
        assert len(lab.status().instances) == 4
    finally:
        await admin.stop()
        await lab.stop()


async def test_connecting_to_nothing_fails_with_a_clear_message() -> None:
    source = RemoteSource("http://127.0.0.1:9")  # the discard port: nothing listens there
    with pytest.raises(ControlError, match="cannot reach a spofkit admin API"):
        await source.start()


async def test_the_dashboard_leaves_with_the_reason_when_nothing_answers() -> None:
    app = SpofkitApp(RemoteSource("http://127.0.0.1:9"))
    async with app.run_test(size=(80, 24)):
        await wait_for(lambda: app.return_code is not None, DEADLINE, message="the app gave up")
    assert app.return_code == 1
    assert app.start_error is not None and "cannot reach a spofkit admin API" in app.start_error


def test_only_loopback_addresses_are_accepted() -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.1 or localhost"):
        RemoteSource("http://example.com:8081")


async def test_a_command_round_trips_through_the_admin_api() -> None:
    async with served_lab() as (lab, admin):
        source = RemoteSource(admin.url, token=TOKEN, start_load=None)
        await source.start()
        try:
            answer = await source.apply(InjectFault("b", "slow", {"ms": 50}))
            assert answer["instance"] == "b" and answer["fault"] == "slow" and answer["params"]["ms"] == 50
            assert lab.status().instance("b").fault == "slow"  # it happened in the lab...
            shown = source.status()
            assert shown is not None and shown.instance("b").fault == "slow"  # ...and the source's status shows it
            assert (await source.apply(SetLoad(rate=5.0)))["load_rate"] == 5.0
            assert lab.status().load_rate == 5.0
            await source.apply(Recover("b"))
            assert lab.status().instance("b").fault is None
        finally:
            await source.stop()


async def test_a_refused_command_comes_back_as_the_labs_command_error() -> None:
    async with served_lab() as (lab, admin):
        source = RemoteSource(admin.url, token=TOKEN, start_load=None)
        await source.start()
        try:
            with pytest.raises(CommandError, match=r"no instance named 'zz'") as refused:
                await source.apply(InjectFault("zz", "crash"))
            assert (refused.value.status, refused.value.field) == (404, "name")
        finally:
            await source.stop()
        wrong = RemoteSource(admin.url, token="not-the-token", start_load=None)
        await wrong.start()  # reading is open on 127.0.0.1
        try:
            with pytest.raises(CommandError, match="needs the admin token") as refused:
                await wrong.apply(InjectFault("b", "crash"))
            assert (refused.value.status, refused.value.field) == (401, "authorization")
            assert lab.status().instance("b").fault is None
        finally:
            await wrong.stop()


async def test_the_dashboard_shows_why_the_remote_lab_refused_a_key() -> None:
    async with served_lab() as (lab, admin):
        app = SpofkitApp(RemoteSource(admin.url, token="not-the-token", start_load=None))
        async with app.run_test(size=(100, 32)) as pilot:
            try:
                await wait_for(lambda: app.lab_ready and app.panels_shown(), DEADLINE, message="drawn")
                await pilot.press("2", "c")
                log = app.query_one(EventLog)
                await wait_for(
                    lambda: any("crash b failed: changing the lab needs the admin token" in s.text for s in log.lines),
                    DEADLINE,
                    message="the refusal in the log",
                )
            finally:
                await app.shutdown()
        assert lab.status().instance("b").fault is None


def test_the_event_stream_is_decoded_by_spofkit_wire_and_bad_lines_are_skipped() -> None:
    source = RemoteSource("http://127.0.0.1:9", token=TOKEN)
    got: list[Event] = []
    source.subscribe(got.append)
    down = InstanceDown(1.5, "b", "3 failed checks", balancer="lb2")
    source._deliver(json.dumps({**wire.event_to_dict(down), "added_by_a_newer_server": 1}))
    source._deliver(json.dumps({"kind": "NoSuchEvent", "at": 1.0}))  # a kind this version does not know
    source._deliver(json.dumps({"kind": "InstanceDown", "at": 2.0}))  # fields missing: skipped, not guessed
    source._deliver("not json")
    assert got == [down]


async def test_attached_to_a_served_pair_the_strip_shows_both_and_the_crash_key_goes_through_the_admin_api() -> None:
    from tui.widgets.front_door import FrontDoorStrip

    async with await Lab.start(2, balancers=2, health=FAST_CHECKS) as lab:
        admin = AdminServer(lab, token=TOKEN)
        await admin.start()
        try:
            app = SpofkitApp(RemoteSource(admin.url, start_load=20.0, token=TOKEN))
            async with app.run_test(size=(100, 32)) as pilot:
                try:
                    strip = app.query_one(FrontDoorStrip)

                    def line(name: str) -> str:
                        words = next((ln.split() for ln in strip.plain.splitlines() if name in ln.split()), [])
                        return " ".join(words[words.index(name) :]) if words else ""

                    await wait_for(lambda: line("lb2").startswith("lb2 ○ BACKUP"), DEADLINE, message="both shown")
                    assert line("lb1").startswith("lb1 ◉ MASTER ● running")
                    await pilot.press("C")  # BalancerFault("lb1", "crash"), as POST /commands
                    await wait_for(
                        lambda: line("lb2").startswith("lb2 ◉ MASTER") and "CRASHED" in line("lb1"),
                        DEADLINE,
                        message="lb2 master, read from GET /status",
                    )
                    assert lab.status().balancer("lb1").state == "crashed"
                    await wait_for(
                        lambda: "lb2 is now MASTER" in "\n".join(s.text for s in app.query_one(EventLog).lines),
                        DEADLINE,
                        message="the role change, from the event stream",
                    )
                    assert "lb1 crashed" in "\n".join(s.text for s in app.query_one(EventLog).lines)
                finally:
                    await app.shutdown()
        finally:
            await admin.stop()
