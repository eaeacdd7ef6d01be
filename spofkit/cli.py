"""The ``spofkit`` command: run a lab from a terminal, or watch the classroom demo.

::

    spofkit serve [--instances 3] [--port 8080] [--admin-port 8081] [--isolation process] ...
                  [--concurrency 2 --queue 4 --work-ms 50 [--spread-ms 10]]   # each instance's capacity
    spofkit run   SCENARIO.toml [--sim | --live] [--seed S] [--json]          # a scenario file, on either driver
    spofkit demo  [--scenario crash|hang|gray|slow] [--pause] [--rate 200] [--duration 8] [--fault-at 2]
    spofkit lab                  # JupyterLab on the lessons
    spofkit tui [--connect URL]  # the terminal dashboard, on its own lab or attached to a served one
    spofkit bench                # the benchmark scripts in bench/
    spofkit export haproxy|nginx [--instances 3 ...] [--scenario FILE] [--check] [-o FILE]

``serve`` keeps a lab running until Ctrl+C (or SIGTERM) and prints where everything listens, one
``key value`` line each, so a person can read it and a script can parse it::

    balancer http://127.0.0.1:8080
    admin http://127.0.0.1:8081
    instance a http://127.0.0.1:40123 pid 5120
    ready

Break it from another terminal through the admin API (:mod:`spofkit.admin`), e.g.
``curl -X POST localhost:8081/instances/b/fault -d '{"kind": "crash"}'``. ``--concurrency``, ``--queue``,
``--work-ms``, ``--spread-ms`` and ``--distribution`` give every instance its capacity (:mod:`spofkit.capacity`):
that many workers, that queue, that work per request, and 503 at once beyond the queue.

``run`` is :func:`spofkit.scenario.run_scenario_cli`: a scenario file (TOML) in the simulator (the default, in
virtual time, with the digest of its event log) or on a live lab (``--live``, real servers, real time).

``demo`` is the lesson in one command, in three acts: the same fault twice — once with a balancer that neither
checks nor retries, once with health checks, retries and ejection — then the two reports side by side and what
each protection did. Every instance is its own process (``--isolation inprocess`` to keep them in this one), so
the crash is a real ``kill -9`` of the PID it prints. ``--pause`` waits for Enter before each act, so a teacher
can ask the class what will happen first.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import importlib
import importlib.util
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from spofkit import __version__
from spofkit.capacity import SERVICE_DISTRIBUTIONS, Capacity, ModelError
from spofkit.events import (
    PER_REQUEST_KINDS,
    ClientRequest,
    Event,
    FaultInjected,
    HealthProbe,
    InstanceDown,
    InstanceEjected,
    InstanceReturned,
    InstanceUp,
    RequestRetried,
)
from spofkit.failover import EjectionSettings, RetrySettings
from spofkit.faults import PRESETS, Preset
from spofkit.health import HealthSettings
from spofkit.instance import Instance
from spofkit.proxy.limits import ProxyLimits
from spofkit.report import Report, compare, percentile
from spofkit.strategies import strategy_names

DEMO_INSTANCES = 3
DEMO_VICTIM = "b"
# Seconds a demo client waits for an answer before it gives up. Under 5 s on purpose: aiohttp rounds timeouts of
# 5 s and more up to a whole second of the loop's clock, and the narration should say how long clients waited.
DEMO_CLIENT_TIMEOUT = 4.0


# --- argument types: each error names the value, argparse adds the flag -----------------------------


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {low}..{high}, got {value}")
        return value

    return parse


def _number_in(low: float, high: float, *, low_open: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        too_low = value <= low if low_open else value < low
        if too_low or value > high or value != value:  # value != value: NaN
            bound = f"> {low}" if low_open else f">= {low}"
            raise argparse.ArgumentTypeError(f"must be {bound} and <= {high}, got {text}")
        return value

    return parse


def _local_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost") or not parts.port:
        raise argparse.ArgumentTypeError(f"must be a local admin URL such as http://127.0.0.1:8081, got {text!r}")
    return text.rstrip("/")


def _strategy(text: str) -> str:
    key = text.strip().lower().replace("-", "_")
    if key not in strategy_names():
        raise argparse.ArgumentTypeError(f"unknown strategy {text!r}; valid names: {', '.join(strategy_names())}")
    return key


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spofkit",
        description="Learn single points of failure, redundancy and failover by doing.",
    )
    parser.add_argument("--version", action="version", version=f"spofkit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run a lab until Ctrl+C, with its admin API")
    serve.add_argument("--instances", type=_int_in(1, 26), default=3, metavar="N", help="primaries (default 3)")
    serve.add_argument("--backups", type=_int_in(0, 25), default=0, metavar="N", help="backups (default 0)")
    serve.add_argument("--port", type=_int_in(0, 65535), default=8080, help="balancer port (default 8080, 0: any)")
    serve.add_argument(
        "--admin-port",
        type=_int_in(0, 65535),
        default=8081,
        metavar="PORT",
        help="admin API port (default 8081, 0: any)",
    )
    _isolation_option(serve)
    serve.add_argument("--strategy", type=_strategy, default="round_robin", help="balancing strategy")
    serve.add_argument(
        "--balancers", type=_int_in(1, 2), default=1, metavar="N", help="balancers at the front door: 1, or a pair"
    )
    serve.add_argument(
        "--pair",
        choices=("active-passive", "active-active"),
        default=None,
        help="how a pair shares the service address (default with --balancers 2: active-passive)",
    )
    serve.add_argument(
        "--no-preempt", action="store_true", help="a recovered primary balancer stays backup (active-passive)"
    )
    serve.add_argument("--no-retries", action="store_true", help="do not retry failed attempts")
    serve.add_argument("--no-health-checks", action="store_true", help="no active health checks")
    serve.add_argument("--no-ejection", action="store_true", help="no passive ejection")
    serve.add_argument(
        "--concurrency",
        type=_int_in(1, 100_000),
        default=None,
        metavar="N",
        help="workers per instance: requests served at once (default: no limit)",
    )
    serve.add_argument(
        "--queue",
        type=_int_in(0, 100_000),
        default=0,
        metavar="Q",
        help="requests that may wait for a worker; beyond them, 503 at once (default 0; needs --concurrency)",
    )
    serve.add_argument(
        "--work-ms", type=_number_in(0, 60000), default=0.0, metavar="MS", help="mean time each request takes (ms)"
    )
    serve.add_argument(
        "--spread-ms",
        type=_number_in(0, 60000),
        default=0.0,
        metavar="MS",
        help="standard deviation of the work time (ms): lognormal work times (default 0: all the same)",
    )
    serve.add_argument(
        "--distribution",
        choices=SERVICE_DISTRIBUTIONS,
        default=None,
        help="work times: fixed, lognormal (the default with --spread-ms) or exponential (mean --work-ms)",
    )
    serve.add_argument("--seed", type=int, default=0, help="seed for every random choice")
    serve.add_argument("--quiet", action="store_true", help="do not print events as they happen")
    serve.add_argument(
        "--balancer",
        choices=("spofkit", "haproxy", "nginx"),
        default="spofkit",
        help="the balancer: spofkit's own, or the real HAProxy or nginx configured alike (default spofkit)",
    )
    # The balancers' client side (spofkit.proxy.limits.ProxyLimits); unset: nginx's defaults.
    serve.add_argument(
        "--head-timeout",
        type=_number_in(0, 3600, low_open=True),
        default=None,
        metavar="S",
        help="a client's request head must arrive within S seconds, else 408 (default 60, nginx's)",
    )
    serve.add_argument(
        "--body-timeout",
        type=_number_in(0, 3600, low_open=True),
        default=None,
        metavar="S",
        help="at most S seconds between two reads of a request body, else 408 (default 60)",
    )
    serve.add_argument(
        "--keepalive-timeout",
        type=_number_in(0, 3600, low_open=True),
        default=None,
        metavar="S",
        help="an idle kept-alive client connection is closed after S seconds (default 75)",
    )
    serve.add_argument(
        "--max-connections",
        type=_int_in(1, 1_000_000),
        default=None,
        metavar="N",
        help="client connections at once; beyond them a quick 503 (default: from ulimit -n)",
    )
    serve.add_argument(
        "--admin-token",
        default=None,
        metavar="TOKEN",
        help="token for changing calls to the admin API (default: $SPOFKIT_ADMIN_TOKEN, else a new random one)",
    )

    serve.set_defaults(command_parser=serve)

    demo = commands.add_parser("demo", help="the same fault without and with failover, compared")
    demo.add_argument(
        "--scenario",
        choices=tuple(SCENARIOS),
        default="crash",
        help="the fault b gets (default crash): crash, hang, gray (health checks pass), slow (+200 ms)",
    )
    demo.add_argument("--rate", type=_number_in(0, 2000, low_open=True), default=200.0, help="requests/s")
    demo.add_argument("--duration", type=_number_in(0, 120, low_open=True), default=8.0, help="seconds per run")
    demo.add_argument(
        "--fault-at",
        "--crash-at",
        dest="fault_at",
        metavar="T",
        type=_number_in(0, 120),
        default=2.0,
        help="when b gets the fault (s into the run, default 2)",
    )
    demo.add_argument("--pause", action="store_true", help="wait for Enter before each act (time for predictions)")
    demo.add_argument(
        "--pause-timeout",
        type=_number_in(0, 3600, low_open=True),
        default=30.0,
        metavar="S",
        help="with --pause, when input is not a terminal: wait at most S seconds for Enter (default 30)",
    )
    _isolation_option(demo, default="process")
    demo.add_argument("--seed", type=int, default=0, help="seed for every random choice")
    demo.set_defaults(command_parser=demo)  # for errors about combinations, with the demo's own usage line

    lab = commands.add_parser("lab", help="open the lessons in JupyterLab")
    lab.add_argument("--lessons", type=Path, default=None, help="lessons folder (default: found)")

    tui = commands.add_parser("tui", help="the terminal dashboard")
    tui.add_argument("--connect", type=_local_url, default=None, help="admin URL of a running `spofkit serve`")
    tui.add_argument(
        "--balancers", type=_int_in(1, 2), default=None, metavar="N", help="balancers at the front door: 1, or a pair"
    )
    tui.add_argument(
        "--pair",
        choices=("active-passive", "active-active"),
        default=None,
        help="how a pair shares the service address (default with --balancers 2: active-passive)",
    )
    tui.add_argument(
        "--no-preempt", action="store_true", help="a recovered primary balancer stays backup (active-passive)"
    )
    tui.add_argument(
        "--isolation",
        choices=("inprocess", "process"),
        default=None,
        help="process: every instance and balancer its own OS process, so a crash is a real kill -9",
    )
    tui.set_defaults(command_parser=tui)

    # `spofkit run ...` is handed to spofkit.scenario before this parser sees it (main): that module owns its
    # arguments and their errors. The entry here puts it in `spofkit --help`.
    commands.add_parser(
        "run",
        help="run a scenario file (TOML) in the simulator or on a live lab: run SCENARIO.toml [--sim|--live] ...",
        add_help=False,
    )

    commands.add_parser("bench", help="run the benchmark scripts in bench/")

    export = commands.add_parser(
        "export",
        help="write the lab's settings as an HAProxy or nginx configuration",
        description="Write the lab's settings (the serve flags, or a scenario file) as a configuration for HAProxy or "
        "nginx. Settings the proxy has no word for are comments that say what the nearest is.",
    )
    export.add_argument("target", choices=("haproxy", "nginx"), help="the proxy to write a configuration for")
    export.add_argument("--instances", type=_int_in(1, 26), default=3, metavar="N", help="primaries (default 3)")
    export.add_argument("--backups", type=_int_in(0, 25), default=0, metavar="N", help="backups (default 0)")
    export.add_argument(
        "--first-port",
        type=_int_in(1, 65000),
        default=9001,
        metavar="PORT",
        help="the instances listen on 127.0.0.1:PORT, PORT+1, ... (default 9001)",
    )
    export.add_argument(
        "--member",
        action="append",
        type=_member,
        default=[],
        metavar="NAME=HOST:PORT[,weight=N][,max_conns=N][,backup]",
        help="an instance at this address (repeat; replaces --instances and --first-port)",
    )
    export.add_argument("--port", type=_int_in(1, 65535), default=8080, help="the service port (default 8080)")
    export.add_argument("--strategy", type=_strategy, default="round_robin", help="balancing strategy")
    export.add_argument("--no-retries", action="store_true", help="do not retry failed attempts")
    export.add_argument("--no-health-checks", action="store_true", help="no active health checks")
    export.add_argument("--no-ejection", action="store_true", help="no passive ejection")
    export.add_argument(
        "--slow-start", type=_number_in(0, 3600), default=0.0, metavar="S", help="slow start (seconds, default 0)"
    )
    export.add_argument("--scenario", type=Path, default=None, metavar="FILE", help="take the settings from a scenario")
    export.add_argument("-o", "--output", type=Path, default=None, metavar="FILE", help="write here (default: stdout)")
    export.add_argument("--check", action="store_true", help="validate it with the real binary (haproxy -c, nginx -t)")
    export.set_defaults(command_parser=export)
    return parser


def _member(text: str) -> tuple[str, str, dict[str, Any]]:
    """``a=127.0.0.1:9001`` and options after commas: ``weight=2``, ``max_conns=10``, ``backup``."""
    first, *extras = text.split(",")
    name, equals, address = first.partition("=")
    host, _, port = address.rpartition(":")
    if not equals or not name or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(
            f"must be NAME=HOST:PORT[,weight=N][,max_conns=N][,backup], such as a=127.0.0.1:9001; got {text!r}"
        )
    options: dict[str, Any] = {}
    for extra in extras:
        key, _, value = extra.strip().partition("=")
        if key == "backup" and not value:
            options["backup"] = True
        elif key in ("weight", "max_conns") and value.isdigit():
            options[key] = int(value)
        else:
            raise argparse.ArgumentTypeError(f"unknown member option {extra!r} (known: weight=N, max_conns=N, backup)")
    return name, address, options


def _isolation_option(parser: argparse.ArgumentParser, default: str = "inprocess") -> None:
    parser.add_argument(
        "--isolation",
        choices=("inprocess", "process"),
        default=default,
        help=f"process: every instance its own OS process, so a crash is a real kill -9 (default {default})",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``spofkit`` command; returns the exit status (2 for bad arguments)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["run"]:
        return run_scenario_file(arguments[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(arguments)
        if args.command == "demo" and args.fault_at >= args.duration:
            args.command_parser.error(
                f"argument --fault-at/--crash-at: must be before the end of the run "
                f"(--duration {args.duration:g}), got {args.fault_at:g}"
            )
        if args.command == "serve" and args.balancers == 1 and (args.pair or args.no_preempt):
            args.command_parser.error("--pair and --no-preempt are for a pair: add --balancers 2")
        if args.command == "tui":
            _check_tui_options(args)
        if args.command == "serve" and args.balancer != "spofkit" and args.balancers != 1:
            args.command_parser.error(
                f"--balancer {args.balancer} runs one {args.balancer}; a pair of real proxies is keepalived's "
                "(python -m spofkit.keepalived_pair)"
            )
        if args.command == "serve":
            args.capacity = _serve_capacity(args)
            args.limits = _serve_limits(args)
    except SystemExit as exit_:  # argparse has printed the error (or the help)
        return exit_.code if isinstance(exit_.code, int) else 2
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "serve": lambda a: asyncio.run(serve(a)),
        "demo": demo,
        "lab": open_lab,
        "tui": open_tui,
        "bench": run_bench,
        "export": export_config,
    }
    try:
        return commands[args.command](args)
    except KeyboardInterrupt:
        return 130
    except (OSError, ValueError) as error:
        print(f"spofkit {args.command}: {error}", file=sys.stderr)
        return 1


def _serve_capacity(args: argparse.Namespace) -> Capacity:
    """The instances' capacity from serve's flags; a wrong combination is an argparse error naming the flag."""
    parser: argparse.ArgumentParser = args.command_parser
    try:
        return Capacity(args.concurrency, args.queue, args.work_ms, args.spread_ms, args.distribution)
    except ModelError as error:
        parser.error(f"argument --{error.field.replace('_', '-')}: {error}")


LIMIT_FLAGS = ("head_timeout", "body_timeout", "keepalive_timeout", "max_connections")


def _serve_limits(args: argparse.Namespace) -> ProxyLimits | None:
    """The balancers' limits from serve's flags (None: none given, the defaults); only spofkit's balancer has them."""
    given = {name: getattr(args, name) for name in LIMIT_FLAGS if getattr(args, name) is not None}
    if not given:
        return None
    if args.balancer != "spofkit":
        flags = " ".join("--" + name.replace("_", "-") for name in given)
        args.command_parser.error(
            f"{flags}: for spofkit's balancer; {args.balancer} has its own (see `spofkit export {args.balancer}`)"
        )
    return ProxyLimits(**given)


