"""Side by side: one scenario on spofkit's balancer, on HAProxy and on nginx, in one run, in one table.

The same instances, the same fault on the same instance at the same moment, the same load generator and the same
:class:`~spofkit.report.Report` — only the balancer differs, configured alike by :mod:`spofkit.export`::

    from spofkit.compare import compare_balancers
    comparison = await compare_balancers(["crash", "hang"])     # in a notebook; run_comparison() from a script
    print(comparison.to_text())

prints, for every scenario and balancer: the client errors, the detection window (fault → that balancer's first
"marked DOWN" of the instance), the client-visible outage, p50 and p99, and *what* detected the fault, in the
balancer's own words. ``bench/compare_proxies.py`` is the same from a shell, for a class.

The scenarios are the lab's fault presets (:data:`spofkit.faults.PRESETS`): ``crash`` (refused), ``hang``
(accepts, never answers), ``gray`` (health checks pass, half the real requests get 503), ``slow`` (+200 ms).
:data:`HAPROXY_DEFAULT_HEALTH` and :data:`NGINX_DEFAULT_PASSIVE` are the proxies' *own* defaults written as lab
settings, to run what an unchanged configuration would do.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import html
import platform
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from spofkit.events import Event, InstanceDown, InstanceEjected
from spofkit.export import find_binary
from spofkit.faults import PRESETS
from spofkit.policy import EjectionSettings, HealthSettings, RetrySettings
from spofkit.report import Report, _detection, _ms, _seconds

SCENARIOS = ("crash", "hang", "gray", "slow")
BALANCERS = ("spofkit", "haproxy", "nginx")
VICTIM = "b"
# HAProxy's defaults: `check` alone means inter 2s rise 2 fall 3, and without `timeout check` a check may take
# the whole inter (fastinter and downinter default to inter).
HAPROXY_DEFAULT_HEALTH = HealthSettings(interval=2.0, timeout=2.0, rise=2, fall=3)
# nginx's defaults for every server: max_fails=1 fail_timeout=10s (one failure puts it out for 10 s).
NGINX_DEFAULT_PASSIVE = EjectionSettings(consecutive_failures=1, base_time=10.0, max_time=10.0)


@dataclass(frozen=True)
class Run:
    """One balancer through one scenario: its report, and how it first stopped sending to the victim.

    ``taken_out_after`` is the time from the fault to the first event that took the victim out of that balancer's
    rotation — marked DOWN (what the report's detection window measures) *or* ejected by passive ejection, which
    is how spofkit catches a gray failure — and ``taken_out_by`` says which, in short.
    """

    scenario: str
    balancer: str
    report: Report
    taken_out_after: float | None
    taken_out_by: str  # "" if never
    reason: str = ""  # the event's own words, in full


@dataclass(frozen=True)
class Comparison:
    """Every (scenario, balancer) run of one call, in the order run, and how they were run."""

    runs: tuple[Run, ...]
    instances: int
    rate: float
    duration: float
    fault_at: float
    isolation: str
    machine: str = ""

    def run(self, scenario: str, balancer: str) -> Run:
        for run in self.runs:
            if (run.scenario, run.balancer) == (scenario, balancer):
                return run
        raise KeyError(
            f"no run of {balancer} through {scenario}; runs: {[(r.scenario, r.balancer) for r in self.runs]}"
        )

    def report(self, scenario: str, balancer: str) -> Report:
        return self.run(scenario, balancer).report

    def rows(self) -> list[list[str]]:
        """The table's cells, a header row first."""
        header = ["scenario", "balancer", "requests", "client errors", "detection window", "client-visible outage"]
        header += ["p50", "p99", "first taken out"]
        rows = [header]
        for run in self.runs:
            r = run.report
            out = "never" if run.taken_out_after is None else f"{run.taken_out_after:.2f} s, {run.taken_out_by}"
            rows.append(
                [
                    run.scenario,
                    run.balancer,
                    str(r.requests),
                    str(r.failed),
                    _detection(r),
                    _seconds(r.client_visible_outage),
                    _ms(r.latency_p50),
                    _ms(r.latency_p99),
                    out,
                ]
            )
        return rows

    def table(self) -> str:
        """One plain-text table, numbers right-aligned, a line under the header and between scenarios."""
        rows = self.rows()
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        numeric = {2, 3, 4, 5, 6, 7}

        def line(row: list[str]) -> str:
            pairs = enumerate(zip(row, widths, strict=True))
            cells = [cell.rjust(width) if i in numeric else cell.ljust(width) for i, (cell, width) in pairs]
            return "  ".join(cells).rstrip()

        lines = [line(rows[0]), "-" * len(line(rows[0]))]
        previous = None
        for row in rows[1:]:
            if previous is not None and row[0] != previous:
                lines.append("")
            lines.append(line(row))
            previous = row[0]
        return "\n".join(lines)

    def to_text(self) -> str:
        head = (
            f"{self.instances} instances, {self.rate:g} req/s for {self.duration:g} s, {VICTIM} gets the fault at "
            f"{self.fault_at:g} s; instances in isolation {self.isolation!r}"
        )
        return "\n".join([head, self.machine, "", self.table(), "", *self.notes()]).rstrip() + "\n"

    def notes(self) -> list[str]:
        """What the table shows that needs a word: faults nobody detected, and why that is (or is not) bad."""
        notes = []
        for run in self.runs:
            if run.taken_out_after is not None:
                continue
            if run.report.failed == 0:
                notes.append(f"- {run.scenario}, {run.balancer}: {VICTIM} was never taken out, and no client noticed.")
            else:
                notes.append(
                    f"- {run.scenario}, {run.balancer}: {VICTIM} was never taken out while {run.report.failed} "
                    "requests failed: nothing this balancer watches saw the fault."
                )
        notes.append(
            "detection window: fault -> marked DOWN (the Report's); first taken out: marked DOWN or ejected, "
            "whichever came first."
        )
        return notes

    def _repr_html_(self) -> str:
        rows = self.rows()
        head = "".join(f"<th>{html.escape(cell)}</th>" for cell in rows[0])
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows[1:])
        return f"<table class='spofkit-compare'><tr>{head}</tr>{body}</table><p>{html.escape(self.machine)}</p>"


