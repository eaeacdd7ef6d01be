"""The same experiment on spofkit's balancer, HAProxy and nginx, in one run: one table a teacher can show.

    python bench/compare_proxies.py [--scenarios crash,hang,gray,slow] [--balancers spofkit,haproxy,nginx]
                                    [--rate 200] [--duration 6] [--fault-at 2] [--instances 3]
                                    [--isolation process] [--proxy-defaults] [--json]

Each (scenario, balancer) is a fresh lab: the instances (each its own process by default), the balancer configured
from the lab's settings by ``spofkit.export`` (health checks, retries, passive ejection as the lab has them), open
loop load, and instance ``b`` gets the scenario's fault. The table has, per run: the requests, the client errors,
the detection window (fault -> marked DOWN), the client-visible outage, p50 and p99, and what first took ``b`` out
(marked DOWN by health checks, passively, or ejected) and when.

``--proxy-defaults`` runs HAProxy with its own default checks (inter 2s, rise 2, fall 3, no check timeout) and
nginx with its own default passive limits (max_fails=1 fail_timeout=10s) instead of the lab's equivalents.
``--json`` prints one JSON object per run instead of the table. Needs the Debian packages haproxy and nginx.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from spofkit.compare import (  # after the path above: this checkout's spofkit is the one imported
    BALANCERS,
    HAPROXY_DEFAULT_HEALTH,
    NGINX_DEFAULT_PASSIVE,
    SCENARIOS,
    Comparison,
    machine_description,
    run_comparison,
)
from spofkit.export import ProxyNotInstalled


def names(allowed: tuple[str, ...], what: str) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        chosen = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in chosen if name not in allowed]
        if unknown or not chosen:
            raise argparse.ArgumentTypeError(f"{what} must be a comma-separated subset of {','.join(allowed)}")
        return chosen

    return parse


def positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not 0 < value <= 600:
        raise argparse.ArgumentTypeError(f"must be > 0 and <= 600, got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", type=names(SCENARIOS, "--scenarios"), default=list(SCENARIOS))
    parser.add_argument("--balancers", type=names(BALANCERS, "--balancers"), default=list(BALANCERS))
    parser.add_argument("--rate", type=positive, default=200.0, help="requests per second (default 200)")
    parser.add_argument("--duration", type=positive, default=6.0, help="seconds per run (default 6)")
    parser.add_argument("--fault-at", type=positive, default=2.0, help="when b gets the fault (default 2 s)")
    parser.add_argument("--instances", type=int, default=3, help="instances (default 3)")
    parser.add_argument("--isolation", choices=("process", "inprocess"), default="process")
    parser.add_argument("--proxy-defaults", action="store_true", help="HAProxy's and nginx's own default checks")
    parser.add_argument("--json", action="store_true", help="one JSON object per run")
    args = parser.parse_args(argv)
    if args.fault_at >= args.duration:
        parser.error(f"--fault-at ({args.fault_at:g}) must be before the end of the run (--duration {args.duration:g})")
    if not 2 <= args.instances <= 26:
        parser.error(f"--instances must be 2..26, got {args.instances}")
    runs: list[Comparison] = []
    started = time.monotonic()
    try:
        if args.proxy_defaults:
            # Each proxy with its own defaults: a comparison per balancer, the lab's settings for spofkit.
            for balancer in args.balancers:
                options = {}
                if balancer == "haproxy":
                    options = {"health": HAPROXY_DEFAULT_HEALTH}
                elif balancer == "nginx":
                    options = {"ejection": NGINX_DEFAULT_PASSIVE}
                runs.append(comparison(args, [balancer], **options))
        else:
            runs.append(comparison(args, args.balancers))
    except ProxyNotInstalled as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.json:
        for result in runs:
            for run in result.runs:
                report = run.report
                print(
                    json.dumps(
                        {
                            "scenario": run.scenario,
                            "balancer": run.balancer,
                            "requests": report.requests,
                            "client_errors": report.failed,
                            "detection_window": report.detection_window,
                            "client_visible_outage": report.client_visible_outage,
                            "p50": report.latency_p50,
                            "p99": report.latency_p99,
                            "taken_out_after": run.taken_out_after,
                            "taken_out_by": run.taken_out_by,
                            "reason": run.reason,
                        }
                    )
                )
        return 0
    every_run = sorted(
        (run for result in runs for run in result.runs),
        key=lambda run: (args.scenarios.index(run.scenario), args.balancers.index(run.balancer)),
    )
    first = runs[0]
    merged = Comparison(
        tuple(every_run),
        *(first.instances, first.rate, first.duration, first.fault_at, first.isolation),
        machine=machine_description(args.balancers),
    )
    print(merged.to_text())
    which = "each proxy's own defaults" if args.proxy_defaults else "the lab's settings, exported to each proxy"
    print(f"({which}; {time.monotonic() - started:.0f} s in all)")
    return 0


def comparison(args: argparse.Namespace, balancers: list[str], **options: object) -> Comparison:
    return run_comparison(
        args.scenarios,
        balancers=balancers,
        instances=args.instances,
        rate=args.rate,
        duration=args.duration,
        fault_at=args.fault_at,
        isolation=args.isolation,
        **options,
    )


if __name__ == "__main__":
    sys.exit(main())
