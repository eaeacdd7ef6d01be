"""Commands: every way to change a lab, as small frozen dataclasses.

A click on a widget, a key in the TUI, a ``POST`` to the admin API and a line in a notebook all end up as one of
these, handed to ``Lab.apply(command)``. The lab applies commands one at a time, in the order they arrived, so
two people pressing buttons at once cannot leave it half-changed, and every change has one code path.

A command checks its own fields when it is made: a wrong value raises :class:`CommandError` naming the field, before
anything is touched. What a command *means* for a running lab (an unknown instance, a name already taken, too many
instances) is checked by the lab, which raises the same error with the status an HTTP client should get.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from spofkit.faults import FaultError, make_fault
from spofkit.policy.strategies import STRATEGIES, Strategy

# Names that make a clean URL path segment and Prometheus label.
INSTANCE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
MAX_WEIGHT = 256
# What one machine carries: beyond this the background load starves the lab it runs in. Measured with
# bench/background_load.py (2 shared cores): the highest rate at which a separate client (10 req/s, new connections)
# got no error in any round and a p99 (median over rounds) <= 100 ms, with the load at >= 95 % of its rate, in both
# isolations. 500 passed; 700 did not (503s in a round, p99 150-230 ms); from 1,500 up most rounds collapsed into 503s
# (the shared loop lags, health checks time out, every instance is marked DOWN). See bench/README.md.
MAX_LOAD_RATE = 500.0


class CommandError(ValueError):
    """A command cannot be applied. ``field`` names the culprit; ``status`` is the HTTP status to answer with."""

    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.status = status

    def __reduce__(self) -> tuple[type, tuple[str, str, int]]:  # so that it crosses a process pool whole
        return (type(self), (self.field, self.message, self.status))


class UnknownName(CommandError, KeyError):
    """A command names an instance (or balancer) the lab does not have: HTTP 404, and a ``KeyError`` in Python."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(field, message, status=404)

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # type: ignore[override]
        return (UnknownName, (self.field, self.message))

    def __str__(self) -> str:  # a KeyError would print its message in quotes
        return self.message


def _name(value: Any, field_name: str = "instance") -> str:
    if not isinstance(value, str) or not INSTANCE_NAME.match(value):
        raise CommandError(field_name, f"{field_name} must be 1-32 of a-z 0-9 _ - (starting a-z0-9), got {value!r}")
    return value


def _switch(value: Any, field_name: str) -> None:
    if value is not None and not isinstance(value, bool):
        raise CommandError(field_name, f"{field_name} must be true or false, got {value!r}")


@dataclass(frozen=True)
class Command:
    """Base class. The class name (``InjectFault``…) is how the wire and the logs call a command."""


@dataclass(frozen=True)
class InjectFault(Command):
    """Make ``instance`` fail in the way ``kind`` says (``crash``, ``hang``, ``slow``…) with ``params``."""

    instance: str
    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _name(self.instance)
        if not isinstance(self.params, Mapping):
            raise CommandError("params", f"params must be an object of fault parameters, got {self.params!r}")
        try:
            make_fault(self.kind, **dict(self.params))
        except FaultError as error:
            raise CommandError(error.field or "params", str(error)) from None
        except TypeError as error:  # e.g. a parameter name that is not a string
            raise CommandError("params", f"bad fault parameters: {error}") from None
        object.__setattr__(self, "params", dict(self.params))


@dataclass(frozen=True)
class Recover(Command):
    """Undo ``instance``'s fault (a crashed instance starts again on its port)."""

    instance: str

    def __post_init__(self) -> None:
        _name(self.instance)


@dataclass(frozen=True)
class Restart(Command):
    """Restart ``instance``: a new process in process isolation, on the same port, with no fault."""

    instance: str

    def __post_init__(self) -> None:
        _name(self.instance)


@dataclass(frozen=True)
class AddInstance(Command):
    """Start a new instance and put it in the pool; ``name`` None picks the next free letter."""

    name: str | None = None
    backup: bool = False
    weight: int = 1

    def __post_init__(self) -> None:
        if self.name is not None:
            _name(self.name, "name")
        _switch(self.backup, "backup")
        if isinstance(self.weight, bool) or not isinstance(self.weight, int) or not 0 <= self.weight <= MAX_WEIGHT:
            raise CommandError("weight", f"weight must be a whole number 0..{MAX_WEIGHT}, got {self.weight!r}")


@dataclass(frozen=True)
class RemoveInstance(Command):
    """Drain ``instance`` (in-flight requests finish, no new ones), remove it from the pool and stop it."""

    instance: str

    def __post_init__(self) -> None:
        _name(self.instance)


