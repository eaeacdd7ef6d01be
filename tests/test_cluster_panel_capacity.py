"""The cluster panel shows how full an instance with a capacity is: busy workers, the queue, the requests shed.

Read as a learner reads the row: the text of its cells, tags and all styling taken off, on a simulated lab
overloaded in virtual time (three instances of four workers and a queue of two, 100 ms of work each: 120 req/s
between them, offered 300).
"""

from __future__ import annotations

import html
import re
from typing import cast

import pytest

from spofkit.capacity import Capacity
from spofkit.commands import SetLoad
from spofkit.lab import Lab
from spofkit.sim import SimLab
from spofkit.widgets import ClusterPanel
from spofkit.widgets.instance_row import InstanceRow

CAPACITY = Capacity(concurrency=4, queue=2, work_ms=100)
SHOWN = re.compile(r"busy (\d+)/(\d+) · queue (\d+) · shed ([\d,]+)")


def shown(widget: object) -> str:
    """What an HTML widget shows, as text (nothing if it is hidden)."""
    if getattr(widget, "layout").display == "none":  # noqa: B009 - ipywidgets is untyped
        return ""
    return html.unescape(re.sub(r"<[^>]+>", "", getattr(widget, "value")))  # noqa: B009


def row_text(row: InstanceRow) -> str:
    return "  ".join(text for cell in row.box.children[0].children if (text := shown(cell)))


def overloaded_lab() -> SimLab:
    # No health checks, retries or ejection: every instance stays in the pool and every request is sent once, so
    # all three fill up alike.
    return SimLab(3, capacity=CAPACITY, health=None, retries=None, ejection=None, seed=1)


async def test_an_overloaded_instances_row_shows_its_busy_workers_queue_and_shed_requests() -> None:
    lab = overloaded_lab()
    panel = ClusterPanel(cast(Lab, lab))
    try:
        assert SHOWN.search(row_text(panel.row("a"))).groups() == ("0", "4", "0", "0")  # type: ignore[union-attr]
        await panel.set_load(300)
        lab.advance_sync(3.0)
        panel.refresh()
        for name in "abc":
            text = row_text(panel.row(name))
            found = SHOWN.search(text)
            assert found is not None, f"{name}'s row shows no capacity: {text!r}"
            busy, workers, queued, shed = found.groups()
            status = lab.status().instance(name)
            assert (int(busy), int(workers), int(queued)) == (status.busy, 4, status.queued), text
            assert int(busy) == 4 and int(queued) >= 1, text  # full: every worker busy, requests waiting
            assert int(shed.replace(",", "")) == status.shed > 50, text  # ~60 of its 100 req/s turned away
        assert "capacity" in shown(panel.capacity_heading)
    finally:
        panel.close()


def test_full_workers_and_a_queue_are_orange_and_shed_requests_red() -> None:
    lab = overloaded_lab()
    lab.apply_sync(SetLoad(rate=300))
    lab.advance_sync(3.0)
    panel = ClusterPanel(cast(Lab, lab))
    try:
        cell = panel.row("b").capacity.value
        assert "<b style='color:#ef6c00'>4/4</b>" in cell and "<b style='color:#ef6c00'>2</b>" in cell
        assert re.search(r"<b style='color:#c62828'>[\d,]+</b>", cell)
    finally:
        panel.close()


@pytest.mark.parametrize("capacity", [None, Capacity(work_ms=100)], ids=["default", "no limit"])
def test_an_instance_without_a_limit_shows_nothing_of_it(capacity: Capacity | None) -> None:
    lab = SimLab(3, capacity=capacity, health=None, retries=None, seed=1)
    lab.apply_sync(SetLoad(rate=300))
    lab.advance_sync(1.0)
    panel = ClusterPanel(cast(Lab, lab))
    try:
        for name in "abc":
            text = row_text(panel.row(name))
            assert "busy" not in text and "queue" not in text and "shed" not in text, text
            assert panel.row(name).capacity.layout.display == "none"
        assert shown(panel.capacity_heading) == ""
    finally:
        panel.close()