def _figure(value: float) -> str:
    """A setting as a person writes it: ``0.5``, ``60``, ``1000000`` (never ``1e+06``)."""
    return str(value) if isinstance(value, int) else f"{value:g}"


def run_scenario_file(arguments: list[str]) -> int:
    """``spofkit run SCENARIO.toml [--sim | --live] [--seed S] [--json]``: :func:`spofkit.scenario.run_scenario_cli`."""
    from spofkit.scenario import run_scenario_cli

    try:
        return run_scenario_cli(arguments)
    except KeyboardInterrupt:
        return 130
    except (OSError, ValueError) as error:  # a live lab that cannot start (a port, a process): not the file's fault
        print(f"spofkit run: {error}", file=sys.stderr)
        return 1


def say(*parts: Any) -> None:
    """Print and flush at once: the output may be a pipe that a script (or a test) is reading."""
    print(*parts, flush=True)


# --- serve ---------------------------------------------------------------------------------------------


async def serve(args: argparse.Namespace) -> int:
    from spofkit.admin import TOKEN_ENV, AdminServer, token_file, write_token_file
    from spofkit.lab import Lab

    # Signal handlers first, so a SIGTERM during startup still stops every child process cleanly.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    lab = await Lab.start(
        args.instances,
        strategy=args.strategy,
        health=None if args.no_health_checks else HealthSettings(),
        retries=None if args.no_retries else RetrySettings(),
        ejection=None if args.no_ejection else EjectionSettings(),
        isolation=args.isolation,
        capacity=args.capacity,
        backups=args.backups,
        seed=args.seed,
        port=args.port,
        balancers=args.balancers,
        pair=args.pair if args.balancers == 2 else None,
        preempt=not args.no_preempt,
        balancer=args.balancer,
        limits=args.limits,
    )
    try:
        admin = AdminServer(lab, port=args.admin_port, token=args.admin_token or os.environ.get(TOKEN_ENV) or None)
        await admin.start()
        written = write_token_file(admin.port, admin.token)
        try:
            status = lab.status()
            protections = [
                f"retries {'on' if status.retries else 'off'}",
                f"health checks {'on' if status.health_checks else 'off'}",
                f"ejection {'on' if status.ejection else 'off'}",
            ]
            which = "" if args.balancer == "spofkit" else f", balancer {args.balancer}"
            say(f"# spofkit serve: {status.strategy}, {', '.join(protections)}, {args.isolation}{which}")
            say(f"# each instance: {args.capacity.describe()}")
            if args.limits is not None:
                given = [name for name in LIMIT_FLAGS if getattr(args, name) is not None]
                changed = ", ".join(f"{name.replace('_', ' ')} {_figure(getattr(args.limits, name))}" for name in given)
                say(f"# balancer limits: {changed} (the rest nginx's defaults)")
            say(f"balancer {lab.balancer_url}")
            for front in status.balancers:
                pid = front.pid if front.pid else "-"
                say(f"front {front.name} {front.url} pid {pid} role {front.role}")
            say(f"admin {admin.url}")
            say(f"token {admin.token}")
            say(f"token_file {written}")
            for row in status.instances:
                backup = " backup" if row.backup else ""
                say(f"instance {row.name} {row.url} pid {row.pid if row.pid else '-'}{backup}")
            say("ready")
            say(f"# Ctrl+C stops. Try: curl {admin.url}/status")
            say(f'# Changes need the token: curl -H "Authorization: Bearer $(cat {written})" -X POST ...')
            unsubscribe = None if args.quiet else lab.events.subscribe(_print_event)
            await stop.wait()
            if unsubscribe:
                unsubscribe()
            say("# stopping")
        finally:
            await admin.stop()
            if token_file(admin.port).exists():
                token_file(admin.port).unlink()
    finally:
        await lab.stop()
    say("# stopped")
    return 0