@dataclass(frozen=True)
class SetStrategy(Command):
    """Change the balancing strategy: a name (``round_robin``, ``least_connections``…) or, from Python, your own
    strategy object (anything with a ``pick`` method; only names travel over the wire)."""

    strategy: str | Strategy

    def __post_init__(self) -> None:
        if isinstance(self.strategy, str):
            if self.strategy not in STRATEGIES:
                known = ", ".join(STRATEGIES)
                raise CommandError("strategy", f"unknown strategy {self.strategy!r}; known: {known}")
        elif not callable(getattr(self.strategy, "pick", None)):
            raise CommandError("strategy", f"a strategy is a name or an object with pick(), got {self.strategy!r}")


@dataclass(frozen=True)
class ChangeSettings(Command):
    """Switch protections on or off; None leaves a switch as it is."""

    retries: bool | None = None
    health_checks: bool | None = None
    ejection: bool | None = None

    def __post_init__(self) -> None:
        for key in ("retries", "health_checks", "ejection"):
            _switch(getattr(self, key), key)


@dataclass(frozen=True)
class SetLoad(Command):
    """The lab's background load: ``rate`` requests/s (0 stops it), ``paused`` true/false; None leaves it."""

    rate: float | None = None
    paused: bool | None = None

    def __post_init__(self) -> None:
        rate = self.rate
        if rate is not None and (
            isinstance(rate, bool)
            or not isinstance(rate, (int, float))
            or not math.isfinite(rate)
            or not 0 <= rate <= MAX_LOAD_RATE
        ):
            raise CommandError("rate", f"rate must be a number of requests/s 0..{MAX_LOAD_RATE:g}, got {rate!r}")
        _switch(self.paused, "paused")


BALANCER_NAME = re.compile(r"^lb[1-9]$")
# A balancer can crash (its process is killed), hang (it accepts and never answers, while its adverts go on) or
# lose its adverts (the link between the pair is cut: split brain).
BALANCER_FAULT_KINDS = ("crash", "hang", "advert_loss")


def _balancer(value: Any) -> str:
    if not isinstance(value, str) or not BALANCER_NAME.match(value):
        raise CommandError("balancer", f"balancer must be a name like 'lb1', got {value!r}")
    return value


@dataclass(frozen=True)
class BalancerFault(Command):
    """Break a balancer of the front door: ``crash``, ``hang`` or ``advert_loss``."""

    balancer: str
    kind: str

    def __post_init__(self) -> None:
        _balancer(self.balancer)
        if self.kind not in BALANCER_FAULT_KINDS:
            raise CommandError(
                "kind", f"a balancer fault is one of {', '.join(BALANCER_FAULT_KINDS)}, got {self.kind!r}"
            )


@dataclass(frozen=True)
class BalancerRecover(Command):
    """Undo a balancer's fault; a crashed one is started again (a new process in process isolation)."""

    balancer: str

    def __post_init__(self) -> None:
        _balancer(self.balancer)


@dataclass(frozen=True)
class BalancerRestart(Command):
    """Restart a balancer: a fresh one (a new process), configured like the others, rejoining the pair."""

    balancer: str

    def __post_init__(self) -> None:
        _balancer(self.balancer)


DEPLOY_TARGETS = ("instances", "balancers")
DEPLOY_WAYS = ("rolling", "all-at-once")


@dataclass(frozen=True)
class Deploy(Command):
    """Replace every instance (``target="instances"``) a ``batch`` at a time — drained, restarted, put back once
    ready and warmed — or all at once, the naive way; or upgrade the balancers by planned takeover."""

    batch: int = 1
    target: str = "instances"
    how: str = "rolling"

    def __post_init__(self) -> None:
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or not 1 <= self.batch <= 32:
            raise CommandError("batch", f"batch must be a whole number 1..32, got {self.batch!r}")
        if self.target not in DEPLOY_TARGETS:
            raise CommandError("target", f"target must be one of {', '.join(DEPLOY_TARGETS)}, got {self.target!r}")
        if self.how not in DEPLOY_WAYS:
            raise CommandError("how", f"how must be one of {', '.join(DEPLOY_WAYS)}, got {self.how!r}")


COMMANDS: dict[str, type[Command]] = {
    cls.__name__: cls
    for cls in (
        InjectFault,
        Recover,
        Restart,
        AddInstance,
        RemoveInstance,
        SetStrategy,
        ChangeSettings,
        SetLoad,
        BalancerFault,
        BalancerRecover,
        BalancerRestart,
        Deploy,
    )
}
