"""The dashboard attached to a lab through its admin API (``spofkit tui --connect URL``).

The lab and its admin server run in this test's process; the dashboard only sees them through HTTP: the
status endpoint, the event stream, and the control endpoints its keys call.
"""

from __future__ import annotations

import pytest

pytest.importorskip("textual")

from conftest import wait_for

from spofkit.admin import AdminServer
from spofkit.health import HealthSettings
from spofkit.lab import Lab
from tui.app import SpofkitApp, make_source
from tui.source import ControlError, RemoteSource
from tui.widgets.instance_panel import InstancePanel

DEADLINE = 15.0


async def test_attached_dashboard_shows_the_remote_lab_and_drives_it() -> None:
    lab = await Lab.start(3, health=HealthSettings(interval=0.1, timeout=0.2, rise=2, fall=2))
    admin = AdminServer(lab)
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
