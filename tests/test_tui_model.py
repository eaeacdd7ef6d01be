"""The dashboard's model and drawing helpers, with hand-made events: every number can be worked out on paper."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

pytest.importorskip("textual")

from spofkit.commands import MAX_LOAD_RATE
from spofkit.events import (
    BalancerRoleChanged,
    ClientRequest,
    DeployStep,
    FaultInjected,
    HealthProbe,
    InstanceDown,
    RequestCompleted,
    RequestRetried,
    SettingChanged,
)
from spofkit.status import FALLING, STATES, UP
from tui.app import RATE_STEPS, next_rate
from tui.model import LabModel, RecentTimes, SecondBuckets, Trip
from tui.scene import _instance
from tui.widgets.flow import lanes_from_status, make_layout, trip_path
from tui.widgets.help_screen import state_legend
from tui.widgets.palette import STATE_LOOK, state_look
from tui.widgets.sparkline import sparkline, stacked_columns


def served(at: float, request_id: int, instance: str, latency: float = 0.01, status: int = 200) -> RequestCompleted:
    return RequestCompleted(at, request_id, "GET", "/", status, instance, 1, latency, "served")


def test_second_buckets_series_and_total() -> None:
    buckets = SecondBuckets()
    for at in (10.1, 10.9, 11.5, 13.0):
        buckets.add(at)
    assert buckets.series(13.2, 4) == [2.0, 1.0, 0.0, 1.0]
    assert buckets.total(13.2, 2) == 1.0


def test_recent_times_count_the_last_second_exactly() -> None:
    recent = RecentTimes(window=1.0)
    for at in (1.0, 1.5, 1.9):
        recent.add(at)
    assert recent.per_second(2.0) == 2.0  # 1.0 is exactly a second old: out
    assert recent.per_second(2.95) == 0.0


def steady_traffic(model: LabModel, start: float, until: float, lanes: str = "abc", rate: float = 30.0) -> float:
    """Round robin over ``lanes`` at ``rate`` req/s from ``start`` until ``until``; returns the last answer's time."""
    last = start
    for i in range(int(start * rate), int(until * rate)):
        at = i / rate
        instance = lanes[i % len(lanes)]
        model.ingest(served(at, i, instance))
        model.ingest(ClientRequest(at + 0.001, i, 200, 0.002, instance, 1))
        last = at + 0.001
    return last


def test_a_crashed_instance_shows_no_rate_and_no_share_a_second_after_its_last_request() -> None:
    model = LabModel(window=10)
    steady_traffic(model, 0.0, 5.0)
    before = model.instance_figures("b", now=5.0)
    assert before.attempts_per_second == pytest.approx(10.0, abs=1.0)
    assert before.share == pytest.approx(1 / 3, abs=0.05)
    # b crashed at 5 s and was marked DOWN: from then on a and c share the traffic.
    steady_traffic(model, 5.0, 6.1, lanes="ac")
    b = model.instance_figures("b", now=6.1)
    assert (b.attempts_per_second, b.share) == (0.0, 0.0)
    a = model.instance_figures("a", now=6.1)
    assert a.share == pytest.approx(0.5, abs=0.05)
    assert a.attempts_per_second == pytest.approx(15.0, abs=1.0)
    assert b.error_rate == 0.0  # a ratio over the last ten seconds: b served fine until it stopped


def test_rates_and_shares_are_zero_a_second_after_traffic_stops() -> None:
    model = LabModel(window=10)
    last = steady_traffic(model, 0.0, 10.0)
    running = model.client_figures(now=last)
    assert running.ok_per_second == pytest.approx(30.0, abs=1.0)
    stopped = model.client_figures(now=last + 1.05)
    assert (stopped.ok_per_second, stopped.failed_per_second) == (0.0, 0.0)
    assert stopped.availability == 1.0  # how the last ten seconds went: still readable
    for name in "abc":
        figures = model.instance_figures(name, now=last + 1.05)
        assert figures.attempts_per_second == 0.0
        assert figures.share is None  # no traffic at all: no share to show ("–")


