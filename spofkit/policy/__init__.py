"""spofkit's decisions, with no I/O: the part of a balancer that a lesson explains.

Every rule that decides where a request goes and what happens when an instance fails lives here, as plain
objects that are handed ``now`` and seeded ``random.Random`` streams and answer with decisions and events. They
never sleep, read a clock or touch a socket, so the live balancer and the simulator drive the very same code, and
the tests call it with plain function calls.

=====================  ========================================================================================
:mod:`.strategies`     which instance gets the next request (round robin ... peak EWMA, or your own)
:mod:`.health`         rise/fall health states and the probe schedule; the detection window
:mod:`.failover`       the retry rule (idempotency), the retry budget, passive ejection: their settings
:mod:`.counters`       the retry budget and passive ejection themselves (``.failover`` re-exports them)
:mod:`.pool`           who is eligible: health verdicts, ejection, backups, max_conns, slow start, drain
:mod:`.attempts`       one request, attempt by attempt: try here, then there, or answer the client
:mod:`.balancer`       one balancer's whole policy: pool + health + retries + budget
:mod:`.pair`           a balancer pair: adverts, takeover, preempt, the address lease
:mod:`.deploy`         a deploy's plan: batches, the steps in order, "ready" = every balancer saw it pass
=====================  ========================================================================================

Importing this package imports neither asyncio nor aiohttp (a test checks it in a fresh interpreter).
"""

from spofkit.policy.attempts import Action, Fail, Relay, RequestAttempts, Try
from spofkit.policy.balancer import BalancerPolicy, check_switch, protection, rng_for
from spofkit.policy.failover import (
    CONNECT,
    RESET,
    STATUS,
    TIMEOUT,
    EjectionSettings,
    OutlierDetector,
    RetryBudget,
    RetrySettings,
    retry_decision,
)
from spofkit.policy.health import HealthMonitor, HealthSettings, HealthState
from spofkit.policy.pool import Member, NoInstance, Pool
from spofkit.policy.strategies import Backend, RequestInfo, Strategy, make_strategy, strategy_names

__all__ = [
    "CONNECT",
    "RESET",
    "STATUS",
    "TIMEOUT",
    "Action",
    "Backend",
    "BalancerPolicy",
    "EjectionSettings",
    "Fail",
    "HealthMonitor",
    "HealthSettings",
    "HealthState",
    "Member",
    "NoInstance",
    "OutlierDetector",
    "Pool",
    "Relay",
    "RequestAttempts",
    "RequestInfo",
    "RetryBudget",
    "RetrySettings",
    "Strategy",
    "Try",
    "check_switch",
    "make_strategy",
    "protection",
    "retry_decision",
    "rng_for",
    "strategy_names",
]
