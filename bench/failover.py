"""Failover: what clients feel when one of three instances crashes or hangs, with and without retries.

    python bench/failover.py [--rate 500] [--duration 10] [--fault-at 3] [--isolation process|inprocess]
                             [--spofkit-root DIR]

For each fault (``crash``, ``hang``) and each setting (retries on, retries off) the script starts a fresh
:class:`spofkit.lab.Lab` with 3 instances (health checks and passive ejection on in every run, so the only
difference is the retries), sends open-loop load at ``--rate`` requests/s for ``--duration`` s, breaks
instance ``b`` at ``--fault-at`` s, and prints one column per run: client errors, availability, requests
retried, detection window (fault → health checker marks ``b`` down), client-visible outage (the time during
which most requests sent failed), first → last failure and p50/p99 latency. Every run is bounded: the load stops
after ``--duration`` s and each request after ``--client-timeout`` s.

With ``--isolation process`` (the default) each instance is its own OS process and a crash is a real ``kill -9``.
``--spofkit-root DIR`` runs the same scenarios on another copy of the package (``DIR/spofkit``, e.g. with a
proposed change applied), to check that a change keeps the failover figures.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spofkit.report import Report

ROOT = Path(__file__).resolve().parent.parent
FAULTS = ("crash", "hang")
VICTIM = "b"


async def one_run(args: argparse.Namespace, fault: str, retries: bool) -> Report:
    from spofkit.failover import RetrySettings
    from spofkit.health import HealthSettings
    from spofkit.lab import Lab

    lab = await Lab.start(
        instances=3,
        health=HealthSettings(),
        retries=RetrySettings() if retries else None,
        isolation=args.isolation,
        seed=args.seed,
    )
    async with lab:
        return await lab.run_load(
            rate=args.rate,
            duration=args.duration,
            faults=[(args.fault_at, VICTIM, fault, {})],
            timeout=args.client_timeout,
        )


async def main_async(args: argparse.Namespace) -> None:
    import spofkit
    from spofkit.report import compare

    print(f"spofkit from {Path(spofkit.__file__).parent}", flush=True)
    reports: dict[str, Report] = {}
    for fault in FAULTS:
        for retries in (True, False):
            name = f"{fault}, retries {'on' if retries else 'off'}"
            started = time.monotonic()
            print(f"running: {name} ...", end=" ", flush=True)
            reports[name] = await one_run(args, fault, retries)
            print(f"done in {time.monotonic() - started:.0f} s", flush=True)
    print()
    print(
        f"{args.rate:g} req/s for {args.duration:g} s, 3 instances ({args.isolation}), "
        f"{VICTIM!r} breaks at {args.fault_at:g} s; health checks (interval 0.5 s, fall 3) and ejection on"
    )
    print()
    print(compare(reports))
    print()
    for name, report in reports.items():
        errors = ", ".join(f"{kind} {count}" for kind, count in report.errors_by_kind.items()) or "none"
        print(f"{name:<20} errors by kind: {errors}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=500.0, help="requests per second (default 500)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per run (default 10)")
    parser.add_argument("--fault-at", type=float, default=3.0, help="when b breaks, in seconds (default 3)")
    parser.add_argument("--isolation", choices=("process", "inprocess"), default="process")
    parser.add_argument("--client-timeout", type=float, default=5.0, help="a client gives up after this (s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spofkit-root", default=str(ROOT), help="directory holding the spofkit package to run")
    args = parser.parse_args(argv)
    if not (Path(args.spofkit_root) / "spofkit" / "lab.py").is_file():
        parser.error(f"--spofkit-root {args.spofkit_root!r} has no spofkit/lab.py")
    # Imported from here on (not at the top), so that --spofkit-root decides which copy runs.
    sys.path.insert(0, str(Path(args.spofkit_root).resolve()))
    for name in ("rate", "duration", "client_timeout"):
        if not getattr(args, name) > 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)!r}")
    if not 0 <= args.fault_at <= args.duration:
        parser.error(f"--fault-at must be within the run (0..{args.duration:g}), got {args.fault_at!r}")
    try:
        asyncio.run(main_async(args))  # every Lab is stopped by its `async with`, also on Ctrl-C
    except KeyboardInterrupt:
        print("\ninterrupted; every lab was stopped", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
