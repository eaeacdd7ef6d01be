"""How fast is the simulator? Three figures, printed (not a test: nothing passes or fails here).

1. **A million requests over 100 instances with faults** (crash, hang, slow, gray): wall and CPU time, requests and
   model events per second, and where the time goes — the driver (spofkit.sim) or the policy objects it calls
   (spofkit.policy), measured per call at this pool size.
2. **The same scenario as a SimPy model**, in the same run: the same policy objects, the same instance model
   (workers, queue, work times, faults.effect), the same events and report, written the way SimPy is written —
   a process per request and per attempt, a ``Resource`` per instance's workers, ``env.timeout`` for time —
   with the same shortcut the spofkit driver takes (no timeout race when the answer's time is already known).
   Both are given the same scenario; "model events" are the spofkit run's timers (arrivals, answers, timeouts,
   probes, fault changes), the same events in both models, so model events/s compares the two like for like.
3. **A simulated day of 1,000 instances with random failures** (each instance, and racks of 50 that fail as a
   whole), with load: the availability the clients saw and what it cost to compute.

::

    .venv/bin/python bench/sim_bench.py                    # all three (several minutes on a busy machine)
    .venv/bin/python bench/sim_bench.py --requests 200000  # a smaller first part and comparison
    .venv/bin/python bench/sim_bench.py --skip-simpy --skip-day
    .venv/bin/python bench/sim_bench.py --skip-day --rounds 3   # then 3 interleaved rounds of 1 and 2
    .venv/bin/python bench/sim_bench.py --skip-day --rounds 3 --simpy-deferred  # SimPy's runs put off full
                                                                # garbage collections too, as spofkit.sim does
    .venv/bin/python bench/sim_bench.py --compiled build/compiled --skip-simpy --skip-day --rounds 3
                                 # 1b: part 1 from the source and from a mypyc-compiled copy, interleaved

**1b. The same run, compiled** (``--compiled DIR``): the copy ``bench/compile_sim.py`` builds of the same source
(built or rebuilt first if it is missing or older than the source). Pure and compiled runs alternate, each in a
process of its own, and must give the same digest.

spofkit's CPU time includes building its :class:`~spofkit.report.Report` (``run_load_sync`` returns one); the
SimPy model's does not (its report is built after the clock stops).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# SPOFKIT_COMPILED=DIR: import spofkit from a copy compiled by bench/compile_sim.py instead of the source.
sys.path.insert(0, os.environ.get("SPOFKIT_COMPILED") or str(Path(__file__).resolve().parent.parent))

from spofkit.events import (
    PER_REQUEST_EVENTS,
    ClientRequest,
    Clock,
    Event,
    EventBus,
    FaultCleared,
    FaultInjected,
    InstanceRestarted,
)
from spofkit.faults import Crash, Fault, effect, make_fault
from spofkit.loadgen import RequestRecord
from spofkit.policy import (
    CONNECT,
    RESET,
    TIMEOUT,
    BalancerPolicy,
    HealthSettings,
    Relay,
    RequestInfo,
    RetrySettings,
    Try,
    make_strategy,
    rng_for,
    strategy_names,
)
from spofkit.report import Report, build_report
from spofkit.scenario import MAX_SEED
from spofkit.sim import Capacity, FailureGroup, FailureProcess, SimLab
from spofkit.sim.capacity import ServiceTime
from spofkit.sim.digest import EventDigest
from spofkit.sim.lab import MAX_INSTANCES, MAX_RUN_EVENTS, MAX_RUN_REQUESTS, model_events
from spofkit.sim.scheduler import full_collections_deferred

COMPILED_ENV = "SPOFKIT_COMPILED"

# The instances the four faults of parts 1 and 2 go to. "a", the first, is left alone, so that one instance of any
# pool still serves: the scenario is the same at every pool size, and a pool needs at least these five.
FAULTED = ("b", "c", "d", "e")
MIN_INSTANCES = len(FAULTED) + 1


@dataclass(frozen=True)
class Setup:
    instances: int
    requests: int
    rate: float
    strategy: str
    capacity: Capacity
    seed: int

    @property
    def duration(self) -> float:
        return self.requests / self.rate

    def faults(self) -> list[tuple[float, str, str, dict[str, Any]]]:
        """A crash, a hang, a slow and a gray instance, spread over the run."""
        d = self.duration
        crash, hang, slow, gray = FAULTED
        return [
            (0.1 * d, crash, "crash", {}),
            (0.2 * d, hang, "hang", {}),
            (0.3 * d, slow, "slow", {"ms": 200.0}),
            (0.4 * d, gray, "gray", {"rate": 0.5, "status": 503}),
        ]


# --- 1. spofkit's simulator --------------------------------------------------------------------------------


@dataclass
class Run:
    name: str
    wall: float
    cpu: float
    report: Report
    model_events: int
    published: int
    digest: str = ""
    extra: str = ""


def run_spofkit(setup: Setup) -> Run:
    lab = SimLab(setup.instances, strategy=setup.strategy, capacity=setup.capacity, seed=setup.seed, history_size=1000)
    wall, cpu = time.perf_counter(), time.process_time()
    report = lab.run_load_sync(setup.rate, setup.duration, faults=setup.faults())
    return Run(
        "spofkit.sim",
        time.perf_counter() - wall,
        time.process_time() - cpu,
        report,
        lab.scheduler.processed,
        lab.digest.events,
        lab.digest.hexdigest(),
    )


def compiled_in_use() -> bool:
    """Is spofkit's simulator imported from a compiled copy (its hot modules are extensions)?"""
    import spofkit.sim.scheduler

    return not str(spofkit.sim.scheduler.__file__).endswith(".py")


