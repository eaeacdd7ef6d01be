"""An instance's capacity as the views show it: busy workers, the queue and the requests shed, in the lab's status
(live and simulated), over the wire, and on the terminal app's instance panel."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest
from conftest import wait_for

from spofkit.capacity import Capacity
from spofkit.lab import Lab
from spofkit.sim import SimLab
from spofkit.wire import status_from_dict, status_to_dict

DEADLINE = 15.0


async def test_the_status_counts_busy_queued_and_shed_as_the_instance_does() -> None:
    # One worker, one place in the queue, 0.6 s of work: of three requests at once, one is served, one waits, one
    # is turned away at once (503). No health checks: they would take the worker and the place too.
    capacity = Capacity(concurrency=1, queue=1, work_ms=600)
    async with await Lab.start(1, capacity=capacity, health=None, retries=None) as lab:
        url = lab.status().instances[0].url
        async with aiohttp.ClientSession() as http:

            async def get() -> int:
                async with http.get(url + "/") as response:
                    return response.status

            requests = [asyncio.ensure_future(get()) for _ in range(3)]
            # The second request queues, the third is shed: each arrives on its own connection, maybe a turn later.
            await wait_for(
                lambda: (lambda r: (r.busy, r.queued, r.shed))(lab.status().instances[0]) == (1, 1, 1),
                DEADLINE,
                message="one served, one waiting, one shed",
            )
            row = lab.status().instances[0]
            assert (row.concurrency, row.busy, row.queued, row.shed) == (1, 1, 1, 1)
            assert sorted(await asyncio.gather(*requests)) == [200, 200, 503]
        row = lab.status().instances[0]
        assert (row.busy, row.queued, row.shed) == (0, 0, 1)
        again = status_from_dict(status_to_dict(lab.status())).instances[0]  # what GET /status and the TUI read
        assert (again.concurrency, again.busy, again.queued, again.shed) == (1, 0, 0, 1)
    async with await Lab.start(1) as unlimited:  # no capacity given: no limit, nothing to show
        assert unlimited.status().instances[0].concurrency is None


def test_the_simulated_status_counts_the_same() -> None:
    lab = SimLab(1, capacity=Capacity(concurrency=1, queue=0, work_ms=100), health=None, retries=None, seed=3)
    report = lab.run_load_sync(rate=50, duration=2)
    row = lab.status().instances[0]
    assert row.concurrency == 1 and row.shed > 0
    assert row.shed == report.errors_by_kind.get("http_503", 0)  # every shed request is a client's 503 here


async def test_the_instance_panel_shows_workers_queue_and_shed() -> None:
    pytest.importorskip("textual")
    from tui.app import SpofkitApp
    from tui.sources import LabSource
    from tui.widgets.instance_panel import InstancePanel

    # 10 req/s over 3 instances of one worker each, 1.5 s of work: every worker busy, every queue full, the rest shed.
    capacity = Capacity(concurrency=1, queue=1, work_ms=1500)
    source = LabSource(rate=10.0, instances=3, capacity=capacity, health=None)
    app = SpofkitApp(source)
    async with app.run_test(size=(120, 32)) as pilot:
        try:
            await wait_for(lambda: app.lab_ready and app.panels_shown(), DEADLINE, message="dashboard drawn")

            def panel_text() -> str:
                return app.query_one("#panel-a", InstancePanel).render().plain

            def overloaded() -> bool:
                text = panel_text()
                shed = re.search(r"shed (\d+)", text)
                return "busy 1/1" in text and "queue 1" in text and shed is not None and int(shed.group(1)) > 0

            await wait_for(overloaded, DEADLINE, message="the panel shows the full worker, the queue, the shed")
            await pilot.pause()
        finally:
            await app.shutdown()
