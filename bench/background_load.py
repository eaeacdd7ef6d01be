"""Background load: how many requests/s the lab can send itself before a real client stops being served.

    python bench/background_load.py [--rates 100,200,500,1000,1500,2000,3000] [--seconds 10] [--settle 1.5]
                                    [--rounds 3] [--isolation both|inprocess|process] [--probe-rate 10]
                                    [--spofkit-root DIR]

The lab's background load (``PUT /load``, the TUI's ``+``/``-``, the widgets' slider) runs in the lab's own
process, beside the balancer and (in-process isolation) the instances. Past some rate it takes all of that
process's CPU, and then everyone else who uses the balancer — a learner's ``curl``, a browser tab — waits or
gets 503s. This script finds that rate.

For each rate, in each isolation, in each round, it starts a fresh lab in a child process (3 instances, default
settings; ``serve-lab`` below) with its background load at that rate, lets it settle for ``--settle`` s, then
for ``--seconds`` s measures:

* ``achieved`` — the background load's successful requests/s, and its errors (by kind);
* what a **separate real client** sees: ``--probe-rate`` requests/s from this process, each on a new TCP
  connection (like ``curl``), each given up after 5 s — its errors and its p50/p99 latency;
* ``cpu`` — the CPU time of the lab's process (user + system) per second (100 % = one core), and with process
  isolation also the lab's process plus its instance processes.

Rounds are interleaved (every rate once, then every rate again, ...) and the table shows, for each rate, the
median over rounds (the probe's errors are the total over all rounds). The machine has 2 cores and other work
runs on it, so single rounds are noisy. ``--spofkit-root DIR`` runs another copy of the package (e.g. a before).

Every child is stopped by its pid at the end, on an error or on Ctrl-C; a lab child also stops when its stdin
closes (if this script dies). Everything listens on 127.0.0.1.

``python bench/background_load.py serve-lab --isolation inprocess --rate 500`` is the child: it prints one JSON
line ``{"url": ..., "pid": ...}`` once its lab runs, answers each ``stats`` line on stdin with one JSON line of
counters, and stops its lab at ``stop`` or when stdin closes. It calls ``lab.start_background_load`` directly,
so it can go past the cap that ``SetLoad`` (``PUT /load``) enforces.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import selectors
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, STARTUP_TIMEOUT, Children, cpu_seconds, python_env

DEFAULT_RATES = (100, 200, 500, 1000, 1500, 2000, 3000)
PROBE_TIMEOUT = 5.0  # seconds a probe request may take before its client gives up (as the lab's load does)
STOP_TIMEOUT = 20.0  # seconds a lab child may take to stop (a saturated lab drains its in-flight requests first)

# The rule for "the machine carries this rate" (see bench/README.md): at this rate, in every isolation, the probe
# got no error in any round, its p99 (median over rounds) is at most P99_LIMIT — below what a person notices, so the
# load does not dominate what a real client feels — and the load achieved at least ACHIEVED_SHARE of the rate.
P99_LIMIT = 0.1  # seconds
ACHIEVED_SHARE = 0.95


# --- the child: a lab with its background load ---------------------------------------------------------


async def _serve_lab(isolation: str, rate: float) -> None:
    import spofkit.commands
    from spofkit.events import ClientRequest, Event
    from spofkit.lab import Lab

    # This script measures past the cap on purpose: it is how the cap is chosen.
    spofkit.commands.MAX_LOAD_RATE = float("inf")

    # Counted from the events (not from the generator) so that an older copy of the package can be measured too.
    outcomes: collections.Counter[str] = collections.Counter()

    def count(event: Event) -> None:
        if isinstance(event, ClientRequest):
            outcomes[event.error or "ok"] += 1

    lab = await Lab.start(instances=3, isolation=isolation)
    async with lab:
        lab.events.subscribe(count)
        generator = lab.start_background_load(rate)
        print(json.dumps({"url": lab.balancer_url, "pid": os.getpid()}), flush=True)
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            if line.strip() != "stats":
                break  # "stop", or end of input: the parent went away
            stats = {"at": lab.now(), "outcomes": dict(outcomes), "in_flight": generator.in_flight}
            print(json.dumps(stats), flush=True)


def serve_lab_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="background_load.py serve-lab")
    parser.add_argument("--isolation", choices=("inprocess", "process"), default="inprocess")
    parser.add_argument("--rate", type=float, required=True)
    args = parser.parse_args(argv)
    asyncio.run(_serve_lab(args.isolation, args.rate))


# --- the parent: one measured step -----------------------------------------------------------------------


@dataclass
class Step:
    """What one rate in one isolation in one round measured. Latencies in seconds."""

    rate: float
    isolation: str
    achieved: float  # successful background requests per second
    load_errors: dict[str, int]
    probe_latencies: list[float] = field(default_factory=list)  # of the probes that were answered with 2xx
    probe_errors: dict[str, int] = field(default_factory=dict)
    lab_cpu: float = 0.0  # seconds of CPU per second, lab process only
    all_cpu: float = 0.0  # lab process and its instance processes

    def probe_percentile(self, p: float) -> float | None:
        ordered = sorted(self.probe_latencies)
        if not ordered:
            return None
        return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]  # nearest rank


def _read_json_line(stream: IO[str], timeout: float, what: str) -> dict[str, Any]:
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise RuntimeError(f"{what} did not answer within {timeout:.0f}s")
    line = stream.readline()
    if not line:
        raise RuntimeError(f"{what} exited (no more output)")
    return dict(json.loads(line))


def _own_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of process ``pid`` alone."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _probe(url: str, rate: float, seconds: float) -> tuple[list[float], dict[str, int]]:
    """Open-loop GETs at ``rate``/s for ``seconds`` s, each on a new connection. Returns (latencies, errors)."""
    import aiohttp

    latencies: list[float] = []
    errors: collections.Counter[str] = collections.Counter()

    async def one(session: aiohttp.ClientSession) -> None:
        started = time.monotonic()
        try:
            async with session.get(url + "/") as response:
                await response.read()
                if response.status >= 400:
                    errors[f"http_{response.status}"] += 1
                    return
        except asyncio.TimeoutError:
            errors["timeout"] += 1
            return
        except aiohttp.ClientError as error:
            errors[type(error).__name__] += 1
            return
        latencies.append(time.monotonic() - started)

    timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True), timeout=timeout) as session:
        t0 = time.monotonic()
        tasks = []
        for i in range(max(1, round(rate * seconds))):  # bounded in count; each request bounded by its timeout
            await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))
            tasks.append(asyncio.create_task(one(session)))
        await asyncio.gather(*tasks)
    return latencies, dict(errors)


def one_step(children: Children, args: argparse.Namespace, isolation: str, rate: float) -> Step:
    command = [sys.executable, __file__, "serve-lab", "--isolation", isolation, "--rate", f"{rate:g}"]
    env = python_env(args.spofkit_root)
    process = children.start(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdin is not None and process.stdout is not None
    try:
        hello = _read_json_line(process.stdout, STARTUP_TIMEOUT, f"lab ({isolation})")

        def sample() -> tuple[dict[str, Any], float, float, float]:
            """The lab's counters, its CPU seconds, with its instances' too, and the wall clock, all at once."""
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write("stats\n")
            process.stdin.flush()
            stats = _read_json_line(process.stdout, 30.0, f"lab ({isolation}) at {rate:g}/s")
            return stats, _own_cpu_seconds(process.pid), cpu_seconds(process.pid), time.monotonic()

        time.sleep(args.settle)  # a benchmark, not a test: let the pools fill and the load reach its rate
        before, lab_cpu0, all_cpu0, t0 = sample()
        latencies, probe_errors = asyncio.run(_probe(hello["url"], args.probe_rate, args.seconds))
        after, lab_cpu1, all_cpu1, t1 = sample()
        process.stdin.write("stop\n")
        process.stdin.flush()
        process.wait(STOP_TIMEOUT)
    finally:
        children.stop(process)  # by pid; does nothing if it already exited
    counts = collections.Counter(after["outcomes"])
    counts.subtract(before["outcomes"])
    lab_seconds = after["at"] - before["at"]
    return Step(
        rate=rate,
        isolation=isolation,
        achieved=counts["ok"] / lab_seconds,
        load_errors={kind: n for kind, n in counts.items() if kind != "ok" and n},
        probe_latencies=latencies,
        probe_errors=probe_errors,
        lab_cpu=(lab_cpu1 - lab_cpu0) / (t1 - t0),
        all_cpu=(all_cpu1 - all_cpu0) / (t1 - t0),
    )


# --- the table -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """The median over rounds of one rate in one isolation."""

    rate: float
    isolation: str
    achieved: float
    load_errors: int  # background requests that failed, summed over rounds
    probes: int
    probe_errors: dict[str, int]
    p50: float | None
    p99: float | None
    lab_cpu: float
    all_cpu: float


def _median(values: list[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return statistics.median(known) if known else None


def summarise(steps: list[Step]) -> Row:
    errors: collections.Counter[str] = collections.Counter()
    for step in steps:
        errors.update(step.probe_errors)
    return Row(
        rate=steps[0].rate,
        isolation=steps[0].isolation,
        achieved=statistics.median(step.achieved for step in steps),
        load_errors=sum(sum(step.load_errors.values()) for step in steps),
        probes=sum(len(step.probe_latencies) + sum(step.probe_errors.values()) for step in steps),
        probe_errors=dict(errors),
        p50=_median([step.probe_percentile(50) for step in steps]),
        p99=_median([step.probe_percentile(99) for step in steps]),
        lab_cpu=statistics.median(step.lab_cpu for step in steps),
        all_cpu=statistics.median(step.all_cpu for step in steps),
    )


def _ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1000:.1f} ms"


def print_table(rows: list[Row]) -> None:
    columns = "isolation | rate | achieved | load errors | probes | probe errors | probe p50 | probe p99 | lab cpu"
    print(f"| {columns} | +instances | carried |")
    print("| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- |")
    for row in rows:
        errors = ", ".join(f"{kind} {n}" for kind, n in sorted(row.probe_errors.items())) or "0"
        extra = f"{row.all_cpu * 100:.0f} %" if row.isolation == "process" else "—"
        verdict = "yes" if passes(row) else "no"
        print(
            f"| {row.isolation} | {row.rate:g} | {row.achieved:.0f} | {row.load_errors} | {row.probes} | {errors} "
            f"| {_ms(row.p50)} | {_ms(row.p99)} | {row.lab_cpu * 100:.0f} % | {extra} | {verdict} |"
        )


def passes(row: Row) -> bool:
    """The rule (module constants): no probe error, p99 not dominated by the load, the load achieved."""
    if row.probe_errors or row.p99 is None:
        return False
    return row.p99 <= P99_LIMIT and row.achieved >= ACHIEVED_SHARE * row.rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default=",".join(map(str, DEFAULT_RATES)), help="requests/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds measured per rate (default 10)")
    parser.add_argument("--settle", type=float, default=1.5, help="seconds at the rate before measuring")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--isolation", choices=("both", "inprocess", "process"), default="both")
    parser.add_argument("--probe-rate", type=float, default=10.0, help="the real client's requests/s (default 10)")
    parser.add_argument("--spofkit-root", default=str(ROOT), help="directory holding the spofkit package to run")
    args = parser.parse_args(argv)
    try:
        rates = [float(text) for text in args.rates.split(",")]
    except ValueError:
        parser.error(f"--rates must be numbers separated by commas, got {args.rates!r}")
    if not rates or not all(0 < rate <= 20_000 for rate in rates):
        parser.error(f"--rates must be between 0 and 20000 requests/s, got {args.rates!r}")
    for name in ("seconds", "probe_rate"):
        if not 0 < getattr(args, name) <= 600:
            parser.error(f"--{name.replace('_', '-')} must be in (0, 600], got {getattr(args, name)!r}")
    if not 0 <= args.settle <= 60:
        parser.error(f"--settle must be 0..60 s, got {args.settle!r}")
    if not 1 <= args.rounds <= 20:
        parser.error(f"--rounds must be 1..20, got {args.rounds!r}")
    if not (Path(args.spofkit_root) / "spofkit" / "lab.py").is_file():
        parser.error(f"--spofkit-root {args.spofkit_root!r} has no spofkit/lab.py")
    isolations = ["inprocess", "process"] if args.isolation == "both" else [args.isolation]

    steps: dict[tuple[str, float], list[Step]] = collections.defaultdict(list)
    print(f"spofkit from {Path(args.spofkit_root).resolve() / 'spofkit'}; load average {os.getloadavg()[0]:.1f}")
    try:
        with Children() as children:
            for round_number in range(1, args.rounds + 1):
                for isolation in isolations:
                    for rate in rates:
                        step = one_step(children, args, isolation, rate)
                        steps[isolation, rate].append(step)
                        print(
                            f"round {round_number} {isolation:>9} {rate:>6g}/s: achieved {step.achieved:6.0f}/s, "
                            f"probe p99 {_ms(step.probe_percentile(99))}, probe errors {step.probe_errors or 0}, "
                            f"lab cpu {step.lab_cpu * 100:.0f} %",
                            flush=True,
                        )
    except KeyboardInterrupt:
        print("\ninterrupted; every child was stopped", file=sys.stderr)
        return 130
    rows = [summarise(steps[isolation, rate]) for isolation in isolations for rate in rates]
    print()
    print(
        f"{args.rounds} rounds x {args.seconds:g} s per rate; probe {args.probe_rate:g} req/s on new connections; "
        f"median over rounds (probe errors: total); load average now {os.getloadavg()[0]:.1f}"
    )
    print()
    print_table(rows)
    carried_rates = [rate for rate in rates if all(passes(row) for row in rows if row.rate == rate)]
    # The cap is the highest rate carried with every rate below it carried too (a fluke at one rate is no cap).
    cap = None
    for rate in sorted(rates):
        if rate not in carried_rates:
            break
        cap = rate
    print()
    print(
        f"rule: no probe error in any round, probe p99 (median over rounds) <= {P99_LIMIT * 1000:g} ms, achieved >= "
        f"{ACHIEVED_SHARE:.0%} of the rate (median); in every isolation measured"
    )
    print(f"highest rate carried (and every rate below it): {cap:g} req/s" if cap else "no rate was carried")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve-lab"]:
        serve_lab_main(sys.argv[2:])
    else:
        sys.exit(main())
