"""Throughput and latency: the spofkit balancer next to nginx and HAProxy, in front of the same instances.

    python bench/throughput.py [--duration 10] [--connections 50] [--threads 1] [--instances 3] [--rounds 1]
                               [--pin] [--targets direct,spofkit,nginx,haproxy] [--compare-root DIR]
                               [--uvloop] [--profile FILE]

One run starts N spofkit service instances (each its own OS process) and then, one after the other, these
targets in front of (or instead of) them, all on 127.0.0.1:

* ``direct``   — wrk straight at instance ``a`` (what one Python instance can do on its own);
* ``spofkit``  — the spofkit balancer in its own process: health checks on, default retries and ejection;
* ``patched``  — with ``--compare-root DIR``: the balancer of another copy of the package (``DIR/spofkit``,
  e.g. with a proposed change applied), set up like ``spofkit``, for a before/after in the same run;
* ``nginx``    — ``worker_processes 1``, an ``upstream`` with keepalive connections, HTTP/1.1 to the instances;
* ``haproxy``  — ``nbthread 1``, round robin, health checks like spofkit's (inter 500ms rise 2 fall 3).

Each target gets a warm-up wrk run, then the measured one, with the same wrk threads and connections. The table
shows req/s, p50 and p99 latency, errors (socket errors + non-2xx answers), the ratio to nginx, and the CPU
time the target's process(es) used per request (``cpu/req``: what a request costs the proxy, whatever else
the machine is doing — req/s on a busy 2-core machine moves a lot more). With ``--rounds R`` every target is
measured R times, interleaved, and the median run (by req/s) is shown.

``--pin`` runs every proxy on CPU 0 and wrk + the instances on CPU 1 (taskset), the same for every target.
``--uvloop`` runs the spofkit balancer(s) on uvloop (a pip package spofkit does not depend on).
``--profile FILE`` runs the spofkit balancer under cProfile (CPU time) and prints its most expensive functions.
"""

from __future__ import annotations

import argparse
import os
import pstats
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    HOST,
    Children,
    Instance,
    WrkResult,
    cpu_seconds,
    find_tool,
    free_port,
    run_wrk,
    start_balancer,
    start_instances,
    temporary_directory,
    wait_for_port,
)

PROXY_CPU, LOAD_CPU = "0", "1"

NGINX_CONF = """\
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream instances {{
{servers}
        keepalive 128;
    }}
    server {{
        listen {host}:{port};
        location / {{
            proxy_pass http://instances;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"""

HAPROXY_CFG = """\
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    option http-keep-alive
    option forwardfor
    timeout connect 1s
    timeout client 30s
    timeout server 30s
frontend spofkit_bench
    bind {host}:{port}
    default_backend instances
backend instances
    balance roundrobin
    http-reuse always
    option httpchk GET /health
    default-server check inter 500ms rise 2 fall 3
{servers}
"""


def start_nginx(children: Children, members: list[Instance], workdir: Path, pin: str | None) -> tuple[int, str]:
    port = free_port()
    servers = "\n".join(f"        server {m.url.removeprefix('http://')};" for m in members)
    conf = workdir / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=workdir, servers=servers, host=HOST, port=port))
    command = [find_tool("nginx"), "-p", str(workdir), "-e", str(workdir / "error.log"), "-c", str(conf)]
    process = children.start([*command, "-g", "daemon off;"], pin=pin, stderr=subprocess.DEVNULL)
    wait_for_port(port, process=process)
    return process.pid, f"http://{HOST}:{port}"


def start_haproxy(children: Children, members: list[Instance], workdir: Path, pin: str | None) -> tuple[int, str]:
    port = free_port()
    servers = "\n".join(f"    server {m.name} {m.url.removeprefix('http://')}" for m in members)
    cfg = workdir / "haproxy.cfg"
    cfg.write_text(HAPROXY_CFG.format(host=HOST, port=port, servers=servers))
    process = children.start([find_tool("haproxy"), "-db", "-f", str(cfg)], pin=pin, stderr=subprocess.DEVNULL)
    wait_for_port(port, process=process)
    return process.pid, f"http://{HOST}:{port}"


