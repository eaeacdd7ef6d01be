"""Reports: turn the load generator's records and the event stream into the lesson's numbers.

* **availability** — the share of requests that succeeded, as the *client* saw it;
* **detection window** — from the fault's injection to the health checker marking that instance
  down (its first ``InstanceDown``). Until then the balancer keeps sending it traffic;
* **client-visible outage** — from the start of the first failed request to the end of the last;
* **latency percentiles** — p50 is the typical request, p99 the one in a hundred users notice;
* a per-second **timeline** of successes and failures, to draw around the fault.

Everything here is a pure function of the records and events handed in: no clock, no I/O, so a
report can be rebuilt from a saved run and tested with hand-made records.
"""

from __future__ import annotations

import collections
import dataclasses
import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from spofkit.events import Event, FaultInjected, InstanceDown
from spofkit.loadgen import RequestRecord

# Successful answers without an X-Served-By header are counted under this name.
UNKNOWN_INSTANCE = "(unknown)"


def percentile(values: Sequence[float], p: float) -> float | None:
    """The ``p``-th percentile of ``values`` by the nearest-rank method; ``None`` for no values.

    Nearest rank: sort the values and take the one at rank ``ceil(p / 100 * n)`` (at least rank 1).
    The answer is always one of the measured values — "p99 = 80 ms" means at least 99 % of requests
    took 80 ms or less — and ``p = 0`` gives the minimum, ``p = 100`` the maximum.
    """
    if not (isinstance(p, (int, float)) and 0 <= p <= 100):
        raise ValueError(f"percentile p must be between 0 and 100, got {p!r}")
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class TimelineBucket:
    """The requests that *started* during lab second ``[second, second + 1)``."""

    second: int
    ok: int
    failed: int
    by_instance: dict[str, int]  # successful answers by instance
    p50_latency: float | None  # of the answered requests (an HTTP status came back)


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
    detection_window: float | None  # fault_at -> first InstanceDown of fault_instance; None if never
    client_visible_outage: float | None  # last failure's end - first failure's start; 0.0 if none failed
    first_failure_at: float | None
    last_failure_at: float | None
    timeline: list[TimelineBucket]

    @property
    def detected_at(self) -> float | None:
        """Lab time the fault was detected (``fault_at + detection_window``), if it was."""
        if self.fault_at is None or self.detection_window is None:
            return None
        return self.fault_at + self.detection_window

    def to_text(self, title: str = "") -> str:
        """A compact block for a terminal or a log."""
        lines = [f"== {title} ==" if title else "== report =="]
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
                lines.append(f"detected      never (no InstanceDown for {self.fault_instance})")
            else:
                lines.append(f"detected      {_detection(self)} after it (at {self.detected_at:.2f} s)")
        outage = f"{_seconds(self.client_visible_outage)}"
        if self.first_failure_at is not None and self.last_failure_at is not None:
            outage += f"  ({self.first_failure_at:.2f} s -> {self.last_failure_at:.2f} s)"
        lines.append(f"outage seen   {outage}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()

    def as_dict(self) -> dict[str, Any]:
        """Plain dicts and lists (JSON-ready), timeline included."""
        return dataclasses.asdict(self)

    def _repr_html_(self) -> str:
        rows = [
            ("requests", str(self.requests)),
            ("failed", str(self.failed)),
            ("availability", _percent(self.availability)),
            ("errors", ", ".join(f"{k} {v}" for k, v in self.errors_by_kind.items()) or "none"),
            ("retried", str(self.retried)),
            ("served by", ", ".join(f"{k} {v}" for k, v in self.per_instance.items()) or "nobody"),
            ("latency p50 / p99", f"{_ms(self.latency_p50)} / {_ms(self.latency_p99)}"),
            ("detection window", _detection(self)),
            ("client-visible outage", _seconds(self.client_visible_outage)),
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
    last_failure_at = max((r.end for r in failures), default=None)
    outage = 0.0  # no failed request, no outage a client could see
    if first_failure_at is not None and last_failure_at is not None:
        outage = last_failure_at - first_failure_at

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
        client_visible_outage=outage,
        first_failure_at=first_failure_at,
        last_failure_at=last_failure_at,
        timeline=_timeline(records),
    )


def _detection_window(events: Sequence[Event], fault_at: float | None, fault_instance: str | None) -> float | None:
    if fault_at is None or fault_instance is None:
        return None
    detections = [
        e.at for e in events if isinstance(e, InstanceDown) and e.instance == fault_instance and e.at >= fault_at
    ]
    return min(detections) - fault_at if detections else None


def _timeline(records: Sequence[RequestRecord]) -> list[TimelineBucket]:
    """One bucket per lab second, from the first request's start to the last one's (gaps kept)."""
    if not records:
        return []
    by_second: dict[int, list[RequestRecord]] = collections.defaultdict(list)
    for record in records:
        by_second[math.floor(record.start)].append(record)
    buckets = []
    for second in range(min(by_second), max(by_second) + 1):
        in_second = by_second.get(second, [])
        ok = [r for r in in_second if r.ok]
        buckets.append(
            TimelineBucket(
                second=second,
                ok=len(ok),
                failed=len(in_second) - len(ok),
                by_instance=_most_common_first(r.instance or UNKNOWN_INSTANCE for r in ok),
                p50_latency=percentile([r.latency for r in in_second if r.status is not None], 50),
            )
        )
    return buckets


def _most_common_first(names: Iterable[str]) -> dict[str, int]:
    """Counts, largest first, ties by name (so the order is the same on every run)."""
    counts = collections.Counter(names)
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


def plot_timeline(report: Report, ax: Any = None, title: str = "") -> Any:
    """Bars of ok and failed requests per second, a line at the fault and one at its detection.

    matplotlib is imported here, not at the top, so spofkit works without it. Returns the Axes.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _figure, ax = plt.subplots(figsize=(8, 3))
    seconds = [bucket.second for bucket in report.timeline]
    ok = [bucket.ok for bucket in report.timeline]
    failed = [bucket.failed for bucket in report.timeline]
    # Bucket s covers [s, s + 1): draw it there, so the fault line falls where the fault happened.
    ax.bar(seconds, ok, width=0.9, align="edge", color="tab:green", label="ok")
    ax.bar(seconds, failed, width=0.9, align="edge", bottom=ok, color="tab:red", label="failed")
    if report.fault_at is not None:
        who = f" ({report.fault_instance})" if report.fault_instance else ""
        ax.axvline(report.fault_at, color="black", ls="--", lw=2, zorder=3, label=f"fault{who}")
    if report.detected_at is not None:
        ax.axvline(report.detected_at, color="tab:blue", ls=":", lw=2, zorder=3, label="detected")
    ax.set_xlabel("lab time (s)")
    ax.set_ylabel("requests started / s")
    if title:
        ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")  # beside, not over
    return ax


# --- formatting -----------------------------------------------------------------------------------


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def _seconds(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f} s"


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.2f} %"


def _detection(report: Report) -> str:
    """The detection window; "never" if the fault went undetected, "-" if there was no fault."""
    if report.fault_at is None:
        return "-"
    return "never" if report.detection_window is None else f"{report.detection_window:.2f} s"
