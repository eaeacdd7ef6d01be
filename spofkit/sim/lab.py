"""The simulated lab: the :class:`spofkit.lab.Lab` interface, with virtual time and modelled instances.

A :class:`SimLab` is built like a lab and driven like one — the same commands through :meth:`SimLab.apply`, the
same :class:`~spofkit.status.LabStatus`, the same event stream and the same :class:`~spofkit.report.Report` from
:meth:`SimLab.run_load` — so reports, plots, widgets and exercises work on either::

    lab = await SimLab.start(instances=3, seed=7)          # or SimLab(3, seed=7) outside asyncio
    report = await lab.run_load(rate=200, duration=5, faults=[(1.0, "b", "crash", {})])
    print(report.to_text(), lab.digest.hexdigest())

What is different is time. Nothing waits: five seconds of load take as long as their events take to compute,
and time moves only while the lab runs (:meth:`run_load`, :meth:`advance`, or a command that takes time such as
removing an instance). Everything random comes from streams seeded by ``seed``, so a run can be replayed, and
``lab.digest`` fingerprints its whole event log. It adds what one machine cannot hold: instances with capacity
(:class:`~spofkit.sim.capacity.Capacity`), random failures of instances and zones
(:mod:`spofkit.sim.failures`), hundreds of instances.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import operator
import string
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

from spofkit.capacity import lab_capacity
from spofkit.commands import (
    AddInstance,
    BalancerFault,
    BalancerRecover,
    BalancerRestart,
    ChangeSettings,
    Command,
    CommandError,
    Deploy,
    InjectFault,
    Recover,
    RemoveInstance,
    Restart,
    SetLoad,
    SetStrategy,
    UnknownName,
)
from spofkit.events import PER_REQUEST_EVENTS, Clock, DeployStep, Event, EventBus, SettingChanged
from spofkit.faults import Crash, make_fault
from spofkit.loadgen import RequestRecord
from spofkit.policy import (
    EjectionSettings,
    HealthSettings,
    RetrySettings,
    Strategy,
    check_switch,
    protection,
    rng_for,
)
from spofkit.policy._checks import MIN_INTERVAL, seconds
from spofkit.policy.deploy import DRAIN, READY, RESTART, WARM_UP, ReadyEverywhere, deploy_plan
from spofkit.policy.deploy import Step as DeployPlanStep
from spofkit.report import Report, build_report
from spofkit.sim.balancer import SimBalancer
from spofkit.sim.capacity import Capacity
from spofkit.sim.client import OpenLoop, positive
from spofkit.sim.digest import EventDigest
from spofkit.sim.failures import FailureGroup, FailureProcess, cause_rng, causes_of
from spofkit.sim.frontdoor import FrontDoor, SingleFrontDoor
from spofkit.sim.instance import InstanceLoad, SimInstance
from spofkit.sim.keep import KeepAllBut
from spofkit.sim.scheduler import SimScheduler
from spofkit.status import CRASHED, InstanceFacts, InstanceStatus, LabStatus

__all__ = ["SimLab"]

ScheduledFault = tuple[float, str, str, dict[str, Any]]
# Far more than one machine could run live, few enough that a typo (instances = 1e6) is caught.
MAX_INSTANCES = 10_000
BACKGROUND_LOAD_MAX_SECONDS = 3600.0
BACKGROUND_LOAD_KEEP_LAST = 10_000
READY_TIMEOUT = 30.0


def instance_names() -> Iterator[str]:
    """a, b, … z, aa, ab, … zz, aaa, …: the live lab's names, continued for large simulated labs."""
    for length in itertools.count(1):
        for letters in itertools.product(string.ascii_lowercase, repeat=length):
            yield "".join(letters)


_BY_ID = operator.attrgetter("id")