def test_client_availability_counts_whole_seconds_only() -> None:
    model = LabModel(window=10)
    for i in range(90):  # 9 seconds at 10 req/s, second 5 all failed
        at = 1.0 + i / 10
        error = "connect" if 5.0 <= at < 6.0 else None
        model.ingest(ClientRequest(at, i, None if error else 200, 0.002, "a", 1, error))
    model.ingest(ClientRequest(10.05, 99, None, 0.002, None, 1, "connect"))  # the current second: not counted
    figures = model.client_figures(now=10.5)
    assert figures.source == "clients"
    assert figures.availability == pytest.approx(80 / 90)
    assert figures.failed_per_second == 1.0  # a rate is about now: the failure at 10.05 s, in the last second
    assert figures.p50 == pytest.approx(0.002)


def test_balancer_answers_stand_in_when_no_client_is_seen() -> None:
    model = LabModel()
    model.ingest(served(1.5, 1, "a"))
    model.ingest(RequestCompleted(1.6, 2, "GET", "/", 503, None, 1, 0.001, "failed", "no instance is available"))
    figures = model.client_figures(now=3.0)
    assert figures.source == "balancer"
    assert figures.availability == 0.5


def test_instance_error_rate_and_share_from_retries_and_completions() -> None:
    model = LabModel(window=10)
    # b fails two attempts (retried elsewhere, served by a); c serves one; a serves one more.
    model.ingest(RequestRetried(1.1, 1, 1, "b", "connect failed"))
    model.ingest(RequestCompleted(1.2, 1, "GET", "/", 200, "a", 2, 0.02, "retried"))
    model.ingest(RequestRetried(1.3, 2, 1, "b", "connect failed"))
    model.ingest(RequestCompleted(1.4, 2, "GET", "/", 200, "c", 2, 0.02, "retried"))
    model.ingest(served(1.5, 3, "a", latency=0.04))
    b = model.instance_figures("b", now=2.0)
    a = model.instance_figures("a", now=2.0)
    assert b.error_rate == 1.0
    assert b.share == pytest.approx(2 / 5)
    assert a.error_rate == 0.0
    assert a.share == pytest.approx(2 / 5)
    assert a.latency_series[-1] == pytest.approx(0.03)


def test_a_failed_request_counts_against_the_instance_it_was_last_tried_on() -> None:
    model = LabModel()
    model.ingest(
        RequestCompleted(1.0, 7, "GET", "/", 502, None, 1, 0.001, "failed", "b: connect failed (not retried: off)", "b")
    )
    model.ingest(RequestCompleted(1.1, 8, "GET", "/", 503, None, 0, 0.001, "failed", "no instance is available"))
    assert model.instance_figures("b", now=2.5).error_rate == 1.0
    assert model.instance_figures("a", now=2.5).error_rate is None  # nothing was tried on a


def test_trips_remember_the_lanes_a_retried_request_tried() -> None:
    model = LabModel()
    model.ingest(RequestRetried(1.0, 5, 1, "b", "connect failed"))
    model.ingest(RequestCompleted(1.01, 5, "GET", "/", 200, "c", 2, 0.01, "retried"))
    assert model.take_trips() == [Trip(5, ("b", "c"), "retried", 1.01)]
    assert model.take_trips() == []


def test_served_trips_are_thinned_per_lane_but_failures_are_kept() -> None:
    model = LabModel(min_trip_gap=0.1)
    for i in range(10):
        model.ingest(served(1.0 + i * 0.01, i, "a"))
    model.ingest(RequestCompleted(1.05, 50, "GET", "/", 502, None, 1, 0.001, "failed", "b: connect failed", "b"))
    trips = model.take_trips()
    assert [t.request_id for t in trips] == [0, 50]


