"""Active health checks: how a balancer *notices* that an instance died.

A health checker probes every instance on a schedule (``interval``) with a short deadline (``timeout``). One failed
probe proves little (a packet lost, a GC pause), so like HAProxy it waits for ``fall`` consecutive failures before
marking an instance DOWN, and for ``rise`` consecutive successes before marking it UP again. That hysteresis is what
stops a flapping node from bouncing in and out of the pool, and it is also why detection takes time: the
*detection window* — from the moment an instance breaks to the moment it is marked down — is bounded by roughly

    interval + (fall - 1) * max(fastinter, timeout) + timeout      (see HealthSettings.detection_window_bound)

The rules live in :class:`HealthState`, a pure state machine (feed it probe results, read its state). The
:class:`HealthChecker` only does the I/O: it sends HTTP probes with aiohttp and publishes state changes as events.

Teaching defaults are 4x faster than HAProxy's (``inter 2s rise 2 fall 3``): ``interval=0.5s``, ``rise=2``,
``fall=3``, ``timeout=0.3s``, so a lesson's failover happens within 1.8 s (typically 1–1.5 s) instead of about six.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import aiohttp

from spofkit.events import EventBus, HealthProbe, InstanceDown, InstanceUp

UP = "up"
DOWN = "down"


@dataclass(frozen=True)
class HealthSettings:
    """HAProxy-style check settings (seconds). ``fastinter``/``downinter`` default to ``interval``."""

    interval: float = 0.5
    timeout: float = 0.3
    rise: int = 2
    fall: int = 3
    fastinter: float | None = None
    downinter: float | None = None
    path: str = "/health"
    expect: tuple[int, ...] = (200,)
    jitter: float = 0.0  # fraction of the interval, spread at random (HAProxy's spread-checks)

    def __post_init__(self) -> None:
        for name in ("interval", "timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"health {name} must be > 0 seconds, got {getattr(self, name)!r}")
        for name in ("fastinter", "downinter"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"health {name} must be > 0 seconds, got {value!r}")
        for name in ("rise", "fall"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"health {name} must be a whole number >= 1, got {value!r}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"health jitter must be in [0, 1), got {self.jitter!r}")
        if not self.path.startswith("/"):
            raise ValueError(f"health path must start with '/', got {self.path!r}")
        if not self.expect:
            raise ValueError("health expect must list at least one status")

    @property
    def fast_interval(self) -> float:
        return self.fastinter if self.fastinter is not None else self.interval

    @property
    def down_interval(self) -> float:
        return self.downinter if self.downinter is not None else self.interval

    def detection_window_bound(self) -> float:
        """Worst case from "instance breaks" to "marked down", jitter included.

        The break may come just after a probe passed: the next probe starts within one ``interval``; it and the
        ``fall - 1`` probes after it each take up to ``timeout``, and those are spaced ``fastinter`` apart (a probe
        that runs out its timeout delays the next one, hence the ``max``).
        """
        spread = 1 + self.jitter
        return self.interval * spread + (self.fall - 1) * max(self.fast_interval * spread, self.timeout) + self.timeout


@dataclass
class HealthState:
    """The rise/fall state machine for one instance. Pure: no clock, no I/O.

    Rules (HAProxy's):
    - An UP instance goes DOWN after ``fall`` consecutive failed probes; a success in between resets the count.
    - A DOWN instance goes UP after ``rise`` consecutive successful probes; a failure in between resets the count.
    - While a count is running the instance is "falling n/fall" or "rising n/rise" and is probed every ``fastinter``.
    - A DOWN instance is probed every ``downinter``; a settled UP one every ``interval``.
    """

    rise: int = 2
    fall: int = 3
    state: str = UP
    successes: int = 0  # consecutive successes while DOWN
    failures: int = 0  # consecutive failures while UP

    def record(self, ok: bool) -> str | None:
        """Feed one probe result. Returns the new state if this probe changed it, else None."""
        if self.state == UP:
            if ok:
                self.failures = 0
                return None
            self.failures += 1
            if self.failures >= self.fall:
                self.state, self.failures, self.successes = DOWN, 0, 0
                return DOWN
            return None
        if not ok:
            self.successes = 0
            return None
        self.successes += 1
        if self.successes >= self.rise:
            self.state, self.failures, self.successes = UP, 0, 0
            return UP
        return None

    @property
    def phase(self) -> str:
        """``up``, ``falling``, ``down`` or ``rising``: the state with the transition in progress."""
        if self.state == UP:
            return "falling" if self.failures else UP
        return "rising" if self.successes else DOWN

    def next_interval(self, settings: HealthSettings) -> float:
        if self.phase in ("falling", "rising"):
            return settings.fast_interval
        return settings.down_interval if self.state == DOWN else settings.interval


@dataclass
class _Target:
    name: str
    url: str
    state: HealthState
    task: asyncio.Task[None] | None = None
    last_detail: str = ""


ProbeResult = tuple[bool, str]


@dataclass
class HealthChecker:
    """Probes every registered instance over HTTP and publishes ``InstanceUp``/``InstanceDown``.

    ``targets`` may change at run time (``add``/``remove``). Each instance gets its own probe loop, so one hung
    instance never delays the checks of the others. Every probe opens a fresh connection, as HAProxy does, so a
    crashed instance shows up as "connection refused" at the very next probe.
    """

    events: EventBus
    settings: HealthSettings = field(default_factory=HealthSettings)
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    on_change: Callable[[str, str], None] | None = None
    _targets: dict[str, _Target] = field(default_factory=dict)
    _session: aiohttp.ClientSession | None = None
    running: bool = False

    async def start(self, targets: Iterable[tuple[str, str]] = ()) -> None:
        connector = aiohttp.TCPConnector(force_close=True, limit=0)
        self._session = aiohttp.ClientSession(connector=connector)
        self.running = True
        for name, url in targets:
            self.add(name, url)

    async def stop(self) -> None:
        self.running = False
        tasks = [t.task for t in self._targets.values() if t.task]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for target in self._targets.values():
            target.task = None
        if self._session:
            await self._session.close()
            self._session = None

    def add(self, name: str, url: str, *, initially_up: bool = True) -> None:
        state = HealthState(self.settings.rise, self.settings.fall, UP if initially_up else DOWN)
        target = _Target(name, url, state)
        self._targets[name] = target
        if self.running:
            target.task = asyncio.create_task(self._probe_loop(target), name=f"health-{name}")

    def remove(self, name: str) -> None:
        target = self._targets.pop(name, None)
        if target and target.task:
            target.task.cancel()

    def state_of(self, name: str) -> HealthState | None:
        target = self._targets.get(name)
        return target.state if target else None

    def is_up(self, name: str) -> bool:
        state = self.state_of(name)
        return state is None or state.state == UP

    def reset(self, name: str) -> None:
        """Forget the history of one instance (after a manual restart) and probe it again from UP."""
        target = self._targets.get(name)
        if target:
            target.state.state, target.state.failures, target.state.successes = UP, 0, 0

    async def _probe_loop(self, target: _Target) -> None:
        # Start each instance's schedule at a random offset so probes do not all fire at once.
        await asyncio.sleep(self.rng.uniform(0, self.settings.interval * self.settings.jitter))
        while True:
            started = self.events.now()
            ok, detail = await self.probe(target.url)
            finished = self.events.now()
            target.last_detail = detail
            self.events.publish(HealthProbe(finished, target.name, ok, detail, finished - started))
            change = target.state.record(ok)
            if change == DOWN:
                reason = f"{self.settings.fall} failed checks, last: {detail}"
                self.events.publish(InstanceDown(finished, target.name, reason))
            elif change == UP:
                reason = f"{self.settings.rise} passed checks"
                self.events.publish(InstanceUp(finished, target.name, reason))
            if change and self.on_change:
                self.on_change(target.name, change)
            pause = target.state.next_interval(self.settings)
            pause *= 1 + self.rng.uniform(0, self.settings.jitter)
            await asyncio.sleep(max(0.0, pause - (finished - started)))

    async def probe(self, base_url: str) -> ProbeResult:
        """One HTTP check: ``(ok, detail)``. ``detail`` says why, e.g. ``200``, ``timeout``, ``refused``."""
        assert self._session is not None, "HealthChecker.start() first"
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout)
        try:
            async with self._session.get(base_url + self.settings.path, timeout=timeout) as response:
                await response.read()
                return response.status in self.settings.expect, str(response.status)
        except asyncio.TimeoutError:
            return False, "timeout"
        except aiohttp.ClientConnectorError:
            return False, "refused"
        except aiohttp.ClientError as error:
            return False, type(error).__name__
        except Exception as error:  # a check that cannot complete is a failed check, never a dead probe loop
            return False, f"check error: {type(error).__name__}: {error}"
