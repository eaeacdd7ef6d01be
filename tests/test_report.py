"""Reports from hand-made records and events: every number can be worked out on paper."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spofkit.events import FaultInjected, InstanceDown, InstanceUp
from spofkit.loadgen import RequestRecord
from spofkit.report import (
    UNKNOWN_INSTANCE,
    Report,
    TimelineBucket,
    build_report,
    compare,
    percentile,
    plot_timeline,
)


def record(
    id: int,
    start: float,
    end: float,
    status: int | None,
    instance: str | None,
    error: str | None = None,
    attempts: int = 1,
) -> RequestRecord:
    return RequestRecord(id, "GET", "/", start, end, status, instance, attempts, error)


# A run around a crash of instance "a" at 1.4 s, detected at 2.9 s.
RECORDS = [
    record(0, 0.1, 0.11, 200, "a"),
    record(1, 0.5, 0.52, 200, "b"),
    record(2, 1.2, 1.23, 200, "a", attempts=2),
    record(3, 1.5, 1.6, None, None, "connect"),
    record(4, 2.1, 2.15, 502, None, "http_502"),
    record(5, 2.4, 3.4, None, None, "timeout"),
    record(6, 4.2, 4.24, 200, "b"),
    record(7, 4.6, 4.61, 200, None),  # served, but nobody said by whom
]
EVENTS = [
    InstanceDown(at=1.0, instance="a", reason="before the fault: not a detection of it"),
    InstanceUp(at=1.1, instance="a"),
    FaultInjected(at=1.4, instance="a", fault="crash"),
    InstanceDown(at=2.0, instance="b", reason="another instance"),
    InstanceDown(at=2.9, instance="a", reason="3 failed checks"),
    InstanceDown(at=3.5, instance="a", reason="later, ignored"),
]


@pytest.fixture
def report() -> Report:
    return build_report(RECORDS, EVENTS)


def test_counts_and_availability(report: Report) -> None:
    assert (report.requests, report.succeeded, report.failed) == (8, 5, 3)
    assert report.availability == pytest.approx(5 / 8)
    assert report.retried == 1


def test_errors_by_kind_and_per_instance(report: Report) -> None:
    assert report.errors_by_kind == {"connect": 1, "http_502": 1, "timeout": 1}
    assert report.per_instance == {"a": 2, "b": 2, UNKNOWN_INSTANCE: 1}
    assert list(report.per_instance) == ["a", "b", UNKNOWN_INSTANCE]  # largest first, then by name
    assert sum(report.per_instance.values()) == report.succeeded


def test_latency_percentiles_are_over_answered_requests(report: Report) -> None:
    # Answered: 0.01, 0.02, 0.03, 0.05 (the 502), 0.04, 0.01; not the refused nor the timed out.
    assert report.latency_p50 == pytest.approx(0.02)
    assert report.latency_p95 == pytest.approx(0.05)
    assert report.latency_p99 == pytest.approx(0.05)
    assert report.latency_max == pytest.approx(0.05)


def test_fault_detection_and_outage(report: Report) -> None:
    assert report.fault_at == 1.4
    assert report.fault_instance == "a"
    assert report.detection_window == pytest.approx(1.5)
    assert report.detected_at == pytest.approx(2.9)
    assert report.first_failure_at == 1.5
    assert report.last_failure_at == 3.4
    assert report.client_visible_outage == pytest.approx(1.9)


def test_fault_arguments_override_and_complete_the_events() -> None:
    later = build_report(RECORDS, EVENTS, fault_at=2.0)  # instance still taken from the event
    assert later.fault_instance == "a"
    assert later.detection_window == pytest.approx(0.9)

    explicit = build_report(RECORDS, EVENTS, fault_at=1.9, fault_instance="b")
    assert explicit.detection_window == pytest.approx(0.1)

    # No FaultInjected for "b" and no fault_at: nothing to measure detection from.
    unknown_time = build_report(RECORDS, EVENTS, fault_instance="b")
    assert unknown_time.fault_at is None
    assert unknown_time.detection_window is None


def test_undetected_fault_and_no_fault() -> None:
    undetected = build_report(RECORDS, [FaultInjected(at=1.4, instance="a", fault="hang")])
    assert undetected.fault_at == 1.4
    assert undetected.detection_window is None
    assert undetected.detected_at is None
    assert "never" in undetected.to_text()

    no_fault = build_report(RECORDS)
    assert no_fault.fault_at is None and no_fault.fault_instance is None
    assert no_fault.detection_window is None


def test_timeline_buckets_by_start_second(report: Report) -> None:
    assert [(b.second, b.ok, b.failed, b.by_instance) for b in report.timeline] == [
        (0, 2, 0, {"a": 1, "b": 1}),
        (1, 1, 1, {"a": 1}),
        (2, 0, 2, {}),
        (3, 0, 0, {}),  # a quiet second is kept, so a plot shows the gap
        (4, 2, 0, {"b": 1, UNKNOWN_INSTANCE: 1}),
    ]
    expected_p50 = [0.01, 0.03, 0.05, None, 0.01]
    for bucket, expected in zip(report.timeline, expected_p50, strict=True):
        assert bucket.p50_latency == (None if expected is None else pytest.approx(expected))
    assert all(isinstance(b, TimelineBucket) for b in report.timeline)


def test_no_requests_and_no_failures() -> None:
    empty = build_report([])
    assert empty.requests == 0
    assert empty.availability == 1.0  # documented: nothing failed
    assert empty.client_visible_outage == 0.0
    assert empty.latency_p50 is None and empty.latency_max is None
    assert empty.timeline == []
    assert "requests" in empty.to_text()

    healthy = build_report([RECORDS[0], RECORDS[1]])
    assert healthy.availability == 1.0
    assert healthy.client_visible_outage == 0.0
    assert healthy.first_failure_at is None and healthy.last_failure_at is None
    assert healthy.errors_by_kind == {}


def test_percentile_nearest_rank() -> None:
    values = [10.0, 1.0, 9.0, 2.0, 8.0, 3.0, 7.0, 4.0, 6.0, 5.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 5.0
    assert percentile(values, 90) == 9.0
    assert percentile(values, 91) == 10.0
    assert percentile(values, 100) == 10.0
    assert percentile([], 50) is None


@pytest.mark.parametrize("bad_p", [-1, 100.5, math.nan])
def test_percentile_rejects_p_outside_0_to_100(bad_p: float) -> None:
    with pytest.raises(ValueError, match="percentile p"):
        percentile([1.0, 2.0], bad_p)


@given(
    st.lists(st.floats(0, 10, allow_nan=False), min_size=1, max_size=50),
    st.floats(0, 100),
    st.floats(0, 100),
)
def test_percentile_is_a_measured_value_and_grows_with_p(values: list[float], p: float, q: float) -> None:
    low, high = sorted((p, q))
    assert percentile(values, low) in values
    assert percentile(values, low) <= percentile(values, high)  # type: ignore[operator]


def test_text_dict_and_html(report: Report) -> None:
    text = report.to_text("crash of a")
    assert "crash of a" in text
    assert "62.50 %" in text
    assert "p50 20.0 ms" in text
    assert "1.50 s" in text  # detection window
    assert "1.90 s" in text  # client-visible outage

    as_dict = report.as_dict()
    assert as_dict["failed"] == 3
    assert as_dict["timeline"][0]["second"] == 0
    json.dumps(as_dict)  # JSON-ready

    html = report._repr_html_()
    assert html.startswith("<table") and "62.50 %" in html


def test_compare_puts_reports_side_by_side(report: Report) -> None:
    healthy = build_report([RECORDS[0], RECORDS[1]])
    table = compare({"one instance": report, "failover": healthy})
    header, rule, *rows = table.splitlines()
    assert "one instance" in header and "failover" in header
    assert set(rule) == {"-"}
    labels = [row.split("  ")[0] for row in rows]
    assert labels == [
        "requests",
        "client errors",
        "availability",
        "retried",
        "detection window",
        "client-visible outage",
        "latency p50",
        "latency p99",
    ]
    availability_row = rows[2]
    assert "62.50 %" in availability_row and "100.00 %" in availability_row
    assert availability_row.index("62.50 %") < availability_row.index("100.00 %")  # column order
    with pytest.raises(ValueError, match="at least one report"):
        compare({})


def test_plot_timeline_draws_bars_and_fault_lines(report: Report) -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax = plot_timeline(report, title="crash of a")
    try:
        assert len(ax.containers) == 2  # ok and failed bars
        assert [len(bars) for bars in ax.containers] == [5, 5]  # one bar per second
        assert [line.get_xdata()[0] for line in ax.lines] == pytest.approx([1.4, 2.9])
        assert ax.get_title() == "crash of a"
    finally:
        plt.close(ax.figure)

    figure, given_ax = plt.subplots()
    try:
        assert plot_timeline(build_report(RECORDS), ax=given_ax) is given_ax
        assert len(given_ax.lines) == 0  # no fault, no lines
    finally:
        plt.close(figure)