def _check_lab_arguments(
    *,
    slow_start: object,
    seed: object,
    balancers: object,
    advert_interval: object,
    preempt: object,
    fencing: object,
    failures: object,
    groups: object,
    history_size: object,
) -> None:
    """SimLab's arguments other than the instances, the protections and the capacity: each refused by name."""
    seconds("slow_start", slow_start, inclusive=True)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a whole number >= 0, got {seed!r}")
    if isinstance(balancers, bool) or balancers not in (1, 2) or not isinstance(balancers, int):
        raise ValueError(f"balancers must be 1 or 2 (a pair), got {balancers!r}")
    seconds("advert_interval", advert_interval, minimum=MIN_INTERVAL, inclusive=True)
    for name, flag in (("preempt", preempt), ("fencing", fencing)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be True or False, got {flag!r}")
    if balancers == 1 and (fencing or not preempt):
        setting = "fencing=True" if fencing else "preempt=False"
        raise ValueError(f"{setting} is a setting of a pair of balancers: give balancers=2 with it")
    if failures is not None and not isinstance(failures, FailureProcess):
        raise TypeError(f"failures must be a FailureProcess(mtbf, mttr) or None, got {failures!r}")
    if isinstance(groups, (str, bytes)) or not isinstance(groups, (list, tuple)):
        raise TypeError(f"groups must be a list of FailureGroup, got {groups!r}")
    names: set[str] = set()
    for group in groups:
        if not isinstance(group, FailureGroup):
            raise TypeError(f"groups must be a list of FailureGroup, got {group!r} in it")
        if group.name in names:
            raise ValueError(f"groups: two groups are named {group.name!r}; each needs a name of its own")
        names.add(group.name)
    if isinstance(history_size, bool) or not isinstance(history_size, int) or not 0 <= history_size <= 10_000_000:
        raise ValueError(f"history_size must be a whole number 0..10000000 (events kept), got {history_size!r}")


# The load options a simulated client takes (besides rate, duration, faults, max_requests, on_progress, commands).
SIM_LOAD_OPTIONS = ("method", "path", "timeout", "arrivals", "retry", "keep_last")
# The live load generator's options the simulator has no use for: it moves no bytes and runs no sockets.
LIVE_ONLY_LOAD_OPTIONS = ("body", "headers", "client_retry_for", "max_in_flight", "max_lateness", "url", "entry_urls")


def _check_load_options(options: Mapping[str, Any]) -> None:
    """Name a load option the simulator does not take, and why (not OpenLoop's TypeError about its __init__)."""
    for name in options:
        if name in LIVE_ONLY_LOAD_OPTIONS:
            raise TypeError(
                f"run_load: {name!r} is an option of the live lab's load generator; a simulated client sends no "
                f"bytes over no sockets (it takes {', '.join(SIM_LOAD_OPTIONS)})"
            )
        if name not in SIM_LOAD_OPTIONS:
            raise TypeError(f"run_load: no option {name!r} (a simulated load takes {', '.join(SIM_LOAD_OPTIONS)})")


# The most model events (timers) one run or advance may ask for: about half an hour of CPU at 10 µs an event.
MAX_RUN_EVENTS = 200_000_000


def model_events(seconds: float, rate: float, probes_per_second: float) -> float:
    """About how many model events ``seconds`` of lab time ask for: two a request (its arrival and its answer) and
    one a health check. What MAX_RUN_EVENTS is held against (``bench/sim_bench.py`` checks its options by it too)."""
    return seconds * (2 * rate + probes_per_second)


# The memory a simulated request takes while the report is built (its record and what the report makes of it),
# measured: about 370 bytes at half a million requests.
BYTES_PER_REQUEST = 400
# The most requests one run may send: every request is recorded (about 4 GB at this many, and a few minutes of
# CPU). A run beyond it would swap a laptop for an hour, silently.
MAX_RUN_REQUESTS = 10_000_000
# What the messages say of that limit.
MAX_RUN_MEMORY = f"each is recorded: about {MAX_RUN_REQUESTS * BYTES_PER_REQUEST / 1e9:.0f} GB of memory at that many"


class SimLab:
    """Instances, balancer(s) and load in virtual time, behind the same facade as :class:`spofkit.lab.Lab`."""

    def __init__(
        self,
        instances: int = 3,
        *,
        strategy: str | Strategy = "round_robin",
        health: HealthSettings | bool | None = HealthSettings(),  # noqa: B008 - frozen, so sharing is safe
        retries: RetrySettings | bool | None = RetrySettings(),  # noqa: B008
        ejection: EjectionSettings | bool | None = EjectionSettings(),  # noqa: B008
        capacity: Capacity | None = None,
        work_time: float = 0.0,
        backups: int = 0,
        slow_start: float = 0.0,
        seed: int = 0,
        balancers: int = 1,
        pair: str | None = None,
        advert_interval: float = 0.2,
        preempt: bool = True,
        fencing: bool = False,
        failures: FailureProcess | None = None,
        groups: Sequence[FailureGroup] = (),
        history_size: int = 5000,
    ) -> None:
        if isinstance(instances, bool) or not isinstance(instances, int) or not 1 <= instances <= MAX_INSTANCES:
            raise ValueError(f"instances must be a whole number 1..{MAX_INSTANCES}, got {instances!r}")
        if isinstance(backups, bool) or not isinstance(backups, int) or not 0 <= backups <= MAX_INSTANCES - instances:
            raise ValueError(
                f"backups must be a whole number 0..{MAX_INSTANCES - instances} (instances and backups together at "
                f"most {MAX_INSTANCES}), got {backups!r}"
            )
        capacity = lab_capacity(capacity, work_time)
        _check_lab_arguments(
            slow_start=slow_start,
            seed=seed,
            balancers=balancers,
            advert_interval=advert_interval,
            preempt=preempt,
            fencing=fencing,
            failures=failures,
            groups=groups,
            history_size=history_size,
        )
        health = protection("health", health, HealthSettings)
        retries = protection("retries", retries, RetrySettings)
        ejection = protection("ejection", ejection, EjectionSettings)
        self.seed = seed
        self.capacity = capacity
        # The lab boots before lab time 0 (see below), so it is ready at 0.0: its instances during the health
        # interval before 0, and a pair of balancers early enough to have elected a master by then.
        boot_time = (health or HealthSettings()).interval
        settle = 4 * advert_interval + 0.1 if balancers == 2 else 0.0  # VRRP's master-down interval, and a margin
        self.scheduler = SimScheduler(start=-max(boot_time, settle))
        self.clock = Clock(self.scheduler.now, start=0.0)
        self.events = EventBus(self.clock, history_size=history_size)
        self.digest = EventDigest()
        self.events.subscribe(self.digest)
        self.isolation = "sim"
        self.strategy: str | Strategy = strategy
        self.retries = retries
        self.ejection = ejection
        self.health = health
        self.slow_start = slow_start
        self.health_settings = health or HealthSettings()
        self.retry_settings = retries or RetrySettings()
        self.ejection_settings = ejection or EjectionSettings()
        self.instances: dict[str, SimInstance] = {}
        self.members: dict[str, dict[str, Any]] = {}  # the supervisor's copy: name -> weight, backup
        self.failures = failures
        self.groups = tuple(groups)
        self._names = instance_names()
        self._causes: dict[str, dict[str, None]] = {}  # instance -> causes of failure now active
        self._background: OpenLoop | None = None
        self._deploying = False
        self.records: list[RequestRecord] = []  # the last run_load's, for figures the Report does not give
        self.front: FrontDoor = self._make_front_door(balancers, pair, advert_interval, preempt, fencing)
        # A live lab starts its instances one after another; here they boot at random moments of the health
        # interval before lab time 0, so that their probes are not in lockstep and a fault at a round time falls
        # anywhere in the probe cycle, as it does live. At 0.0 the lab is ready, and a first run starts there.
        boot = rng_for(seed, "boot")
        moments = sorted(boot.uniform(-boot_time, 0.0) for _ in range(instances + backups))
        for index, at in enumerate(moments):
            self.scheduler.run(until=at)
            self._add(None, backup=index >= instances, initially_up=True)
        self.scheduler.run(until=0.0)
        self._start_failures()

    @classmethod
    async def start(cls, instances: int = 3, **options: Any) -> SimLab:
        """``await SimLab.start(...)``: the same call as ``await Lab.start(...)`` (nothing to wait for here)."""
        return cls(instances, **options)

    async def stop(self) -> None:
        """Nothing runs between calls, so there is nothing to stop; here so code written for a Lab works."""
        self.stop_background_load_now()

    async def __aenter__(self) -> SimLab:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # --- the front door --------------------------------------------------------------------------------

    def _make_front_door(
        self, balancers: int, pair: str | None, advert_interval: float, preempt: bool, fencing: bool
    ) -> FrontDoor:
        if balancers == 1 and pair is None:
            return SingleFrontDoor(self._make_balancer)
        from spofkit.sim.pair import make_pair  # only labs with two balancers need it

        return make_pair(
            self, balancers=balancers, mode=pair, advert_interval=advert_interval, preempt=preempt, fencing=fencing
        )

    def _make_balancer(self, name: str) -> SimBalancer:
        """A balancer configured as the lab says, with every member the lab has (a restarted one, too)."""
        balancer = SimBalancer(
            self.scheduler,
            self.events,
            self.instances,
            name=name,
            strategy=self.strategy,
            retries=self.retries,
            ejection=self.ejection,
            health=self.health,
            slow_start=self.slow_start,
            seed=self.seed,
        )
        for member, options in self.members.items():
            balancer.add_member(member, **options)
        return balancer

    @property
    def balancer(self) -> SimBalancer:
        """The serving balancer."""
        serving = self.front.serving()
        if serving is None:
            raise RuntimeError("no balancer is serving")
        return serving

    @property
    def balancer_url(self) -> str:
        return "sim://service"

    # --- reading -----------------------------------------------------------------------------------------

    def now(self) -> float:
        return self.scheduler.now()

    @property
    def instance_names(self) -> list[str]:
        return list(self.instances)

    def status(self) -> LabStatus:
        balancers = self.front.statuses()
        holding = [b for b in balancers if b.address is not None and b.state != "crashed"]
        alive = [b for b in balancers if b.state != "crashed"]
        serving = (holding or alive or balancers)[0]
        rows = []
        for view in serving.members:
            facts = InstanceFacts.of_instance(view.name, self.instances.get(view.name))
            rows.append(InstanceStatus.of(facts, view))
        background = self._background
        return LabStatus(
            at=self.now(),
            strategy=serving.strategy,
            retries=self.retries is not None,
            health_checks=self.health is not None,
            ejection=self.ejection is not None,
            balancer_url=self.balancer_url,
            load_rate=background.rate if background and not background.finished else None,
            load_paused=bool(background and background.paused),
            instances=rows,
            balancers=balancers,
        )

    def instance_loads(self) -> list[InstanceLoad]:
        """Every instance's own gauges now (busy workers, queued requests): what the servers would report.

        ``status()`` is the balancers' view (what *they* have in flight); this is the instances' side, where an
        attempt a balancer gave up on still holds its worker.
        """
        return [instance.load() for instance in self.instances.values()]

    # --- commands ------------------------------------------------------------------------------------------

    async def apply(self, command: Command) -> dict[str, Any]:
        """The same commands as :meth:`spofkit.lab.Lab.apply`, applied at once in virtual time."""
        return self.apply_sync(command)

    def apply_sync(self, command: Command) -> dict[str, Any]:
        """:meth:`apply` for code outside asyncio (scripts, benchmarks, a scenario's schedule)."""
        if isinstance(command, InjectFault):
            fault = make_fault(command.kind, **command.params)
            self._instance(command.instance).inject(fault)
            return {"instance": command.instance, "fault": fault.kind, "params": fault.params()}
        if isinstance(command, Recover):
            self._instance(command.instance).recover()
            return self._row(command.instance)
        if isinstance(command, Restart):
            self._instance(command.instance).restart()
            return self._row(command.instance)
        if isinstance(command, AddInstance):
            name = self._add(command.name, backup=command.backup, weight=command.weight, initially_up=False)
            return {"name": name, **self._row(name)}
        if isinstance(command, RemoveInstance):
            self._remove(command.instance)
            return {"removed": command.instance}
        if isinstance(command, SetStrategy):
            self.strategy = command.strategy
            for balancer in self.front.balancers.values():
                balancer.policy.set_strategy(command.strategy, self.now())
            return {"strategy": self.status().strategy}
        if isinstance(command, ChangeSettings):
            return self._change_settings(command)
        if isinstance(command, SetLoad):
            return self._set_load(command)
        if isinstance(command, BalancerFault):
            self._check_balancer_command(command)
            if command.kind == "crash":
                self.front.crash(command.balancer)
            else:
                self.front.inject(command.balancer, command.kind)
            return self._balancer_row(command.balancer)
        if isinstance(command, BalancerRecover):
            self.front.recover(self._balancer_name(command.balancer))
            return self._balancer_row(command.balancer)
        if isinstance(command, BalancerRestart):
            self.front.restart(self._balancer_name(command.balancer))
            return self._balancer_row(command.balancer)
        if isinstance(command, Deploy):
            return self._deploy(command)
        raise CommandError("command", f"a simulated lab cannot apply {type(command).__name__}")

    def _check_balancer_command(self, command: Command) -> None:
        """A balancer command's balancer, and a fault this front door can take: refused before a run, not in it.

        (The balancers of a lab do not change while it runs; its instances may, so those are checked when due.)
        """
        if isinstance(command, (BalancerFault, BalancerRecover, BalancerRestart)):
            self._balancer_name(command.balancer)
        if isinstance(command, BalancerFault) and command.kind != "crash":
            try:
                self.front.check_fault(command.kind)
            except ValueError as error:
                raise CommandError("kind", str(error), status=409) from None

    def _instance(self, name: str) -> SimInstance:
        try:
            return self.instances[name]
        except KeyError:
            known = sorted(self.instances)
            raise UnknownName("name", f"no instance named {name!r}; known: {known}") from None

    def _balancer_name(self, name: str) -> str:
        if name not in self.front.balancers:
            raise UnknownName("balancer", f"no balancer named {name!r}; known: {sorted(self.front.balancers)}")
        return name

    def _row(self, name: str) -> dict[str, Any]:
        return dataclasses.asdict(self.status().instance(name))

    def _balancer_row(self, name: str) -> dict[str, Any]:
        status = self.status().balancer(name)
        return {k: v for k, v in dataclasses.asdict(status).items() if k != "members"}

    def _add(self, name: str | None, *, backup: bool = False, weight: int = 1, initially_up: bool = False) -> str:
        if len(self.instances) >= MAX_INSTANCES:
            raise CommandError("name", f"a simulated lab holds at most {MAX_INSTANCES} instances", 409)
        if name is None:
            name = next(n for n in self._names if n not in self.instances)
        if name in self.instances:
            raise CommandError("name", f"instance name {name!r} is already in use", status=409)
        instance = SimInstance(
            name,
            self.scheduler,
            self.events.publish,
            capacity=self.capacity,
            dice=rng_for(self.seed, f"instance/{name}"),
            work_rng=rng_for(self.seed, f"work/{name}"),
        )
        instance.start()
        self.instances[name] = instance
        self.members[name] = {"weight": weight, "backup": backup}
        for balancer in self.front.balancers.values():
            balancer.add_member(name, weight=weight, backup=backup, initially_up=initially_up)
        return name

    def _remove(self, name: str, drain_timeout: float = 10.0) -> None:
        instance = self._instance(name)
        self.members.pop(name, None)
        balancers = list(self.front.balancers.values())
        drained: dict[str, None] = {}
        for balancer in balancers:
            balancer.drain(name, functools.partial(drained.setdefault, balancer.name, None))
        # Draining takes time: the lab runs (load, probes, faults go on) until the requests in flight are done.
        self.scheduler.run_until(lambda: len(drained) == len(balancers), self.now() + drain_timeout)
        for balancer in balancers:
            balancer.remove_member(name)
        self._causes.pop(name, None)
        instance.stop()
        del self.instances[name]

    def _change_settings(self, command: ChangeSettings) -> dict[str, Any]:
        now = self.now()
        if command.retries is not None:
            self.retries = self.retry_settings if command.retries else None
            for balancer in self.front.balancers.values():
                balancer.policy.set_retries(self.retries, now)
        if command.ejection is not None:
            self.ejection = self.ejection_settings if command.ejection else None
            for balancer in self.front.balancers.values():
                balancer.policy.set_ejection(self.ejection, now)
        if command.health_checks is not None and command.health_checks != (self.health is not None):
            self.health = self.health_settings if command.health_checks else None
            for balancer in self.front.balancers.values():
                balancer.set_health(self.health)
        return {
            "retries": self.retries is not None,
            "health_checks": self.health is not None,
            "ejection": self.ejection is not None,
        }

    # --- the same, as methods for notebooks and scripts ----------------------------------------------------

    async def inject(self, name: str, kind: str, **params: Any) -> None:
        self.apply_sync(InjectFault(name, kind, params))

    async def recover(self, name: str) -> None:
        self.apply_sync(Recover(name))

    async def restart(self, name: str) -> None:
        self.apply_sync(Restart(name))

    async def add_instance(
        self, name: str | None = None, *, backup: bool = False, weight: int = 1, initially_up: bool = False
    ) -> str:
        AddInstance(name, backup, weight)  # the command's checks of the name, backup and weight
        if not isinstance(initially_up, bool):
            raise TypeError(f"initially_up must be True or False, got {initially_up!r}")
        return self._add(name, backup=backup, weight=weight, initially_up=initially_up)

    async def remove_instance(self, name: str, *, drain_timeout: float = 10.0) -> None:
        RemoveInstance(name)
        self._remove(name, seconds("drain_timeout", drain_timeout, inclusive=True))

    def set_strategy(self, strategy: str | Strategy) -> None:
        self.apply_sync(SetStrategy(strategy))

    def set_retries(self, enabled: bool | RetrySettings) -> None:
        check_switch("set_retries", enabled, RetrySettings)
        if isinstance(enabled, RetrySettings):
            self.retry_settings, enabled = enabled, True
        self.retries = self.retry_settings if enabled else None
        for balancer in self.front.balancers.values():
            balancer.policy.set_retries(self.retries, self.now())

    def set_ejection(self, enabled: bool | EjectionSettings) -> None:
        check_switch("set_ejection", enabled, EjectionSettings)
        if isinstance(enabled, EjectionSettings):
            self.ejection_settings, enabled = enabled, True
        self.ejection = self.ejection_settings if enabled else None
        for balancer in self.front.balancers.values():
            balancer.policy.set_ejection(self.ejection, self.now())

    async def set_health_checks(self, enabled: bool | HealthSettings) -> None:
        check_switch("set_health_checks", enabled, HealthSettings)
        if isinstance(enabled, HealthSettings):
            self.health_settings = enabled
            self.health = enabled
            for balancer in self.front.balancers.values():
                balancer.set_health(enabled)
            return
        self.apply_sync(ChangeSettings(health_checks=bool(enabled)))

    # --- time and load -----------------------------------------------------------------------------------

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass (the background load, probes and failures go on)."""
        self.advance_sync(seconds)

    def advance_sync(self, seconds: float) -> None:
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, (int, float))
            or not math.isfinite(seconds)
            or not seconds >= 0
        ):
            raise ValueError(f"seconds must be a finite number >= 0, got {seconds!r}")
        self._check_run_size(seconds)
        self.scheduler.run(until=self.now() + seconds)

    def _check_run_size(self, seconds: float, rate: float = 0.0) -> None:
        """Refuse a call that asks for more than MAX_RUN_EVENTS model events (hours of CPU): surely a mistake.

        The estimate counts two events a request (its arrival and its answer), the background load's too, and
        every balancer's health checks of every instance.
        """
        background = self._background
        if background is not None and not background.finished:
            rate += background.rate
        probes = 0.0
        if self.health is not None:
            probes = len(self.instances) * len(self.front.balancers) / self.health.interval
        events = model_events(seconds, rate, probes)
        if events > MAX_RUN_EVENTS:
            checks = f" and {probes:,.0f} health checks a second" if probes else ""
            raise ValueError(
                f"{seconds:g} s of lab time at {rate:g} requests a second{checks} would be about {events:.2g} model "
                f"events; one call runs at most {MAX_RUN_EVENTS:,} (about half an hour of CPU): shorten the run "
                "or lower the rate"
            )

    async def run_load(
        self,
        rate: float = 100.0,
        duration: float = 5.0,
        *,
        faults: Sequence[ScheduledFault] = (),
        max_requests: int | None = None,
        on_progress: Callable[[float], None] | None = None,
        **options: Any,
    ) -> Report:
        """:meth:`spofkit.lab.Lab.run_load` in virtual time: the same arguments, the same Report."""
        return self.run_load_sync(
            rate, duration, faults=faults, max_requests=max_requests, on_progress=on_progress, **options
        )

    def run_load_sync(
        self,
        rate: float = 100.0,
        duration: float = 5.0,
        *,
        faults: Sequence[ScheduledFault] = (),
        max_requests: int | None = None,
        on_progress: Callable[[float], None] | None = None,
        commands: Sequence[tuple[float, Command]] = (),
        **options: Any,
    ) -> Report:
        """:meth:`run_load` for code outside asyncio. ``commands``: ``(at, command)`` applied during the run.

        ``options`` are the client's: ``method``, ``path``, ``timeout`` (how long a client waits, 5 s),
        ``arrivals`` (``uniform``, the live client's even spacing, or ``poisson``).
        """
        self._check_run_size(positive("duration", duration), positive("rate", rate))
        requests = rate * duration
        if isinstance(max_requests, int) and not isinstance(max_requests, bool):
            requests = min(requests, max_requests)
        if requests > MAX_RUN_REQUESTS:
            raise ValueError(
                f"{duration:g} s at {rate:g} requests a second would send about {requests:,.0f} requests; one run "
                f"sends at most {MAX_RUN_REQUESTS:,} ({MAX_RUN_MEMORY}): shorten "
                "the run or lower the rate (availability over a long time needs few requests a second)"
            )
        if isinstance(faults, (str, bytes)) or not isinstance(faults, (list, tuple)):
            raise TypeError(f"faults must be a list of (at, instance, kind, params), got {faults!r}")
        for index, fault in enumerate(faults):
            if not isinstance(fault, (list, tuple)) or len(fault) != 4 or not isinstance(fault[3], Mapping):
                raise ValueError(
                    f"faults[{index}] must be (at, instance, kind, params), e.g. (1.0, 'b', 'crash', {{}}), "
                    f"got {fault!r}"
                )
            at, name, kind, params = fault
            self._instance(name)
            make_fault(kind, **params)  # validate before any load is sent
            if isinstance(at, bool) or not isinstance(at, (int, float)) or not 0 <= at <= duration:
                raise ValueError(f"fault time {at!r} must be a number within the run (0..{duration})")
        if isinstance(commands, (str, bytes)) or not isinstance(commands, (list, tuple)):
            raise TypeError(f"commands must be a list of (at, command), got {commands!r}")
        for index, timed in enumerate(commands):
            if not isinstance(timed, (list, tuple)) or len(timed) != 2 or not isinstance(timed[1], Command):
                raise ValueError(f"commands[{index}] must be (at, command), e.g. (1.0, Recover('b')), got {timed!r}")
            at = timed[0]
            if isinstance(at, bool) or not isinstance(at, (int, float)) or not 0 <= at <= duration:
                raise ValueError(f"command time {at!r} must be a number within the run (0..{duration})")
            self._check_balancer_command(timed[1])
        if on_progress is not None and not callable(on_progress):
            raise TypeError(f"on_progress must be a function of the share done (0..1), got {on_progress!r}")
        _check_load_options(options)
        started = self.now()
        seen: list[Event] = []

        # The report reads faults and detections, not requests.
        unsubscribe = self.events.subscribe(KeepAllBut(frozenset(PER_REQUEST_EVENTS), seen))
        pending = {"load": 1, "timed": len(faults) + len(commands)}

        def one_done(what: str) -> None:
            pending[what] -= 1
            if not any(pending.values()):
                self.scheduler.stop()

        load = OpenLoop(
            self.scheduler,
            self.front.deliver,
            self.events.publish,
            rate=rate,
            duration=duration,
            rng=rng_for(self.seed, f"arrivals/{started!r}"),
            max_requests=max_requests,
            on_done=lambda: one_done("load"),
            **options,
        )

        def apply_then_count(command: Command) -> None:
            self.apply_sync(command)
            one_done("timed")

        timed = [(at, InjectFault(name, kind, params)) for at, name, kind, params in faults] + list(commands)
        for at, command in timed:
            self.scheduler.call_at(started + at, functools.partial(apply_then_count, command))
        if on_progress is not None:
            self._report_progress(on_progress, started, duration, load)
        try:
            load.start()
            self.scheduler.run()
        finally:
            unsubscribe()
        if on_progress is not None:
            on_progress(1.0)
        self.records = sorted(load.records, key=_BY_ID)
        return build_report(self.records, seen, simulated=True)

    def _report_progress(
        self, on_progress: Callable[[float], None], started: float, duration: float, load: OpenLoop
    ) -> None:
        def tick() -> None:
            on_progress(min(1.0, (self.now() - started) / duration))
            if not load.finished:
                self.scheduler.call_later(duration / 20, tick)

        self.scheduler.call_at(started, tick)

    def _set_load(self, command: SetLoad) -> dict[str, Any]:
        if command.rate == 0:
            self.stop_background_load_now()
        elif command.rate is not None:
            if self._background is None or self._background.finished:
                self._background = OpenLoop(
                    self.scheduler,
                    self.front.deliver,
                    self.events.publish,
                    rate=command.rate,
                    duration=BACKGROUND_LOAD_MAX_SECONDS,
                    keep_last=BACKGROUND_LOAD_KEEP_LAST,
                    rng=rng_for(self.seed, f"background/{self.now()!r}"),
                )
                self._background.start()
            else:
                self._background.set_rate(command.rate)
            self.events.publish(SettingChanged(self.now(), "load_rate", command.rate))
        if command.paused is not None and self._background is not None:
            self._background.paused = command.paused
            self.events.publish(SettingChanged(self.now(), "load_paused", command.paused))
        status = self.status()
        return {"load_rate": status.load_rate, "load_paused": status.load_paused}

    def stop_background_load_now(self) -> None:
        if self._background is not None:
            self._background.stop()

    # The live lab's background-load methods (the TUI's and the widgets'), over the same SetLoad command: its checks
    # and its events. The load runs as the lab's virtual time advances (advance, run_load).

    def start_background_load(self, rate: float = 50.0, **options: Any) -> OpenLoop:
        """:meth:`spofkit.lab.Lab.start_background_load`: a steady load at ``rate`` until stopped (at most an hour
        of lab time). A simulated one takes no other option (it sends no bytes)."""
        if options:
            raise TypeError(f"start_background_load: a simulated load takes only rate, got {sorted(options)}")
        if isinstance(rate, (int, float)) and not isinstance(rate, bool) and rate == 0:
            raise CommandError("rate", "rate must be > 0 to start a load (stop it with stop_background_load)")
        self._set_load(SetLoad(rate=rate))
        assert self._background is not None
        return self._background

    def set_load_rate(self, rate: float) -> None:
        """:meth:`spofkit.lab.Lab.set_load_rate`: the running background load's rate (0 stops it here); with none
        running it is only noted, as live."""
        command = SetLoad(rate=rate)  # its checks
        if self._background is not None and not self._background.finished:
            self._set_load(command)
        else:
            self.events.publish(SettingChanged(self.now(), "load_rate", rate))

    def pause_load(self) -> None:
        self._set_load(SetLoad(paused=True))

    def resume_load(self) -> None:
        self._set_load(SetLoad(paused=False))

    async def stop_background_load(self) -> None:
        self.stop_background_load_now()

    # --- random failures ---------------------------------------------------------------------------------

    def _start_failures(self) -> None:
        """Each cause of failure (an instance's own, a group's) runs its own failure process from now on."""
        for cause, (process, members) in causes_of(list(self.instances), self.failures, self.groups).items():
            missing = [name for name in members if name not in self.instances]
            if missing:
                raise ValueError(f"failure group {cause.split(':', 1)[1]!r} names unknown instances {missing}")
            self._next_failure(cause, members, process.intervals(cause_rng(self.seed, cause), self.now()))

    def _next_failure(self, cause: str, members: tuple[str, ...], draws: Iterator[tuple[float, float]]) -> None:
        fails_at, repaired_at = next(draws)
        self.scheduler.call_at(fails_at, lambda: self._cause_began(cause, members, repaired_at, draws))

    def _cause_began(
        self, cause: str, members: tuple[str, ...], repaired_at: float, draws: Iterator[tuple[float, float]]
    ) -> None:
        for name in members:
            if name in self.instances:
                active = self._causes.setdefault(name, {})
                active[cause] = None
                if len(active) == 1:  # the first cause takes it down; others only keep it down longer
                    self.apply_sync(InjectFault(name, Crash.kind))
        self.scheduler.call_at(repaired_at, lambda: self._cause_ended(cause, members, draws))

    def _cause_ended(self, cause: str, members: tuple[str, ...], draws: Iterator[tuple[float, float]]) -> None:
        for name in members:
            active = self._causes.get(name)
            if active is not None and cause in active:
                del active[cause]
                if not active and name in self.instances:
                    self.apply_sync(Recover(name))
        self._next_failure(cause, members, draws)

    # --- deploys -----------------------------------------------------------------------------------------

    def _deploy(self, command: Deploy) -> dict[str, Any]:
        if command.target == "balancers":
            raise CommandError("target", "a simulated lab deploys instances only (target = 'instances')", 409)
        if self._deploying:
            raise CommandError("deploy", "a deploy is already running; wait for it to finish", status=409)
        self._deploying = True
        try:
            batch = command.batch if command.how == "rolling" else max(1, len(self.instances))
            return self._rolling(batch, command.how)
        finally:
            self._deploying = False

    def _rolling(self, batch: int, how: str) -> dict[str, Any]:
        """:func:`spofkit.policy.deploy.deploy_plan`, carried out in virtual time, as spofkit.deploy does live."""
        started = self.now()
        names = list(self.instances)
        plan = deploy_plan(
            names,
            batch,
            how=how,
            rise=self.health.rise if self.health is not None else None,
            slow_start=self.slow_start,
        )
        for steps in plan:
            members = {name: self.members[name] for name in steps[0].names}
            for step in steps:
                self._carry_out(step, members)
        return {"deployed": names, "batch": batch, "seconds": round(self.now() - started, 3)}

    def _carry_out(self, step: DeployPlanStep, members: dict[str, dict[str, Any]]) -> None:
        """One step of the plan for every instance of the batch (``members``: their pool options, from before)."""
        if step.what == RESTART:
            for name in step.names:
                if step.before:
                    self._step(name, step.what, step.detail)
                self.instances[name].restart()
                if not step.before:
                    self._step(name, step.what, step.detail)
            return
        if step.what == READY:
            self._rejoin(step, members)
            return
        for name in step.names:
            self._step(name, step.what, step.detail)
        if step.what == DRAIN:
            for name in step.names:
                self._remove_from_pool(name)
        elif step.what == WARM_UP:
            self.advance_sync(step.seconds)

    def _rejoin(self, step: DeployPlanStep, members: dict[str, dict[str, Any]]) -> None:
        """Back in the pool, not yet up; then wait until every balancer has seen each pass its checks."""
        running = [status.name for status in self.front.statuses() if status.state != CRASHED]
        ready = ReadyEverywhere(members, running)
        unsubscribe = self.events.subscribe(ready.heard) if step.wait else None
        try:
            for name, options in members.items():
                self.members[name] = options
                for balancer in self.front.balancers.values():
                    balancer.add_member(name, initially_up=not step.wait, **options)
            if not step.wait:
                return
            for name in members:
                self._step(name, step.what, step.detail)
            if not self.scheduler.run_until(lambda: ready.ready, self.now() + READY_TIMEOUT):
                waiting = sorted({name for name, _ in ready.missing})
                raise CommandError("deploy", f"{', '.join(waiting)} did not pass the health checks in time", 409)
        finally:
            if unsubscribe is not None:
                unsubscribe()

    def _remove_from_pool(self, name: str, drain_timeout: float = 10.0) -> None:
        balancers = list(self.front.balancers.values())
        drained: dict[str, None] = {}
        for balancer in balancers:
            balancer.drain(name, functools.partial(drained.setdefault, balancer.name, None))
        self.scheduler.run_until(lambda: len(drained) == len(balancers), self.now() + drain_timeout)
        for balancer in balancers:
            balancer.remove_member(name)

    def _step(self, name: str, what: str, detail: str) -> None:
        self.events.publish(DeployStep(self.now(), name, what, detail))
