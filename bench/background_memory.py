"""Background load and memory: does the lab's process grow while its background load runs, and shrink after?

    python bench/background_memory.py [--rate 1000] [--seconds 60] [--warm-up 10] [--every 10] [--tracemalloc]
                                      [--isolation inprocess|process] [--spofkit-root DIR]

Starts a lab (3 instances) in this process, runs ``lab.start_background_load(rate)`` for ``--seconds`` s and
prints, every ``--every`` s: requests recorded, requests in flight, outcomes so far, the process's RSS
(``/proc/self/statm``) and, with ``--tracemalloc``, the memory Python has allocated and not freed (traced memory;
tracemalloc roughly halves the rate the lab can carry). The growth is given from the end of ``--warm-up`` on, per
minute and per request. Then it stops the load and measures again. With ``--top N`` (needs ``--tracemalloc``) it
also prints the N source lines whose allocations grew most between the end of warm-up and the end of the load.

``--spofkit-root DIR`` runs another copy of the package (``DIR/spofkit``), for a before/after. Everything listens
on 127.0.0.1; the load is bounded by ``--seconds`` (and each request by the client timeout, 5 s).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import os
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MIB = 2**20


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def traced_bytes() -> int:
    return tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else 0


async def main_async(args: argparse.Namespace) -> None:
    import spofkit
    import spofkit.commands
    from spofkit.events import ClientRequest, Event
    from spofkit.lab import Lab

    # Memory is measured at any rate asked for, also past the cap on the background load (the 1,000 req/s).
    spofkit.commands.MAX_LOAD_RATE = float("inf")

    print(f"spofkit from {Path(spofkit.__file__).parent}; load average {os.getloadavg()[0]:.1f}", flush=True)
    outcomes: collections.Counter[str] = collections.Counter()

    def count(event: Event) -> None:  # from the events, so that an older copy of the package can be measured too
        if isinstance(event, ClientRequest):
            outcomes[event.error or "ok"] += 1

    if args.tracemalloc:
        tracemalloc.start()
    async with await Lab.start(instances=3, isolation=args.isolation) as lab:
        lab.events.subscribe(count)
        generator = lab.start_background_load(args.rate)
        started = time.monotonic()
        warm: tuple[float, int, int, int] | None = None  # (time, requests, rss, traced) at the end of warm-up
        warm_snapshot: Any = None
        print(f"{'t':>5} {'requests':>9} {'in flight':>9} {'RSS MiB':>8} {'traced MiB':>10}  outcomes")
        next_report = args.warm_up
        while (elapsed := time.monotonic() - started) < args.seconds:
            await asyncio.sleep(min(1.0, max(0.0, next_report - elapsed)))
            elapsed = time.monotonic() - started
            if elapsed < next_report:
                continue
            gc.collect()
            now = (elapsed, sum(outcomes.values()), rss_bytes(), traced_bytes())
            print(
                f"{elapsed:5.0f} {now[1]:9d} {generator.in_flight:9d} {now[2] / MIB:8.1f} {now[3] / MIB:10.1f}  "
                f"{dict(outcomes)}",
                flush=True,
            )
            if warm is None:
                warm = now
                if args.top:
                    warm_snapshot = tracemalloc.take_snapshot()
            next_report += args.every
        gc.collect()
        end = (time.monotonic() - started, sum(outcomes.values()), rss_bytes(), traced_bytes())
        end_snapshot = tracemalloc.take_snapshot() if args.top else None
        await lab.stop_background_load()
        gc.collect()
        after = (rss_bytes(), traced_bytes())
    assert warm is not None
    minutes, requests = (end[0] - warm[0]) / 60, max(1, end[1] - warm[1])
    print()
    print(f"{args.rate:g} req/s asked, {requests / (minutes * 60):.0f} req/s recorded after warm-up ({args.isolation})")
    for name, index in (("RSS", 2), ("traced", 3)):
        if name == "traced" and not args.tracemalloc:
            continue
        growth = end[index] - warm[index]
        print(f"{name:>6}: {growth / MIB / minutes:+7.1f} MiB/min, {growth / requests:+6.0f} B/request after warm-up")
    line = f"after stopping the load: RSS {after[0] / MIB:.1f} MiB (was {end[2] / MIB:.1f} at the end of the load)"
    print(line + (f", traced {after[1] / MIB:.1f} MiB (was {end[3] / MIB:.1f})" if args.tracemalloc else ""))
    if warm_snapshot is not None and end_snapshot is not None:
        print()
        print(f"top {args.top} source lines by growth of memory allocated there and not freed, after warm-up:")
        for stat in end_snapshot.compare_to(warm_snapshot, "lineno")[: args.top]:
            print(f"  {stat}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=1000.0, help="background load, requests/s (default 1000)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the load runs (default 60)")
    parser.add_argument("--warm-up", type=float, default=10.0, help="growth is measured from here on (default 10)")
    parser.add_argument("--every", type=float, default=10.0, help="print a line every this many seconds")
    parser.add_argument("--tracemalloc", action="store_true", help="also trace Python's allocations (slower)")
    parser.add_argument("--top", type=int, default=0, help="with --tracemalloc: print the N lines that grew most")
    parser.add_argument("--isolation", choices=("inprocess", "process"), default="inprocess")
    parser.add_argument("--spofkit-root", default=str(ROOT), help="directory holding the spofkit package to run")
    args = parser.parse_args(argv)
    if not 0 < args.rate <= 20_000:
        parser.error(f"--rate must be in (0, 20000] requests/s, got {args.rate!r}")
    if not 0 < args.warm_up < args.seconds <= 3600:
        parser.error(f"need 0 < --warm-up < --seconds <= 3600, got {args.warm_up!r} and {args.seconds!r}")
    if not args.every > 0:
        parser.error(f"--every must be > 0 seconds, got {args.every!r}")
    if args.top and not args.tracemalloc:
        parser.error("--top needs --tracemalloc")
    if not (Path(args.spofkit_root) / "spofkit" / "lab.py").is_file():
        parser.error(f"--spofkit-root {args.spofkit_root!r} has no spofkit/lab.py")
    sys.path.insert(0, str(Path(args.spofkit_root).resolve()))  # imported from here on, so this decides the copy
    try:
        asyncio.run(main_async(args))  # the lab is stopped by its `async with`, also on Ctrl-C
    except KeyboardInterrupt:
        print("\ninterrupted; the lab was stopped", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
