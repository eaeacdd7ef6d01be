"""Everything one balancer decides, in one object — whether it runs live or in the simulator.

A :class:`BalancerPolicy` holds one balancer's pool (members, strategy, passive ejection, slow start), its
health checks (states and probe schedule) and its retry rules and budget. A *driver* gives it facts and keeps
its appointments:

- the live proxy (:mod:`spofkit.balancer`) forwards bytes for each :class:`~spofkit.policy.attempts.Try` and
  reports how the attempt went; the live health checker runs the probes :meth:`BalancerPolicy.health` asks for;
- the simulator does the same with modelled instances and a virtual clock.

Both drivers call the same methods, so a lesson's explanation holds for both. Every event is handed to ``emit``
and names this balancer. The policy never sleeps or reads a clock; when something will change by itself (an
ejection running out), :meth:`next_wakeup` says when, and the driver calls :meth:`wake` then.

Randomness comes from ``random.Random`` streams made from ``seed``, one per purpose (strategy, slow start, health
check jitter), so changing one feature does not change the dice the others roll.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from typing import TypeVar

from spofkit.events import DEFAULT_BALANCER, Event, SettingChanged, StrategyChanged
from spofkit.policy.attempts import RequestAttempts
from spofkit.policy.failover import EjectionSettings, RetryBudget, RetrySettings
from spofkit.policy.health import UP, HealthMonitor, HealthSettings
from spofkit.policy.pool import Member, Pool
from spofkit.policy.strategies import RequestInfo, Strategy
from spofkit.status import BalancerStatus, MemberView, member_state


def rng_for(seed: int, purpose: str) -> random.Random:
    """A random stream of its own for one purpose: the same ``seed`` and ``purpose`` give the same numbers."""
    return random.Random(f"{seed}/{purpose}")


_Settings = TypeVar("_Settings", RetrySettings, EjectionSettings, HealthSettings)


def protection(name: str, value: _Settings | bool | None, kind: type[_Settings]) -> _Settings | None:
    """A protection's settings as given to a lab or a policy: its settings object, or None (off).

    True means "on, with the defaults" and False "off", as the switches take them; anything else is an error
    that names the argument (rather than an AttributeError from deep inside the first request).
    """
    if value is None or value is False:
        return None
    if value is True:
        return kind()
    if not isinstance(value, kind):
        raise TypeError(
            f"{name} must be a {kind.__name__} (e.g. {kind.__name__}()), None or False to switch it off, "
            f"or True for the defaults; got {value!r}"
        )
    return value


def check_switch(name: str, value: object, kind: type) -> None:
    """A switch (``set_retries``, ``set_ejection``, ``set_health_checks``) takes True, False or its settings."""
    if not isinstance(value, (bool, kind)):
        raise TypeError(f"{name} takes True (on), False (off) or a {kind.__name__}, got {value!r}")


class BalancerPolicy:
    """One balancer's decisions. ``retries``, ``ejection`` and ``health`` set to None switch that protection off."""

    def __init__(
        self,
        emit: Callable[[Event], None],
        *,
        name: str = DEFAULT_BALANCER,
        strategy: Strategy | str = "round_robin",
        retries: RetrySettings | bool | None = RetrySettings(),  # noqa: B008 - frozen, so sharing is safe
        ejection: EjectionSettings | bool | None = EjectionSettings(),  # noqa: B008
        health: HealthSettings | bool | None = HealthSettings(),  # noqa: B008
        slow_start: float = 0.0,
        seed: int = 0,
    ) -> None:
        retries = protection("retries", retries, RetrySettings)
        ejection = protection("ejection", ejection, EjectionSettings)
        health = protection("health", health, HealthSettings)
        self.emit = emit
        self.name = name
        self.seed = seed
        self.pool = Pool(
            emit,
            strategy=strategy,
            ejection=ejection,
            slow_start=slow_start,
            strategy_rng=rng_for(seed, "strategy"),
            slow_start_rng=rng_for(seed, "slow_start"),
            balancer=name,
        )
        self.retries = retries
        self.budget = self._new_budget()
        self.health: HealthMonitor | None = None
        self.health_settings = health or HealthSettings()
        if health is not None:
            self.health = self._new_monitor(health)
        self._request_ids = itertools.count(1)
        self.requests = 0
        self.retried = 0
        self.failed = 0

    # --- members ---------------------------------------------------------------------------------------

    def add_member(
        self,
        name: str,
        url: str,
        now: float,
        *,
        weight: int = 1,
        backup: bool = False,
        max_conns: int | None = None,
        initially_up: bool = True,
    ) -> Member:
        """Put ``name`` in the pool. Without ``initially_up`` it gets traffic only after ``rise`` passed checks."""
        healthy = initially_up or self.health is None
        member = self.pool.add(name, url, now, weight=weight, backup=backup, max_conns=max_conns, healthy=healthy)
        if self.health is not None:
            self.health.add(name, now, initially_up=initially_up)
        return member

    def drain(self, name: str, now: float) -> Member:
        return self.pool.drain(name, now)

    def remove_member(self, name: str, now: float) -> None:
        self.pool.remove(name, now)
        if self.health is not None:
            self.health.remove(name)

    # --- switches ----------------------------------------------------------------------------------------

    def set_strategy(self, spec: Strategy | str, now: float) -> None:
        self.pool.set_strategy(spec)
        self.emit(StrategyChanged(now, self.pool.strategy_name, balancer=self.name))

    @property
    def strategy_name(self) -> str:
        return self.pool.strategy_name

    def set_retries(self, settings: RetrySettings | bool | None, now: float) -> None:
        settings = protection("retries", settings, RetrySettings)
        self.retries = settings
        self.budget = self._new_budget()
        self.emit(SettingChanged(now, "retries", settings is not None, balancer=self.name))

    def set_ejection(self, settings: EjectionSettings | bool | None, now: float) -> None:
        settings = protection("ejection", settings, EjectionSettings)
        self.pool.set_ejection(settings)
        self.emit(SettingChanged(now, "ejection", settings is not None, balancer=self.name))

    @property
    def ejection(self) -> EjectionSettings | None:
        return self.pool.ejection

    def set_health(self, settings: HealthSettings | bool | None, now: float) -> None:
        """Health checks on (every member starts from UP, probed afresh) or off (every member counts as up).

        The driver must drop its probe timers and ask :meth:`HealthMonitor.next_probe_at` again afterwards.
        """
        settings = protection("health", settings, HealthSettings)
        if settings is not None:
            self.health_settings = settings
            self.health = self._new_monitor(settings)
            for name in self.pool.members:
                self.health.add(name, now, initially_up=True)
        else:
            self.health = None
        for name in self.pool.members:
            self.pool.set_healthy(name, True, now)
        self.emit(SettingChanged(now, "health_checks", settings is not None, balancer=self.name))

    def _new_budget(self) -> RetryBudget:
        settings = self.retries or RetrySettings()
        return RetryBudget(settings.budget_ratio, settings.budget_min_per_second, settings.budget_window)

    def _new_monitor(self, settings: HealthSettings) -> HealthMonitor:
        def follow(name: str, state: str, now: float) -> None:
            self.pool.set_healthy(name, state == UP, now)

        return HealthMonitor(settings, rng_for(self.seed, "health"), self.emit, balancer=self.name, on_change=follow)

    # --- requests -----------------------------------------------------------------------------------------

    def new_request(self, request: RequestInfo, now: float, *, body_replayable: bool = True) -> RequestAttempts:
        """A client request arrived: its attempt machine (call ``begin(now)`` on it)."""
        self.requests += 1
        return RequestAttempts(
            self,
            request,
            next(self._request_ids),
            now,
            body_replayable=body_replayable,
            retries=self.retries,
        )

    # --- time -----------------------------------------------------------------------------------------------

    def next_wakeup(self) -> float | None:
        """When something changes by itself (the earliest ejection running out), or None."""
        return self.pool.next_return_at()

    def wake(self, now: float) -> None:
        """Time has come: announce members whose ejection ran out."""
        self.pool.ejections_ended(now)

    # --- reading -----------------------------------------------------------------------------------------------

    def state_of(self, name: str, now: float) -> str:
        """This balancer's state for ``name`` in the words of :mod:`spofkit.status`."""
        member = self.pool.member(name)
        health = self.health.state_of(name) if self.health is not None else None
        return member_state(
            draining=member.draining,
            ejected=self.pool.is_ejected(name, now),
            health_phase=health.phase if health is not None else None,
        )

    def view(self, now: float) -> list[MemberView]:
        rows = []
        settings = self.health_settings
        for member in self.pool.members.values():
            health = self.health.state_of(member.name) if self.health is not None else None
            rows.append(
                MemberView(
                    name=member.name,
                    state=self.state_of(member.name, now),
                    backup=member.backup,
                    weight=member.weight,
                    in_flight=member.in_flight,
                    served=member.served,
                    failed=member.failed,
                    health_successes=health.successes if health else 0,
                    health_failures=health.failures if health else 0,
                    rise=settings.rise,
                    fall=settings.fall,
                    max_conns=member.max_conns,
                    ejected_until=self.pool.outliers.ejected_until(member.name) if self.ejection else None,
                )
            )
        return rows

    def status(self, now: float, url: str) -> BalancerStatus:
        return BalancerStatus(
            name=self.name,
            url=url,
            strategy=self.strategy_name,
            retries=self.retries is not None,
            health_checks=self.health is not None,
            ejection=self.ejection is not None,
            requests=self.requests,
            retried=self.retried,
            failed=self.failed,
            members=tuple(self.view(now)),
        )