def _print_event(event: Event) -> None:
    if event.kind not in PER_REQUEST_KINDS:  # one per request or probe: too many for a terminal
        say(f"# [{event.at:7.2f}s] {event.describe()}")


# --- demo ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One fault the demo can stage: its preset (:data:`spofkit.faults.PRESETS`) and what to ask the class."""

    name: str
    headline: str  # what the victim does, in capitals, for the moment it happens
    predict_without: str
    predict_with: str
    lesson: str

    @property
    def preset(self) -> Preset:
        return PRESETS[self.name]


SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in (
        Scenario(
            "crash",
            "CRASHES",
            "b is killed and nothing is watching it. What share of the requests fails from then on?",
            "The same kill, now with health checks, retries and passive ejection. How many requests fail?",
            "Redundancy alone is not enough: something must notice the failure and route around it.",
        ),
        Scenario(
            "hang",
            "HANGS",
            "b keeps accepting connections but never answers. What do its clients see, and when?",
            "Now every attempt has a time limit and may be retried. How many errors? How long is the worst wait?",
            "A hang is worse than a crash: a refusal takes a millisecond, a hang costs a timeout. Only a time limit "
            "on each attempt turns a hang into a failure that can be retried.",
        ),
        Scenario(
            "gray",
            "GOES GRAY",
            "b fails half of its real requests, but its health check still says OK. What share fails?",
            "Will the health checks catch b? If not, what will?",
            "A gray failure: the health check and the users disagree. What helps is what watches real requests "
            "(retries, passive ejection), not the probe.",
        ),
        Scenario(
            "slow",
            "SLOWS DOWN",
            "b answers everything, 200 ms late. How many errors? What happens to p50 and to p99?",
            "Will retries, health checks or passive ejection make p99 better?",
            "Failover protects against failure, not against slowness. What helps is a strategy that notices a slow "
            "instance and sends it less (least_connections, peak_ewma: lesson 06).",
        ),
    )
}