@dataclass(frozen=True)
class Measured:
    wrk: WrkResult
    cpu_per_request: float  # seconds of CPU the target's process(es) used per request


def measure(children: Children, pid: int, url: str, args: argparse.Namespace, pin: str | None) -> Measured:
    """A warm-up run, then the measured one, reading the target's CPU time around the latter."""
    wrk = {"connections": args.connections, "threads": args.threads, "pin": pin, "children": children}
    run_wrk(url, duration=args.warmup, **wrk)
    cpu_before = cpu_seconds(pid)
    result = run_wrk(url, duration=args.duration, **wrk)
    cpu_used = cpu_seconds(pid) - cpu_before
    return Measured(result, cpu_used / max(1, result.requests))


def ratios_to_nginx(rounds: dict[str, list[Measured]]) -> dict[str, float]:
    """Each target's req/s over nginx's *in the same round*, median over the rounds.

    Other work on the machine moves every target's req/s from round to round; a ratio taken within one round
    (seconds apart) cancels much of that, so it is steadier than the ratio of two medians.
    """
    nginx = rounds.get("nginx")
    if not nginx:
        return {}
    return {
        target: statistics.median(
            m.wrk.requests_per_second / n.wrk.requests_per_second for m, n in zip(runs, nginx, strict=True)
        )
        for target, runs in rounds.items()
    }


def print_table(results: dict[str, Measured], ratios: dict[str, float]) -> None:
    nginx = results.get("nginx")
    print(
        f"{'target':<9} {'req/s':>8} {'p50':>9} {'p99':>9} {'errors':>7} {'vs nginx':>9} {'cpu/req':>9}"
        f" {'cpu x':>6} {'p99 x':>6}"
    )
    print("-" * 80)
    for target, measured in results.items():
        result = measured.wrk
        ratio = f"{ratios[target]:.2f}x" if target in ratios else "-"
        cpu_x = p99_x = "-"
        if nginx is not None:  # the other two goals: CPU per request and p99, each at most 2x nginx's
            cpu_x = f"{measured.cpu_per_request / nginx.cpu_per_request:.1f}x"
            p99_x = f"{result.p99 / nginx.wrk.p99:.1f}x"
        print(
            f"{target:<9} {result.requests_per_second:>8.0f} {result.p50 * 1000:>7.2f}ms "
            f"{result.p99 * 1000:>7.2f}ms {result.errors:>7} {ratio:>9} {measured.cpu_per_request * 1e6:>7.0f}us"
            f" {cpu_x:>6} {p99_x:>6}"
        )


