"""One client request, attempt by attempt: the balancer's failover as a state machine.

In the manner of h11's ``Connection``, this object does no I/O: the driver tells it what happened to an attempt
and asks it what to do next. A request's whole life reads::

    attempts = policy.new_request(RequestInfo("GET", "/"), now)
    action = attempts.begin(now)                  # Try("b", timeout=1.0) or Fail(503, "no instance ...")
    # ... the driver forwards to b ...
    action = attempts.failed(now, CONNECT, "connection refused", reached_backend=False)   # Try("c", 1.0)
    action = attempts.answered(now, 200)          # Relay("c"): send c's answer to the client
    attempts.finish(now, 200)                     # RequestCompleted is published

The rules it applies:

1. **Where**: each attempt goes to a member chosen by the pool (:mod:`spofkit.policy.pool`), never to one already
   tried for this request (*redispatch*).
2. **How long**: each attempt gets the per-try timeout, cut short by what is left of the overall deadline.
   With retries off, one attempt with a generous 30 s timeout.
3. **What counts as failed**: a refused connection, a reset or empty reply, a per-try timeout, or an answer whose
   status is in ``retry_statuses`` (502/503/504 by default). For passive ejection and the strategies, any 5xx
   answer counts as a failure of that instance, even one passed on to the client.
4. **Whether to try again**: :func:`~spofkit.policy.failover.retry_decision` — the kind of failure, the
   idempotency rule (a POST is retried only if it provably never reached an instance), a body that was streamed
   cannot be sent twice, ``max_attempts``, the deadline, and the retry budget.
5. **The budget is spent only on retries of requests that reached an instance.** A refused connection put no
   load on anyone, so retrying it is free (HAProxy and nginx retry connection failures the same way): with
   retries on, it spends neither the budget nor one of ``max_attempts`` (nginx's ``proxy_next_upstream_tries 0``),
   so four crashed instances out of five cannot use up a GET's attempts before it reaches the fifth. Redispatch
   (each instance once) and the deadline still bound it; the budget bounds the extra load retries add to
   instances that *are* working.
6. **What the client gets when we stop**: the instance's own answer if it gave one (a 503 we may not retry is
   the most honest reply), else 504 after a timeout or 502 after any other failure, with a reason that names
   every instance that failed and why, and ``X-Spof-Attempts``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, TypeVar

from spofkit.events import Event, RequestCompleted, RequestRetried
from spofkit.policy.failover import FAILURE_KINDS, STATUS, TIMEOUT, RetryBudget, RetrySettings, retry_decision
from spofkit.policy.pool import Member, NoInstance, Pool
from spofkit.policy.strategies import RequestInfo


class Owner(Protocol):
    """What the attempts of a request use of their :class:`~spofkit.policy.balancer.BalancerPolicy`.

    (A protocol rather than the class: the balancer's module imports this one, and a module that compiles this
    one with mypyc must not need the class before that module has run.)
    """

    name: str
    pool: Pool
    budget: RetryBudget
    failed: int
    retried: int

    def emit(self, event: Event) -> None: ...


# With retries off, the one attempt may take this long (a balancer without retries still has a timeout).
SINGLE_ATTEMPT_TIMEOUT = 30.0
_NONE_TRIED: frozenset[str] = frozenset()
# Served by the first attempt, served after a retry, or not served.
SERVED = "served"
RETRIED = "retried"
FAILED = "failed"


# The actions are named tuples (immutable, and several times cheaper to make than frozen dataclasses: one or two
# are made for every request). They read as records: ``action.instance``, ``action.timeout``.


class Try(NamedTuple):
    """Forward the request to ``instance``, giving up on this attempt after ``timeout`` seconds."""

    instance: str
    timeout: float
    attempt: int


class Relay(NamedTuple):
    """Pass ``instance``'s answer on to the client: the request is decided."""

    instance: str
    status: int


class Fail(NamedTuple):
    """Answer the client with ``status`` and ``reason`` (JSON): no instance could serve."""

    status: int
    reason: str


Action = Try | Relay | Fail
_Final = TypeVar("_Final", Relay, Fail)