@dataclass(frozen=True)
class Act:
    """One of the two runs: a title, what the balancer does, and its protections (None: switched off)."""

    title: str
    blurb: str
    health: HealthSettings | None
    retries: RetrySettings | None
    ejection: EjectionSettings | None


ACTS = (
    Act("no failover", "no health checks, no retries, no ejection", None, None, None),
    Act(
        "failover",
        "health checks + retries (with a per-try timeout) + passive ejection",
        HealthSettings(),
        RetrySettings(),
        EjectionSettings(),
    ),
)


@dataclass(frozen=True)
class ActResult:
    """What one run measured: the report, and what the narrator counted on the event stream.

    ``victim_pid`` is the victim's process when the fault struck (process isolation only) and
    ``victim_exit_code`` how that process ended (-9: killed by SIGKILL), or None if it did not end.
    """

    act: Act
    report: Report
    victim_pid: int | None
    victim_exit_code: int | None
    ejections: int
    retries_by_cause: dict[str, int]  # failed attempts the balancer tried again, by what went wrong
    longest_wait: float  # the longest a client waited, failures (timeouts) included
    victim_probes: tuple[int, int]  # health probes of the victim after the fault: (passed, failed)


class Narrator:
    """Prints what happens during a demo run: the notable events, and every second the client's tally."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.ok = 0
        self.failed = 0
        self.ejections = 0
        self.retries_by_cause: collections.Counter[str] = collections.Counter()
        self.longest_wait = 0.0
        self.down: set[str] = set()  # marked down by the health checker
        self.faulted = False  # the victim has had its fault
        self.victim_probes: collections.Counter[bool] = collections.Counter()  # after the fault, by outcome
        self._answered_this_second: list[float] = []  # latencies of requests that got an HTTP answer

    def elapsed(self, at: float) -> float:
        return at - self.started

    def on_event(self, event: Event) -> None:
        at = self.elapsed(event.at)
        if isinstance(event, ClientRequest):
            self.ok += event.ok
            self.failed += not event.ok
            self.longest_wait = max(self.longest_wait, event.latency)
            if event.status is not None:
                self._answered_this_second.append(event.latency)
        elif isinstance(event, RequestRetried):
            self.retries_by_cause[_retry_cause(event.reason)] += 1
        elif isinstance(event, HealthProbe):
            if self.faulted and event.instance == DEMO_VICTIM:
                self.victim_probes[event.ok] += 1
        elif isinstance(event, FaultInjected):
            self.faulted = self.faulted or event.instance == DEMO_VICTIM
            scenario = SCENARIOS.get(event.fault)
            headline = scenario.headline if scenario else f"gets a fault: {event.fault}"
            description = PRESETS[event.fault].description if event.fault in PRESETS else ""
            say(f"  [{at:5.2f}s] {event.instance} {headline}" + (f" — {description}" if description else ""))
        elif isinstance(event, InstanceEjected):
            self.ejections += 1
            if self.ejections <= 2:  # each return and re-ejection would repeat the same line
                say(
                    f"  [{at:5.2f}s] balancer ejects {event.instance} after "
                    f"{event.consecutive_failures} failed requests in a row (for {event.duration:.1f}s)"
                )
        elif isinstance(event, InstanceReturned) and self.ejections <= 2:
            if event.instance in self.down:
                say(f"  [{at:5.2f}s] {event.instance}'s ejection ends, but health checks still hold it down")
            else:
                say(f"  [{at:5.2f}s] {event.instance}'s ejection ends: it may get traffic again")
        elif isinstance(event, InstanceDown):
            self.down.add(event.instance)
            say(f"  [{at:5.2f}s] health checker marks {event.instance} DOWN ({event.reason})")
        elif isinstance(event, InstanceUp):
            self.down.discard(event.instance)
            say(f"  [{at:5.2f}s] health checker marks {event.instance} UP")

    def tally(self, second: int, in_flight: int) -> None:
        """Once a second: the clients' running totals, and the p99 of the answers that came in that second."""
        p99 = percentile(self._answered_this_second, 99)
        self._answered_this_second = []
        last = "no answers in the last second" if p99 is None else f"p99 of the last second {p99 * 1000:.0f} ms"
        say(f"  [{second:5.2f}s] clients so far: {self.ok} ok, {self.failed} failed, {in_flight} in flight; {last}")