def print_profile(path: str, top: int = 25) -> None:
    stats = pstats.Stats(path)
    stats.strip_dirs()
    for order in ("tottime", "cumulative"):
        print(f"\n--- spofkit balancer, top {top} by {order} (CPU time, inflated by the profiler) ---")
        stats.sort_stats(order).print_stats(top)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per target (default 2)")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections (default 50)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1: the machine has 2 cores)")
    parser.add_argument("--instances", type=int, default=3, help="backend instances (default 3)")
    parser.add_argument("--rounds", type=int, default=1, help="measure every target this many times (median)")
    parser.add_argument("--pin", action="store_true", help=f"proxies on CPU {PROXY_CPU}, wrk+instances on {LOAD_CPU}")
    parser.add_argument("--targets", default="direct,spofkit,nginx,haproxy", help="comma-separated subset")
    parser.add_argument("--compare-root", help="also measure the balancer of DIR/spofkit, as target 'patched'")
    parser.add_argument("--uvloop", action="store_true", help="run the spofkit balancer(s) on uvloop")
    parser.add_argument("--profile", help="run the spofkit balancer under cProfile, write stats here, print top")
    args = parser.parse_args(argv)
    for name in ("duration", "connections", "threads", "instances", "rounds"):
        if not getattr(args, name) > 0:
            parser.error(f"--{name} must be > 0, got {getattr(args, name)!r}")
    if args.warmup < 1:
        parser.error(f"--warmup must be >= 1 second, got {args.warmup!r}")
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(targets) - {"direct", "spofkit", "patched", "nginx", "haproxy"}
    if unknown:
        parser.error(f"--targets has unknown names {sorted(unknown)}")
    if args.compare_root:
        if not (Path(args.compare_root) / "spofkit" / "balancer.py").is_file():
            parser.error(f"--compare-root {args.compare_root!r} has no spofkit/balancer.py")
        if "patched" not in targets:
            targets.insert(targets.index("spofkit") + 1 if "spofkit" in targets else 0, "patched")
    elif "patched" in targets:
        parser.error("target 'patched' needs --compare-root DIR")
    for tool in ["wrk"] + [t for t in ("nginx", "haproxy") if t in targets]:
        find_tool(tool)  # exits naming the package if missing, before anything starts

    proxy_cpu = PROXY_CPU if args.pin else None
    load_cpu = LOAD_CPU if args.pin else None
    rounds: dict[str, list[Measured]] = {t: [] for t in targets}
    pinning = f"pinned: proxies CPU {PROXY_CPU}, wrk+instances CPU {LOAD_CPU}" if args.pin else "no CPU pinning"
    print(
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration:.0f}s (after a {args.warmup:.0f}s warm-up) "
        f"on {HOST}; {args.instances} instances (separate processes); {pinning}; {os.cpu_count()} CPUs",
        flush=True,
    )
    try:
        with Children() as children, temporary_directory("spofkit-bench-") as workdir:
            members = start_instances(children, args.instances, pin=load_cpu)

            def balancer(root: str | None) -> tuple[int, str]:
                process, url = start_balancer(
                    children, members, spofkit_root=root, profile=args.profile, uvloop=args.uvloop, pin=proxy_cpu
                )
                return process.pid, url

            starters: dict[str, Callable[[], tuple[int, str]]] = {
                "direct": lambda: (members[0].pid, members[0].url),
                "spofkit": lambda: balancer(None),
                "patched": lambda: balancer(args.compare_root),
                "nginx": lambda: start_nginx(children, members, workdir, proxy_cpu),
                "haproxy": lambda: start_haproxy(children, members, workdir, proxy_cpu),
            }
            for round_number in range(args.rounds):
                for target in targets:
                    before = list(children.processes)
                    try:
                        pid, url = starters[target]()
                        measured = measure(children, pid, url, args, load_cpu)
                    finally:
                        for process in [p for p in children.processes if p not in before]:
                            children.stop(process)  # this target's proxy goes, so the next one has the CPU
                    rounds[target].append(measured)
                    print(
                        f"  round {round_number + 1} {target:<8} {measured.wrk.requests_per_second:8.0f} req/s "
                        f"{measured.cpu_per_request * 1e6:5.0f} us CPU/request   (load average {_load():.1f})",
                        flush=True,
                    )
    except KeyboardInterrupt:
        print("interrupted; every child process was stopped", file=sys.stderr)
        return 130

    results = {t: sorted(r, key=lambda m: m.wrk.requests_per_second)[len(r) // 2] for t, r in rounds.items()}
    print()
    print_table(results, ratios_to_nginx(rounds))
    print("\nreq/s: the median round; vs nginx: median over rounds of (req/s / nginx's req/s in that round);")
    print("cpu/req: CPU time of the target's own process(es) per request, in the median round;")
    print("cpu x, p99 x: cpu/req and p99 over nginx's (the goals: vs nginx >= 0.7x, cpu x and p99 x <= 2x).")
    if args.rounds > 1:
        print()
        for target, runs in rounds.items():
            spread = [round(m.wrk.requests_per_second) for m in runs]
            print(f"  {target:<8} req/s per round {spread} (stdev {statistics.pstdev(spread):.0f})")
    if args.profile and ("spofkit" in targets or "patched" in targets):
        print_profile(args.profile)
    return 0


def _load() -> float:
    return os.getloadavg()[0]


if __name__ == "__main__":
    sys.exit(main())
