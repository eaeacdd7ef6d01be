"""The ``spofkit`` command: run a lab from a terminal, or watch the classroom demo.

::

    spofkit serve [--instances 3] [--port 8080] [--admin-port 8081] [--isolation process] ...
    spofkit demo  [--rate 200] [--duration 8] [--isolation inprocess]
    spofkit lab                  # JupyterLab on the lessons
    spofkit tui [--connect URL]  # the terminal dashboard, on its own lab or attached to a served one
    spofkit bench                # the benchmark scripts in bench/

``serve`` keeps a lab running until Ctrl+C (or SIGTERM) and prints where everything listens, one
``key value`` line each, so a person can read it and a script can parse it::

    balancer http://127.0.0.1:8080
    admin http://127.0.0.1:8081
    instance a http://127.0.0.1:40123 pid 5120
    ready

Break it from another terminal through the admin API (:mod:`spofkit.admin`), e.g.
``curl -X POST localhost:8081/instances/b/fault -d '{"kind": "crash"}'``.

``demo`` is the lesson in one command: the same crash, twice — once with a balancer that neither checks
nor retries, once with health checks, retries and ejection — and the two reports side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from spofkit import __version__
from spofkit.events import (
    ClientRequest,
    Event,
    FaultInjected,
    InstanceDown,
    InstanceEjected,
    InstanceReturned,
    InstanceUp,
)
from spofkit.strategies import strategy_names

# Events too frequent to print in a terminal log (one per request or per probe).
QUIET_KINDS = frozenset({"HealthProbe", "RequestCompleted", "ClientRequest", "RequestRetried"})
DEMO_INSTANCES = 3
DEMO_VICTIM = "b"


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
    serve.add_argument("--no-retries", action="store_true", help="do not retry failed attempts")
    serve.add_argument("--no-health-checks", action="store_true", help="no active health checks")
    serve.add_argument("--no-ejection", action="store_true", help="no passive ejection")
    serve.add_argument("--work-ms", type=_number_in(0, 60000), default=0.0, help="time each request takes (ms)")
    serve.add_argument("--seed", type=int, default=0, help="seed for every random choice")
    serve.add_argument("--quiet", action="store_true", help="do not print events as they happen")
    serve.add_argument(
        "--admin-token",
        default=None,
        metavar="TOKEN",
        help="token for changing calls to the admin API (default: $SPOFKIT_ADMIN_TOKEN, else a new random one)",
    )

    demo = commands.add_parser("demo", help="the same crash without and with failover, compared")
    demo.add_argument("--rate", type=_number_in(0, 2000, low_open=True), default=200.0, help="requests/s")
    demo.add_argument("--duration", type=_number_in(0, 120, low_open=True), default=8.0, help="seconds per run")
    demo.add_argument("--crash-at", type=_number_in(0, 120), default=2.0, help="when b crashes (s into the run)")
    _isolation_option(demo)
    demo.add_argument("--seed", type=int, default=0, help="seed for every random choice")
    demo.set_defaults(command_parser=demo)  # for errors about combinations, with the demo's own usage line

    lab = commands.add_parser("lab", help="open the lessons in JupyterLab")
    lab.add_argument("--lessons", type=Path, default=None, help="lessons folder (default: found)")

    tui = commands.add_parser("tui", help="the terminal dashboard")
    tui.add_argument("--connect", type=_local_url, default=None, help="admin URL of a running `spofkit serve`")

    commands.add_parser("bench", help="run the benchmark scripts in bench/")
    return parser


def _isolation_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--isolation",
        choices=("inprocess", "process"),
        default="inprocess",
        help="process: every instance its own OS process, so a crash is a real kill -9",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``spofkit`` command; returns the exit status (2 for bad arguments)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "demo" and args.crash_at >= args.duration:
            args.command_parser.error(
                f"argument --crash-at: must be before the end of the run "
                f"(--duration {args.duration:g}), got {args.crash_at:g}"
            )
    except SystemExit as exit_:  # argparse has printed the error (or the help)
        return exit_.code if isinstance(exit_.code, int) else 2
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "serve": lambda a: asyncio.run(serve(a)),
        "demo": lambda a: asyncio.run(demo(a)),
        "lab": open_lab,
        "tui": open_tui,
        "bench": run_bench,
    }
    try:
        return commands[args.command](args)
    except KeyboardInterrupt:
        return 130
    except (OSError, ValueError) as error:
        print(f"spofkit {args.command}: {error}", file=sys.stderr)
        return 1


def say(*parts: Any) -> None:
    """Print and flush at once: the output may be a pipe that a script (or a test) is reading."""
    print(*parts, flush=True)


# --- serve ---------------------------------------------------------------------------------------------


async def serve(args: argparse.Namespace) -> int:
    from spofkit.admin import TOKEN_ENV, AdminServer, token_file, write_token_file
    from spofkit.failover import EjectionSettings, RetrySettings
    from spofkit.health import HealthSettings
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
        work_time=args.work_ms / 1000.0,
        backups=args.backups,
        seed=args.seed,
        port=args.port,
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
            say(f"# spofkit serve: {status.strategy}, {', '.join(protections)}, {args.isolation}")
            say(f"balancer {lab.balancer_url}")
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
    if event.kind not in QUIET_KINDS:
        say(f"# [{event.at:7.2f}s] {event.describe()}")


# --- demo ----------------------------------------------------------------------------------------------


class Narrator:
    """Prints what happens during a demo run: the notable events, and every second the client's tally."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.ok = 0
        self.failed = 0
        self.ejections = 0
        self.down: set[str] = set()  # marked down by the health checker

    def on_event(self, event: Event) -> None:
        at = event.at - self.started
        if isinstance(event, ClientRequest):
            if event.ok:
                self.ok += 1
            else:
                self.failed += 1
        elif isinstance(event, FaultInjected):
            what = "CRASHES" if event.fault == "crash" else f"gets a fault: {event.fault}"
            say(f"  [{at:5.2f}s] {event.instance} {what}")
        elif isinstance(event, InstanceEjected):
            self.ejections += 1
            if self.ejections <= 2:  # each return and re-ejection would repeat the same line
                say(
                    f"  [{at:5.2f}s] balancer ejects {event.instance} after "
                    f"{event.consecutive_failures} failed requests (for {event.duration:.1f}s)"
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

    def tally(self, second: int) -> None:
        say(f"  [{second:5.2f}s] clients so far: {self.ok} ok, {self.failed} failed")


async def demo(args: argparse.Namespace) -> int:
    from spofkit.failover import EjectionSettings, RetrySettings
    from spofkit.health import HealthSettings
    from spofkit.report import compare

    say(
        f"spofkit demo: {DEMO_INSTANCES} instances behind a load balancer, {args.rate:g} requests/s "
        f"for {args.duration:g} s; instance {DEMO_VICTIM} crashes at {args.crash_at:g} s."
    )
    say("The same crash happens twice. Watch what the clients feel.\n")
    runs: dict[str, dict[str, Any]] = {
        "no failover": {"health": None, "retries": None, "ejection": None},
        "failover": {
            "health": HealthSettings(),
            "retries": RetrySettings(),
            "ejection": EjectionSettings(),
        },
    }
    blurbs = {
        "no failover": "no health checks, no retries, no ejection: the balancer cannot tell b is gone",
        "failover": "health checks + retries + passive ejection",
    }
    reports = {}
    for number, (title, protections) in enumerate(runs.items(), start=1):
        say(f"Run {number} of {len(runs)} — {title}: {blurbs[title]}")
        reports[title] = await _demo_run(args, protections)
        report = reports[title]
        say(f"  done: {report.requests} requests, {report.failed} failed\n")
    say(compare(reports))
    say("")
    for line in explain(reports["no failover"], reports["failover"]):
        say(line)
    return 0


async def _demo_run(args: argparse.Namespace, protections: dict[str, Any]) -> Any:
    from spofkit.lab import Lab

    async with await Lab.start(DEMO_INSTANCES, isolation=args.isolation, seed=args.seed, **protections) as lab:
        narrator = Narrator(lab.now())
        unsubscribe = lab.events.subscribe(narrator.on_event)

        async def tick() -> None:
            second = 0
            while True:
                second += 1
                await asyncio.sleep(max(0.0, narrator.started + second - lab.now()))
                narrator.tally(second)

        ticker = asyncio.create_task(tick())
        try:
            return await lab.run_load(
                rate=args.rate,
                duration=args.duration,
                faults=[(args.crash_at, DEMO_VICTIM, "crash", {})],
            )
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            unsubscribe()


def explain(unprotected: Any, protected: Any) -> list[str]:
    """Two or three sentences on why the columns differ, with this run's figures."""
    share = 100 // DEMO_INSTANCES
    detected = protected.detection_window
    caught = (
        f"the health checker marked {DEMO_VICTIM} down {detected:.2f} s after the crash"
        if detected is not None
        else f"the health checker never marked {DEMO_VICTIM} down in this run"
    )
    paragraphs = [
        f"Without failover nothing noticed the crash: the balancer kept sending {DEMO_VICTIM} its "
        f"~{share}% share, and {unprotected.failed} requests failed until the run ended.",
        f"With failover, the {protected.retried} requests that reached {DEMO_VICTIM} first were "
        f"retried on a healthy instance, passive ejection stopped sending {DEMO_VICTIM} traffic, and "
        f"{caught}: clients saw {protected.failed} errors.",
        "Redundancy alone is not enough: something must notice the failure and route around it.",
    ]
    return [textwrap.fill(paragraph, width=96) for paragraph in paragraphs]


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
    result = run(connect=args.connect)
    return result if isinstance(result, int) else 0


def run_bench(args: argparse.Namespace) -> int:
    bench = _project_dir("bench")
    scripts = [bench / name for name in ("throughput.py", "failover.py")] if bench else []
    scripts = [script for script in scripts if script.is_file()]
    if not scripts:
        print("spofkit bench: no bench/throughput.py or bench/failover.py found", file=sys.stderr)
        return 1
    status = 0
    for script in scripts:
        say(f"== {script.name} ==")
        status = subprocess.run([sys.executable, str(script)], check=False).returncode or status
    return status
