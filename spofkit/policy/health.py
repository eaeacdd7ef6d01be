"""Active health checks, as rules: when to probe an instance, and what a run of results means.

The rules (HAProxy's):

1. **Rise and fall.** An UP instance goes DOWN after ``fall`` consecutive failed probes; a success in between
   resets the count. A DOWN instance goes UP after ``rise`` consecutive passed probes; a failure in between resets
   that count. While a count runs the instance is *falling n/fall* or *rising n/rise*. This hysteresis is what
   stops a flapping node from bouncing in and out of the pool — and it is why detection takes time.
2. **Schedule.** A settled UP instance is probed every ``interval``, a DOWN one every ``downinter``, and one whose
   count is running every ``fastinter`` (each defaults to ``interval``). The pause is measured from the start of
   the previous probe, so a probe that ran into its ``timeout`` delays the next one. ``jitter`` (a fraction)
   spreads probes at random so that they do not all fire at once (HAProxy's ``spread-checks``), and each
   instance's first probe comes at a random point of the first interval.
3. **Detection window.** From "the instance broke" to "marked DOWN" takes at most
   ``interval + (fall - 1) * max(fastinter, timeout) + timeout`` (jitter stretches the intervals); see
   :meth:`HealthSettings.detection_window_bound`. Coming back is the mirror image with ``downinter`` and ``rise``.
4. **A stalled checker does not judge.** A probe that timed out long after its timeout was due — the checker's
   own process was stalled (a busy machine, a pause), so the instance may well have answered in time — is not
   counted, and the next probe goes at once (the idea of Lifeguard, in HashiCorp's memberlist: a member that is
   slow itself does not declare others dead). One probe is excused per run of failures: a checker that is always
   late still detects a dead instance, one probe (and one stall) later than rule 3's bound.

Teaching defaults are 4x faster than HAProxy's (``inter 2s rise 2 fall 3``): ``interval=0.5s``, ``rise=2``,
``fall=3``, ``timeout=0.3s``, so a lesson's failover happens within 1.8 s (typically 1–1.5 s) instead of about six.

:class:`HealthState` is one instance's rise/fall machine; :class:`HealthMonitor` keeps one per instance together
with its probe schedule. Neither does I/O or reads a clock: a driver (the live health checker, or the simulator)
asks :meth:`HealthMonitor.next_probe_at`, runs the probe when it is due, and reports the result with ``now``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from spofkit.events import DEFAULT_BALANCER, Event, HealthProbe, InstanceDown, InstanceUp
from spofkit.policy import _checks
from spofkit.policy._checks import MIN_INTERVAL

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
        interval = _checks.seconds("health interval", self.interval, minimum=MIN_INTERVAL, inclusive=True)
        object.__setattr__(self, "interval", interval)
        object.__setattr__(self, "timeout", _checks.seconds("health timeout", self.timeout))
        for name in ("fastinter", "downinter"):
            value = getattr(self, name)
            if value is not None:
                value = _checks.seconds(f"health {name}", value, minimum=MIN_INTERVAL, inclusive=True)
                object.__setattr__(self, name, value)
        for name in ("rise", "fall"):
            _checks.whole(f"health {name}", getattr(self, name), minimum=1, maximum=1000)
        object.__setattr__(self, "jitter", _checks.number("health jitter", self.jitter, low=0, high=1, high_open=True))
        if not isinstance(self.path, str) or not self.path.startswith("/"):
            raise ValueError(f"health path must be a string that starts with '/', got {self.path!r}")
        if isinstance(self.expect, (list, tuple, set, frozenset)) and not self.expect:
            raise ValueError("health expect must list at least one status")
        object.__setattr__(self, "expect", _checks.statuses("health expect", self.expect))

    @property
    def fast_interval(self) -> float:
        return self.fastinter if self.fastinter is not None else self.interval

    @property
    def down_interval(self) -> float:
        return self.downinter if self.downinter is not None else self.interval

    def passes(self, status: int) -> bool:
        """Does a check answered with HTTP ``status`` (in time) pass? Only a status in ``expect``: a 503 from an
        overloaded instance or a 404 from a wrong path fails, like no answer. Both drivers judge a check by this."""
        return status in self.expect

    def detection_window_bound(self) -> float:
        """Worst case from "instance breaks" to "marked down", jitter included.

        The break may come just after a probe passed: the next probe starts within one ``interval``; it and the
        ``fall - 1`` probes after it each take up to ``timeout``, and those are spaced ``fastinter`` apart (a probe
        that runs out its timeout delays the next one, hence the ``max``).
        """
        spread = 1 + self.jitter
        return self.interval * spread + (self.fall - 1) * max(self.fast_interval * spread, self.timeout) + self.timeout

    def recovery_window_bound(self) -> float:
        """Worst case from "instance healthy again" to "marked up": the detection bound, mirrored.

        A DOWN instance is probed every ``downinter``; the first passing probe starts within one of those and the
        ``rise - 1`` after it follow ``fastinter`` apart, each taking up to ``timeout``.
        """
        spread = 1 + self.jitter
        return (
            self.down_interval * spread
            + (self.rise - 1) * max(self.fast_interval * spread, self.timeout)
            + self.timeout
        )


@dataclass
class HealthState:
    """The rise/fall state machine for one instance (rule 1). Pure: no clock, no I/O."""

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
        """The pause before the next probe (rule 2), before jitter."""
        if self.phase in ("falling", "rising"):
            return settings.fast_interval
        return settings.down_interval if self.state == DOWN else settings.interval


@dataclass
class _Target:
    state: HealthState
    next_probe_at: float
    probe_started_at: float | None = None
    last_detail: str = ""
    excused: bool = False  # a probe of this run of failures was excused (rule 4): the others count


class HealthMonitor:
    """One balancer's health checks of every instance: their states and their probe schedule (rules 1–2).

    The driver's loop, for each instance: wait until :meth:`next_probe_at`, call :meth:`probe_started`, run the
    probe (at most ``settings.timeout``), then :meth:`probe_finished` with the result. Results are published
    through ``emit`` as :class:`~spofkit.events.HealthProbe`, and state changes as ``InstanceDown`` /
    ``InstanceUp``; ``on_change(name, state)`` lets the balancer's pool follow the verdict.
    """

    def __init__(
        self,
        settings: HealthSettings,
        rng: random.Random,
        emit: Callable[[Event], None],
        *,
        balancer: str = DEFAULT_BALANCER,
        on_change: Callable[[str, str, float], None] | None = None,
    ) -> None:
        self.settings = settings
        self.rng = rng
        self.emit = emit
        self.balancer = balancer
        self.on_change = on_change
        self._targets: dict[str, _Target] = {}

    # --- the instances watched ----------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return list(self._targets)

    def add(self, name: str, now: float, *, initially_up: bool = True) -> float:
        """Start watching ``name``; returns when its first probe is due (a random point of the first interval)."""
        if name in self._targets:
            raise ValueError(f"health checks already watch {name!r}")
        state = HealthState(self.settings.rise, self.settings.fall, UP if initially_up else DOWN)
        first = now + self.rng.uniform(0, self.settings.interval * self.settings.jitter)
        self._targets[name] = _Target(state, first)
        return first

    def remove(self, name: str) -> None:
        """Stop watching ``name`` (a probe of it that is still running will be ignored)."""
        self._targets.pop(name, None)

    def reset(self, name: str, now: float) -> None:
        """Forget ``name``'s history (after a manual restart): UP, no count running, probed again at ``now``."""
        target = self._targets.get(name)
        if target is not None:
            target.state = HealthState(self.settings.rise, self.settings.fall, UP)
            target.next_probe_at = now
            target.excused = False

    # --- reading --------------------------------------------------------------------------------------

    def state_of(self, name: str) -> HealthState | None:
        target = self._targets.get(name)
        return target.state if target else None

    def is_up(self, name: str) -> bool:
        """The verdict the pool acts on: UP (or not watched), else DOWN."""
        state = self.state_of(name)
        return state is None or state.state == UP

    def next_probe_at(self, name: str) -> float | None:
        """When ``name``'s next probe is due, or None while one is running (or if it is not watched)."""
        target = self._targets.get(name)
        if target is None or target.probe_started_at is not None:
            return None
        return target.next_probe_at

    def last_detail(self, name: str) -> str:
        target = self._targets.get(name)
        return target.last_detail if target else ""

    # --- the probe cycle ------------------------------------------------------------------------------

    def probe_started(self, name: str, now: float) -> None:
        target = self._targets.get(name)
        if target is not None:
            target.probe_started_at = now

    def probe_unjudged(self, name: str, now: float) -> bool:
        """Rule 4: the checker was stalled through the probe's timeout. Returns True if the probe is not counted
        (the next one is due at once), False if it must be counted as usual (this run of failures had its excuse)."""
        target = self._targets.get(name)
        if target is None or target.excused:
            return False
        target.excused = True
        target.probe_started_at = None
        target.next_probe_at = now
        return True

    def probe_finished(self, name: str, ok: bool, detail: str, now: float) -> float | None:
        """Feed one result (``detail`` says why: ``200``, ``timeout``, ``refused``…). Returns the next probe time.

        Returns None if ``name`` is no longer watched (the result of a probe that raced with its removal).
        """
        target = self._targets.get(name)
        if target is None:
            return None
        started = target.probe_started_at if target.probe_started_at is not None else now
        target.probe_started_at = None
        target.last_detail = detail
        self.emit(HealthProbe(now, name, ok, detail, now - started, balancer=self.balancer))
        change = target.state.record(ok)
        if change == DOWN:
            fall = self.settings.fall
            reason = f"{fall} failed check{'s' if fall != 1 else ''}, last: {detail}"
            self.emit(InstanceDown(now, name, reason, self.balancer))
        elif change == UP:
            rise = self.settings.rise
            self.emit(InstanceUp(now, name, f"{rise} passed check{'s' if rise != 1 else ''}", self.balancer))
        if ok or change:
            target.excused = False  # a new run of failures may have its excuse
        if change and self.on_change:
            self.on_change(name, change, now)
        pause = target.state.next_interval(self.settings) * (1 + self.rng.uniform(0, self.settings.jitter))
        target.next_probe_at = max(now, started + pause)
        return target.next_probe_at