def _retry_cause(reason: str) -> str:
    """``no answer within 1.00s`` -> ``timed out``: the balancer's retry reason, as a short cause."""
    causes = {"no answer": "timed out", "connect failed": "refused", "connection lost": "cut off"}
    for start, cause in causes.items():
        if reason.startswith(start):
            return cause
    if reason.startswith("answered "):
        return reason  # with the status, e.g. "answered 503"
    return "other"


class Pauser:
    """Waits for Enter before each act, so a teacher can ask the class for predictions first.

    On a terminal it waits as long as the teacher talks. When input is not a terminal (a pipe, a file) it
    reads one line per pause but waits at most ``limit`` seconds for it; at the end of input it stops pausing.
    So ``spofkit demo --pause < /dev/null`` and a silent pipe both run to the end instead of hanging.
    Input is read straight from the file descriptor: a buffered reader could swallow several lines at once.
    """

    def __init__(self, stream: IO[str] | None = None, *, limit: float = 30.0) -> None:
        stream = sys.stdin if stream is None else stream
        try:
            self._fd: int | None = stream.fileno()
        except (AttributeError, OSError, ValueError):  # closed, or replaced by something without a descriptor
            self._fd = None
        self.on_terminal = self._fd is not None and os.isatty(self._fd)
        self.limit = None if self.on_terminal else limit
        self._pending = b""
        self.ended = self._fd is None  # no more input: do not pause again

    def wait(self, prompt: str) -> None:
        if self.ended:
            return
        print(f"{prompt} ", end="", flush=True)
        outcome = self._read_line()
        if not self.on_terminal:
            print(flush=True)  # nobody typed Enter, so nothing echoed the line break
        if outcome == "eof":
            self.ended = True
            say("  (end of input: no more pauses)")
        elif outcome == "timeout":
            say(f"  (no Enter within {self.limit:g} s: going on)")

    def _read_line(self) -> str:
        """``line``, ``eof`` or ``timeout``."""
        assert self._fd is not None
        deadline = None if self.limit is None else time.monotonic() + self.limit
        while b"\n" not in self._pending:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self._fd], [], [], remaining)
            if not ready:
                return "timeout"
            chunk = os.read(self._fd, 1024)
            if not chunk:
                return "eof"
            self._pending += chunk
        _line, self._pending = self._pending.split(b"\n", 1)
        return "line"


