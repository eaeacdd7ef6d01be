"""Reports: turn the load generator's records and the event stream into the lesson's numbers.

* **availability** — the share of requests that succeeded, as the *client* saw it;
* **detection window** — from the fault's injection to the health checker marking that instance
  down (its first ``InstanceDown`` while the fault lasts: a fault that ends first was never detected). Until
  then the balancer keeps sending it traffic;
* **client-visible outage** — how long the service was *down* for its clients: the time during which
  *most* of the requests sent failed. The run is cut into slices of 0.1 s (wider at low rates, so each
  holds a few requests); a slice counts as out when more than half of the requests sent in it failed.
  Requests count where they were *sent*, so a hung request that times out after the run still counts
  inside it, and the outage can never be longer than the run. Scattered errors (one here, one there)
  are not an outage: they lower the availability, and show up in the next figure;
* **first → last failure** — from the first failed request sent to the last one (``failure_span``):
  how long *some* requests failed, however few. 8 errors spread over 2 s make a 2 s span and no outage;
* **latency percentiles** — p50 is the typical request, p99 the one in a hundred users notice;
* a per-second **timeline** of successes and failures, to draw around the fault (wider buckets for a run longer
  than an hour, such as a simulated year).

Everything here is a pure function of the records and events handed in: no clock, no I/O, so a
report can be rebuilt from a saved run and tested with hand-made records.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import html
import itertools
import math
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from spofkit.events import Event, FaultCleared, FaultInjected, InstanceDown, InstanceEjected, InstanceRestarted
from spofkit.loadgen import RequestRecord

# Successful answers without an X-Served-By header are counted under this name.
UNKNOWN_INSTANCE = "(unknown)"
# The outage is measured in slices of the run this long (seconds)...
OUTAGE_SLICE = 0.1
# ...or longer at low rates, so that a slice holds about this many requests: one request is no majority.
REQUESTS_PER_SLICE = 3


def percentile(values: Sequence[float], p: float) -> float | None:
    """The ``p``-th percentile of ``values`` by the nearest-rank method; ``None`` for no values.

    Nearest rank: sort the values and take the one at rank ``ceil(p / 100 * n)`` (at least rank 1).
    The answer is always one of the measured values — "p99 = 80 ms" means at least 99 % of requests
    took 80 ms or less — and ``p = 0`` gives the minimum, ``p = 100`` the maximum.
    """
    if not (isinstance(p, (int, float)) and 0 <= p <= 100):
        raise ValueError(f"percentile p must be between 0 and 100, got {p!r}")
    return _nearest_rank(sorted(values), p)


# A report's timeline has at most this many buckets: an hour of one-second buckets; a longer run gets wider ones.
MAX_TIMELINE_BUCKETS = 3600


@dataclass(frozen=True)
class TimelineBucket:
    """The requests that *started* during lab seconds ``[second, second + seconds)``: one second, unless the run
    was longer than :data:`MAX_TIMELINE_BUCKETS` seconds (a simulated day or year), when each bucket is wider."""

    second: int
    ok: int
    failed: int
    by_instance: dict[str, int]  # successful answers by instance
    p50_latency: float | None  # of the answered requests (an HTTP status came back)
    seconds: int = 1  # how many lab seconds the bucket covers


@dataclass(frozen=True)
class Report:
    """The outcome of one run, as the client felt it. Times are lab seconds, latencies seconds.

    ``availability`` is ``succeeded / requests``, and 1.0 for a run without requests (nothing
    failed). Latency percentiles are over the requests that got an HTTP answer (``status`` not
    ``None``), error answers included; a refused or timed-out request has no latency worth ranking.
    """

    requests: int
    succeeded: int
    failed: int
    availability: float
    retried: int  # requests the balancer had to try more than once (attempts > 1)
    errors_by_kind: dict[str, int]
    per_instance: dict[str, int]  # successful answers by instance
    latency_p50: float | None
    latency_p95: float | None
    latency_p99: float | None
    latency_max: float | None
    fault_at: float | None
    fault_instance: str | None
    detection_window: float | None  # fault_at -> first InstanceDown of fault_instance while it lasted; None if never
    client_visible_outage: float  # seconds of the run in which most requests sent failed; 0.0 if never
    outage_periods: list[tuple[float, float]]  # (from, to) lab times when most requests failed
    outage_slice: float  # the slice length the outage was measured in (seconds)
    first_failure_at: float | None  # lab time the first failed request was sent
    last_failure_at: float | None  # lab time the last failed request was sent
    failure_span: float  # last_failure_at - first_failure_at; 0.0 if fewer than two failed
    run_start: float | None  # lab time the first request was sent
    run_end: float | None  # lab time the sending ended (the last request's turn, not its answer)
    timeline: list[TimelineBucket]
    # fault_at -> first passive ejection (InstanceEjected) of fault_instance while it lasted; None if none. Not the
    # detection window (that is the health checks'), but a fault the checks never saw may still have been ejected.
    ejection_window: float | None = None
    simulated: bool = False  # made by spofkit.sim in virtual time, not by a live run: the text and table say so

    @property
    def detected_at(self) -> float | None:
        """Lab time the fault was detected (``fault_at + detection_window``), if it was."""
        if self.fault_at is None or self.detection_window is None:
            return None
        return self.fault_at + self.detection_window

    def to_text(self, title: str = "") -> str:
        """A compact block for a terminal or a log."""
        lines = [f"== {title} ==" if title else "== report =="]
        if self.simulated:
            lines.append("simulated     in virtual time by spofkit.sim, not a live run")
        lines.append(f"requests      {self.requests}  (succeeded {self.succeeded}, failed {self.failed})")
        lines.append(f"availability  {_percent(self.availability)}")
        errors = ", ".join(f"{kind} {count}" for kind, count in self.errors_by_kind.items())
        lines.append(f"errors        {errors or 'none'}")
        lines.append(f"retried       {self.retried}")
        served = ", ".join(f"{name} {count}" for name, count in self.per_instance.items())
        lines.append(f"served by     {served or 'nobody'}")
        lines.append(
            f"latency       p50 {_ms(self.latency_p50)}  p95 {_ms(self.latency_p95)}  "
            f"p99 {_ms(self.latency_p99)}  max {_ms(self.latency_max)}"
        )
        if self.fault_at is not None:
            lines.append(f"fault         {self.fault_instance or '?'} at {self.fault_at:.2f} s")
            if self.detected_at is None:
                lines.append(f"detected      never ({self.fault_instance} was not marked down while the fault lasted)")
                if self.ejection_window is not None:
                    ejected_at = self.fault_at + self.ejection_window
                    lines.append(
                        f"ejected       {self.ejection_window:.2f} s after it (at {ejected_at:.2f} s):"
                        " passive checks saw its requests fail"
                    )
            else:
                lines.append(f"detected      {_detection(self)} after it (at {self.detected_at:.2f} s)")
        lines.append(f"outage seen   {_outage(self)}")
        lines.append(f"failures      {_failures(self)}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()

    def as_dict(self) -> dict[str, Any]:
        """Plain dicts and lists (JSON-ready), timeline included."""
        return dataclasses.asdict(self)

    def _repr_html_(self) -> str:
        rows = [
            *([("simulated", "in virtual time by spofkit.sim, not a live run")] if self.simulated else []),
            ("requests", str(self.requests)),
            ("failed", str(self.failed)),
            ("availability", _percent(self.availability)),
            ("errors", ", ".join(f"{k} {v}" for k, v in self.errors_by_kind.items()) or "none"),
            ("retried", str(self.retried)),
            ("served by", ", ".join(f"{k} {v}" for k, v in self.per_instance.items()) or "nobody"),
            ("latency p50 / p99", f"{_ms(self.latency_p50)} / {_ms(self.latency_p99)}"),
            ("detection window", _detection(self)),
            ("client-visible outage", _outage(self)),
            ("first → last failure", _failures(self)),
        ]
        body = "".join(
            f"<tr><th style='text-align:left'>{html.escape(name)}</th>"
            f"<td style='text-align:left'>{html.escape(value)}</td></tr>"
            for name, value in rows
        )
        return f"<table class='spofkit-report'>{body}</table>"


def build_report(
    records: Iterable[RequestRecord],
    events: Iterable[Event] = (),
    *,
    fault_at: float | None = None,
    fault_instance: str | None = None,
    simulated: bool = False,
) -> Report:
    """Summarise a load generator's ``records`` and the ``events`` of the same run (bus history).

    ``simulated``: the run was the simulator's (the report says so). The fault is ``fault_at`` / ``fault_instance``
    when given; whatever is missing is taken from the first ``FaultInjected`` event (for ``fault_instance``, if
    that was given).
    """
    # The records as columns, in the order they were sent (sorted by start only if they are not already: a stable
    # sort). A record's outage slice and timeline bucket only grow with its start, so each is one stretch of the
    # columns. The figures are then counted a column at a time by C loops (map, compress, Counter, sorted):
    # a million records take about a second instead of the six a loop with a record's properties (``ok``,
    # ``latency``) per step takes, with the same results (tests/test_report_columns.py holds it to that loop).
    records = list(records)
    columns = _columns(records)
    if not all(map(operator.le, columns[0], itertools.islice(columns[0], 1, None))):
        records.sort(key=_START)
        columns = _columns(records)
    starts, ends, statuses, instances, attempts, errors = columns
    events = list(events)  # read more than once

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

    ok = list(map(operator.is_, errors, itertools.repeat(None)))  # r.ok
    failed_mask = list(map(operator.not_, ok))
    answered = list(map(operator.is_not, statuses, itertools.repeat(None)))
    latencies = list(map(operator.sub, ends, starts))  # r.latency
    ordered_latencies = sorted(itertools.compress(latencies, answered))
    failed_starts = list(itertools.compress(starts, failed_mask))
    succeeded = ok.count(True)

    first_failure_at = min(failed_starts, default=None)
    last_failure_at = max(failed_starts, default=None)
    run_start, run_end = _run_window(starts, ends)
    outage_slice = _outage_slice(starts)
    outage_periods = _outage_periods(starts, failed_starts, run_start, run_end, outage_slice)

    return Report(
        requests=len(records),
        succeeded=succeeded,
        failed=len(records) - succeeded,
        availability=succeeded / len(records) if records else 1.0,
        retried=sum(map(operator.lt, itertools.repeat(1), attempts)),
        errors_by_kind=_ranked(collections.Counter(itertools.compress(errors, failed_mask))),
        per_instance=_served_by(instances, ok),
        latency_p50=_nearest_rank(ordered_latencies, 50),
        latency_p95=_nearest_rank(ordered_latencies, 95),
        latency_p99=_nearest_rank(ordered_latencies, 99),
        latency_max=ordered_latencies[-1] if ordered_latencies else None,
        fault_at=fault_at,
        fault_instance=fault_instance,
        detection_window=_detection_window(events, fault_at, fault_instance),
        ejection_window=_detection_window(events, fault_at, fault_instance, InstanceEjected),
        simulated=simulated,
        client_visible_outage=sum(until - since for since, until in outage_periods),
        outage_periods=outage_periods,
        outage_slice=outage_slice,
        first_failure_at=first_failure_at,
        last_failure_at=last_failure_at,
        failure_span=0.0 if first_failure_at is None or last_failure_at is None else last_failure_at - first_failure_at,
        run_start=run_start,
        run_end=run_end,
        timeline=_timeline(starts, ok, answered, latencies, instances),
    )


_START = operator.attrgetter("start")


def _columns(records: Sequence[RequestRecord]) -> tuple[list[Any], ...]:
    """The records' fields that a report reads, one list per field: start, end, status, instance, attempts, error."""
    return tuple(list(map(operator.itemgetter(field), records)) for field in (3, 4, 5, 6, 7, 8))