@dataclass(slots=True)  # slots: one is made for every request
class RequestAttempts:
    """The attempts of one client request (rules 1–6 above). Make one with ``BalancerPolicy.new_request``."""

    policy: Owner
    request: RequestInfo
    request_id: int
    started: float
    body_replayable: bool = True
    retries: RetrySettings | None = None
    tried: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # "b: connect failed (refused)", one per failed attempt
    last_status: int = 502
    refused_attempts: int = 0  # attempts that provably never reached an instance (rule 5)
    outcome_action: Action | None = None
    _current: Member | None = None
    _attempt_started: float = 0.0

    @property
    def attempts(self) -> int:
        return len(self.tried)

    @property
    def done(self) -> bool:
        return self.outcome_action is not None

    # --- what the driver tells it -------------------------------------------------------------------------

    def begin(self, now: float) -> Try | Fail:
        """The first action: an attempt on a chosen instance, or a 503 if none is available."""
        if self.tried or self.outcome_action is not None:
            raise RuntimeError("begin() is called once, before any attempt")
        self.policy.budget.record_request(self.started)
        return self._next_attempt(now)

    def answered(self, now: float, status: int) -> Action:
        """The current attempt got an answer with ``status`` (headers, and the body if the driver buffers it)."""
        member = self._take_current()
        ok = status < 500
        self.policy.pool.attempt_finished(member, ok, now - self._attempt_started, now)
        retries = self.retries
        if retries is None or status not in retries.retry_statuses:
            return self._decide(Relay(member.name, status))
        self.last_status = 502
        return self._after_failure(now, member, STATUS, f"answered {status}", reached_backend=True, status=status)

    def failed(self, now: float, failure: str, detail: str, *, reached_backend: bool = True) -> Action:
        """The current attempt failed: ``failure`` is one of CONNECT, RESET, TIMEOUT; ``detail`` says how.

        ``reached_backend=False`` only when the request provably never reached the instance (connection refused).
        """
        if failure not in FAILURE_KINDS or failure == STATUS:
            raise ValueError(f"failure must be one of connect, reset, timeout; got {failure!r}")
        member = self._take_current()
        self.policy.pool.attempt_finished(member, False, now - self._attempt_started, now)
        self.last_status = 504 if failure == TIMEOUT else 502
        return self._after_failure(now, member, failure, detail, reached_backend=reached_backend, status=None)

    def finish(self, now: float, status: int, *, delivered: bool = True, reason: str = "") -> RequestCompleted:
        """The client has its answer (``delivered=False``: the answer was cut off on the way). Publishes it."""
        action = self.outcome_action
        if action is None:
            raise RuntimeError("finish() comes after a Relay or Fail action")
        tried = self.tried
        if type(action) is Relay and delivered:
            outcome = SERVED if len(tried) == 1 else RETRIED
            instance: str | None = action.instance
        else:
            outcome, instance = FAILED, None
            self.policy.failed += 1
            if isinstance(action, Fail):
                reason = reason or action.reason
            else:
                reason = reason or f"{action.instance}: answer cut off on the way to the client"
        event = RequestCompleted(
            now,
            self.request_id,
            self.request.method,
            self.request.path.split("?", 1)[0],
            status,
            instance,
            len(tried),
            now - self.started,
            outcome,
            reason,
            tried[-1] if tried else None,
            balancer=self.policy.name,
        )
        self.policy.emit(event)
        return event

    # --- the rules -----------------------------------------------------------------------------------------

    def _take_current(self) -> Member:
        if self._current is None:
            raise RuntimeError("there is no attempt in progress: act on the last Try first")
        member, self._current = self._current, None
        return member

    def _next_attempt(self, now: float) -> Try | Fail:
        tried = self.tried
        policy = self.policy
        try:
            member = policy.pool.choose(self.request, now, set(tried) if tried else _NONE_TRIED)
        except NoInstance as none:
            if tried:  # rule 6: say what went wrong before we ran out
                return self._decide(Fail(self.last_status, f"{'; '.join(self.failures)}; {none.reason}"))
            return self._decide(Fail(none.status, none.reason))
        retries = self.retries
        if retries is None:
            timeout = SINGLE_ATTEMPT_TIMEOUT - (now - self.started)
        else:
            left = retries.deadline - (now - self.started)
            timeout = retries.per_try_timeout if retries.per_try_timeout < left else left
        if timeout < 0.001:
            timeout = 0.001
        tried.append(member.name)
        self._current = member
        self._attempt_started = now
        policy.pool.attempt_started(member)
        return Try(member.name, timeout, len(tried))

    def _after_failure(
        self, now: float, member: Member, failure: str, detail: str, *, reached_backend: bool, status: int | None
    ) -> Action:
        self.failures.append(f"{member.name}: {detail}")
        budget = self.policy.budget
        free = not reached_backend  # rule 5
        if free and self.retries is not None:
            self.refused_attempts += 1
        decision = retry_decision(
            self.retries or RetrySettings(max_attempts=1),
            failure=failure,
            method=self.request.method,
            reached_backend=reached_backend,
            attempts_made=self.attempts - self.refused_attempts,
            elapsed=now - self.started,
            budget_allows=free or budget.can_retry(now),
            body_replayable=self.body_replayable or not reached_backend,
        )
        if not decision.retry:
            if status is not None:  # rule 6: the instance's own answer is the most honest reply
                return self._decide(Relay(member.name, status))
            return self._decide(Fail(self.last_status, f"{self.failures[-1]} (not retried: {decision.reason})"))
        if not free:
            budget.spend(now)
        self.policy.retried += 1
        self.policy.emit(RequestRetried(now, self.request_id, self.attempts, member.name, detail, self.policy.name))
        return self._next_attempt(now)

    def _decide(self, action: _Final) -> _Final:
        self.outcome_action = action
        return action
