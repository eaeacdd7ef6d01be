"""The Lab: one object that sets up a whole experiment.

A lab is N service instances, a health checker watching them and a balancer in front, all on 127.0.0.1, all
publishing to one event bus. Lessons, the TUI, the CLI and the tests drive experiments through it::

    lab = await Lab.start(instances=3)              # in a notebook cell, or any asyncio code
    report = await lab.run_load(rate=200, duration=5, faults=[(1.0, "b", "crash", {})])
    print(report.to_text())
    await lab.stop()

Switch a protection off (``health=None``, ``retries=None``, ``ejection=None``) to see what it was protecting
against. ``capacity=Capacity(concurrency=2, queue=4, work_ms=50)`` gives every instance that many workers, that
queue and that work (beyond the queue: 503 at once), so overload is real too; ``work_time=0.05`` is fixed work with
no limit. ``isolation="process"`` runs every instance — and every balancer — as its own OS process, so a crash is a
real ``kill -9``. ``balancers=2`` puts a redundant pair at the front door (:mod:`spofkit.frontdoor`):
``pair="active-passive"`` (one serves, the other takes the address over by VRRP's rules) or ``"active-active"``.

The lab is the *supervisor*: it owns the instances, the balancers and (in ``spofkit serve``) the admin API, so
killing any balancer leaves the instances and the control panel running.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import random
import string
import weakref
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

from spofkit import deploy
from spofkit.balancer import Balancer
from spofkit.balancer_node import BalancerNode
from spofkit.capacity import Capacity, lab_capacity
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
from spofkit.events import Clock, Event, EventBus, SettingChanged
from spofkit.failover import EjectionSettings, RetrySettings
from spofkit.faults import make_fault
from spofkit.frontdoor import Configuration, FrontDoorGroup
from spofkit.health import HealthSettings
from spofkit.isolation import ISOLATIONS, make_instance
from spofkit.loadgen import LoadGenerator
from spofkit.policy import check_switch, protection
from spofkit.policy._checks import seconds
from spofkit.proxy.limits import ProxyLimits
from spofkit.report import Report, build_report
from spofkit.status import InstanceFacts, InstanceStatus, LabStatus
from spofkit.strategies import Strategy

__all__ = ["InstanceStatus", "Lab", "LabStatus", "ScheduledFault"]

# (seconds after the run starts, instance name, fault kind, fault parameters)
ScheduledFault = tuple[float, str, str, dict[str, Any]]

# Each process instance costs ~37 MiB: a lab holds at most this many (the machine, not the names, is the limit).
MAX_INSTANCES = 32
# A background load runs at most this long (every load loop here is bounded in time and count).
BACKGROUND_LOAD_MAX_SECONDS = 3600.0
# A background load keeps this many of its latest records in memory (an hour at 1,000 req/s would be millions);
# views follow it through the ClientRequest events, which carry every request.
BACKGROUND_LOAD_KEEP_LAST = 10_000
# The background load shares the lab's event loop. After a stall (a busy machine), requests more than this late are
# recorded as client_overload instead of sent in one burst that would make the health checks (0.3 s timeout) fail.
BACKGROUND_LOAD_MAX_LATENESS = 0.25


# Labs started and not stopped yet. A lab left running (a notebook's lab when its kernel shuts down) must not
# leave its instance processes behind: at interpreter exit, _stop_processes_at_exit stops them.
_RUNNING_LABS: weakref.WeakSet[Lab] = weakref.WeakSet()


def _stop_processes_at_exit() -> None:
    for lab in list(_RUNNING_LABS):
        lab.front.stop_now()
        for instance in list(lab.instances.values()):
            stop_now = getattr(instance, "stop_now", None)  # process isolation only: in-process ones die with us
            if stop_now is not None:
                with contextlib.suppress(Exception):
                    stop_now()


atexit.register(_stop_processes_at_exit)


class Lab:
    """Instances + health checker + balancer + load, behind one facade. Create it with ``await Lab.start()``."""

    def __init__(
        self,
        *,
        strategy: str | Strategy = "round_robin",
        health: HealthSettings | bool | None = None,
        retries: RetrySettings | bool | None = None,
        ejection: EjectionSettings | bool | None = None,
        isolation: str = "inprocess",
        work_time: float = 0.0,
        capacity: Capacity | None = None,
        slow_start: float = 0.0,
        seed: int = 0,
        port: int = 0,
        balancers: int = 1,
        pair: str | None = None,
        advert_interval: float = 0.2,
        preempt: bool = True,
        balancer: str = "spofkit",
        limits: ProxyLimits | None = None,
    ) -> None:
        if isolation not in ISOLATIONS:
            raise ValueError(f"isolation must be one of {ISOLATIONS}, got {isolation!r}")
        if balancers == 1 and preempt is False:
            raise ValueError("preempt=False is a setting of a pair of balancers: give balancers=2 with it")
        # Every instance's workers, queue and work; work_time alone is fixed work with no limit, as it always was.
        self.capacity = lab_capacity(capacity, work_time)
        health = protection("health", health, HealthSettings)
        retries = protection("retries", retries, RetrySettings)
        ejection = protection("ejection", ejection, EjectionSettings)
        self.clock = Clock()
        self.events = EventBus(self.clock)
        self.isolation = isolation
        self.work_time = self.capacity.work_ms / 1000.0
        self.seed = seed
        self.rng = random.Random(seed)
        self.health_settings = health or HealthSettings()
        self.retry_settings = retries or RetrySettings()
        self.ejection_settings = ejection or EjectionSettings()
        configuration = Configuration(strategy, retries, ejection, health, slow_start, seed, limits=limits)
        self.front = FrontDoorGroup(
            self.events,
            configuration,
            count=balancers,
            mode=pair,
            isolation=isolation,
            port=port,
            advert_interval=advert_interval,
            preempt=preempt,
            balancer=balancer,
        )
        self.instances: dict[str, Any] = {}
        self._background: LoadGenerator | None = None
        self._background_task: asyncio.Task[Any] | None = None
        self._names = _instance_names()
        self._commands = asyncio.Lock()  # one command at a time, in order of arrival (asyncio's Lock is FIFO)
        self._removing: set[str] = set()
        self._deploying = False

    # --- starting and stopping -----------------------------------------------------------------------

    @classmethod
    async def start(
        cls,
        instances: int = 3,
        *,
        strategy: str | Strategy = "round_robin",
        health: HealthSettings | bool | None = HealthSettings(),  # noqa: B008 - frozen, so sharing is safe
        retries: RetrySettings | bool | None = RetrySettings(),  # noqa: B008
        ejection: EjectionSettings | bool | None = EjectionSettings(),  # noqa: B008
        isolation: str = "inprocess",
        work_time: float = 0.0,
        capacity: Capacity | None = None,
        backups: int = 0,
        slow_start: float = 0.0,
        seed: int = 0,
        port: int = 0,
        balancers: int = 1,
        pair: str | None = None,
        advert_interval: float = 0.2,
        preempt: bool = True,
        balancer: str = "spofkit",
        limits: ProxyLimits | None = None,
    ) -> Lab:
        """Start ``instances`` primaries (+ ``backups``), and the balancer (or a pair: ``balancers=2``) in front.

        ``pair`` is ``"active-passive"`` (the default for two) or ``"active-active"``; ``advert_interval`` and
        ``preempt`` are the active-passive pair's VRRP settings (:mod:`spofkit.policy.pair`). ``balancer`` is
        ``"spofkit"`` (the lab's own), or ``"haproxy"`` / ``"nginx"``: the real proxy, configured from the same
        settings, in front of the same instances (:mod:`spofkit.real_proxy`). ``capacity`` is every instance's
        workers, queue and work time (:class:`~spofkit.capacity.Capacity`); ``work_time`` (seconds) is the same as
        ``capacity=Capacity(work_ms=...)``: fixed work, no limit. Give one or the other. ``limits`` are the
        balancers' client side (:class:`~spofkit.proxy.limits.ProxyLimits`: head and body timeouts, sizes, the
        connection cap); the default is nginx's.
        """
        if not isinstance(instances, int) or not 1 <= instances <= 26:
            raise ValueError(f"instances must be a whole number 1..26, got {instances!r}")
        if not isinstance(backups, int) or backups < 0:
            raise ValueError(f"backups must be a whole number >= 0, got {backups!r}")
        lab = cls(
            strategy=strategy,
            health=health,
            retries=retries,
            ejection=ejection,
            isolation=isolation,
            work_time=work_time,
            capacity=capacity,
            slow_start=slow_start,
            seed=seed,
            port=port,
            balancers=balancers,
            pair=pair,
            advert_interval=advert_interval,
            preempt=preempt,
            balancer=balancer,
            limits=limits,
        )
        try:
            await lab.front.start()
            for index in range(instances + backups):
                await lab.add_instance(backup=index >= instances, initially_up=True)
            await lab._wait_for_a_master()
        except BaseException:
            await lab.stop()
            raise
        _RUNNING_LABS.add(lab)
        return lab

    async def __aenter__(self) -> Lab:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Stop load, checks, balancer and every instance (and its process). Safe to call twice."""
        _RUNNING_LABS.discard(self)
        await self.stop_background_load()
        await self.front.stop()
        instances, self.instances = list(self.instances.values()), {}
        for instance in instances:
            with contextlib.suppress(Exception):
                await instance.stop()

    # --- reading -------------------------------------------------------------------------------------

    def now(self) -> float:
        return self.clock.now()

    async def _wait_for_a_master(self) -> None:
        """A pair starts as two backups; one becomes master after the master-down interval. Wait for it."""
        deadline = self.now() + 3 * self.front.front_door.advert_interval + 5.0
        while self.front.serving() is not None and self.front.serving().address is None:  # type: ignore[union-attr]
            if self.now() > deadline:
                raise RuntimeError("no balancer of the pair took the service address")
            await asyncio.sleep(0.02)

    @property
    def balancer(self) -> Balancer:
        """The serving balancer object (labs whose balancers run in this process; else read ``status()``)."""
        return self.front.local_balancer()

    @property
    def balancer_url(self) -> str:
        """The service address: where clients send requests, whichever balancer holds it."""
        return self.front.service_url

    @property
    def instance_names(self) -> list[str]:
        return list(self.instances)

    def status(self) -> LabStatus:
        """Facts about every instance beside the serving balancer's view of it; every balancer's own view too."""
        balancers = self.front.statuses()
        serving = self.front.serving()
        rows = []
        for view in serving.members if serving is not None else ():
            facts = InstanceFacts.of_instance(view.name, self.instances.get(view.name))
            rows.append(InstanceStatus.of(facts, view))
        configuration = self.front.configuration
        background = self._background
        strategy = configuration.strategy
        return LabStatus(
            at=self.now(),
            strategy=serving.strategy if serving and serving.strategy else str(getattr(strategy, "name", strategy)),
            retries=configuration.retries is not None,
            health_checks=configuration.health is not None,
            ejection=configuration.ejection is not None,
            balancer_url=self.balancer_url,
            load_rate=background.rate if background and self._background_task else None,
            load_paused=bool(background and background.paused),
            instances=rows,
            balancers=balancers,
            deploying=self._deploying,
        )

    # --- commands: the one way to change a lab ------------------------------------------------------------

    async def apply(self, command: Command) -> dict[str, Any]:
        """Apply one :mod:`command <spofkit.commands>` and return what it did (JSON-ready).

        Commands are applied one at a time, in the order they arrive, whoever sends them (the admin API, the
        TUI, a widget, a notebook). A command that cannot be applied raises :class:`CommandError` naming the
        field, with the HTTP status a client should get (404 unknown instance, 409 name taken or limit reached).
        Removing an instance lets the commands after it run while its requests drain.
        """
        if isinstance(command, RemoveInstance):
            return await self._remove(command)
        if isinstance(command, Deploy):
            return await self._deploy(command)
        async with self._commands:
            return await self._apply_now(command)

    async def _apply_now(self, command: Command) -> dict[str, Any]:
        if isinstance(command, InjectFault):
            instance = self._instance(command.instance)
            fault = make_fault(command.kind, **command.params)
            await instance.inject(fault)
            return {"instance": command.instance, "fault": fault.kind, "params": fault.params()}
        if isinstance(command, Recover):
            await self._instance(command.instance).recover()
            return self._row(command.instance)
        if isinstance(command, Restart):
            await self._instance(command.instance).restart()
            return self._row(command.instance)
        if isinstance(command, AddInstance):
            name = await self._add(command.name, backup=command.backup, weight=command.weight)
            return {"name": name, **self._row(name)}
        if isinstance(command, SetStrategy):
            await self.front.set_strategy(command.strategy)
            return {"strategy": self.status().strategy}
        if isinstance(command, ChangeSettings):
            return await self._change_settings(command)
        if isinstance(command, BalancerFault):
            if command.kind == "crash":
                await self.front.crash(command.balancer)
            else:
                await self.front.inject(command.balancer, command.kind)
            return self._balancer_row(command.balancer)
        if isinstance(command, BalancerRecover):
            await self.front.recover(command.balancer)
            return self._balancer_row(command.balancer)
        if isinstance(command, BalancerRestart):
            await self.front.restart(command.balancer)
            return self._balancer_row(command.balancer)
        if isinstance(command, SetLoad):
            return await self._set_load(command)
        raise CommandError("command", f"a lab cannot apply {type(command).__name__}")

    def _instance(self, name: str) -> Any:
        try:
            return self.instances[name]
        except KeyError:
            known = sorted(self.instances)
            raise UnknownName("name", f"no instance named {name!r}; known: {known}") from None

    def _row(self, name: str) -> dict[str, Any]:
        return dataclasses.asdict(self.status().instance(name))

    def _balancer_row(self, name: str) -> dict[str, Any]:
        status = self.status().balancer(name)
        return {k: v for k, v in dataclasses.asdict(status).items() if k != "members"}

    async def _add(
        self,
        name: str | None,
        *,
        backup: bool = False,
        weight: int = 1,
        max_conns: int | None = None,
        initially_up: bool = False,
    ) -> str:
        if len(self.instances) >= MAX_INSTANCES:
            raise CommandError("name", f"the lab holds at most {MAX_INSTANCES} instances; remove one first", 409)
        name = name or next(n for n in self._names if n not in self.instances)
        if name in self.instances:
            raise CommandError("name", f"instance name {name!r} is already in use", status=409)
        instance = make_instance(
            name,
            isolation=self.isolation,
            capacity=self.capacity,
            events=self.events,
            seed=self.rng.randrange(1 << 30),
        )
        await instance.start()
        self.instances[name] = instance
        try:
            await self.front.add_member(
                name, instance.url, weight=weight, backup=backup, max_conns=max_conns, initially_up=initially_up
            )
        except ValueError:
            self.instances.pop(name)
            await instance.stop()
            raise
        return name

    async def _remove(self, command: RemoveInstance, drain_timeout: float = 10.0) -> dict[str, Any]:
        name = command.instance
        async with self._commands:
            instance = self._instance(name)
            if name in self._removing:
                raise CommandError("instance", f"instance {name!r} is already being removed", status=409)
            self._removing.add(name)
        try:
            # Draining waits for the instance's requests to finish; other commands go on meanwhile.
            await self.front.remove_member(name, drain_timeout=drain_timeout)
            async with self._commands:
                self.instances.pop(name, None)
                await instance.stop()
        finally:
            self._removing.discard(name)
        return {"removed": name}

    @property
    def commands_lock(self) -> asyncio.Lock:
        """Held while a command changes the lab; long-running ones (deploys, removals) take it step by step."""
        return self._commands

    async def _deploy(self, command: Deploy) -> dict[str, Any]:
        if self._deploying:
            raise CommandError("deploy", "a deploy is already running; wait for it to finish", status=409)
        self._deploying = True
        try:
            if command.target == "balancers":
                return await deploy.upgrade_balancers(self)
            if command.how == "all-at-once":
                return await deploy.restart_all(self)
            return await deploy.rolling_restart(self, command.batch)
        except deploy.DeployFailed as error:
            raise CommandError("deploy", str(error), status=409) from None
        finally:
            self._deploying = False

    async def _change_settings(self, command: ChangeSettings) -> dict[str, Any]:
        configuration = self.front.configuration
        if command.retries is not None:
            await self.front.set_retries(self.retry_settings if command.retries else None)
        if command.ejection is not None:
            await self.front.set_ejection(self.ejection_settings if command.ejection else None)
        if command.health_checks is not None and command.health_checks != (configuration.health is not None):
            await self.front.set_health(self.health_settings if command.health_checks else None)
        status = self.status()
        return {"retries": status.retries, "health_checks": status.health_checks, "ejection": status.ejection}

    async def _set_load(self, command: SetLoad) -> dict[str, Any]:
        if command.rate == 0:
            await self.stop_background_load()
        elif command.rate is not None:
            if self._background_task is None or self._background_task.done():
                self.start_background_load(command.rate)
            else:
                self.set_load_rate(command.rate)
        if command.paused is True:
            self.pause_load()
        elif command.paused is False:
            self.resume_load()
        status = self.status()
        return {"load_rate": status.load_rate, "load_paused": status.load_paused}

    # --- the same, as methods for notebooks and scripts ---------------------------------------------------

    async def add_instance(
        self,
        name: str | None = None,
        *,
        backup: bool = False,
        weight: int = 1,
        max_conns: int | None = None,
        initially_up: bool = False,
    ) -> str:
        """Start a new instance and put it in the pool.

        A new instance gets traffic once the health checker has seen it pass ``rise`` checks (``initially_up``
        skips that, as the lab does for the instances it starts with).
        """
        command = AddInstance(name, backup, weight)  # the command's checks of the name, backup and weight
        if max_conns is None and not initially_up:
            result = await self.apply(command)
            return str(result["name"])
        if not isinstance(initially_up, bool):
            raise TypeError(f"initially_up must be True or False, got {initially_up!r}")
        async with self._commands:  # options only Python callers have: the same steps, under the same lock
            return await self._add(name, backup=backup, weight=weight, max_conns=max_conns, initially_up=initially_up)

    async def remove_instance(self, name: str, *, drain_timeout: float = 10.0) -> None:
        """Drain ``name`` (in-flight requests finish, no new ones), remove it from the pool, stop it."""
        await self._remove(RemoveInstance(name), seconds("drain_timeout", drain_timeout, inclusive=True))

    async def inject(self, name: str, kind: str, **params: Any) -> None:
        """Inject a fault (``crash``, ``hang``, ``slow``, ``error``, ``gray``, ``flap``, ``reset``, ``warmup``)."""
        await self.apply(InjectFault(name, kind, params))

    async def recover(self, name: str) -> None:
        """Undo the active fault (a crashed instance is started again on its port)."""
        await self.apply(Recover(name))

    async def restart(self, name: str) -> None:
        """Restart the instance (a new process in process isolation), on the same port."""
        await self.apply(Restart(name))

    # The switches below change nothing but settings, at once and atomically, so they need no await: a
    # notebook can call lab.set_retries(False) in a plain cell. (Balancers in their own processes must be asked
    # and answer, so such labs use ``await lab.apply(ChangeSettings(...))``.) Views send commands instead.

    def set_strategy(self, strategy: str | Strategy) -> None:
        chosen = SetStrategy(strategy).strategy
        self._in_process_now(lambda b: b.set_strategy(chosen))
        self.front.configuration.strategy = chosen

    def set_retries(self, enabled: bool | RetrySettings) -> None:
        """Retries on or off, or on with new settings (e.g. ``RetrySettings(per_try_timeout=0.1)``)."""
        check_switch("set_retries", enabled, RetrySettings)
        if isinstance(enabled, RetrySettings):
            self.retry_settings, enabled = enabled, True
        settings = self.retry_settings if enabled else None
        self._in_process_now(lambda b: b.set_retries(settings))
        self.front.configuration.retries = settings

    def set_ejection(self, enabled: bool | EjectionSettings) -> None:
        """Passive ejection on or off, or on with new settings."""
        check_switch("set_ejection", enabled, EjectionSettings)
        if isinstance(enabled, EjectionSettings):
            self.ejection_settings, enabled = enabled, True
        settings = self.ejection_settings if enabled else None
        self._in_process_now(lambda b: b.set_ejection(settings))
        self.front.configuration.ejection = settings

    def _in_process_now(self, change: Callable[[Balancer], None]) -> None:
        nodes = list(self.front.nodes.values())
        if not all(isinstance(node, BalancerNode) for node in nodes):
            raise RuntimeError(
                "this lab's balancers run in their own processes: use await lab.apply(ChangeSettings(...)) "
                "or await lab.apply(SetStrategy(...))"
            )
        for node in nodes:
            assert isinstance(node, BalancerNode)
            change(node.balancer)

    async def set_health_checks(self, enabled: bool | HealthSettings) -> None:
        """Turn active health checks on (every instance starts from UP) or off (every instance counts as up).

        Given :class:`HealthSettings`, the checks start again with them.
        """
        check_switch("set_health_checks", enabled, HealthSettings)
        if isinstance(enabled, HealthSettings):
            async with self._commands:
                self.health_settings = enabled
                await self.front.set_health(enabled)
            return
        await self.apply(ChangeSettings(health_checks=bool(enabled)))

    # --- load ----------------------------------------------------------------------------------------

    def load_generator(self, **options: Any) -> LoadGenerator:
        """A load generator aimed at the service address (or at ``url=``, with more ``entry_urls=``)."""
        url = options.pop("url", self.balancer_url)
        return LoadGenerator(url, clock=self.clock, events=self.events, **options)

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
        """Send open-loop load at ``rate`` req/s for ``duration`` s, injecting ``faults`` on schedule.

        Returns the :class:`~spofkit.report.Report` of this run; the detection window and outage are measured
        against the first scheduled fault.
        """
        for at, name, kind, params in faults:
            self._instance(name)
            make_fault(kind, **params)  # validate before any load is sent
            if not 0 <= at <= duration:
                raise ValueError(f"fault time {at!r} must be within the run (0..{duration})")
        generator = self.load_generator(**options)
        started = self.now()
        seen: list[Event] = []
        unsubscribe = self.events.subscribe(seen.append)

        async def inject_later(at: float, name: str, kind: str, params: dict[str, Any]) -> None:
            await asyncio.sleep(max(0.0, started + at - self.now()))
            await self.inject(name, kind, **params)

        async def progress() -> None:
            assert on_progress is not None
            while True:
                on_progress(min(1.0, (self.now() - started) / duration))
                await asyncio.sleep(0.2)

        helpers = [asyncio.create_task(inject_later(*fault)) for fault in faults]
        if on_progress:
            helpers.append(asyncio.create_task(progress()))
        try:
            records = await generator.run_open_loop(rate, duration, max_requests=max_requests)
            for task in helpers[: len(faults)]:
                await task
        finally:
            unsubscribe()
            for task in helpers:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if on_progress:
            on_progress(1.0)
        return build_report(records, seen)

    def start_background_load(self, rate: float = 50.0, **options: Any) -> LoadGenerator:
        """Keep a steady open-loop load running (for the TUI and widgets) until stopped, at most an hour.

        ``rate`` is at most :data:`~spofkit.commands.MAX_LOAD_RATE`, as for ``PUT /load``: beyond it the load starves
        the lab it runs in (a :class:`CommandError` naming ``rate`` says so).
        """
        if self._background_task and not self._background_task.done():
            raise RuntimeError("background load is already running; use set_load_rate()")
        _check_load_rate(rate)
        options.setdefault("keep_last", BACKGROUND_LOAD_KEEP_LAST)
        options.setdefault("max_lateness", BACKGROUND_LOAD_MAX_LATENESS)
        generator = self.load_generator(**options)
        generator.rate = rate  # visible in status() at once, before the loop's task first runs
        self._background = generator
        self._background_task = asyncio.create_task(
            generator.run_open_loop(rate, BACKGROUND_LOAD_MAX_SECONDS), name="background-load"
        )
        self.events.publish(SettingChanged(self.now(), "load_rate", rate, balancer=""))
        return generator

    def set_load_rate(self, rate: float) -> None:
        _check_load_rate(rate)
        if self._background:
            self._background.rate = rate
        self.events.publish(SettingChanged(self.now(), "load_rate", rate, balancer=""))

    def pause_load(self) -> None:
        if self._background:
            self._background.paused = True
            self.events.publish(SettingChanged(self.now(), "load_paused", True, balancer=""))

    def resume_load(self) -> None:
        if self._background:
            self._background.paused = False
            self.events.publish(SettingChanged(self.now(), "load_paused", False, balancer=""))

    async def stop_background_load(self) -> None:
        task, self._background_task = self._background_task, None
        if self._background:
            self._background.stop()
        if task:
            try:
                await asyncio.wait_for(task, timeout=10)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                task.cancel()


def _check_load_rate(rate: float) -> None:
    """Refuse a background load rate that is not > 0 or is above MAX_LOAD_RATE, with SetLoad's own check."""
    SetLoad(rate=rate)  # a number 0..MAX_LOAD_RATE, or CommandError("rate", ...)
    if rate == 0:
        raise CommandError("rate", "rate must be > 0 requests/s (to stop the load, use stop_background_load())")


def _instance_names() -> list[str]:
    letters = list(string.ascii_lowercase)
    return letters + [f"{a}{b}" for a in letters for b in letters]