def demo(args: argparse.Namespace) -> int:
    try:
        play_demo(args)
    except OSError as error:
        if args.isolation == "process":
            raise OSError(f"{error} (if child processes are a problem here, try --isolation inprocess)") from error
        raise
    return 0


def play_demo(args: argparse.Namespace) -> list[ActResult]:
    """The demo in three acts: the fault without failover, the same fault with it, the comparison.

    Each run is a fresh lab (its own event loop, its own processes), so the second run inherits nothing from the
    first. With ``args.pause`` it waits for Enter before each act. Returns the two runs' results.
    """
    scenario = SCENARIOS[args.scenario]
    pauser = Pauser(limit=args.pause_timeout) if args.pause else None
    isolation = (
        "each instance its own process" if args.isolation == "process" else "instances inside this Python process"
    )
    headline = (
        f"spofkit demo ({scenario.name}): {DEMO_INSTANCES} instances behind a load balancer ({isolation}), "
        f"{args.rate:g} requests/s for {args.duration:g} s; at {args.fault_at:g} s instance {DEMO_VICTIM} "
        f"gets the {scenario.name} fault: {scenario.preset.description}."
    )
    say(textwrap.fill(headline, width=100))
    say("The same fault happens twice. Watch what the clients feel.\n")
    acts_in_all = len(ACTS) + 1
    results = []
    for number, act in enumerate(ACTS, start=1):
        say(f"Act {number} of {acts_in_all} — {act.title}: {act.blurb}")
        say(f"  Predict: {scenario.predict_without if act.health is None else scenario.predict_with}")
        if pauser:
            pauser.wait(f"  Press Enter to start act {number}...")
        results.append(asyncio.run(_demo_run(args, scenario, act)))
        say("")
    say(f"Act {acts_in_all} of {acts_in_all} — the comparison")
    say("  Predict: which column is better, and which protection did the work?")
    if pauser:
        pauser.wait(f"  Press Enter to start act {acts_in_all}...")
    say("")
    say(compare({result.act.title: result.report for result in results}))
    say("")
    for paragraph in explain(scenario, results[0], results[1]):
        say(textwrap.fill(paragraph, width=100))
    return results


async def _demo_run(args: argparse.Namespace, scenario: Scenario, act: Act) -> ActResult:
    from spofkit.lab import Lab

    lab = await Lab.start(
        DEMO_INSTANCES,
        isolation=args.isolation,
        seed=args.seed,
        health=act.health,
        retries=act.retries,
        ejection=act.ejection,
    )
    async with lab:
        victim: Instance = lab.instances[DEMO_VICTIM]
        pids = {name: instance.pid for name, instance in lab.instances.items()}
        if pids[DEMO_VICTIM] is not None:
            others = ", ".join(f"{name} {pid}" for name, pid in pids.items() if name != DEMO_VICTIM)
            say(f"  {DEMO_VICTIM} is process {pids[DEMO_VICTIM]} (the others: {others})")
        narrator = Narrator(lab.now())
        unsubscribe = lab.events.subscribe(narrator.on_event)

        def stamp() -> str:
            return f"  [{narrator.elapsed(lab.now()):5.2f}s]"

        async def strike() -> int | None:
            """At ``fault_at``, give the victim the scenario's fault. Returns the victim's PID at that moment."""
            await asyncio.sleep(max(0.0, narrator.started + args.fault_at - lab.now()))
            preset = scenario.preset
            pid: int | None = victim.pid
            if preset.kind == "crash" and pid is not None:
                say(f"{stamp()} kill -9 {pid}   <- {DEMO_VICTIM}'s process")
            elif preset.kind == "crash":
                say(f"{stamp()} closing {DEMO_VICTIM}'s sockets (in-process isolation: there is no process to kill)")
            await lab.inject(DEMO_VICTIM, preset.kind, **preset.params)
            exit_code: int | None = getattr(victim, "last_exit_code", None)  # ProcessInstance only
            if preset.kind == "crash" and pid is not None and exit_code is not None:
                say(f"{stamp()} process {pid} has exited: status {exit_code} ({_exit_meaning(exit_code)})")
            return pid

        async def tick() -> None:
            second = 0
            while True:
                second += 1
                await asyncio.sleep(max(0.0, narrator.started + second - lab.now()))
                narrator.tally(second, sum(row.in_flight for row in lab.status().instances))

        striker, ticker = asyncio.create_task(strike()), asyncio.create_task(tick())
        try:
            report = await lab.run_load(rate=args.rate, duration=args.duration, timeout=DEMO_CLIENT_TIMEOUT)
            victim_pid = await striker  # long done: the fault comes before the end of the run
            say(f"  done: {report.requests} requests, {report.failed} failed")  # before the lab's clean-up
        finally:
            for helper in (striker, ticker):
                helper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await helper
            unsubscribe()
        return ActResult(
            act=act,
            report=report,
            victim_pid=victim_pid,
            victim_exit_code=getattr(victim, "last_exit_code", None),  # read before the lab stops it
            ejections=narrator.ejections,
            retries_by_cause=dict(narrator.retries_by_cause.most_common()),
            longest_wait=narrator.longest_wait,
            victim_probes=(narrator.victim_probes[True], narrator.victim_probes[False]),
        )


