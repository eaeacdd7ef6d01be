"""The report as it was first written: a plain loop over the records, one rule at a time, kept as the reference
that :func:`spofkit.report.build_report` (which works on columns, for a million records) must agree with exactly.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable, Sequence

from spofkit.events import Event, FaultInjected
from spofkit.loadgen import RequestRecord
from spofkit.report import (
    MAX_TIMELINE_BUCKETS,
    OUTAGE_SLICE,
    REQUESTS_PER_SLICE,
    UNKNOWN_INSTANCE,
    Report,
    TimelineBucket,
    _detection_window,  # not rewritten: shared, so only the rewritten parts are compared
    percentile,
)


def reference_build_report(
    records: Iterable[RequestRecord],
    events: Iterable[Event] = (),
    *,
    fault_at: float | None = None,
    fault_instance: str | None = None,
) -> Report:
    """Summarise a load generator's ``records`` and the ``events`` of the same run (bus history).

    The fault is ``fault_at`` / ``fault_instance`` when given; whatever is missing is taken from the
    first ``FaultInjected`` event (for ``fault_instance``, if that was given).
    """
    records = list(records)
    events = list(events)  # both are read more than once
    failures = [r for r in records if not r.ok]
    successes = [r for r in records if r.ok]
    answered_latencies = [r.latency for r in records if r.status is not None]

    if fault_at is None or fault_instance is None:
        fault = next(
            (
                e
                for e in events
                if isinstance(e, FaultInjected) and (fault_instance is None or e.instance == fault_instance)
            ),
            None,
        )
        if fault is not None:
            fault_at = fault.at if fault_at is None else fault_at
            fault_instance = fault.instance if fault_instance is None else fault_instance

    first_failure_at = min((r.start for r in failures), default=None)
    last_failure_at = max((r.start for r in failures), default=None)
    run_start, run_end = _run_window(records)
    outage_slice = _outage_slice(records)
    outage_periods = _outage_periods(records, run_start, run_end, outage_slice)

    return Report(
        requests=len(records),
        succeeded=len(successes),
        failed=len(failures),
        availability=len(successes) / len(records) if records else 1.0,
        retried=sum(1 for r in records if r.attempts > 1),
        errors_by_kind=_most_common_first(r.error or "" for r in failures),
        per_instance=_most_common_first(r.instance or UNKNOWN_INSTANCE for r in successes),
        latency_p50=percentile(answered_latencies, 50),
        latency_p95=percentile(answered_latencies, 95),
        latency_p99=percentile(answered_latencies, 99),
        latency_max=max(answered_latencies, default=None),
        fault_at=fault_at,
        fault_instance=fault_instance,
        detection_window=_detection_window(events, fault_at, fault_instance),
        client_visible_outage=sum(until - since for since, until in outage_periods),
        outage_periods=outage_periods,
        outage_slice=outage_slice,
        first_failure_at=first_failure_at,
        last_failure_at=last_failure_at,
        failure_span=0.0 if first_failure_at is None or last_failure_at is None else last_failure_at - first_failure_at,
        run_start=run_start,
        run_end=run_end,
        timeline=_timeline(records),
    )


def _run_window(records: Sequence[RequestRecord]) -> tuple[float | None, float | None]:
    """From the first request sent to the end of the sending: the last request's turn (one spacing after it).

    The answers may come later (a hung request times out after the run); the run is when requests were sent.
    """
    if not records:
        return None, None
    starts = sorted(r.start for r in records)
    if len(starts) == 1:
        return starts[0], max(starts[0], records[0].end)
    spacing = (starts[-1] - starts[0]) / (len(starts) - 1)
    return starts[0], starts[-1] + spacing


def _outage_slice(records: Sequence[RequestRecord]) -> float:
    """OUTAGE_SLICE, widened at low rates so a slice holds about REQUESTS_PER_SLICE requests."""
    starts = [r.start for r in records]
    if len(starts) < 2 or max(starts) <= min(starts):
        return OUTAGE_SLICE
    rate = (len(starts) - 1) / (max(starts) - min(starts))
    return max(OUTAGE_SLICE, REQUESTS_PER_SLICE / rate)


def _outage_periods(
    records: Sequence[RequestRecord], run_start: float | None, run_end: float | None, width: float
) -> list[tuple[float, float]]:
    """(from, to) stretches of the run in which more than half of the requests *sent* failed.

    The run is cut into slices of ``width`` seconds from ``run_start``; the last one ends at ``run_end``.
    Neighbouring slices that are out merge into one period.
    """
    if run_start is None or run_end is None or not any(not r.ok for r in records):
        return []
    slices = max(1, math.ceil((run_end - run_start) / width - 1e-9))
    sent = [0] * slices
    failed = [0] * slices
    for record in records:
        index = min(slices - 1, max(0, math.floor((record.start - run_start) / width + 1e-9)))
        sent[index] += 1
        failed[index] += 0 if record.ok else 1
    periods: list[tuple[float, float]] = []
    for index in range(slices):
        if 2 * failed[index] <= sent[index]:
            continue  # half or fewer failed (or nothing was sent): the service was there for most clients
        since, until = run_start + index * width, min(run_end, run_start + (index + 1) * width)
        if periods and math.isclose(periods[-1][1], since):
            periods[-1] = (periods[-1][0], until)
        else:
            periods.append((since, until))
    return periods


def _timeline(records: Sequence[RequestRecord]) -> list[TimelineBucket]:
    """One bucket per lab second, from the first request's start to the last one's (gaps kept); over a run longer
    than MAX_TIMELINE_BUCKETS seconds, wider buckets, so that there are at most that many (a simulated year of
    sparse requests would otherwise be 31 million empty seconds)."""
    if not records:
        return []
    first = math.floor(min(record.start for record in records))
    last = math.floor(max(record.start for record in records))
    width = max(1, math.ceil((last - first + 1) / MAX_TIMELINE_BUCKETS))
    by_bucket: dict[int, list[RequestRecord]] = collections.defaultdict(list)
    for record in records:
        by_bucket[(math.floor(record.start) - first) // width].append(record)
    buckets = []
    for index in range((last - first) // width + 1):
        in_bucket = by_bucket.get(index, [])
        ok = [r for r in in_bucket if r.ok]
        buckets.append(
            TimelineBucket(
                second=first + index * width,
                ok=len(ok),
                failed=len(in_bucket) - len(ok),
                by_instance=_most_common_first(r.instance or UNKNOWN_INSTANCE for r in ok),
                p50_latency=percentile([r.latency for r in in_bucket if r.status is not None], 50),
                # The last bucket stops at the run's last second: it may be narrower, not emptier.
                seconds=min(width, last - (first + index * width) + 1),
            )
        )
    return buckets


def _most_common_first(names: Iterable[str]) -> dict[str, int]:
    counts = collections.Counter(names)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
