"""A balancer, simulated: the live balancer's driver loop, with modelled instances instead of sockets.

Every decision is :class:`spofkit.policy.BalancerPolicy`'s — which member an attempt goes to, whether to retry,
the health verdicts and the probe schedule, ejections. :class:`SimBalancer` only does what the live
:class:`spofkit.balancer.Balancer` and :class:`spofkit.health.HealthChecker` do around it:

1. for each client request, ask the attempt machine what to do, send the attempt to the instance it names,
   wait for the answer or the per-try timeout (whichever comes first), and tell the machine what happened;
2. probe each instance when the health monitor says a probe is due, with the check's timeout, and report the
   result; and set a timer for the moment an ejection runs out.

An attempt that timed out is abandoned, not cancelled: the instance goes on working on it (as a real server does
when its client hangs up), it just answers nobody.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Protocol

from spofkit.clock import Wakeup
from spofkit.events import DEFAULT_BALANCER, EventBus
from spofkit.policy import (
    CONNECT,
    RESET,
    TIMEOUT,
    Action,
    BalancerPolicy,
    EjectionSettings,
    HealthMonitor,
    HealthSettings,
    Relay,
    RequestAttempts,
    RequestInfo,
    RetrySettings,
    Strategy,
    Try,
)
from spofkit.sim.instance import ANSWER, REFUSED, SimInstance, Visit
from spofkit.sim.scheduler import SimScheduler, SimTimer
from spofkit.status import BalancerStatus


class Caller(Protocol):
    """The client side of one request, as a balancer answers it."""

    @property
    def request(self) -> RequestInfo:
        """What the client sent: method, path, headers."""
        ...

    def answered(self, status: int, instance: str | None, attempts: int) -> None: ...

    def failed(self, error: str) -> None:
        """No answer: the connection was refused (``connect``) or cut (``reset``)."""

    def needs_timer(self, by: float) -> None:
        """The balancer may not answer before virtual time ``by``: the client should be ready to give up."""


class _Call:
    """One client request inside the balancer: its attempt machine and the attempt in progress."""

    __slots__ = ("attempts", "caller", "instance", "per_try", "timeout", "visit")

    def __init__(self, caller: Caller, attempts: RequestAttempts) -> None:
        self.caller = caller
        self.attempts = attempts
        self.visit: Visit | None = None
        self.timeout: SimTimer | None = None
        self.per_try = 0.0
        self.instance = ""  # the instance of the attempt in progress


class SimBalancer:
    """One simulated balancer in front of ``instances`` (shared with the lab, which adds and removes them)."""

    def __init__(
        self,
        scheduler: SimScheduler,
        events: EventBus,
        instances: dict[str, SimInstance],
        *,
        name: str = DEFAULT_BALANCER,
        strategy: Strategy | str = "round_robin",
        retries: RetrySettings | None = RetrySettings(),  # noqa: B008 - frozen, so sharing is safe
        ejection: EjectionSettings | None = EjectionSettings(),  # noqa: B008
        health: HealthSettings | None = HealthSettings(),  # noqa: B008
        slow_start: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.scheduler = scheduler
        self.events = events
        self.instances = instances
        self.name = name
        self.url = f"sim://{name}"
        self.policy = BalancerPolicy(
            events.publish,
            name=name,
            strategy=strategy,
            retries=retries,
            ejection=ejection,
            health=health,
            slow_start=slow_start,
            seed=seed,
        )
        self.running = True
        self._probe_timers: dict[str, SimTimer] = {}
        self._probing: dict[str, Visit] = {}
        self._wakeup = Wakeup(self.scheduler, lambda: self.policy.next_wakeup(), lambda now: self.policy.wake(now))
        self._drained: dict[str, Callable[[], None]] = {}
        self._calls: dict[_Call, None] = {}  # requests in progress, in arrival order

    # --- members ------------------------------------------------------------------------------------------

    def add_member(self, name: str, *, weight: int = 1, backup: bool = False, initially_up: bool = True) -> None:
        self.policy.add_member(
            name,
            self.instances[name].url,
            self.scheduler.now(),
            weight=weight,
            backup=backup,
            initially_up=initially_up,
        )
        self._schedule_probe(name)

    def drain(self, name: str, when_drained: Callable[[], None]) -> None:
        """No new requests for ``name``; ``when_drained()`` once its last attempt is over (maybe at once)."""
        member = self.policy.drain(name, self.scheduler.now())
        if member.in_flight == 0:
            when_drained()
        else:
            self._drained[name] = when_drained

    def remove_member(self, name: str) -> None:
        self._drained.pop(name, None)
        self._stop_probing(name)
        self.policy.remove_member(name, self.scheduler.now())

    # --- switches -------------------------------------------------------------------------------------------

    def set_health(self, settings: HealthSettings | None) -> None:
        """Health checks on (every member from UP, probed afresh) or off: the probe schedule follows."""
        self.policy.set_health(settings, self.scheduler.now())
        for name in list(self._probe_timers) + list(self._probing):
            self._stop_probing(name)
        for name in self.policy.pool.members:
            self._schedule_probe(name)

    def crash(self) -> None:
        """Die as a killed process does: no more probes or timers, and every request in progress is cut off."""
        self.running = False
        for name in list(self._probe_timers) + list(self._probing):
            self._stop_probing(name)
        self._wakeup.cancel()
        calls, self._calls = list(self._calls), {}
        for call in calls:
            if call.visit is not None:
                call.visit.abandoned = True  # the instance finishes its work for nobody
            if call.timeout is not None:
                call.timeout.cancel()
            call.caller.failed("reset")

    # --- requests -------------------------------------------------------------------------------------------

    def handle(self, caller: Caller) -> None:
        """A client request arrived now."""
        now = self.scheduler._now
        attempts = self.policy.new_request(caller.request, now)
        call = _Call(caller, attempts)
        self._calls[call] = None
        self._carry_out(call, attempts.begin(now), now)

    def _carry_out(self, call: _Call, action: Action, now: float) -> None:
        """Follow the attempt machine until it needs to wait for an instance, or has decided."""
        attempts = call.attempts
        while isinstance(action, Try):
            visit = Visit(self, False, call)
            call.visit, call.instance = visit, action.instance
            if self.instances[action.instance].receive(visit):
                action = self._outcome(call, visit, now)
                continue
            deadline = now + action.timeout
            # A timer only when the answer may come too late: most answers are known in advance.
            if visit.finish_at is None or visit.finish_at > deadline:
                call.per_try = action.timeout
                call.timeout = self.scheduler.call_at(deadline, functools.partial(self._timed_out, call))
                call.caller.needs_timer(deadline)
            return
        attempts.finish(now, action.status)
        del self._calls[call]
        call.visit = None  # no cycle left for the garbage collector to find
        status = action.status
        call.caller.answered(status, action.instance if isinstance(action, Relay) else None, attempts.attempts)

    def _outcome(self, call: _Call, visit: Visit, now: float) -> Action:
        """Tell the attempt machine how the attempt went; it answers what to do next."""
        attempts = call.attempts
        if visit.outcome == ANSWER:
            action = attempts.answered(now, visit.status)
            if visit.status >= 500:  # a 5xx counts as a failure: it may have ejected the instance
                self._arm_wakeup()
        elif visit.outcome == REFUSED:
            action = attempts.failed(now, CONNECT, "connect failed (Connect call failed)", reached_backend=False)
            self._arm_wakeup()  # a failure may have ejected someone: be there when it ends
        else:
            action = attempts.failed(now, RESET, "connection lost (ServerDisconnectedError)")
            self._arm_wakeup()
        if self._drained:
            self._note_drained(call.instance)
        return action

    def visit_done(self, visit: Visit) -> None:
        if visit.health_check:
            self._probe_done(visit)
            return
        call = visit.context
        assert isinstance(call, _Call)
        if call.visit is not visit or not self.running:
            return  # an attempt given up on already, or a balancer that died meanwhile
        if call.timeout is not None:
            call.timeout.cancel()
            call.timeout = None
        now = self.scheduler._now
        self._carry_out(call, self._outcome(call, visit, now), now)

    def _timed_out(self, call: _Call) -> None:
        visit, call.visit, call.timeout = call.visit, None, None
        assert visit is not None
        visit.abandoned = True
        now = self.scheduler._now
        action = call.attempts.failed(now, TIMEOUT, f"no answer within {call.per_try:.2f}s")
        self._arm_wakeup()
        self._note_drained(call.instance)
        self._carry_out(call, action, now)

    def _note_drained(self, name: str) -> None:
        """An attempt on ``name`` is over: if ``name`` is being drained and that was its last, say so."""
        if name in self._drained:
            member = self.policy.pool.members.get(name)
            if member is None or member.in_flight == 0:
                self._drained.pop(name)()

    # --- ejections running out -------------------------------------------------------------------------------

    def _arm_wakeup(self) -> None:
        self._wakeup.arm()

    # --- health checks (what spofkit.health.HealthChecker does live) ---------------------------------------

    def _schedule_probe(self, name: str) -> None:
        monitor = self.policy.health
        if not self.running or monitor is None or name in self._probing:
            return
        due = monitor.next_probe_at(name)
        if due is None:
            return
        old = self._probe_timers.pop(name, None)
        if old is not None:
            old.cancel()
        self._probe_timers[name] = self.scheduler.call_at(due, lambda: self._launch_probe(name, monitor))

    def _launch_probe(self, name: str, monitor: HealthMonitor) -> None:
        self._probe_timers.pop(name, None)
        instance = self.instances.get(name)
        if monitor is not self.policy.health or instance is None:
            return
        now = self.scheduler._now
        monitor.probe_started(name, now)
        visit = Visit(self, True, name)
        self._probing[name] = visit
        if instance.receive(visit):
            self._probe_done(visit)
            return
        deadline = now + monitor.settings.timeout
        if visit.finish_at is None or visit.finish_at >= deadline:  # an answer at the deadline is too late
            visit.give_up = self.scheduler.call_at(deadline, lambda: self._probe_timed_out(visit))

    def _probe_timed_out(self, visit: Visit) -> None:
        visit.abandoned = True
        self._probe_result(visit, False, "timeout")

    def _probe_done(self, visit: Visit) -> None:
        if visit.give_up is not None:
            visit.give_up.cancel()
            if self.scheduler._now >= visit.give_up.at:  # an answer just as the timeout runs out is too late
                self._probe_timed_out(visit)
                return
        monitor = self.policy.health
        if visit.outcome == ANSWER:
            settings = monitor.settings if monitor is not None else HealthSettings()  # (checks just switched off)
            self._probe_result(visit, settings.passes(visit.status), str(visit.status))
        elif visit.outcome == REFUSED:
            self._probe_result(visit, False, "refused")
        else:
            self._probe_result(visit, False, "ServerDisconnectedError")

    def _probe_result(self, visit: Visit, ok: bool, detail: str) -> None:
        name = visit.context
        assert isinstance(name, str)
        if self._probing.get(name) is not visit:
            return  # a probe of an old schedule (checks switched, or the member removed)
        del self._probing[name]
        monitor = self.policy.health
        if monitor is None or name not in self.policy.pool.members:
            return
        monitor.probe_finished(name, ok, detail, self.scheduler._now)
        self._schedule_probe(name)

    def _stop_probing(self, name: str) -> None:
        timer = self._probe_timers.pop(name, None)
        if timer is not None:
            timer.cancel()
        visit = self._probing.pop(name, None)
        if visit is not None:
            visit.abandoned = True

    # --- reading ---------------------------------------------------------------------------------------------

    def status(self) -> BalancerStatus:
        return self.policy.status(self.scheduler.now(), self.url)


__all__ = ["Caller", "SimBalancer"]
