"""The front door's failover: kill -9 the active balancer of a pair under load, and a rolling restart under load.

    python bench/pair_failover.py [--rate 500] [--duration 6] [--kill-at 2] [--rounds 3]

Each run starts a fresh lab in process isolation (3 instances, 2 balancers, every one its own OS process), sends
open-loop load at ``--rate`` requests/s through the service address for ``--duration`` s, and at ``--kill-at`` s
sends SIGKILL to the balancer holding the address (the master; in active-active, ``lb1``). Printed per run:

- **takeover**: from the kill to the first request answered through the other balancer (its RequestCompleted);
- requests **failed** for a client *without* retries and for one that *retries* idempotent requests on connection
  errors (a fresh connection, 20–200 ms backoff, for up to 2 s: :class:`spofkit.client.FailoverClient`);
- for active-passive and active-active.

Then a rolling restart (``Deploy(batch=1)``) of all instances under the same load, and the naive restart-all, with
the failed requests of a client without retries. The rounds are interleaved (every kind once per round) and the
table shows medians, because the machine is shared. Every load loop is bounded in time and count; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import signal
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from spofkit.client import FailoverClient
from spofkit.commands import Deploy
from spofkit.events import DeployStep, Event, InstanceDown, RequestCompleted
from spofkit.health import HealthSettings
from spofkit.lab import Lab


@dataclass
class Run:
    kind: str
    client: str
    sent: int
    failed: int
    takeover: float | None  # seconds, kill -> first answer through the other balancer
    seconds: float
    why: str = ""  # for a deploy that failed requests: what the balancer said, and what it marked down when


async def steady(client: FailoverClient, rate: float, duration: float) -> tuple[int, int]:
    """Open-loop load: one request every 1/rate s for ``duration`` s (bounded), each on its own task."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    tasks = []
    count = int(rate * duration)
    for index in range(count):
        delay = start + index / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(client.get("/")))
    answers = await asyncio.gather(*tasks)
    return len(answers), sum(1 for a in answers if not a.ok)


async def kill_run(kind: str, retrying: bool, args: argparse.Namespace) -> Run:
    pair = "active-active" if kind == "active-active" else "active-passive"
    lab = await Lab.start(3, balancers=2, pair=pair, isolation="process", health=HealthSettings())
    try:
        completed: list[RequestCompleted] = []

        def heard(event: Event) -> None:
            if isinstance(event, RequestCompleted):
                completed.append(event)

        lab.events.subscribe(heard)
        victim = next((b for b in lab.status().balancers if b.address and b.role != "active"), None)
        victim = victim or lab.status().balancer("lb1")
        assert victim.pid is not None
        client = FailoverClient(lab.balancer_url, retries=retrying)
        killed_at: list[float] = []

        async def kill_later() -> None:
            await asyncio.sleep(args.kill_at)
            killed_at.append(lab.now())
            os.kill(victim.pid, signal.SIGKILL)  # type: ignore[arg-type]

        started = time.monotonic()
        killer = asyncio.create_task(kill_later())
        sent, failed = await steady(client, args.rate, args.duration)
        await killer
        await client.close()
        after = [e.at for e in completed if killed_at and e.at > killed_at[0] and e.balancer != victim.name]
        takeover = (min(after) - killed_at[0]) if after else None
        return Run(kind, "retrying" if retrying else "no retries", sent, failed, takeover, time.monotonic() - started)
    finally:
        await lab.stop()


async def deploy_run(how: str, args: argparse.Namespace) -> Run:
    lab = await Lab.start(3, isolation="process", health=HealthSettings(interval=0.2, timeout=0.15, rise=2, fall=2))
    try:
        reasons: collections.Counter[str] = collections.Counter()
        marks: list[str] = []

        def heard(event: Event) -> None:
            if isinstance(event, RequestCompleted) and event.status is not None and event.status >= 500:
                reasons[event.reason or str(event.status)] += 1
            elif isinstance(event, (InstanceDown, DeployStep)):
                what = (
                    f"{event.instance} down ({event.reason})"
                    if isinstance(event, InstanceDown)
                    else f"{event.instance} {event.step}"
                )
                marks.append(f"{event.at:.2f} {what}")

        lab.events.subscribe(heard)
        client = FailoverClient(lab.balancer_url, retries=False)
        started = time.monotonic()
        load = asyncio.create_task(steady(client, args.rate, args.deploy_duration))
        await asyncio.sleep(0.5)
        await lab.apply(Deploy(batch=1) if how == "rolling" else Deploy(how="all-at-once"))
        sent, failed = await load
        await client.close()
        why = f"balancer answers: {dict(reasons)}; {', '.join(marks)}" if failed and how == "rolling" else ""
        return Run(f"deploy {how}", "no retries", sent, failed, None, time.monotonic() - started, why)
    finally:
        await lab.stop()


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


async def main(args: argparse.Namespace) -> None:
    plans = [("active-passive", False), ("active-passive", True), ("active-active", False), ("active-active", True)]
    runs: list[Run] = []
    for round_number in range(args.rounds):
        for kind, retrying in plans:
            print(f"round {round_number + 1}: kill -9, {kind}, {'retrying' if retrying else 'no retries'} ...",
                  end=" ", flush=True)  # fmt: skip
            run = await kill_run(kind, retrying, args)
            print(f"failed {run.failed}/{run.sent}, takeover {run.takeover}")
            runs.append(run)
        for how in ("rolling", "all-at-once"):
            print(f"round {round_number + 1}: deploy {how} ...", end=" ", flush=True)
            run = await deploy_run(how, args)
            print(f"failed {run.failed}/{run.sent}" + (f"\n    why: {run.why}" if run.why else ""))
            runs.append(run)
    print()
    print(f"{args.rate:g} req/s through the service address; 3 instances and 2 balancers, each its own process;")
    print(f"kill -9 of the balancer holding the address at {args.kill_at:g} s; medians of {args.rounds} rounds")
    print()
    print(f"{'':34} {'requests':>9} {'failed':>7} {'takeover':>9}")
    keys = [(k, "retrying" if r else "no retries") for k, r in plans] + [
        ("deploy rolling", "no retries"),
        ("deploy all-at-once", "no retries"),
    ]
    for kind, client in keys:
        mine = [r for r in runs if r.kind == kind and r.client == client]
        takeovers = [r.takeover for r in mine if r.takeover is not None]
        takeover = f"{median(takeovers):.2f} s" if takeovers else "-"
        failed = median([r.failed for r in mine])
        fails = ", ".join(str(r.failed) for r in mine)
        print(f"{kind + ', ' + client:34} {median([r.sent for r in mine]):>9.0f} {failed:>7.0f} {takeover:>9}"
              f"   (each round: {fails})")  # fmt: skip


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=500.0, help="requests/s through the service address")
    parser.add_argument("--duration", type=float, default=6.0, help="seconds of load per kill run")
    parser.add_argument("--kill-at", type=float, default=2.0, help="when the active balancer is killed (s)")
    parser.add_argument("--deploy-duration", type=float, default=12.0, help="seconds of load per deploy run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians are printed)")
    args = parser.parse_args(argv)
    if not 0 < args.rate <= 2000 or not 0 < args.kill_at < args.duration <= 60 or not 1 <= args.rounds <= 10:
        parser.error("need 0 < rate <= 2000, 0 < kill-at < duration <= 60, 1 <= rounds <= 10")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse()))
