"""How much does watching cost? Frames per second and CPU of the dashboard at 8 instances and 500 req/s (MAX_LOAD_RATE).

Goal (issue 3): with 8 instances at 1,000 requests/s the animation keeps >= 20 frames/s and the TUI itself uses
<= 50% of one core.

The dashboard runs in a real terminal (a tmux pane, 120x40), because a headless run skips the work of turning
the screen into terminal output. Three measurements, each over the same window after a warm-up:

1. ``lab only``: the lab (8 instances, health checks, balancer) and its 500 req/s load generator in one
   process, no dashboard. The cost of the experiment itself.
2. ``tui + lab``: ``spofkit tui`` as it is normally run: the same lab and load in the same process, plus the
   dashboard. Minus (1), this estimates the dashboard's own cost.
3. ``tui attached``: the lab and its load run by ``spofkit serve`` in another process; the dashboard follows it
   through the admin API (``--connect``). The dashboard's process CPU is then the dashboard alone (including
   decoding the event stream, which that mode needs).

Frames/s counts the pictures of the request lanes actually painted. CPU % is ``getrusage`` user+system time of
the process divided by wall time (100% = one core). Run: ``python bench/tui_bench.py [--seconds 10]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

INSTANCES = 8
RATE = float(os.environ.get("SPOFKIT_BENCH_RATE", "500"))  # commands.MAX_LOAD_RATE: what one machine carries
WARMUP = 4.0
SIZE = (120, 40)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Window:
    """CPU time, wall time and a counter, between ``start()`` and ``stop()``."""

    def start(self, count: int = 0) -> None:
        self.wall, self.cpu, self.count = time.monotonic(), cpu_seconds(), count

    def stop(self, count: int = 0) -> dict[str, float]:
        wall = time.monotonic() - self.wall
        return {
            "seconds": wall,
            "cpu_percent": 100.0 * (cpu_seconds() - self.cpu) / wall,
            "per_second": (count - self.count) / wall,
        }


# --- the measured programs (run inside tmux, or plain for "lab only") -------------------------------------


async def lab_only(seconds: float) -> dict[str, Any]:
    from spofkit.events import ClientRequest
    from spofkit.lab import Lab

    async with await Lab.start(INSTANCES) as lab:
        answers = [0]
        lab.events.subscribe(lambda e: answers.__setitem__(0, answers[0] + isinstance(e, ClientRequest)))
        lab.start_background_load(RATE)
        await asyncio.sleep(WARMUP)
        window = Window()
        window.start(answers[0])
        await asyncio.sleep(seconds)
        result = window.stop(answers[0])
    return {"cpu_percent": result["cpu_percent"], "requests_per_second": result["per_second"]}


async def with_tui(seconds: float, connect: str | None) -> dict[str, Any]:
    from spofkit.events import ClientRequest, Event
    from tui.app import SpofkitApp, make_source
    from tui.widgets.flow import FlowView

    source = make_source(connect, rate=RATE) if connect else make_source(rate=RATE, instances=INSTANCES)
    app = SpofkitApp(source)
    result: dict[str, Any] = {}

    async def measure() -> None:
        while not app.lab_ready:
            await asyncio.sleep(0.1)
        answers = [0]

        def count(event: Event) -> None:
            if isinstance(event, ClientRequest):
                answers[0] += 1

        source.subscribe(count)
        await asyncio.sleep(WARMUP)
        flow = app.query_one(FlowView)
        frames, window = Window(), Window()
        frames.start(flow.frames_drawn)
        window.start(answers[0])
        await asyncio.sleep(seconds)
        result["frames_per_second"] = frames.stop(flow.frames_drawn)["per_second"]
        measured = window.stop(answers[0])
        result["cpu_percent"] = measured["cpu_percent"]
        result["requests_per_second"] = measured["per_second"]
        await app.action_quit()

    async def main() -> None:
        task = asyncio.create_task(measure())
        try:
            await app.run_async()
        finally:
            task.cancel()
            await source.stop()

    await main()
    return result


def child(mode: str, seconds: float, out: Path, connect: str | None) -> None:
    result = asyncio.run(lab_only(seconds) if mode == "lab" else with_tui(seconds, connect))
    out.write_text(json.dumps(result))


# --- the conductor ------------------------------------------------------------------------------------------


def in_tmux(arguments: list[str], out: Path, timeout: float) -> dict[str, Any]:
    tmux = shutil.which("tmux")
    if tmux is None:
        raise SystemExit("tmux is needed to run the dashboard in a real terminal")
    base = [tmux, "-S", str(out.parent / f"tmux-{out.stem}.sock"), "-f", "/dev/null"]  # a server of our own
    command = shlex.join([sys.executable, __file__, *arguments])
    width, height = SIZE
    subprocess.run(
        [*base, "new-session", "-d", "-s", "bench", "-x", str(width), "-y", str(height), "-c", str(REPO), command],
        check=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while not out.exists() or not out.read_text():
            if time.monotonic() > deadline:
                raise SystemExit(f"no result from {command} within {timeout:.0f}s")
            time.sleep(0.2)
        return dict(json.loads(out.read_text()))
    finally:
        subprocess.run([*base, "kill-server"], capture_output=True, check=False)


def serve() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "spofkit", "serve", f"--instances={INSTANCES}", "--port=0", "--admin-port=0", "--quiet"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    admin = None
    for line in process.stdout:
        found = re.match(r"admin (http://\S+)", line)
        if found:
            admin = found.group(1)
        if line.strip() == "ready":
            break
    if admin is None:
        process.kill()
        raise SystemExit("spofkit serve did not start")
    return process, admin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring window (after a warm-up)")
    parser.add_argument("--child", choices=("lab", "tui"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--connect", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.seconds, args.out, args.connect)
        return

    timeout = args.seconds + WARMUP + 60
    print(f"# spofkit TUI benchmark: {INSTANCES} instances, {RATE:g} req/s, {args.seconds:g}s window")
    print(f"# machine: {os.cpu_count()} cores; terminal {SIZE[0]}x{SIZE[1]} (tmux)")
    # Everything here shares the machine with whatever else runs: say how busy it was.
    print(f"# load average before: {os.getloadavg()[0]:.2f} (figures are only comparable on an idle machine)")
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        lab = in_tmux(
            ["--child", "lab", "--seconds", str(args.seconds), "--out", str(folder / "lab.json")],
            folder / "lab.json",
            timeout,
        )
        print(f"lab only       cpu {lab['cpu_percent']:5.1f}%   served {lab['requests_per_second']:6.0f} req/s")
        both = in_tmux(
            ["--child", "tui", "--seconds", str(args.seconds), "--out", str(folder / "tui.json")],
            folder / "tui.json",
            timeout,
        )
        print(
            f"tui + lab      cpu {both['cpu_percent']:5.1f}%   served {both['requests_per_second']:6.0f} req/s"
            f"   frames {both['frames_per_second']:5.1f}/s"
        )
        print(f"  => dashboard's share, estimated: {both['cpu_percent'] - lab['cpu_percent']:5.1f}% of one core")
        server, admin = serve()
        try:
            attached = in_tmux(
                [
                    "--child",
                    "tui",
                    "--seconds",
                    str(args.seconds),
                    "--out",
                    str(folder / "remote.json"),
                    "--connect",
                    admin,
                ],
                folder / "remote.json",
                timeout,
            )
        finally:
            server.terminate()
            server.wait(timeout=30)
        print(
            f"tui attached   cpu {attached['cpu_percent']:5.1f}%   seen   {attached['requests_per_second']:6.0f} req/s"
            f"   frames {attached['frames_per_second']:5.1f}/s   (the dashboard's process alone)"
        )
    print(f"# load average after: {os.getloadavg()[0]:.2f}")
    goal_frames = min(both["frames_per_second"], attached["frames_per_second"]) >= 20
    goal_cpu = attached["cpu_percent"] <= 50
    print(
        f"# goal >= 20 frames/s: {'met' if goal_frames else 'NOT met'}; "
        f"goal TUI <= 50% of a core (attached): {'met' if goal_cpu else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
