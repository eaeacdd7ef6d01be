"""Active health checks, live: how a balancer *notices* that an instance died.

The rules — rise and fall, the probe schedule, the detection window — are in :mod:`spofkit.policy.health`, as a
pure :class:`~spofkit.policy.health.HealthMonitor`. This module is the live driver that keeps its appointments:
when the monitor says a probe of ``b`` is due, a timer fires, :class:`HealthChecker` sends ``GET /health`` to
``b`` with the check's timeout, and reports the result back. The monitor decides what it means.

Every probe opens a fresh connection, as HAProxy does, so a crashed instance shows up as "connection refused" at
the very next probe; each instance has its own timer, so one hung instance never delays the checks of the others.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import aiohttp

from spofkit.clock import Scheduler, Timer
from spofkit.policy.health import DOWN, UP, HealthMonitor, HealthSettings, HealthState

__all__ = ["DOWN", "UP", "HealthChecker", "HealthSettings", "HealthState", "ProbeResult"]

ProbeResult = tuple[bool, str]

# A probe's timeout that fires this much later than due (and at least as late again as the timeout itself) means
# this process was stalled: the loop ran the timer only after a pause, when the answer may well have been waiting
# in the socket already (rule 4 of spofkit.policy.health). A loop that is merely busy runs its timers a few ms late.
STALL_MARGIN = 0.1


def stalled(elapsed: float, timeout: float) -> bool:
    """Did a probe that timed out after ``elapsed`` seconds (its timeout ``timeout``) wait for a stalled checker?"""
    late = elapsed - timeout
    return late > max(timeout, STALL_MARGIN)


class HealthChecker:
    """Runs the probes that ``monitor()`` schedules, over HTTP, on ``scheduler``'s timers.

    ``monitor`` is a function returning the balancer's current :class:`HealthMonitor` (None while checks are
    off): switching checks off and on replaces the monitor, and a probe that was running for the old one is
    dropped when it finishes, so there is never more than one schedule per instance.
    """

    def __init__(self, monitor: Callable[[], HealthMonitor | None], scheduler: Scheduler) -> None:
        self.monitor = monitor
        self.scheduler = scheduler
        self.urls: dict[str, str] = {}
        self._timers: dict[str, Timer] = {}
        self._probes: dict[str, asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None
        self.running = False

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(force_close=True, limit=0)
        self._session = aiohttp.ClientSession(connector=connector)
        self.running = True
        self.reschedule()

    async def stop(self) -> None:
        self.running = False
        self._cancel_all()
        probes = list(self._probes.values())
        self._probes.clear()
        for task in probes:
            task.cancel()
        for task in probes:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session:
            await self._session.close()
            self._session = None

    def watch(self, name: str, url: str) -> None:
        """Probe ``name`` at ``url`` whenever its monitor says so."""
        self.urls[name] = url
        self._schedule(name)

    def unwatch(self, name: str) -> None:
        self.urls.pop(name, None)
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()
        probe = self._probes.pop(name, None)
        if probe is not None:
            probe.cancel()

    def reschedule(self) -> None:
        """The monitor was replaced (checks switched or new settings): drop every timer and every probe
        under way (their results belong to the old monitor), and follow the new one."""
        self._cancel_all()
        for probe in self._probes.values():
            probe.cancel()
        self._probes.clear()
        for name in self.urls:
            self._schedule(name)

    @property
    def scheduled(self) -> int:
        """How many probes are waiting for their timer (at most one per instance)."""
        return len(self._timers)

    # --- the cycle -----------------------------------------------------------------------------------

    def _cancel_all(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def _schedule(self, name: str) -> None:
        monitor = self.monitor()
        if not self.running or monitor is None or name not in self.urls or name in self._probes:
            return
        due = monitor.next_probe_at(name)
        if due is None:
            return
        old = self._timers.pop(name, None)
        if old is not None:
            old.cancel()
        self._timers[name] = self.scheduler.call_at(due, lambda: self._launch(name, monitor))

    def _launch(self, name: str, monitor: HealthMonitor) -> None:
        self._timers.pop(name, None)
        url = self.urls.get(name)
        if not self.running or url is None or monitor is not self.monitor():
            return
        monitor.probe_started(name, self.scheduler.now())
        self._probes[name] = asyncio.create_task(self._run_probe(name, url, monitor), name=f"health-{name}")

    async def _run_probe(self, name: str, url: str, monitor: HealthMonitor) -> None:
        started = self.scheduler.now()
        try:
            ok, detail = await self.probe(url, monitor.settings)
        finally:
            if self._probes.get(name) is asyncio.current_task():
                del self._probes[name]
        if monitor is self.monitor() and name in self.urls:  # else: checks were switched meanwhile
            now = self.scheduler.now()
            if (
                detail == "timeout"
                and stalled(now - started, monitor.settings.timeout)
                and monitor.probe_unjudged(name, now)
            ):
                self._schedule(name)  # rule 4: we were late, not (necessarily) the instance; ask again at once
                return
            monitor.probe_finished(name, ok, detail, now)
            self._schedule(name)

    async def probe(self, base_url: str, settings: HealthSettings) -> ProbeResult:
        """One HTTP check: ``(ok, detail)``. ``detail`` says why, e.g. ``200``, ``timeout``, ``refused``."""
        assert self._session is not None, "HealthChecker.start() first"
        timeout = aiohttp.ClientTimeout(total=settings.timeout)
        try:
            async with self._session.get(base_url + settings.path, timeout=timeout) as response:
                await response.read()
                return settings.passes(response.status), str(response.status)
        except asyncio.TimeoutError:
            return False, "timeout"
        except aiohttp.ClientConnectorError:
            return False, "refused"
        except aiohttp.ClientError as error:
            return False, type(error).__name__
        except Exception as error:  # a check that cannot complete is a failed check, never a dead schedule
            return False, f"check error: {type(error).__name__}: {error}"