def test_log_lines_for_transitions_and_a_summary_for_retries() -> None:
    model = LabModel()
    model.ingest(HealthProbe(1.0, "b", True, "200", 0.001))  # too many to log
    model.ingest(FaultInjected(1.0, "b", "slow", {"ms": 300.0}))
    model.ingest(InstanceDown(2.0, "b", "3 failed checks"))
    model.ingest(SettingChanged(2.1, "retries", False))
    for i in range(3):
        model.ingest(RequestRetried(2.2, i, 1, "b", "connect failed"))
    model.summarise(now=3.0)
    texts = [(line.text, line.tone) for line in model.take_log()]
    assert texts == [
        ("fault on b: slow (ms=300)", "bad"),
        ("b marked DOWN: 3 failed checks", "bad"),
        ("retries → OFF", "info"),
        ("3 retried (b: connect failed ×3)", "warn"),
    ]


def test_with_two_balancers_each_ones_view_is_named_in_the_log_and_the_labs_own_lines_are_not() -> None:
    model = LabModel()
    model.name_balancers = True
    model.ingest(InstanceDown(2.0, "b", "3 failed checks", balancer="lb1"))
    model.ingest(InstanceDown(2.1, "b", "3 failed checks", balancer="lb2"))
    model.ingest(SettingChanged(2.2, "retries", False, balancer="lb2"))
    model.ingest(SettingChanged(2.3, "load_rate", 50.0))  # the lab's load, not a balancer's: no name
    model.ingest(FaultInjected(2.4, "b", "crash"))  # a fact about the instance, whoever looks
    model.ingest(BalancerRoleChanged(2.5, "lb2", "master", "no advert from lb1 for 0.76s"))  # names itself
    model.ingest(BalancerRoleChanged(2.6, "lb1", "stopped", "stopped"))
    model.ingest(DeployStep(3.0, "a", "drain", "no new requests"))
    model.ingest(DeployStep(3.5, "a", "done", "UP and serving"))
    assert [(line.text, line.tone) for line in model.take_log()] == [
        ("lb1: b marked DOWN: 3 failed checks", "bad"),
        ("lb2: b marked DOWN: 3 failed checks", "bad"),
        ("lb2: retries → OFF", "info"),
        ("load rate → 50/s", "info"),
        ("fault on b: crash", "bad"),
        ("lb2 is now MASTER: no advert from lb1 for 0.76s", "warn"),
        ("lb1 is now STOPPED: stopped", "bad"),
        ("deploy a: drain (no new requests)", "info"),
        ("deploy a: done (UP and serving)", "good"),
    ]
    model.name_balancers = False  # one balancer: the lines read as they always did
    model.ingest(InstanceDown(4.0, "b", "3 failed checks"))
    assert [line.text for line in model.take_log()] == ["b marked DOWN: 3 failed checks"]


def test_each_balancers_rate_counts_its_own_answers_of_the_last_second() -> None:
    model = LabModel()
    for i in range(30):  # lb1 answered 30 in the second up to 10.0, lb2 answered 10 in its last half
        model.ingest(dataclasses.replace(served(9.0 + (i + 1) / 30, i, "a"), balancer="lb1"))
    for i in range(10):
        model.ingest(dataclasses.replace(served(9.5 + (i + 1) / 20, 100 + i, "b"), balancer="lb2"))
    assert model.balancer_rate("lb1", now=10.0) == 30.0
    assert model.balancer_rate("lb2", now=10.0) == 10.0
    assert model.balancer_rate("lb1", now=11.0) == 0.0  # a balancer that stopped answering falls to 0 in a second
    assert model.balancer_rate("lb9", now=10.0) == 0.0  # one never heard of answered nothing
    model.reset()
    assert model.balancer_rate("lb2", now=10.0) == 0.0


def test_load_settings_read_as_sentences() -> None:
    assert SettingChanged(1.0, "load_paused", True).describe() == "load paused"
    assert SettingChanged(1.0, "load_paused", False).describe() == "load resumed"
    assert SettingChanged(1.0, "load_rate", 50.0).describe() == "load rate → 50/s"
    assert SettingChanged(1.0, "retries", True).describe() == "retries → ON"


def test_reset_forgets_counts() -> None:
    model = LabModel()
    model.ingest(ClientRequest(1.0, 1, None, 0.1, None, 1, "timeout"))
    model.reset()
    assert model.client_figures(now=3.0).availability is None


