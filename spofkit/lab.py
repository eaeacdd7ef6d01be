"""The Lab: one object that sets up a whole experiment.

A lab is N service instances, a health checker watching them and a balancer in front, all on 127.0.0.1, all
publishing to one event bus. Lessons, the TUI, the CLI and the tests drive experiments through it::

    lab = await Lab.start(instances=3)              # in a notebook cell, or any asyncio code
    report = await lab.run_load(rate=200, duration=5, faults=[(1.0, "b", "crash", {})])
    print(report.to_text())
    await lab.stop()

Switch a protection off (``health=None``, ``retries=None``, ``ejection=None``) to see what it was protecting
against. ``isolation="process"`` runs every instance as its own OS process, so a crash is a real ``kill -9``.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import random
import string
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from spofkit.balancer import Balancer
from spofkit.events import Clock, Event, EventBus, SettingChanged
from spofkit.failover import EjectionSettings, RetrySettings
from spofkit.faults import make_fault
from spofkit.health import DOWN, HealthChecker, HealthSettings
from spofkit.instance import make_instance
from spofkit.loadgen import LoadGenerator
from spofkit.report import Report, build_report
from spofkit.strategies import Strategy

# (seconds after the run starts, instance name, fault kind, fault parameters)
ScheduledFault = tuple[float, str, str, dict[str, Any]]

ISOLATIONS = ("inprocess", "process")
# A background load runs at most this long (every load loop here is bounded in time and count).
BACKGROUND_LOAD_MAX_SECONDS = 3600.0
# A background load keeps this many of its latest records in memory (an hour at 1,000 req/s would be millions);
# views follow it through the ClientRequest events, which carry every request.
BACKGROUND_LOAD_KEEP_LAST = 10_000


# Labs started and not stopped yet. A lab left running (a notebook's lab when its kernel shuts down) must not
# leave its instance processes behind: at interpreter exit, _stop_processes_at_exit stops them.
_RUNNING_LABS: weakref.WeakSet[Lab] = weakref.WeakSet()


def _stop_processes_at_exit() -> None:
    for lab in list(_RUNNING_LABS):
        for instance in list(lab.instances.values()):
            stop_now = getattr(instance, "stop_now", None)  # process isolation only: in-process ones die with us
            if stop_now is not None:
                with contextlib.suppress(Exception):
                    stop_now()


atexit.register(_stop_processes_at_exit)


@dataclass(frozen=True)
class InstanceStatus:
    """One instance as a view shows it. ``state`` is what decides whether it gets traffic."""

    name: str
    url: str
    pid: int | None
    state: str  # up | down | rising | falling | ejected | draining
    backup: bool
    fault: str | None
    health_successes: int
    health_failures: int
    rise: int
    fall: int
    in_flight: int
    served: int
    failed: int
    weight: int
    running: bool


@dataclass(frozen=True)
class LabStatus:
    at: float
    strategy: str
    retries: bool
    health_checks: bool
    ejection: bool
    balancer_url: str
    load_rate: float | None
    load_paused: bool
    instances: list[InstanceStatus] = field(default_factory=list)

    def instance(self, name: str) -> InstanceStatus:
        for status in self.instances:
            if status.name == name:
                return status
        raise KeyError(f"no instance named {name!r}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": round(self.at, 3),
            "strategy": self.strategy,
            "retries": self.retries,
            "health_checks": self.health_checks,
            "ejection": self.ejection,
            "balancer_url": self.balancer_url,
            "load_rate": self.load_rate,
            "load_paused": self.load_paused,
            "instances": [vars(s) | {} for s in self.instances],
        }


class Lab:
    """Instances + health checker + balancer + load, behind one facade. Create it with ``await Lab.start()``."""

    def __init__(
        self,
        *,
        strategy: str | Strategy = "round_robin",
        health: HealthSettings | None = None,
        retries: RetrySettings | None = None,
        ejection: EjectionSettings | None = None,
        isolation: str = "inprocess",
        work_time: float = 0.0,
        slow_start: float = 0.0,
        seed: int = 0,
        port: int = 0,
    ) -> None:
        if isolation not in ISOLATIONS:
            raise ValueError(f"isolation must be one of {ISOLATIONS}, got {isolation!r}")
        if work_time < 0:
            raise ValueError(f"work_time must be >= 0 seconds, got {work_time!r}")
        self.clock = Clock()
        self.events = EventBus(self.clock)
        self.isolation = isolation
        self.work_time = work_time
        self.seed = seed
        self.rng = random.Random(seed)
        self.health_settings = health or HealthSettings()
        self.retry_settings = retries or RetrySettings()
        self.ejection_settings = ejection or EjectionSettings()
        self.health: HealthChecker | None = None
        self.balancer = Balancer(
            self.events,
            strategy=strategy,
            retries=retries,
            ejection=ejection,
            slow_start=slow_start,
            seed=seed,
            port=port,
        )
        self.instances: dict[str, Any] = {}
        self._background: LoadGenerator | None = None
        self._background_task: asyncio.Task[Any] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._names = _instance_names()
        self._health_wanted = health is not None

    # --- starting and stopping -----------------------------------------------------------------------

    @classmethod
    async def start(
        cls,
        instances: int = 3,
        *,
        strategy: str | Strategy = "round_robin",
        health: HealthSettings | None = HealthSettings(),  # noqa: B008 - frozen, so sharing is safe
        retries: RetrySettings | None = RetrySettings(),  # noqa: B008
        ejection: EjectionSettings | None = EjectionSettings(),  # noqa: B008
        isolation: str = "inprocess",
        work_time: float = 0.0,
        backups: int = 0,
        slow_start: float = 0.0,
        seed: int = 0,
        port: int = 0,
    ) -> Lab:
        """Start ``instances`` primaries (+ ``backups``), the health checker and the balancer."""
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
            slow_start=slow_start,
            seed=seed,
            port=port,
        )
        try:
            await lab.balancer.start()
            if lab._health_wanted:
                await lab._start_health()
            for index in range(instances + backups):
                await lab.add_instance(backup=index >= instances, initially_up=True)
            lab._ticker = asyncio.create_task(lab._tick(), name="lab-ticker")
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
        if self._ticker:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self.health:
            await self.health.stop()
            self.health = None
        await self.balancer.stop()
        instances, self.instances = list(self.instances.values()), {}
        for instance in instances:
            with contextlib.suppress(Exception):
                await instance.stop()

    async def _tick(self) -> None:
        # Ejections expire on their own; this announces it so views can show the instance coming back.
        while True:
            self.balancer.publish_returns()
            await asyncio.sleep(0.1)

    # --- reading -------------------------------------------------------------------------------------

    def now(self) -> float:
        return self.clock.now()

    @property
    def balancer_url(self) -> str:
        return self.balancer.url

    @property
    def instance_names(self) -> list[str]:
        return list(self.instances)

    def status(self) -> LabStatus:
        now = self.now()
        rows = []
        for member in self.balancer.snapshot():
            name = member["name"]
            instance = self.instances.get(name)
            health = self.health.state_of(name) if self.health else None
            state = member["state"]
            if state == "up" and health is not None:
                state = health.phase
            elif state == "down" and health is not None and health.phase == "rising":
                state = "rising"
            fault = getattr(instance, "fault", None)
            rows.append(
                InstanceStatus(
                    name=name,
                    url=member["url"],
                    pid=getattr(instance, "pid", None),
                    state=state,
                    backup=member["backup"],
                    fault=fault.kind if fault is not None else None,
                    health_successes=health.successes if health else 0,
                    health_failures=health.failures if health else 0,
                    rise=self.health_settings.rise,
                    fall=self.health_settings.fall,
                    in_flight=member["in_flight"],
                    served=member["served"],
                    failed=member["failed"],
                    weight=member["weight"],
                    running=bool(getattr(instance, "running", False)),
                )
            )
        background = self._background
        return LabStatus(
            at=now,
            strategy=self.balancer.strategy_name,
            retries=self.balancer.retries is not None,
            health_checks=self.health is not None,
            ejection=self.balancer.ejection is not None,
            balancer_url=self.balancer_url,
            load_rate=background.rate if background and self._background_task else None,
            load_paused=bool(background and background.paused),
            instances=rows,
        )

    # --- instances and faults ------------------------------------------------------------------------

    def _instance(self, name: str) -> Any:
        try:
            return self.instances[name]
        except KeyError:
            raise KeyError(f"no instance named {name!r}; known: {sorted(self.instances)}") from None

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
        name = name or next(n for n in self._names if n not in self.instances)
        if name in self.instances:
            raise ValueError(f"instance name {name!r} is already in use")
        instance = make_instance(
            name,
            isolation=self.isolation,
            work_time=self.work_time,
            events=self.events,
            seed=self.rng.randrange(1 << 30),
        )
        await instance.start()
        self.instances[name] = instance
        try:
            self.balancer.add_member(name, instance.url, weight=weight, backup=backup, max_conns=max_conns)
        except ValueError:
            self.instances.pop(name)
            await instance.stop()
            raise
        if self.health:
            self.health.add(name, instance.url, initially_up=initially_up)
        return name

    async def remove_instance(self, name: str, *, drain_timeout: float = 10.0) -> None:
        """Drain ``name`` (in-flight requests finish, no new ones), remove it from the pool, stop it."""
        instance = self._instance(name)
        await self.balancer.remove_member(name, drain_timeout=drain_timeout)
        if self.health:
            self.health.remove(name)
        self.instances.pop(name, None)
        await instance.stop()

    async def inject(self, name: str, kind: str, **params: Any) -> None:
        """Inject a fault (``crash``, ``hang``, ``slow``, ``error``, ``gray``, ``flap``, ``reset``, ``warmup``)."""
        instance = self._instance(name)
        await instance.inject(make_fault(kind, **params))

    async def recover(self, name: str) -> None:
        """Undo the active fault (a crashed instance is started again on its port)."""
        await self._instance(name).recover()

    async def restart(self, name: str) -> None:
        """Restart the instance (a new process in process isolation), on the same port."""
        await self._instance(name).restart()

    # --- switches ------------------------------------------------------------------------------------

    def set_strategy(self, strategy: str | Strategy) -> None:
        self.balancer.set_strategy(strategy)

    def set_retries(self, enabled: bool | RetrySettings) -> None:
        """Retries on or off, or on with new settings (e.g. ``RetrySettings(per_try_timeout=0.1)``)."""
        if isinstance(enabled, RetrySettings):
            self.retry_settings, enabled = enabled, True
        self.balancer.set_retries(self.retry_settings if enabled else None)

    def set_ejection(self, enabled: bool | EjectionSettings) -> None:
        """Passive ejection on or off, or on with new settings."""
        if isinstance(enabled, EjectionSettings):
            self.ejection_settings, enabled = enabled, True
        self.balancer.set_ejection(self.ejection_settings if enabled else None)

    async def set_health_checks(self, enabled: bool | HealthSettings) -> None:
        """Turn active health checks on (every instance starts from UP) or off (every instance counts as up).

        Given :class:`HealthSettings`, the checker restarts with them.
        """
        if isinstance(enabled, HealthSettings):
            self.health_settings, enabled = enabled, True
            if self.health is not None:
                checker, self.health = self.health, None
                self.balancer.health = None
                await checker.stop()
        if enabled and self.health is None:
            await self._start_health()
            for name, instance in self.instances.items():
                assert self.health is not None
                self.health.add(name, instance.url, initially_up=True)
        elif not enabled and self.health is not None:
            checker, self.health = self.health, None
            self.balancer.health = None
            await checker.stop()
        self.events.publish(SettingChanged(self.now(), "health_checks", enabled))

    async def _start_health(self) -> None:
        def came_up(name: str, state: str) -> None:
            if state != DOWN:
                self.balancer.note_came_up(name)

        checker = HealthChecker(self.events, self.health_settings, random.Random(self.seed + 1), on_change=came_up)
        await checker.start()
        self.health = checker
        self.balancer.health = checker

    # --- load ----------------------------------------------------------------------------------------

    def load_generator(self, **options: Any) -> LoadGenerator:
        return LoadGenerator(self.balancer_url, clock=self.clock, events=self.events, **options)

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
        """Keep a steady open-loop load running (for the TUI and widgets) until stopped, at most an hour."""
        if self._background_task and not self._background_task.done():
            raise RuntimeError("background load is already running; use set_load_rate()")
        options.setdefault("keep_last", BACKGROUND_LOAD_KEEP_LAST)
        generator = self.load_generator(**options)
        generator.rate = rate  # visible in status() at once, before the loop's task first runs
        self._background = generator
        self._background_task = asyncio.create_task(
            generator.run_open_loop(rate, BACKGROUND_LOAD_MAX_SECONDS), name="background-load"
        )
        self.events.publish(SettingChanged(self.now(), "load_rate", rate))
        return generator

    def set_load_rate(self, rate: float) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0 requests/s, got {rate!r}")
        if self._background:
            self._background.rate = rate
        self.events.publish(SettingChanged(self.now(), "load_rate", rate))

    def pause_load(self) -> None:
        if self._background:
            self._background.paused = True
            self.events.publish(SettingChanged(self.now(), "load_paused", True))

    def resume_load(self) -> None:
        if self._background:
            self._background.paused = False
            self.events.publish(SettingChanged(self.now(), "load_paused", False))

    async def stop_background_load(self) -> None:
        task, self._background_task = self._background_task, None
        if self._background:
            self._background.stop()
        if task:
            try:
                await asyncio.wait_for(task, timeout=10)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                task.cancel()


def _instance_names() -> list[str]:
    letters = list(string.ascii_lowercase)
    return letters + [f"{a}{b}" for a in letters for b in letters]