def _exit_meaning(exit_code: int) -> str:
    """A process's exit status in words: negative is the signal that killed it (asyncio's convention)."""
    if exit_code >= 0:
        return "exited by itself"
    if -exit_code == signal.SIGKILL:
        return "killed by SIGKILL: no warning, no cleanup"
    try:
        return f"killed by {signal.Signals(-exit_code).name}"
    except ValueError:
        return f"killed by signal {-exit_code}"


def explain(scenario: Scenario, unprotected: ActResult, protected: ActResult) -> list[str]:
    """Three paragraphs with this run's figures: what went wrong without failover, what each protection did
    (and did not do) against this fault, and the lesson."""
    did = "; ".join(
        (_what_retries_did(scenario, protected), _what_ejection_did(protected), _what_health_checks_did(protected))
    )
    return [
        _without_failover(scenario, unprotected),
        f"With failover, {did}. {_outcome(unprotected, protected)}",
        scenario.lesson,
    ]


def _without_failover(scenario: Scenario, result: ActResult) -> str:
    report = result.report
    share = f"~{100 // DEMO_INSTANCES}%"
    if scenario.name == "crash":
        killed = f" (process {result.victim_pid}, kill -9)" if result.victim_exit_code == -signal.SIGKILL else ""
        return (
            f"Without failover nothing noticed that {DEMO_VICTIM} died{killed}: the balancer kept sending it its "
            f"{share} share, and {report.failed} requests failed until the run ended."
        )
    if scenario.name == "hang":
        return (
            f"Without failover {DEMO_VICTIM}'s {share} share waited for answers that never came: with no per-try "
            f"timeout the balancer just kept waiting, so the clients' own {DEMO_CLIENT_TIMEOUT:g} s timeout ended "
            f"them ({report.failed} errors, the longest wait {result.longest_wait:.1f} s; the table's latencies "
            f"count only requests that got an answer)."
        )
    if scenario.name == "gray":
        status = scenario.preset.params.get("status", "error")
        return (
            f"Without failover {report.failed} requests got {DEMO_VICTIM}'s {status} answers, and nothing looked "
            f"at {DEMO_VICTIM}."
        )
    return (
        f"Without failover no request failed ({report.failed} errors), but {DEMO_VICTIM} answered its {share} "
        f"share late: p50 {_ms(report.latency_p50)}, p99 {_ms(report.latency_p99)}."
    )


def _what_retries_did(scenario: Scenario, result: ActResult) -> str:
    retries = result.act.retries or RetrySettings()
    if not result.report.retried:
        if scenario.name == "slow":
            return (
                f"retries never fired: a slow answer is still an answer, and it came within the "
                f"{retries.per_try_timeout:g} s per-try timeout"
            )
        return "no request needed a retry"
    causes = ", ".join(f"{count} {cause}" for cause, count in result.retries_by_cause.items())
    retried = f"{result.report.retried} requests were retried on another instance ({causes})"
    if scenario.name == "hang":
        return f"the per-try timeout ({retries.per_try_timeout:g} s) did the first rescue: {retried}"
    return f"retries did the first rescue: {retried}"


def _what_ejection_did(result: ActResult) -> str:
    in_a_row = (result.act.ejection or EjectionSettings()).consecutive_failures
    if result.ejections == 1:
        return f"passive ejection took {DEMO_VICTIM} out of the pool after {in_a_row} failed requests in a row"
    if result.ejections:
        return (
            f"passive ejection took {DEMO_VICTIM} out of the pool {result.ejections} times, each after "
            f"{in_a_row} failed requests in a row"
        )
    if not result.retries_by_cause and not result.report.failed:
        return "passive ejection never fired: it counts failed requests, and none failed (slow is not failed)"
    return f"passive ejection never fired: it counts failures, and {in_a_row} never came in a row"


def _what_health_checks_did(result: ActResult) -> str:
    health = result.act.health or HealthSettings()
    window = result.report.detection_window
    if window is not None:
        return (
            f"the health checker (a probe every {health.interval:g} s, DOWN after {health.fall} failures in a "
            f"row) marked {DEMO_VICTIM} DOWN {window:.2f} s after the fault"
        )
    passed, failed = result.victim_probes
    if failed:
        return (
            f"the health checker saw {failed} of {passed + failed} probes of {DEMO_VICTIM} fail, but never the "
            f"{health.fall} in a row it needs: {DEMO_VICTIM} was never marked DOWN"
        )
    return (
        f"the health checks did nothing: all {passed} probes of {DEMO_VICTIM} passed (within their "
        f"{health.timeout:g} s timeout), so {DEMO_VICTIM} stayed UP"
    )


def _outcome(unprotected: ActResult, protected: ActResult) -> str:
    without, with_ = unprotected.report, protected.report
    if not without.failed and not with_.failed:  # nothing failed either way: latency is the story
        return (
            f"No client saw an error either way; p99 was {_ms(with_.latency_p99)} with failover and "
            f"{_ms(without.latency_p99)} without."
        )
    outcome = f"Clients saw {with_.failed} errors (without failover: {without.failed})"
    if "timed out" in protected.retries_by_cause:  # the price of a timeout: the client waited for it
        outcome += f", but some waited up to {protected.longest_wait:.2f} s"
    return outcome + "."


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"  # as in the comparison table