def test_rate_steps() -> None:
    assert next_rate(30.0, 1) == 50.0
    assert next_rate(30.0, -1) == 20.0
    assert next_rate(35.0, -1) == 30.0
    assert next_rate(RATE_STEPS[-1], 1) == RATE_STEPS[-1]
    assert next_rate(RATE_STEPS[0], -1) == RATE_STEPS[0]
    assert RATE_STEPS[-1] <= MAX_LOAD_RATE  # + never asks for a rate SetLoad refuses


def test_sparkline_blank_for_zero_and_scaled_to_top() -> None:
    assert sparkline([0, 1, 2, 4], 4) == " ▃▅█"
    assert sparkline([1], 3, top=100) == "  ▁"  # tiny, but not invisible
    assert sparkline([], 2) == "  "


def test_stacked_columns_put_failures_at_the_bottom() -> None:
    rows = stacked_columns([0, 1], [2, 2], width=2, height=2)
    assert [cell[1] for cell in rows[1]] == [1, 2]  # bottom row: ok, then failure
    assert [cell[1] for cell in rows[0]] == [1, 1]  # top row: successes above both


def test_a_retried_trip_hops_from_the_failed_lane_to_the_serving_one() -> None:
    layout = make_layout(width=60, rows=3, tail_width=12)
    row_of = {"a": 0, "b": 1, "c": 2}
    path, failures = trip_path(Trip(1, ("b", "c"), "retried", 0.0), layout, row_of)
    assert path[-1] == (2, layout.lane_end)  # ends at c
    failed_cell = path[failures[0]]
    assert failed_cell[0] == 1  # the ✗ is on b's lane
    after = path[failures[0] + 1 :]
    assert {row for row, _ in after} == {2}  # then it hops straight to c's lane


# --- one vocabulary: spofkit's states and the lab's public face, nothing of tui's own --------------------------

TUI = Path(__file__).resolve().parent.parent / "tui"
# What the dashboard may use of a Lab object: the way a notebook uses it, not its parts.
LAB_FACE = {"start", "stop", "apply", "status", "now", "events", "isolation"}


def test_every_state_of_spofkit_status_has_a_look_a_border_and_a_line_in_the_help() -> None:
    css = (TUI / "app.tcss").read_text()
    legend = "".join(text for text, _ in state_legend())
    for state in STATES:
        assert state in STATE_LOOK, f"no glyph and colour for {state!r}"
        assert f".instance-panel.state-{state} " in css, f"no border colour for {state!r} in app.tcss"
        assert f"{state_look(state)[0]} {state.upper()}" in legend, legend
    assert [lane.state for lane in lanes_from_status([_instance("x", state) for state in STATES])] == list(STATES)


def test_a_backup_members_label_comes_from_its_status_row() -> None:
    lanes = lanes_from_status([_instance("a", UP), _instance("z", FALLING, backup=True, health_failures=1)])
    assert [(lane.name, lane.label, lane.backup) for lane in lanes] == [("a", "UP", False), ("z", "FALLING 1/3", True)]


def _tui_modules() -> list[tuple[str, ast.Module]]:
    return [(str(path.relative_to(TUI.parent)), ast.parse(path.read_text())) for path in sorted(TUI.rglob("*.py"))]


def test_no_tui_module_spells_a_state_of_its_own() -> None:
    spelled = []
    for where, tree in _tui_modules():
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in STATES and id(node) not in docstrings:
                spelled.append(f"{where}:{node.lineno} {node.value!r}")
    assert not spelled, f"use the constants of spofkit.status instead: {spelled}"


def _last_name(node: ast.expr) -> str:
    """``lab`` for ``lab`` and for ``self.lab``; "" for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    return node.attr if isinstance(node, ast.Attribute) else ""


def test_no_tui_module_reaches_into_a_lab() -> None:
    reached = [
        f"{where}:{node.lineno} {_last_name(node.value)}.{node.attr}"
        for where, tree in _tui_modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and _last_name(node.value) in ("lab", "Lab") and node.attr not in LAB_FACE
    ]
    assert not reached, f"read status snapshots and events, send commands: {reached}"