def _nearest_rank(ordered: Sequence[float], p: float) -> float | None:
    """:func:`percentile` of values already sorted."""
    if not ordered:
        return None
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


def _served_by(instances: Sequence[str | None], ok: Sequence[bool]) -> dict[str, int]:
    """Successful answers by instance (those without a name under UNKNOWN_INSTANCE), most first."""
    counts = collections.Counter(itertools.compress(instances, ok))
    for nameless in (None, ""):
        if nameless in counts:
            counts[UNKNOWN_INSTANCE] += counts.pop(nameless)
    return _ranked(cast("collections.Counter[str]", counts))


def _stretches(ordered: Sequence[float], key: Callable[[float], int]) -> Iterator[tuple[int, int, int]]:
    """``(k, lo, hi)`` for each longest stretch ``ordered[lo:hi]`` whose values all have ``key`` k, in order.

    ``key`` must never decrease along ``ordered``. Each stretch is found by galloping, then bisecting: about
    2·log2(its length) calls of ``key``, so a second of a million requests costs a few dozen calls, and a
    stretch of one record about three.
    """
    total = len(ordered)
    lo = 0
    while lo < total:
        k = key(ordered[lo])
        step = 1
        while lo + step < total and key(ordered[lo + step]) == k:
            step *= 2
        hi = bisect.bisect_right(ordered, k, lo + step // 2, min(total, lo + step), key=key)
        yield k, lo, hi
        lo = hi


def _run_window(starts: Sequence[float], ends: Sequence[float]) -> tuple[float | None, float | None]:
    """From the first request sent to the end of the sending: the last request's turn (one spacing after it).

    The answers may come later (a hung request times out after the run); the run is when requests were sent.
    ``starts`` and ``ends`` are the records', sorted by start.
    """
    if not starts:
        return None, None
    if len(starts) == 1:
        return starts[0], max(starts[0], ends[0])
    spacing = (starts[-1] - starts[0]) / (len(starts) - 1)
    return starts[0], starts[-1] + spacing


def _outage_slice(starts: Sequence[float]) -> float:
    """OUTAGE_SLICE, widened at low rates so a slice holds about REQUESTS_PER_SLICE requests (``starts`` sorted)."""
    if len(starts) < 2 or starts[-1] <= starts[0]:
        return OUTAGE_SLICE
    rate = (len(starts) - 1) / (starts[-1] - starts[0])
    return max(OUTAGE_SLICE, REQUESTS_PER_SLICE / rate)


def _outage_periods(
    starts: Sequence[float],
    failed_starts: Sequence[float],
    run_start: float | None,
    run_end: float | None,
    width: float,
) -> list[tuple[float, float]]:
    """(from, to) stretches of the run in which more than half of the requests *sent* failed.

    The run is cut into slices of ``width`` seconds from ``run_start``; the last one ends at ``run_end``.
    Neighbouring slices that are out merge into one period. ``starts`` (every record's) and ``failed_starts``
    (the failed records') are sorted.
    """
    if run_start is None or run_end is None or not failed_starts:
        return []
    origin = run_start
    slices = max(1, math.ceil((run_end - origin) / width - 1e-9))

    def slice_of(start: float) -> int:
        return min(slices - 1, max(0, math.floor((start - origin) / width + 1e-9)))

    sent = {index: hi - lo for index, lo, hi in _stretches(starts, slice_of)}
    periods: list[tuple[float, float]] = []
    for index, lo, hi in _stretches(failed_starts, slice_of):  # a slice without a failure is never out
        if 2 * (hi - lo) <= sent[index]:
            continue  # half or fewer failed: the service was there for most clients
        since, until = origin + index * width, min(run_end, origin + (index + 1) * width)
        if periods and math.isclose(periods[-1][1], since):
            periods[-1] = (periods[-1][0], until)
        else:
            periods.append((since, until))
    return periods


def _detection_window(
    events: Sequence[Event],
    fault_at: float | None,
    fault_instance: str | None,
    seen: type[Event] = InstanceDown,
) -> float | None:
    """From the fault to the first ``InstanceDown`` (or ``seen``) of its instance *while the fault lasted*, or None.

    A fault that ends before any checker saw it (recovered, restarted, replaced by another fault, a warm-up that
    ran out) was never detected: a later ``InstanceDown`` of the same instance belongs to a later fault (with
    random failures an instance fails many times in a run, and most short failures go unseen).
    """
    if fault_at is None or fault_instance is None:
        return None
    # Start after the fault's own FaultInjected if it is there (a fault replacing another clears that one at the
    # same instant, just before), else at the first event of its time (a fault given by hand).
    begin = next(
        (
            index + 1
            for index, e in enumerate(events)
            if isinstance(e, FaultInjected) and e.at == fault_at and e.instance == fault_instance
        ),
        None,
    )
    if begin is None:
        begin = next((index for index, e in enumerate(events) if e.at >= fault_at), len(events))
    for e in itertools.islice(events, begin, None):
        if getattr(e, "instance", None) != fault_instance:
            continue
        if isinstance(e, seen):
            return e.at - fault_at
        if isinstance(e, _FAULT_ENDS):
            return None
    return None


# Events after which the fault being timed is no longer in place.
_FAULT_ENDS = (FaultCleared, InstanceRestarted, FaultInjected)


def _timeline(
    starts: Sequence[float],
    ok: Sequence[bool],
    answered: Sequence[bool],
    latencies: Sequence[float],
    instances: Sequence[str | None],
) -> list[TimelineBucket]:
    """One bucket per lab second, from the first request's start to the last one's (gaps kept); over a run longer
    than MAX_TIMELINE_BUCKETS seconds, wider buckets, so that there are at most that many (a simulated year of
    sparse requests would otherwise be 31 million empty seconds). The columns are the records', sorted by start."""
    if not starts:
        return []
    first = math.floor(starts[0])
    last = math.floor(starts[-1])
    width = max(1, math.ceil((last - first + 1) / MAX_TIMELINE_BUCKETS))

    def bucket_of(start: float) -> int:
        return (math.floor(start) - first) // width

    stretches = {index: (lo, hi) for index, lo, hi in _stretches(starts, bucket_of)}
    buckets = []
    for index in range((last - first) // width + 1):
        lo, hi = stretches.get(index, (0, 0))
        served = ok[lo:hi].count(True)
        buckets.append(
            TimelineBucket(
                second=first + index * width,
                ok=served,
                failed=hi - lo - served,
                by_instance=_served_by(instances[lo:hi], ok[lo:hi]),
                p50_latency=_nearest_rank(sorted(itertools.compress(latencies[lo:hi], answered[lo:hi])), 50),
                # The last bucket stops at the run's last second: it may be narrower, not emptier.
                seconds=min(width, last - (first + index * width) + 1),
            )
        )
    return buckets


def _ranked(counts: Mapping[str, int]) -> dict[str, int]:
    """Counts, largest first, ties by name (so the order is the same on every run)."""
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


# --- comparing runs -------------------------------------------------------------------------------


def compare(reports: Mapping[str, Report]) -> str:
    """A side-by-side table, one column per report: ``{"one instance": r1, "failover": r2}``."""
    if not reports:
        raise ValueError("compare() needs at least one report")
    rows: list[tuple[str, list[str]]] = [
        ("requests", [str(r.requests) for r in reports.values()]),
        ("client errors", [str(r.failed) for r in reports.values()]),
        ("availability", [_percent(r.availability) for r in reports.values()]),
        ("retried", [str(r.retried) for r in reports.values()]),
        ("detection window", [_detection(r) for r in reports.values()]),
        ("client-visible outage", [_seconds(r.client_visible_outage) for r in reports.values()]),
        ("first → last failure", [_span(r) for r in reports.values()]),
        ("latency p50", [_ms(r.latency_p50) for r in reports.values()]),
        ("latency p99", [_ms(r.latency_p99) for r in reports.values()]),
    ]
    names = list(reports)
    label_width = max(len(label) for label, _ in rows)
    widths = [max(len(name), *(len(values[i]) for _, values in rows)) for i, name in enumerate(names)]
    header = " " * label_width + "  " + "  ".join(n.rjust(w) for n, w in zip(names, widths, strict=True))
    lines = [header, "-" * len(header)]
    for label, values in rows:
        cells = "  ".join(v.rjust(w) for v, w in zip(values, widths, strict=True))
        lines.append(f"{label.ljust(label_width)}  {cells}")
    return "\n".join(lines)


# --- plotting -------------------------------------------------------------------------------------


# Colours of the timeline, picked to be told apart: the detection marker is dark, with a white edge, so it
# stands out on green bars, on red bars and on the white background alike.
OK_COLOUR = "tab:green"
FAILED_COLOUR = "tab:red"
FAULT_COLOUR = "black"
DETECTED_COLOUR = "#08306b"  # a dark navy blue
OUTAGE_COLOUR = "tab:red"  # the shading behind the bars while most requests failed, pale


def plot_timeline(report: Report, ax: Any = None, title: str = "") -> Any:
    """Bars of ok and failed requests per second (per bucket, for a very long run), a line at the fault and one at
    its detection.

    The stretches the report counts as client-visible outage (most requests failing) are shaded. In a stack
    of plots that share the time axis, only the bottom one is labelled "lab time (s)", so the label does not
    run into the title of the plot below; side by side with a shared count axis, only the left one is labelled.
    matplotlib is imported here, not at the top, so spofkit works without it. Returns the Axes.
    """
    import matplotlib.patheffects as path_effects
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    if ax is None:
        _figure, ax = plt.subplots(figsize=(8, 3), layout="constrained")
    seconds = [bucket.second for bucket in report.timeline]
    ok = [bucket.ok for bucket in report.timeline]
    failed = [bucket.failed for bucket in report.timeline]
    width = report.timeline[0].seconds if report.timeline else 1  # 1 s, wider only for a very long run
    widths = [0.9 * bucket.seconds for bucket in report.timeline]  # the last may be narrower: the run ended
    # Bucket s covers [s, s + width): draw it there, so the fault line falls where the fault happened.
    ax.bar(seconds, ok, width=widths, align="edge", color=OK_COLOUR, label="ok")
    ax.bar(seconds, failed, width=widths, align="edge", bottom=ok, color=FAILED_COLOUR, label="failed")
    for number, (since, until) in enumerate(report.outage_periods):
        label = "outage: most failing" if number == 0 else None
        ax.axvspan(since, until, color=OUTAGE_COLOUR, alpha=0.15, lw=0, zorder=0, label=label)
    halo = [path_effects.Stroke(linewidth=5, foreground="white"), path_effects.Normal()]
    if report.fault_at is not None:
        who = f" ({report.fault_instance})" if report.fault_instance else ""
        ax.axvline(report.fault_at, color=FAULT_COLOUR, ls="--", lw=2, zorder=3, label=f"fault{who}", path_effects=halo)
    if report.detected_at is not None:
        ax.axvline(
            report.detected_at, color=DETECTED_COLOUR, ls=":", lw=3, zorder=3, label="detected", path_effects=halo
        )
    if _labels_shared_axis(ax, "x"):
        ax.set_xlabel("lab time (s)")
    if _labels_shared_axis(ax, "y"):
        ax.set_ylabel("requests sent / s" if width == 1 else f"requests sent per {width:,} s")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 2.5, 5, 10]))  # whole requests, round steps
    if title:
        ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")  # beside, not over
    return ax