def run_in_child(setup: Setup, compiled: Path | None) -> dict[str, Any]:
    """Part 1 in a process of its own, from the source or from the compiled copy ``compiled``: its figures."""
    environment = {key: value for key, value in os.environ.items() if key != COMPILED_ENV}
    if compiled is not None:
        environment[COMPILED_ENV] = str(compiled)
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "--requests",
        str(setup.requests),
        "--instances",
        str(setup.instances),
        "--rate",
        str(setup.rate),
        "--strategy",
        setup.strategy,
        "--seed",
        str(setup.seed),
    ]
    done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=3600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the child run failed:\n{done.stderr[-2000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def pure_and_compiled(setup: Setup, compiled: Path, rounds: int) -> None:
    """Part 1 from the source and from the compiled copy, alternating, each in its own process: the medians."""
    import compile_sim  # beside this script, whose folder Python puts on the path

    if not compile_sim.is_fresh(compiled):
        print(f"   (building the compiled copy in {compiled}: about a minute)")
        compile_sim.build(compiled)
    pure_cpu, compiled_cpu, digests = [], [], set()
    for index in range(rounds):
        pure, fast = run_in_child(setup, None), run_in_child(setup, compiled)
        if pure["compiled"] or not fast["compiled"]:
            raise RuntimeError("a child imported the wrong spofkit (check PYTHONPATH)")
        pure_cpu.append(pure["cpu"])
        compiled_cpu.append(fast["cpu"])
        digests.update((pure["digest"], fast["digest"]))
        print(
            f"   round {index + 1}: source {pure['cpu']:.2f} s CPU ({pure['cpu'] / setup.requests * 1e6:.1f} µs per "
            f"request), compiled {fast['cpu']:.2f} s ({fast['cpu'] / setup.requests * 1e6:.1f} µs): "
            f"{pure['cpu'] / fast['cpu']:.2f}x"
        )
    source, built = statistics.median(pure_cpu), statistics.median(compiled_cpu)
    print(
        f"   median of {rounds}: source {source:.2f} s CPU, compiled {built:.2f} s "
        f"({built / setup.requests * 1e6:.1f} µs per request, {setup.requests / built:,.0f} requests per CPU "
        f"second): {source / built:.2f}x"
    )
    print(f"   digests        {'the same in every run' if len(digests) == 1 else f'DIFFERENT: {sorted(digests)}'}")
    print(f"   {goal_line(setup.requests, source, 'source')}")
    print(f"   {goal_line(setup.requests, built, 'compiled')}")


# The goal: a million requests over 100 instances with faults in at most this many seconds on one core.
GOAL_SECONDS_PER_MILLION = 10.0


def goal_line(requests: int, cpu: float, build: str) -> str:
    """Whether ``cpu`` seconds for ``requests`` meet the goal of a million in 10 s (scaled to ``requests``)."""
    allowed = GOAL_SECONDS_PER_MILLION * requests / 1_000_000
    verdict = "met" if cpu <= allowed else f"not met ({cpu / allowed:.2f}x too slow)"
    return f"goal           {requests:,} requests in <= {allowed:.3g} s on one core, {build}: {cpu:.2f} s, {verdict}"


def policy_costs(instances: int, strategy: str, calls: int = 20_000) -> dict[str, float]:
    """Microseconds per call of the policy methods a simulated request goes through, at this pool size."""
    policy = BalancerPolicy(lambda event: None, strategy=strategy, seed=0)
    for index in range(instances):
        policy.add_member(f"i{index}", f"sim://i{index}", 0.0)
    request = RequestInfo()
    costs: dict[str, float] = {}
    now = 1.0
    started = time.process_time()
    for _ in range(calls):
        policy.pool.choose(request, now)
    costs["Pool.choose"] = (time.process_time() - started) / calls * 1e6
    member = policy.pool.member("i0")
    started = time.process_time()
    for _ in range(calls):
        policy.pool.attempt_started(member)
        policy.pool.attempt_finished(member, True, 0.005, now)
    costs["Pool.attempt_started + attempt_finished"] = (time.process_time() - started) / calls * 1e6
    started = time.process_time()
    for step in range(calls):
        now = 1.0 + step * 1e-4
        attempts = policy.new_request(request, now)
        attempts.begin(now)
        attempts.answered(now + 0.005, 200)
        attempts.finish(now + 0.005, 200)
    costs["one request: new_request, begin, answered, finish"] = (time.process_time() - started) / calls * 1e6
    return costs


# --- 2. the same scenario in SimPy ----------------------------------------------------------------------------

ANSWER, REFUSED = "answer", "refused"


class SimpyInstance:
    """The instance model of spofkit.sim.instance, as SimPy processes: workers are a Resource."""

    def __init__(self, env: Any, name: str, capacity: Capacity, seed: int, publish: Callable[[Event], None]) -> None:
        import simpy

        self.env = env
        self.name = name
        self.url = f"sim://{name}"
        self.publish = publish
        self.workers = simpy.Resource(env, capacity=capacity.concurrency or 10**9)
        self.queue_limit = capacity.queue
        self.dice = rng_for(seed, f"instance/{name}")
        self.service_time = ServiceTime(capacity, rng_for(seed, f"work/{name}"))
        self.fault: Fault | None = None
        self.fault_began = 0.0
        self.running = True
        self.serving: dict[Any, None] = {}
        self.release = env.event()  # hung requests wait for it

    def full(self) -> bool:
        return self.workers.count >= self.workers.capacity and len(self.workers.queue) >= self.queue_limit

    def visit(self, health_check: bool) -> Generator[Any, Any, tuple[str, int]]:
        import simpy

        met = effect(self.fault, health_check=health_check, elapsed=self.env.now - self.fault_began, dice=self.dice)
        if not self.running or met.refused:
            return REFUSED, 0
        if self.full():
            return ANSWER, 503
        me = self.env.active_process
        self.serving[me] = None
        try:
            with self.workers.request() as slot:
                yield slot
                if met.hangs:
                    yield self.release
                status = met.status or 200
                spent = met.delay + (0.0 if health_check or met.status else self.service_time.draw())
                yield self.env.timeout(spent)
                return (RESET if met.cut_off else ANSWER), status
        except simpy.Interrupt:
            return RESET, 0
        finally:
            self.serving.pop(me, None)

    def answer_known_at(self, health_check: bool) -> bool:
        """Will a worker take the next visit at once (so the answer's time is known)? Same shortcut as spofkit's."""
        return self.workers.count < self.workers.capacity

    def inject(self, fault: Fault) -> None:
        previous = self.fault
        if isinstance(fault, Crash):
            self.running = False
            for process in list(self.serving):
                if process.is_alive:
                    process.interrupt("crash")
        else:
            self.fault_began = self.env.now
        self.fault = fault
        if previous is not None:
            self.publish(FaultCleared(self.env.now, self.name, previous.kind))
        self.publish(FaultInjected(self.env.now, self.name, fault.kind, fault.params()))


class SimpyModel:
    """The balancer's driver loop, the health checks and the client, as SimPy processes."""

    def __init__(self, setup: Setup, shortcut: bool = True) -> None:
        import simpy

        self.env = env = simpy.Environment()
        self.setup = setup
        self.shortcut = shortcut  # skip the timeout race when a free worker makes the answer's time known
        self.bus = EventBus(Clock(lambda: env.now, start=0.0), history_size=1000)
        self.digest = EventDigest()
        self.bus.subscribe(self.digest)
        self.policy = BalancerPolicy(self.bus.publish, strategy=setup.strategy, seed=setup.seed)
        self.retries = self.policy.retries or RetrySettings()
        self.instances: dict[str, SimpyInstance] = {}
        self.records: list[RequestRecord] = []
        self.seen: list[Event] = []
        self.bus.subscribe(lambda e: None if isinstance(e, PER_REQUEST_EVENTS) else self.seen.append(e))
        from spofkit.sim.lab import instance_names

        names = instance_names()
        for _ in range(setup.instances):
            name = next(names)
            self.instances[name] = SimpyInstance(env, name, setup.capacity, setup.seed, self.bus.publish)
            self.policy.add_member(name, self.instances[name].url, 0.0)
            env.process(self.health_loop(name))
        self.wakeup_at: float | None = None
        self.request = RequestInfo()

    def run(self) -> None:
        self.env.process(self.client())
        for at, name, kind, params in self.setup.faults():
            self.env.process(self.fault_at(at, name, make_fault(kind, **params)))
        self.env.run(until=self.setup.duration + 6.0)  # every client gives up within 5 s

    def fault_at(self, at: float, name: str, fault: Fault) -> Generator[Any, Any, None]:
        yield self.env.timeout(at)
        self.instances[name].inject(fault)

    def client(self) -> Generator[Any, Any, None]:
        setup = self.setup
        for index in range(setup.requests):
            due = index / setup.rate
            if due > self.env.now:
                yield self.env.timeout(due - self.env.now)
            self.env.process(self.one_request(index))

    def one_request(self, index: int) -> Generator[Any, Any, None]:
        env, policy = self.env, self.policy
        start = env.now
        attempts = policy.new_request(self.request, start)
        action = attempts.begin(start)
        while isinstance(action, Try):
            instance = self.instances[action.instance]
            known = instance.answer_known_at(False)
            visit = env.process(instance.visit(False))
            if self.shortcut and known and not instance.fault:
                outcome, status = yield visit
            else:
                timeout = env.timeout(action.timeout)
                done = yield visit | timeout
                if visit not in done:
                    action = attempts.failed(env.now, TIMEOUT, f"no answer within {action.timeout:.2f}s")
                    self.arm_wakeup()
                    continue
                outcome, status = visit.value
            now = env.now
            if outcome == ANSWER:
                action = attempts.answered(now, status)
                if status >= 500:
                    self.arm_wakeup()
            elif outcome == REFUSED:
                action = attempts.failed(now, CONNECT, "connect failed", reached_backend=False)
                self.arm_wakeup()
            else:
                action = attempts.failed(now, RESET, "connection lost")
                self.arm_wakeup()
        now = env.now
        attempts.finish(now, action.status)
        served_by = action.instance if isinstance(action, Relay) else None
        error = f"http_{action.status}" if action.status >= 400 else None
        record = RequestRecord(index, "GET", "/", start, now, action.status, served_by, attempts.attempts, error)
        self.records.append(record)
        self.bus.publish(ClientRequest(now, index, action.status, now - start, served_by, attempts.attempts, error))

    def arm_wakeup(self) -> None:
        due = self.policy.next_wakeup()
        if due is None or (self.wakeup_at is not None and self.wakeup_at <= due):
            return
        self.wakeup_at = due
        self.env.process(self.wake(due))

    def wake(self, due: float) -> Generator[Any, Any, None]:
        yield self.env.timeout(max(0.0, due - self.env.now))
        if self.wakeup_at == due:
            self.wakeup_at = None
            self.policy.wake(self.env.now)
            self.arm_wakeup()

    def health_loop(self, name: str) -> Generator[Any, Any, None]:
        env = self.env
        monitor = self.policy.health
        assert monitor is not None
        instance = self.instances[name]
        while True:
            due = monitor.next_probe_at(name)
            assert due is not None
            if due > env.now:
                yield env.timeout(due - env.now)
            started = env.now
            monitor.probe_started(name, started)
            known = self.shortcut and instance.answer_known_at(True) and not instance.fault
            probe = env.process(instance.visit(True))
            if known:  # a probe with no fault to meet answers at once: nothing to race
                outcome, status = yield probe
                ok, detail = outcome == ANSWER and status in monitor.settings.expect, str(status)
            else:
                timeout = env.timeout(monitor.settings.timeout)
                done = yield probe | timeout
                if probe in done and env.now - started < monitor.settings.timeout:
                    outcome, status = probe.value
                    ok = outcome == ANSWER and status in monitor.settings.expect
                    detail = str(status) if outcome == ANSWER else outcome
                else:
                    ok, detail = False, "timeout"
            monitor.probe_finished(name, ok, detail, env.now)


# --simpy-deferred: run the SimPy model with full collections put off too, as spofkit.sim's scheduler does.
SIMPY_DEFERRED = False


def run_simpy(setup: Setup, shortcut: bool = True) -> Run:
    model = SimpyModel(setup, shortcut)
    wall, cpu = time.perf_counter(), time.process_time()
    with full_collections_deferred() if SIMPY_DEFERRED else contextlib.nullcontext():
        model.run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    report = build_report(model.records, model.seen)
    scheduled = next(model.env._eid)  # SimPy numbers every event it schedules
    name = "SimPy" if shortcut else "SimPy, every attempt racing its timeout"
    return Run(name, wall, cpu, report, 0, model.digest.events, extra=f"SimPy scheduled {scheduled:,} events")


# --- 3. a day of 1,000 instances --------------------------------------------------------------------------------


def run_day(instances: int, rate: float, health_interval: float, seed: int) -> None:
    racks = [
        FailureGroup(f"rack-{r}", tuple(names), FailureProcess(5 * 86400.0, 1800.0))
        for r, names in enumerate(_chunks(_names(instances), 50))
    ]
    health = day_health(health_interval)
    lab = SimLab(
        instances,
        strategy="power_of_two",
        health=health,
        capacity=Capacity(concurrency=8, queue=32, work_ms=20.0, spread_ms=10.0),
        failures=FailureProcess(86400.0 / 2, 600.0, "weibull", 1.5),  # each instance fails about twice a day
        groups=racks,
        seed=seed,
        history_size=1000,
    )
    down: set[str] = set()
    worst = [0]
    failures = [0]

    def follow(event: Event) -> None:
        if isinstance(event, FaultInjected):
            down.add(event.instance)
            failures[0] += 1
            worst[0] = max(worst[0], len(down))
        elif isinstance(event, (FaultCleared, InstanceRestarted)):
            down.discard(event.instance)

    lab.events.subscribe(follow)
    wall, cpu = time.perf_counter(), time.process_time()
    report = lab.run_load_sync(rate, 86400.0)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"\n== 3. a simulated day: {instances} instances, racks of 50, load {rate:g} req/s ==")
    print(f"instance failures      {failures[0]} (each instance ~2/day, Weibull 1.5; each rack ~1 in 5 days)")
    print(f"most down at once      {worst[0]}")
    print(f"requests               {report.requests:,}, failed {report.failed} ({report.errors_by_kind})")
    print(f"availability           {report.availability * 100:.4f} %")
    print(f"model events           {lab.scheduler.processed:,} ({lab.scheduler.processed / cpu:,.0f} per CPU second)")
    print(f"time                   {wall:.1f} s wall, {cpu:.1f} s CPU for 86,400 s of lab time")
    print(f"digest                 {lab.digest.hexdigest()}")


def day_health(interval: float) -> HealthSettings:
    """The day's health checks: every ``interval`` seconds (``--day-health-interval``), a second to answer."""
    return HealthSettings(interval=interval, timeout=1.0, rise=2, fall=2)


def _names(count: int) -> list[str]:
    from spofkit.sim.lab import instance_names

    names = instance_names()
    return [next(names) for _ in range(count)]


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# --- printing ---------------------------------------------------------------------------------------------------


def seconds_text(value: float | None, missing: str = "never") -> str:
    """Lab seconds to the millisecond, or ``missing`` for None.

    The model's clock is exact, so a figure such as 1.3041388463520527 carries no more than 1.304 does; a health
    check every half second makes anything below a millisecond noise to the reader.
    """
    return missing if value is None else f"{value:.3f} s"


def show(run: Run, model_events: int) -> None:
    report = run.report
    print(f"-- {run.name}")
    print(f"   time           {run.wall:.2f} s wall, {run.cpu:.2f} s CPU")
    print(
        f"   requests/s     {report.requests / run.cpu:,.0f} per CPU second (of {report.requests:,}; "
        f"failed {report.failed})"
    )
    print(f"   model events/s {model_events / run.cpu:,.0f} per CPU second ({model_events:,} model events)")
    print(f"   published      {run.published:,} events" + (f"; digest {run.digest[:16]}…" if run.digest else ""))
    print(
        f"   detection      {seconds_text(report.detection_window)} "
        f"(fault {report.fault_instance} at {seconds_text(report.fault_at, 'no time')})"
    )
    if run.extra:
        print(f"   {run.extra}")


def compare(ours: Run, setup: Setup, repeat: int = 1, both: bool = False) -> None:
    """Run the SimPy model of ``setup`` (the best of ``repeat``) and compare it with spofkit's run of the same.

    ``both``: also the SimPy model without the shortcut, every attempt racing its timeout as SimPy examples do.
    """
    if setup.instances < 100:
        show(ours, ours.model_events)
    for shortcut in (True, False) if both else (True,):
        theirs = min((run_simpy(setup, shortcut) for _ in range(repeat)), key=lambda run: run.cpu)
        show(theirs, ours.model_events)
        # CPU time: the wall clock of a shared machine counts other people's work too.
        print(
            f"   => spofkit.sim does {theirs.cpu / ours.cpu:.2f}x the model events per CPU second of this SimPy "
            f"model (wall: {theirs.wall / ours.wall:.2f}x)"
        )


def interleaved(setup: Setup, rounds: int) -> None:
    """``rounds`` more runs of each model, one after the other, and the median of their ratios.

    On a shared machine one pair of runs can land on a busy or a quiet minute; alternating the two models and
    taking the median of the ratios, each measured on neighbouring minutes, is what the figures should come from.
    """
    ratios, ours_cpu, theirs_cpu = [], [], []
    for index in range(rounds):
        ours = run_spofkit(setup)
        gc.collect()
        theirs = run_simpy(setup)
        gc.collect()
        ratios.append(theirs.cpu / ours.cpu)
        ours_cpu.append(ours.cpu)
        theirs_cpu.append(theirs.cpu)
        print(
            f"   round {index + 1}: spofkit.sim {ours.cpu:.2f} s CPU ({ours.cpu / setup.requests * 1e6:.1f} µs per "
            f"request), SimPy {theirs.cpu:.2f} s: {ratios[-1]:.2f}x"
        )
    print(
        f"   median of {rounds} rounds: spofkit.sim {statistics.median(ours_cpu):.2f} s CPU, SimPy "
        f"{statistics.median(theirs_cpu):.2f} s, {statistics.median(ratios):.2f}x "
        f"(range {min(ratios):.2f}–{max(ratios):.2f}x)"
    )


# --- options ----------------------------------------------------------------------------------------------------

# The most requests of one part: what one simulated run sends at most (ten times the default million). Every request
# keeps a record until the report is built, so more is gigabytes of memory and tens of minutes of CPU (twice over,
# with SimPy): a typo, not a run.
MAX_REQUESTS = MAX_RUN_REQUESTS
# The highest rate (requests a second): a thousand times the default. Above it a million requests last less than a
# tenth of a second of lab time, every instance overloaded: not the scenario this script measures.
MAX_RATE = 10_000_000.0
# Each round is parts 1 and 2 once more (minutes each): beyond this many it is hours, not a median.
MAX_ROUNDS = 50
# The day of part 3 (its lab time is fixed).
DAY = 86_400.0


def whole_number(low: int, high: int, why: str = "") -> Callable[[str], int]:
    """An argparse ``type``: a whole number ``low..high``, else argparse's one-line error naming the option.

    ``1e6`` and ``1_000_000`` are taken as well as ``1000000``: that is how a learner writes a million. ``why``,
    if given, says where the range comes from.
    """
    wanted = f"must be a whole number {low:,}..{high:,}{f' ({why})' if why else ''}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                number = math.nan
            if not number.is_integer():  # not a number at all, inf, nan or 2.5
                raise argparse.ArgumentTypeError(f"{wanted}, got {text!r}") from None
            value = int(number)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{wanted}, got {text!r}")
        return value

    return parse


def positive_number(high: float, unit: str) -> Callable[[str], float]:
    """An argparse ``type``: a finite number above 0 and at most ``high``; ``unit`` says of what."""
    wanted = f"must be a number of {unit} > 0 and <= {high:,.0f}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        # 0 would divide by zero, a negative rate or inf would be a run of no or negative length, nan compares false
        if not (math.isfinite(value) and 0 < value <= high):
            raise argparse.ArgumentTypeError(f"{wanted}, got {text!r}")
        return value

    return parse


def strategy_name(text: str) -> str:
    """An argparse ``type``: one of spofkit's strategies (spelt as spofkit takes them: any case, ``-`` for ``_``)."""
    try:
        return str(make_strategy(text).name)  # the canonical name, for the printed header and the child's command
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"unknown strategy {text!r}; choose from {', '.join(strategy_names())}"
        ) from None