# --- lab, tui, bench -----------------------------------------------------------------------------------


def _project_dir(name: str) -> Path | None:
    """``name`` (e.g. ``lessons``) in the current directory or next to the installed package."""
    for base in (Path.cwd(), Path(__file__).resolve().parent.parent):
        if (base / name).is_dir():
            return base / name
    return None


def open_lab(args: argparse.Namespace) -> int:
    lessons = args.lessons or _project_dir("lessons")
    if lessons is None or not Path(lessons).is_dir():
        where = lessons or "./lessons or next to the spofkit package"
        print(f"spofkit lab: lessons folder not found ({where}); use --lessons DIR", file=sys.stderr)
        return 1
    if importlib.util.find_spec("jupyterlab") is None:
        print("spofkit lab: JupyterLab is not installed: pip install 'spofkit[lab]'", file=sys.stderr)
        return 1
    command = [sys.executable, "-m", "jupyter", "lab", "--ip=127.0.0.1"]
    command.append(f"--notebook-dir={Path(lessons).resolve()}")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # containers often run as root; Jupyter refuses without this
    say(" ".join(command))
    os.execv(sys.executable, command)  # JupyterLab takes this process over; Ctrl+C goes to it
    return 0  # pragma: no cover - execv does not return


def _tui_lab_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options of ``spofkit tui`` that go to the lab it starts (``Lab.start``); only those given."""
    options: dict[str, Any] = {}
    if args.balancers is not None:
        options["balancers"] = args.balancers
    if args.pair is not None:
        options["pair"] = args.pair
    if args.no_preempt:
        options["preempt"] = False
    if args.isolation is not None:
        options["isolation"] = args.isolation
    return options


def _check_tui_options(args: argparse.Namespace) -> None:
    """Refuse (through argparse, naming the options) what cannot go together."""
    given = [f"--{name.replace('_', '-')}" for name in ("balancers", "pair", "isolation") if getattr(args, name)]
    given += ["--no-preempt"] if args.no_preempt else []
    if args.connect and given:
        args.command_parser.error(f"{' '.join(given)}: for the lab tui starts; an attached lab has its own (--connect)")
    if (args.pair or args.no_preempt) and args.balancers != 2:
        args.command_parser.error("--pair and --no-preempt are for a pair: add --balancers 2")


def open_tui(args: argparse.Namespace) -> int:
    try:
        # Imported by name: the TUI is an optional part (it needs textual) beside the package.
        run = importlib.import_module("tui.app").run
    except (ImportError, AttributeError) as error:
        if (getattr(error, "name", None) or "").startswith("textual"):
            hint = "install it with: pip install 'spofkit[tui]'"
        else:
            hint = "run it from a spofkit checkout, where tui/app.py lives"
        print(f"spofkit tui: the terminal dashboard is not available ({error}); {hint}", file=sys.stderr)
        return 1
    result = run(connect=args.connect, **_tui_lab_options(args))
    return result if isinstance(result, int) else 0


# What `spofkit bench` (and `make bench`) runs, in order: the data path, a failover, the front door's failover and
# deploys, the three balancers side by side. The others in bench/ (the simulator's, the TUI's, the background load's)
# take long or measure one part; run them by name.
BENCH_SCRIPTS = ("throughput.py", "failover.py", "pair_failover.py", "compare_proxies.py")


def run_bench(args: argparse.Namespace) -> int:
    bench = _project_dir("bench")
    scripts = [bench / name for name in BENCH_SCRIPTS] if bench else []
    scripts = [script for script in scripts if script.is_file()]
    if not scripts:
        print(f"spofkit bench: none of {', '.join(BENCH_SCRIPTS)} found in bench/", file=sys.stderr)
        return 1
    status = 0
    for script in scripts:
        say(f"== {script.name} ==")
        status = subprocess.run([sys.executable, str(script)], check=False).returncode or status
    return status


# --- export ----------------------------------------------------------------------------------------------


def export_config(args: argparse.Namespace) -> int:
    """``spofkit export haproxy|nginx``: the configuration on stdout (or ``-o FILE``); ``--check`` validates it."""
    from spofkit.export import ExportError, ExportMember, LabSettings, ProxyNotInstalled, config_for, validate
    from spofkit.export import settings_from_scenario as from_scenario

    try:
        if args.scenario is not None:
            settings = from_scenario(args.scenario, first_port=args.first_port)
        else:
            settings = LabSettings.for_instances(
                args.instances,
                backups=args.backups,
                first_port=args.first_port,
                strategy=args.strategy,
                health=None if args.no_health_checks else HealthSettings(),
                retries=None if args.no_retries else RetrySettings(),
                ejection=None if args.no_ejection else EjectionSettings(),
                slow_start=args.slow_start,
                listen=(f"127.0.0.1:{args.port}",),
                source="the serve flags",
            )
        if args.member:
            members = [ExportMember(name, address, **options) for name, address, options in args.member]
            settings = settings.with_members(members)
        text = config_for(args.target, settings)
    except ExportError as error:
        print(f"spofkit export: {error.field}: {error}", file=sys.stderr)
        return 2
    if args.check:
        try:
            checked = validate(args.target, text)
        except ProxyNotInstalled as error:
            print(f"spofkit export: {error}", file=sys.stderr)
            return 1
        if not checked.ok:
            print(f"spofkit export: {' '.join(checked.command)} refused it:\n{checked.output}", file=sys.stderr)
            return 1
        print(f"# {' '.join(checked.command[:2])}: the configuration is valid", file=sys.stderr)
    if args.output is not None:
        args.output.write_text(text)
        print(f"# written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