def _labels_shared_axis(ax: Any, which: str) -> bool:
    """Should ``ax`` label its ``which`` axis? Not when it shares that axis with a neighbour that carries the label:
    the plot below it for time (x), the plot to its left for the counts (y)."""
    shared = ax.get_shared_x_axes() if which == "x" else ax.get_shared_y_axes()
    has_neighbours = any(other is not ax for other in shared.get_siblings(ax))
    spec = ax.get_subplotspec() if hasattr(ax, "get_subplotspec") else None
    if not has_neighbours or spec is None:
        return True
    return bool(spec.is_last_row()) if which == "x" else bool(spec.is_first_col())


# --- formatting -----------------------------------------------------------------------------------


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def _seconds(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f} s"


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.2f} %"


def _span(report: Report) -> str:
    return "-" if report.first_failure_at is None else _seconds(report.failure_span)


def _outage(report: Report) -> str:
    """The outage, and in words what it means (the definition is the module docstring's)."""
    if report.failed == 0:
        return f"{_seconds(report.client_visible_outage)}  (no request failed)"
    if not report.outage_periods:
        return f"{_seconds(report.client_visible_outage)}  (at no time did most requests fail)"
    periods = ", ".join(f"{since:.2f} s -> {until:.2f} s" for since, until in report.outage_periods[:3])
    more = f" and {len(report.outage_periods) - 3} more" if len(report.outage_periods) > 3 else ""
    return f"{_seconds(report.client_visible_outage)}  (most requests failed: {periods}{more})"


def _failures(report: Report) -> str:
    """How many failed, and from the first failed request sent to the last."""
    if report.first_failure_at is None or report.last_failure_at is None:
        return "none"
    return (
        f"{report.failed} failed, sent from {report.first_failure_at:.2f} s to {report.last_failure_at:.2f} s "
        f"(first -> last failure {_seconds(report.failure_span)})"
    )


def _detection(report: Report) -> str:
    """The detection window; "never" if the fault went undetected, "-" if there was no fault."""
    if report.fault_at is None:
        return "-"
    return "never" if report.detection_window is None else f"{report.detection_window:.2f} s"