def day_interval(text: str) -> float:
    """An argparse ``type``: the day's health check interval, as spofkit's :class:`HealthSettings` takes it."""
    value = positive_number(DAY, "seconds")(text)
    try:
        day_health(value)  # HealthSettings' own lower bound (a check every nanosecond would spin)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return value


def check_together(parser: argparse.ArgumentParser, options: argparse.Namespace) -> None:
    """Refuse options, each fine alone, that together ask for a run the simulator would refuse.

    It would refuse with a traceback, and part 3's only after parts 1 and 2 had run for minutes. The number of
    requests and the rate give the lab time (requests / rate), and health checks go on all that time: a million
    requests at one a second is eleven days of checks of every instance.
    """
    seconds = options.requests / options.rate
    interval = HealthSettings().interval  # parts 1 and 2 check as SimLab does by default
    events = model_events(seconds, options.rate, options.instances / interval)
    if events > MAX_RUN_EVENTS:
        parser.error(
            f"--requests {options.requests:,} at --rate {options.rate:g} is {seconds:,.0f} s of lab time, with "
            f"{options.instances} instances checked every {interval:g} s: about {events:,.0f} model "
            f"events, more than the {MAX_RUN_EVENTS:,} one simulator run takes; raise --rate or lower --requests"
        )
    if options.skip_day:
        return
    events = model_events(DAY, options.day_rate, options.day_instances / options.day_health_interval)
    if events > MAX_RUN_EVENTS:
        parser.error(
            f"--day-rate {options.day_rate:g} with --day-instances {options.day_instances} checked every "
            f"--day-health-interval {options.day_health_interval:g} s is about {events:,.0f} model events in the "
            f"day, more than the {MAX_RUN_EVENTS:,} one simulator run takes; lower the rate or the instances, or "
            "check less often"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    requests = whole_number(1, MAX_REQUESTS)
    parser.add_argument("--requests", type=requests, default=1_000_000, help="requests of part 1 (and 2)")
    faults_need = f"the four faults go to {', '.join(FAULTED)}, and a is left to serve"
    parser.add_argument(
        "--instances",
        type=whole_number(MIN_INSTANCES, MAX_INSTANCES, faults_need),
        default=100,
        help=f"instances of part 1 (and 2): at least {MIN_INSTANCES}, as {faults_need}",
    )
    parser.add_argument("--rate", type=positive_number(MAX_RATE, "requests a second"), default=10_000.0)
    parser.add_argument(
        "--strategy",
        type=strategy_name,
        default="power_of_two",
        metavar="NAME",
        help=f"one of {', '.join(strategy_names())}",
    )
    parser.add_argument("--seed", type=whole_number(0, MAX_SEED), default=1)
    parser.add_argument("--skip-simpy", action="store_true")
    parser.add_argument("--skip-day", action="store_true")
    parser.add_argument(
        "--small-requests", type=requests, default=100_000, help="requests of the 5-instance comparison"
    )
    parser.add_argument("--day-instances", type=whole_number(1, MAX_INSTANCES), default=1000)
    parser.add_argument("--day-rate", type=positive_number(MAX_RATE, "requests a second"), default=1.0)
    parser.add_argument("--day-health-interval", type=day_interval, default=30.0, metavar="SECONDS")
    parser.add_argument("--no-gc", action="store_true", help="switch the cyclic garbage collector off meanwhile")
    parser.add_argument(
        "--simpy-deferred",
        action="store_true",
        help="put off full garbage collections in the SimPy model's runs too (spofkit.sim's scheduler always does)",
    )
    parser.add_argument(
        "--rounds",
        type=whole_number(0, MAX_ROUNDS),
        default=0,
        help="then N interleaved rounds of parts 1 and 2, and their median",
    )
    parser.add_argument(
        "--compiled",
        type=Path,
        metavar="DIR",
        help="1b: part 1 from the source and from the mypyc-compiled copy in DIR (built if missing or stale)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # part 1 only, figures as JSON
    options = parser.parse_args(argv)
    check_together(parser, options)
    if options.no_gc:
        gc.disable()
    global SIMPY_DEFERRED
    SIMPY_DEFERRED = options.simpy_deferred
    setup = Setup(
        options.instances,
        options.requests,
        options.rate,
        options.strategy,
        Capacity(concurrency=16, queue=64, work_ms=5.0, spread_ms=2.0),
        options.seed,
    )
    if options.child:
        run = run_spofkit(setup)
        figures = {"cpu": run.cpu, "wall": run.wall, "digest": run.digest, "compiled": compiled_in_use()}
        print(json.dumps(figures))
        return 0
    print(
        f"Python {sys.version.split()[0]}; {setup.requests:,} requests at {setup.rate:g}/s over "
        f"{setup.instances} instances ({setup.strategy}; 16 workers, queue 64, work 5 ± 2 ms each), "
        f"faults: {', '.join(f'{k} {n} at {seconds_text(a)}' for a, n, k, _ in setup.faults())}"
    )
    print(f"\n== 1. spofkit's simulator{' (compiled copy)' if compiled_in_use() else ''} ==")
    ours = run_spofkit(setup)
    show(ours, ours.model_events)
    print("   policy cost per call at this pool size (µs), and at 3 instances:")
    large, small = policy_costs(setup.instances, setup.strategy), policy_costs(3, setup.strategy)
    for name, cost in large.items():
        print(f"     {name:<52} {cost:8.1f}   ({small[name]:.1f} at 3)")
    per_request = ours.cpu / setup.requests * 1e6
    print(
        f"   all in all     {per_request:.1f} µs of CPU per request; of that the policy's request cycle "
        f"{large['one request: new_request, begin, answered, finish']:.1f} µs"
    )
    print(f"   {goal_line(setup.requests, ours.cpu, 'compiled copy' if compiled_in_use() else 'source')}")
    if options.compiled is not None:
        print("\n== 1b. the same run, from the source and compiled with mypyc (bench/compile_sim.py) ==")
        pure_and_compiled(setup, options.compiled.resolve(), max(1, options.rounds))
    if not options.skip_simpy:
        try:
            import simpy  # noqa: F401
        except ImportError:
            print("\n(SimPy is not installed: pip install simpy — it is in spofkit's dev extras)")
        else:
            print("\n== 2. the same scenario as a SimPy model ==")
            compare(ours, setup)
            if options.rounds > 0:
                interleaved(setup, options.rounds)
            # 2,000 req/s: within what the one untouched instance of five can serve once the other four broke.
            small = Setup(5, options.small_requests, 2000.0, setup.strategy, setup.capacity, setup.seed)
            print(
                f"\n== 2b. the same, over {small.instances} instances ({small.requests:,} requests): "
                "where the driver, not the policy, is most of the work =="
            )
            # Short runs on a shared machine: the best of three of each, so that neither pays for a neighbour.
            best = min((run_spofkit(small) for _ in range(3)), key=lambda run: run.cpu)
            compare(best, small, repeat=3, both=True)
    if not options.skip_day:
        run_day(options.day_instances, options.day_rate, options.day_health_interval, options.seed)
    return 0


if __name__ == "__main__":
    random.seed(0)  # nothing here uses the global generator; fixed anyway, so a stray use is repeatable
    sys.exit(main())
