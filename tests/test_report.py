"""Reports from hand-made records and events: every number can be worked out on paper."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable

import pytest
from figure_checks import overlapping_texts
from hypothesis import given
from hypothesis import strategies as st

from spofkit.events import (
    Event,
    FaultCleared,
    FaultInjected,
    InstanceDown,
    InstanceEjected,
    InstanceRestarted,
    InstanceUp,
)
from spofkit.loadgen import RequestRecord
from spofkit.report import (
    MAX_TIMELINE_BUCKETS,
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
    # Failures are dated by when they were sent: the timed-out request 5 was sent at 2.4 s.
    assert report.first_failure_at == 1.5
    assert report.last_failure_at == 2.4
    assert report.failure_span == pytest.approx(0.9)
    # 8 requests in 4.5 s: slices of 3 requests' worth (1.93 s); only the middle one is mostly failures.
    assert report.run_start == 0.1
    assert report.run_end == pytest.approx(4.6 + 4.5 / 7)
    assert report.outage_slice == pytest.approx(3 / (7 / 4.5))
    assert report.outage_periods == [
        (pytest.approx(0.1 + report.outage_slice), pytest.approx(0.1 + 2 * report.outage_slice))
    ]
    assert report.client_visible_outage == pytest.approx(report.outage_slice)


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


@pytest.mark.parametrize(
    ("end", "words"),
    [
        (FaultCleared(at=2.0, instance="a", fault="crash"), "recovered"),
        (InstanceRestarted(at=2.0, instance="a"), "restarted"),
        (FaultInjected(at=2.0, instance="a", fault="slow", params={"ms": 100}), "replaced by another fault"),
    ],
)
def test_a_fault_that_ended_before_anyone_saw_it_was_never_detected(end: Event, words: str) -> None:
    # As with random failures: "a" fails for a second, unseen; it fails again later, and that one is seen.
    events = [
        FaultInjected(at=1.0, instance="a", fault="crash"),
        InstanceDown(at=1.5, instance="b", reason="another instance"),
        end,
        FaultInjected(at=300.0, instance="a", fault="crash"),
        InstanceDown(at=302.5, instance="a", reason="3 failed checks"),
    ]
    first = build_report(RECORDS, events)
    assert first.fault_at == 1.0 and first.detection_window is None, words
    assert "detected      never (a was not marked down while the fault lasted)" in first.to_text()
    assert build_report(RECORDS, events, fault_at=300.0).detection_window == pytest.approx(2.5)


def test_a_fault_the_checks_never_saw_but_passive_ejection_took_out_says_so() -> None:
    # As in zones.toml: f fails briefly; its requests fail, the balancer ejects it, it is back before the checks
    # mark it down. "Detected never" alone reads as if nothing noticed.
    events = [
        FaultInjected(at=105.53, instance="f", fault="crash"),
        InstanceEjected(at=105.60, instance="e", duration=5.0, consecutive_failures=3),
        InstanceEjected(at=105.67, instance="f", duration=5.0, consecutive_failures=3),
        FaultCleared(at=106.0, instance="f", fault="crash"),
        InstanceEjected(at=200.0, instance="f", duration=5.0, consecutive_failures=3),
    ]
    report = build_report(RECORDS, events)
    assert report.detection_window is None and report.ejection_window == pytest.approx(0.14)
    text = report.to_text()
    assert "detected      never (f was not marked down while the fault lasted)" in text
    assert "ejected       0.14 s after it (at 105.67 s): passive checks saw its requests fail" in text
    # Ejected only after the fault ended: not this fault's doing.
    late = build_report(RECORDS, [events[0], events[3], events[4]])
    assert late.ejection_window is None and "ejected" not in late.to_text()


def test_a_fault_that_replaces_another_is_timed_from_its_own_start() -> None:
    # Injecting a crash over a slow fault clears the slow one at the same instant, just before.
    events = [
        FaultInjected(at=1.0, instance="a", fault="slow", params={"ms": 100}),
        FaultCleared(at=2.0, instance="a", fault="slow"),
        FaultInjected(at=2.0, instance="a", fault="crash"),
        InstanceDown(at=3.2, instance="a", reason="3 failed checks"),
    ]
    assert build_report(RECORDS, events).detection_window is None  # the slow one: replaced, unseen
    assert build_report(RECORDS, events, fault_at=2.0).detection_window == pytest.approx(1.2)


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


def test_a_simulated_year_of_sparse_requests_gets_wider_buckets_not_31_million() -> None:
    # A request every ~5 minutes for a year (a simulated run): one-second buckets would be 31.5 million of them.
    year = 365 * 86400
    records = [record(i, 10.0 + i * 300.0, 10.05 + i * 300.0, 200, "a") for i in range(year // 300)]
    records[1000] = record(1000, records[1000].start, records[1000].start + 1.0, None, None, "timeout")
    report = build_report(records)
    assert len(report.timeline) <= MAX_TIMELINE_BUCKETS
    width = report.timeline[0].seconds
    assert width > 1 and all(b.seconds == width for b in report.timeline[:-1])
    assert 1 <= report.timeline[-1].seconds <= width  # the last one ends with the run
    assert sum(b.ok for b in report.timeline) == len(records) - 1  # every request still counted, once
    failed = [b for b in report.timeline if b.failed]
    assert len(failed) == 1 and failed[0].second <= records[1000].start < failed[0].second + width
    assert report.timeline[0].second == 10 and report.timeline[-1].second + width > records[-1].start


def test_the_last_wide_bucket_is_as_narrow_as_what_is_left_of_the_run() -> None:
    records = [record(i, float(i), i + 0.01, 200, "a") for i in range(MAX_TIMELINE_BUCKETS + 1)]  # one s too long
    timeline = build_report(records).timeline
    assert timeline[0].seconds == 2 and all(b.ok == 2 for b in timeline[:-1])
    assert (timeline[-1].seconds, timeline[-1].ok) == (1, 1)  # narrower, not a dip in the traffic


def test_an_hour_keeps_one_second_buckets(report: Report) -> None:
    records = [record(i, float(i), i + 0.01, 200, "a") for i in range(MAX_TIMELINE_BUCKETS)]
    timeline = build_report(records).timeline
    assert len(timeline) == MAX_TIMELINE_BUCKETS and all(b.seconds == 1 and b.ok == 1 for b in timeline)
    assert all(b.seconds == 1 for b in report.timeline)


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
    assert healthy.failure_span == 0.0 and healthy.outage_periods == []
    assert healthy.errors_by_kind == {}
    assert "outage seen   0.00 s  (no request failed)" in healthy.to_text()
    assert "failures      none" in healthy.to_text()


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
    assert "outage seen   1.93 s  (most requests failed: 2.03 s -> 3.96 s)" in text
    assert "failures      3 failed, sent from 1.50 s to 2.40 s (first -> last failure 0.90 s)" in text

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
        "first → last failure",
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


# --- the client-visible outage means what it says ----------------------------------------------------


def steady_run(
    rate: float, duration: float, fails: Callable[[float], bool], *, answer_after: Callable[[float], float]
) -> list[RequestRecord]:
    """Open-loop records: one request every 1/rate s for ``duration`` s; ``fails(start)`` picks the failures,
    ``answer_after(start)`` how long each took."""
    records = []
    for i in range(round(rate * duration)):
        start = i / rate
        failed = fails(start)
        status, error = (None, "timeout") if failed else (200, None)
        records.append(record(i, start, start + answer_after(start), status, None if failed else "a", error))
    return records


def test_a_hang_whose_requests_end_after_the_run_is_an_outage_clipped_to_the_run() -> None:
    # 5 s at 100 req/s to one instance; it hangs at 2.0 s: every request from then on times out after 5 s,
    # so the last answers come at 9.99 s. The old "first failure's start to last failure's end" said 7.99 s.
    records = steady_run(100, 5, lambda t: t >= 2.0, answer_after=lambda t: 5.0 if t >= 2.0 else 0.01)
    report = build_report(records, [FaultInjected(at=2.0, instance="a", fault="hang")])
    assert max(r.end for r in records) == pytest.approx(9.99)
    assert report.run_start == 0.0 and report.run_end == pytest.approx(5.0)
    assert report.client_visible_outage == pytest.approx(3.0)
    assert report.outage_periods == [(pytest.approx(2.0), pytest.approx(5.0))]
    assert report.client_visible_outage <= report.run_end - report.run_start
    assert report.failure_span == pytest.approx(2.99)
    assert "outage seen   3.00 s  (most requests failed: 2.00 s -> 5.00 s)" in report.to_text()


def test_scattered_errors_are_not_an_outage_but_have_a_span() -> None:
    # 4 s at 100 req/s, 8 single failures spread from 0.62 s to 2.84 s: 98 % availability, as in lesson 05.
    scattered = {0.62, 0.9, 1.2, 1.5, 1.81, 2.1, 2.5, 2.84}
    records = steady_run(100, 4, lambda t: round(t, 2) in scattered, answer_after=lambda t: 0.01)
    report = build_report(records)
    assert report.failed == 8
    assert report.client_visible_outage == 0.0
    assert report.outage_periods == []
    assert report.failure_span == pytest.approx(2.22)
    assert "(at no time did most requests fail)" in report.to_text()
    assert "first -> last failure 2.22 s" in report.to_text()
    table = compare({"scattered": report})
    assert re.search(r"client-visible outage\s+0\.00 s", table)
    assert re.search(r"first → last failure\s+2\.22 s", table)


def test_a_real_outage_is_the_time_most_requests_failed() -> None:
    # One server down from 1.0 s to 3.0 s of a 5 s run: every request sent then fails at once.
    records = steady_run(100, 5, lambda t: 1.0 <= t < 3.0, answer_after=lambda t: 0.001)
    report = build_report(records)
    assert report.client_visible_outage == pytest.approx(2.0)
    assert report.outage_periods == [(pytest.approx(1.0), pytest.approx(3.0))]
    assert report.outage_slice == pytest.approx(0.1)


def test_one_in_three_failing_is_no_outage_but_two_in_three_is() -> None:
    # Round robin with one of three instances dead, then two of three: every third request, then two in three.
    one_dead = build_report(steady_run(90, 3, lambda t: round(t * 90) % 3 == 1, answer_after=lambda t: 0.001))
    assert one_dead.client_visible_outage == 0.0 and one_dead.failed == 90
    two_dead = build_report(steady_run(90, 3, lambda t: round(t * 90) % 3 != 0, answer_after=lambda t: 0.001))
    assert two_dead.client_visible_outage == pytest.approx(3.0)


def test_at_a_low_rate_the_slices_widen_so_an_outage_is_not_cut_in_pieces() -> None:
    # 5 req/s: 0.1 s slices would hold a request every other slice and measure half the outage.
    records = steady_run(5, 10, lambda t: 2.0 <= t < 6.0, answer_after=lambda t: 0.001)
    report = build_report(records)
    assert report.outage_slice == pytest.approx(0.6)
    assert report.client_visible_outage == pytest.approx(4.0, abs=report.outage_slice)
    assert len(report.outage_periods) == 1


# --- the timeline plot: every line visible, no text over another ------------------------------------


def relative_luminance(colour: str) -> float:
    from matplotlib.colors import to_rgb

    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in to_rgb(colour))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(one: str, other: str) -> float:
    """WCAG contrast ratio: 1 (the same) to 21 (black on white); 3 is the minimum for lines and shapes."""
    high, low = sorted((relative_luminance(one), relative_luminance(other)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_the_detected_marker_stands_out_on_green_bars_red_bars_and_white() -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax = plot_timeline(build_report(RECORDS, EVENTS))
    try:
        fault, detected = ax.lines
        bar_colours = {matplotlib.colors.to_hex(patch.get_facecolor()) for bars in ax.containers for patch in bars}
        assert len(bar_colours) == 2  # green and red
        for line in (fault, detected):
            # A white edge around the line keeps it visible where it crosses a bar of any colour...
            edges = [getattr(effect, "_gc", {}).get("foreground") for effect in line.get_path_effects()]
            assert "white" in edges
            assert contrast(line.get_color(), "white") >= 4.5
            for bar in bar_colours:
                assert contrast("white", bar) >= 3.0, bar
        # ...and the detected marker stands out on the green bars it was lost on, even without its edge.
        assert contrast(detected.get_color(), "#2ca02c") >= 3.0
        assert detected.get_linestyle() != fault.get_linestyle()
        assert detected.get_linewidth() >= 2.5
    finally:
        plt.close(ax.figure)


def test_stacked_timelines_label_time_once_and_no_text_overlaps() -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    report = build_report(RECORDS, EVENTS)
    # Lesson 02's figure: two plots sharing time, the lower one with a title of its own.
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, layout="constrained")
    try:
        plot_timeline(report, ax=top, title="round robin, no health checks")
        bottom.bar([0, 1], [1, 2])
        bottom.set_title("who answered")
        bottom.set_xlabel("lab time (s)")
        assert top.get_xlabel() == ""  # the lower plot carries the shared axis' label
        assert overlapping_texts(figure) == []
    finally:
        plt.close(figure)
    # Without constrained layout the top's label would still not run into the title below.
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    try:
        plot_timeline(report, ax=top, title="top")
        bottom.set_title("who answered")
        assert [pair for pair in overlapping_texts(figure) if "xlabel" in pair[0] or "xlabel" in pair[1]] == []
    finally:
        plt.close(figure)
    # Side by side with a shared y axis (lesson 04): the count is labelled once, on the left.
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 3), sharey=True, layout="constrained")
    try:
        plot_timeline(report, ax=left, title="retries off")
        plot_timeline(report, ax=right, title="retries on")
        assert left.get_ylabel() == "requests sent / s" and right.get_ylabel() == ""
        assert left.get_xlabel() == right.get_xlabel() == "lab time (s)"
        assert overlapping_texts(figure) == []
    finally:
        plt.close(figure)
    # A single plot keeps its label.
    ax = plot_timeline(report, title="alone")
    try:
        assert ax.get_xlabel() == "lab time (s)"
        assert overlapping_texts(ax.figure) == []
    finally:
        plt.close(ax.figure)


def test_the_outage_is_shaded_where_most_requests_failed() -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    report = build_report(steady_run(100, 5, lambda t: 1.0 <= t < 3.0, answer_after=lambda t: 0.001))
    ax = plot_timeline(report)
    try:
        shaded = [patch for patch in ax.patches if patch.get_label() == "outage: most failing"]
        assert len(shaded) == 1
        since, width = shaded[0].get_x(), shaded[0].get_width()
        assert (since, since + width) == (pytest.approx(1.0), pytest.approx(3.0))
        assert "outage: most failing" in [text.get_text() for text in ax.get_legend().get_texts()]
    finally:
        plt.close(ax.figure)


def test_a_simulated_report_says_so_in_its_text_and_table() -> None:
    simulated = build_report(RECORDS, [], simulated=True)
    assert simulated.to_text().splitlines()[1] == "simulated     in virtual time by spofkit.sim, not a live run"
    assert "<th style='text-align:left'>simulated</th>" in simulated._repr_html_()
    live = build_report(RECORDS, [])
    assert "simulated" not in live.to_text() and "simulated" not in live._repr_html_()