# --- running it -----------------------------------------------------------------------------------------------


async def compare_balancers(
    scenarios: str | Sequence[str] = "crash",
    *,
    balancers: Sequence[str] = BALANCERS,
    instances: int = 3,
    rate: float = 200.0,
    duration: float = 6.0,
    fault_at: float = 2.0,
    isolation: str = "process",
    health: HealthSettings | None = HealthSettings(),  # noqa: B008 - frozen, so sharing is safe
    retries: RetrySettings | None = RetrySettings(),  # noqa: B008
    ejection: EjectionSettings | None = EjectionSettings(),  # noqa: B008
    seed: int = 0,
    on_progress: Callable[[float], None] | None = None,
) -> Comparison:
    """Run every scenario on every balancer, one after the other, and return the :class:`Comparison`.

    Each run is a fresh lab (``instances`` instances, ``isolation``), the given protections, open-loop load at
    ``rate`` for ``duration`` s, and the scenario's fault on instance ``b`` at ``fault_at`` s. ``on_progress`` is
    called with the share done (0..1), for a progress bar.
    """
    from spofkit.lab import Lab  # here: the lab imports the proxies, which import export; this stays light

    chosen = [scenarios] if isinstance(scenarios, str) else list(scenarios)
    for scenario in chosen:
        if scenario not in SCENARIOS:
            raise ValueError(f"scenario must be one of {SCENARIOS}, got {scenario!r}")
    for balancer in balancers:
        if balancer not in BALANCERS:
            raise ValueError(f"balancer must be one of {BALANCERS}, got {balancer!r}")
        if balancer != "spofkit":
            find_binary(balancer)  # before the first run, not after the others
    if not 0 < fault_at < duration:
        raise ValueError(f"fault_at ({fault_at}) must be within the run (0..{duration})")
    runs: list[Run] = []
    total = len(chosen) * len(balancers)
    for scenario in chosen:
        preset = PRESETS[scenario]
        for balancer in balancers:
            done = len(runs)

            def progress(share: float, done: int = done) -> None:
                if on_progress is not None:
                    on_progress((done + share) / total)

            lab = await Lab.start(
                instances,
                balancer=balancer,
                isolation=isolation,
                health=health,
                retries=retries,
                ejection=ejection,
                seed=seed,
            )
            try:
                seen: list[Event] = []
                unsubscribe = lab.events.subscribe(seen.append)
                fault = (fault_at, VICTIM, preset.kind, dict(preset.params))
                report = await lab.run_load(rate, duration, faults=[fault], on_progress=progress)
                unsubscribe()
            finally:
                await lab.stop()
            runs.append(Run(scenario, balancer, report, *_taken_out(seen, report)))
    return Comparison(tuple(runs), instances, rate, duration, fault_at, isolation, machine_description(balancers))


def run_comparison(scenarios: str | Sequence[str] = "crash", **options: object) -> Comparison:
    """:func:`compare_balancers` from code that is not async (in a thread of its own where a loop runs)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(compare_balancers(scenarios, **options))  # type: ignore[arg-type]
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as worker:
        return worker.submit(asyncio.run, compare_balancers(scenarios, **options)).result()  # type: ignore[arg-type]


def _taken_out(events: Sequence[Event], report: Report) -> tuple[float | None, str, str]:
    """(seconds after the fault, how in short, the event's words) for the first event that took the victim out."""
    if report.fault_at is None:
        return None, "", ""
    for event in events:
        if getattr(event, "instance", None) != VICTIM or event.at < report.fault_at:
            continue
        if isinstance(event, InstanceEjected):
            return event.at - report.fault_at, "ejected", event.describe()
        if isinstance(event, InstanceDown):
            return event.at - report.fault_at, _how(event.reason), event.reason
    return None, "", ""


def _how(reason: str) -> str:
    """A marked-DOWN reason in a few words: by health checks, or passively from real requests."""
    if reason.startswith("nginx"):
        return "passive (max_fails)"
    if "Health analyze" in reason:
        return "passive (observe)"
    return "health checks"


def machine_description(balancers: Sequence[str] = BALANCERS) -> str:
    """ "Machine: 2 CPUs, Linux 6.1, Python 3.11.7; HAProxy 2.6.12, nginx 1.22.1": where a table was measured."""
    import os

    parts = [f"{os.cpu_count()} CPUs", f"{platform.system()} {platform.release().split('-')[0]}"]
    parts.append(f"Python {platform.python_version()}")
    versions = [proxy_version(name) for name in balancers if name != "spofkit"]
    return "Machine: " + ", ".join(parts) + ("; " + ", ".join(versions) if versions else "")


def proxy_version(name: str) -> str:
    """``HAProxy 2.6.12`` or ``nginx 1.22.1``, as the binary says."""
    binary = find_binary(name)
    flag = "-v"
    done = subprocess.run([binary, flag], capture_output=True, text=True, timeout=10)
    words = (done.stdout + done.stderr).split()
    if name == "haproxy":
        version = words[2].split("-")[0] if len(words) > 2 else "?"
        return f"HAProxy {version}"
    found = next((w for w in words if w.startswith("nginx/")), "nginx/?")
    return f"nginx {found.split('/', 1)[1]}"
