"""build_report counts a column at a time; it must give exactly what a plain loop over the records gives.

The loop is the report as first written, kept in tests/report_reference.py. Reports are compared whole (a frozen
dataclass: every figure, every timeline bucket, floats bit for bit), on records made up to hit the edges — any
order, ties, unnamed instances, unanswered requests, runs long enough for wide buckets, far from time zero — and on
the records of simulated runs.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from report_reference import reference_build_report

from spofkit.events import FaultInjected, InstanceDown
from spofkit.loadgen import RequestRecord
from spofkit.report import UNKNOWN_INSTANCE, build_report
from spofkit.sim import SimLab

INSTANCES = st.sampled_from([None, "", "a", "b", "c", UNKNOWN_INSTANCE])
ERRORS = st.sampled_from([None, None, None, "", "timeout", "connect", "http_503", "reset"])
STATUSES = st.sampled_from([None, 200, 200, 503, 502])


@st.composite
def runs(draw: st.DrawFn) -> list[RequestRecord]:
    origin = draw(st.sampled_from([0.0, 0.3, 1e6, 86_400.0 * 365]))
    # A short dense run, a run of seconds, or one longer than the timeline's 3,600 one-second buckets.
    length = draw(st.sampled_from([0.05, 1.0, 10.0, 3_599.0, 3_600.0, 5_000.0, 7_200.0, 100_000.0]))
    count = draw(st.integers(min_value=0, max_value=120))
    edges = draw(st.booleans())  # a request at each end of the run: a span of exactly ``length``
    records = []
    for index in range(count):
        if edges and index < 2:
            start = origin + index * length
        elif draw(st.booleans()):
            start = origin + draw(st.floats(min_value=0.0, max_value=length))
        else:  # on a slice's or a second's edge, or on another request's start
            start = origin + draw(st.integers(min_value=0, max_value=int(length * 10))) / 10
        latency = draw(st.sampled_from([0.0, 0.001, 0.005, 0.25, 5.0]))
        records.append(
            RequestRecord(
                index,
                "GET",
                "/",
                start,
                start + latency,
                draw(STATUSES),
                draw(INSTANCES),
                draw(st.integers(min_value=0, max_value=4)),
                draw(ERRORS),
            )
        )
    return draw(st.permutations(records))


@settings(max_examples=150, deadline=None)
@given(runs(), st.booleans())
def test_the_columns_give_what_the_loop_gives(records: list[RequestRecord], with_fault: bool) -> None:
    events = []
    if with_fault and records:
        at = min(r.start for r in records)
        events = [FaultInjected(at, "a", "crash"), InstanceDown(at + 0.7, "a", "3 failed checks")]
    expected = reference_build_report(records, events)
    assert build_report(records, events) == expected
    assert build_report(iter(records), iter(events)) == expected  # any iterables, each read once


@pytest.mark.parametrize("retries", [True, False])
def test_a_simulated_run_reports_what_the_loop_reports(retries: bool) -> None:
    lab = SimLab(4, seed=3, retries=retries, health=False, ejection=False)  # failures go on: outages to count
    faults = [(1.0, "b", "crash", {}), (1.0, "c", "crash", {}), (1.0, "d", "gray", {"rate": 0.5, "status": 503})]
    report = lab.run_load_sync(300, 6.0, faults=faults)
    if retries:
        assert report.retried > 0  # something to count
    else:
        assert report.failed > 0 and report.outage_periods
    events = list(lab.events.history)
    assert build_report(lab.records, events) == reference_build_report(lab.records, events)
    shuffled = list(lab.records)
    random.Random(1).shuffle(shuffled)
    assert build_report(shuffled, events) == reference_build_report(lab.records, events)
