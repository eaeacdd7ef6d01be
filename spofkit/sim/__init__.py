"""spofkit.sim: the same policies, in virtual time — a discrete-event simulator of a lab.

The live lab moves real bytes between real processes; this package moves nothing. A heap of timers with a
virtual ``now`` (:class:`SimScheduler`) stands where the asyncio loop stands, modelled instances
(:class:`SimInstance`: workers, a queue, the faults of :func:`spofkit.faults.effect`) stand where the servers
stand, and every random draw comes from a stream seeded by the lab's seed. What decides — where each request
goes, whether it is retried, when an instance is marked down or ejected, who holds a pair's address — is
:mod:`spofkit.policy`, the very objects the live balancer calls. Nothing in this package makes such a decision.

=======================  ======================================================================================
:mod:`.scheduler`        virtual time: a heap of timers (implements :class:`spofkit.clock.Scheduler`)
:mod:`.capacity`         workers, queue and work time of an instance
:mod:`.instance`         a modelled instance, its lifecycle and faults
:mod:`.balancer`         the balancer's driver loop around :class:`spofkit.policy.BalancerPolicy`
:mod:`.client`           an open-loop load that records every request
:mod:`.frontdoor`        one balancer in front; :mod:`.pair` two, with VRRP's rules and fencing
:mod:`.failures`         random failures of instances and groups (MTBF / MTTR)
:mod:`.digest`           one hash of a whole event log
:mod:`.lab`              :class:`SimLab`: the Lab's interface over all of it
:mod:`.replicate`        seeded replications on any ``concurrent.futures.Executor``
``examples/``            scenario files to start from (:mod:`spofkit.scenario` runs them)
=======================  ======================================================================================
"""

from spofkit.sim.capacity import Capacity, ModelError
from spofkit.sim.digest import EventDigest
from spofkit.sim.failures import FailureGroup, FailureProcess, failure_plan
from spofkit.sim.instance import InstanceLoad
from spofkit.sim.lab import SimLab
from spofkit.sim.scheduler import SimScheduler, SimTimer


def is_compiled() -> bool:
    """Is the simulator running from a compiled copy (``bench/compile_sim.py``: its hot modules are extension
    modules) rather than from the source? ``spofkit run`` says which, since a copy on ``PYTHONPATH`` is silently
    passed over when the source comes first on ``sys.path`` (``python -m`` from the project folder)."""
    from spofkit.sim import scheduler

    return not str(scheduler.__file__).endswith(".py")


__all__ = [
    "Capacity",
    "EventDigest",
    "FailureGroup",
    "FailureProcess",
    "InstanceLoad",
    "ModelError",
    "SimLab",
    "SimScheduler",
    "SimTimer",
    "failure_plan",
    "is_compiled",
]
