"""Faults: the ways a service instance can go wrong, as plain data.

Each kind of failure a lesson talks about is one small frozen dataclass, with its parameters and sane defaults:

========  =====================================================================================
Crash     the process is gone: connections are refused, open ones are cut.
Hang      connections are accepted but nothing is ever answered (not even the health check).
Slow      every answer takes ``ms`` milliseconds longer (give or take ``jitter_ms``).
Error     a ``rate`` fraction of requests, health checks included, are answered with ``status``.
Gray      the health check says "ok" while a ``rate`` fraction of real requests fail: a *gray* failure.
Flap      down for ``period`` seconds, up for ``period`` seconds, again and again (starting down).
Reset     a ``rate`` fraction of real answers are cut off halfway: the client sees a truncated reply.
Warmup    a freshly (re)started instance is slow: +``extra_ms`` at first, fading to 0 over ``seconds``.
========  =====================================================================================

A fault is only a description; :mod:`spofkit.instance` makes it happen. Faults validate themselves when built,
so a typo in a notebook fails at once with a message naming the wrong field, instead of silently injecting
nothing. :func:`make_fault` builds one from a name and keyword arguments (what a CLI, a widget or the control
channel of a child process has in hand).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

# Upper bounds that keep a fault what it says: a minute of added latency is "slow"; longer is a hang (use hang).
MAX_DELAY_MS = 60_000.0
# An hour: longer than any lesson or demo; a flap or warmup beyond it is a typo.
MAX_SECONDS = 3600.0
MIN_FLAP_PERIOD = 0.1


class FaultError(ValueError):
    """A fault description is wrong. ``field`` names the culprit: ``"kind"`` or a parameter's name."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _number(
    default: float,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    integer: bool = False,
) -> Any:
    """A dataclass field holding a number, with the range it must lie in (checked by ``Fault``)."""
    rule = {"low": low, "high": high, "low_open": low_open, "integer": integer}
    return field(default=default, metadata=rule)


def _rate() -> Any:
    return _number(1.0, low=0.0, high=1.0)


def _status() -> Any:
    # An error answer: 4xx or 5xx. (A 1xx would leave the client waiting, a 2xx would be no error at all.)
    return _number(500, low=400, high=599, integer=True)


@dataclass(frozen=True)
class Fault:
    """Base class. ``kind`` is the fault's short name; ``params()`` its parameters, for events and logs."""

    kind: ClassVar[str] = "fault"

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):
            value = _checked(self.kind, spec, getattr(self, spec.name))
            object.__setattr__(self, spec.name, value)  # frozen: store the normalised value

    def params(self) -> dict[str, Any]:
        return {spec.name: getattr(self, spec.name) for spec in dataclasses.fields(self)}

    def describe(self) -> str:
        """``slow(ms=200.0, jitter_ms=0.0)``"""
        args = ", ".join(f"{name}={value}" for name, value in self.params().items())
        return f"{self.kind}({args})"


def _checked(kind: str, spec: dataclasses.Field[Any], value: Any) -> Any:
    """Check one parameter against its field's rule; return it as an int or a float."""
    rule = spec.metadata
    where = f"{kind}.{spec.name}"
    # bool is a subclass of int, but `rate=True` is a mistake, not a number.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        wanted = "an integer" if rule["integer"] else "a number"
        raise FaultError(spec.name, f"{where} must be {wanted}, got {value!r}")
    if rule["integer"]:
        if isinstance(value, float) and not value.is_integer():
            raise FaultError(spec.name, f"{where} must be an integer, got {value!r}")
        value = int(value)
    else:
        value = float(value)
        if not math.isfinite(value):  # NaN slips past every comparison below, and JSON cannot carry it
            raise FaultError(spec.name, f"{where} must be a finite number, got {value!r}")
    low, high = rule["low"], rule["high"]
    if low is not None and (value <= low if rule["low_open"] else value < low):
        bound = f"> {low}" if rule["low_open"] else f">= {low}"
        raise FaultError(spec.name, f"{where} must be {bound}, got {value!r}")
    if high is not None and value > high:
        raise FaultError(spec.name, f"{where} must be <= {high}, got {value!r}")
    return value


@dataclass(frozen=True)
class Crash(Fault):
    kind: ClassVar[str] = "crash"


@dataclass(frozen=True)
class Hang(Fault):
    kind: ClassVar[str] = "hang"


@dataclass(frozen=True)
class Slow(Fault):
    kind: ClassVar[str] = "slow"
    ms: float = _number(200.0, low=0.0, high=MAX_DELAY_MS)
    jitter_ms: float = _number(0.0, low=0.0, high=MAX_DELAY_MS)


@dataclass(frozen=True)
class Error(Fault):
    kind: ClassVar[str] = "error"
    rate: float = _rate()
    status: int = _status()


@dataclass(frozen=True)
class Gray(Fault):
    kind: ClassVar[str] = "gray"
    rate: float = _rate()
    status: int = _status()


@dataclass(frozen=True)
class Flap(Fault):
    kind: ClassVar[str] = "flap"
    # A tenth of a second at least: faster than that, the instance would spend its time opening and closing
    # its socket, and no health check could follow it anyway.
    period: float = _number(2.0, low=MIN_FLAP_PERIOD, high=MAX_SECONDS)

    def is_down(self, elapsed: float) -> bool:
        """Down for the first ``period``, up for the next, and so on (``elapsed`` since the fault began)."""
        return int(elapsed // self.period) % 2 == 0

    def next_change(self, elapsed: float) -> float:
        """When (in the same ``elapsed`` seconds) the instance next goes up or down."""
        return (math.floor(elapsed / self.period) + 1) * self.period


@dataclass(frozen=True)
class Reset(Fault):
    kind: ClassVar[str] = "reset"
    rate: float = _rate()


@dataclass(frozen=True)
class Warmup(Fault):
    kind: ClassVar[str] = "warmup"
    seconds: float = _number(5.0, low=0.0, low_open=True, high=MAX_SECONDS)
    extra_ms: float = _number(300.0, low=0.0, high=MAX_DELAY_MS)

    def extra_delay(self, elapsed: float) -> float:
        """Seconds added to a request ``elapsed`` seconds after the warmup began (linear decay to 0)."""
        remaining = max(0.0, 1.0 - elapsed / self.seconds)
        return self.extra_ms / 1000.0 * remaining


@dataclass(frozen=True)
class Effect:
    """What one request, or one health probe, meets at an instance with a fault."""

    refused: bool = False  # nobody listens: the connection is refused
    hangs: bool = False  # accepted, never answered
    delay: float = 0.0  # seconds added before the answer
    status: int | None = None  # an error status instead of the real answer
    cut_off: bool = False  # the answer stops halfway and the connection drops

    def fails_probe(self, timeout: float, expect: tuple[int, ...] = (200,)) -> bool:
        """Would a health probe with this ``timeout``, expecting one of ``expect``, fail?"""
        wrong = self.status is not None and self.status not in expect
        return self.refused or self.hangs or self.delay >= timeout or wrong


class Dice(Protocol):
    """The random draws a fault needs (``random.Random`` has them)."""

    def random(self) -> float: ...

    def uniform(self, a: float, b: float) -> float: ...


NO_FAULT = Effect()


def effect(fault: Fault | None, *, health_check: bool, elapsed: float, dice: Dice) -> Effect:
    """The one definition of what each fault does, used by the live instances and the simulator alike.

    ``health_check`` says whether this is a ``GET /health`` probe (a gray failure spares those; a reset cuts
    only real answers); ``elapsed`` is how long the fault has been active; ``dice`` decides the ``rate``-based
    ones and slow's jitter.
    """
    if fault is None:
        return NO_FAULT
    if isinstance(fault, Crash):
        return Effect(refused=True)
    if isinstance(fault, Hang):
        return Effect(hangs=True)
    if isinstance(fault, Flap):
        return Effect(refused=fault.is_down(elapsed))
    if isinstance(fault, Slow):
        jitter = dice.uniform(-fault.jitter_ms, fault.jitter_ms) if fault.jitter_ms else 0.0
        return Effect(delay=max(0.0, fault.ms + jitter) / 1000.0)
    if isinstance(fault, Warmup):
        return Effect(delay=fault.extra_delay(elapsed))
    if isinstance(fault, (Error, Gray)):
        # An error hits health checks too; a gray failure spares them, which is what makes it gray.
        spared = health_check and isinstance(fault, Gray)
        return Effect(status=fault.status) if not spared and dice.random() < fault.rate else NO_FAULT
    if isinstance(fault, Reset):
        return Effect(cut_off=not health_check and dice.random() < fault.rate)
    raise TypeError(f"effect() has no rule for {fault!r}")


FAULT_KINDS: dict[str, type[Fault]] = {cls.kind: cls for cls in (Crash, Hang, Slow, Error, Gray, Flap, Reset, Warmup)}


def make_fault(kind: str, **params: Any) -> Fault:
    """Build a fault from its name and parameters, e.g. ``make_fault("slow", ms=500)``.

    Raises :class:`FaultError` naming the field for an unknown kind, an unknown parameter, a wrong type or a
    value out of range.
    """
    cls = FAULT_KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        known = ", ".join(FAULT_KINDS)
        raise FaultError("kind", f"unknown fault kind {kind!r} (known: {known})")
    allowed = [spec.name for spec in dataclasses.fields(cls)]
    for name in params:
        if name not in allowed:
            accepts = ", ".join(allowed) if allowed else "no parameters"
            raise FaultError(name, f"{kind} has no parameter {name!r} (it accepts {accepts})")
    return cls(**params)


@dataclass(frozen=True)
class Preset:
    """A fault as a button or a key injects it: a name for people, the fault kind and its parameters."""

    name: str
    kind: str
    params: dict[str, Any]
    description: str

    def fault(self) -> Fault:
        return make_fault(self.kind, **self.params)


# The faults that the TUI's keys and the widgets' buttons inject, in one place: strong enough to see at once,
# mild enough to recover from. The slow ones are measured against the teaching health check (timeout 0.3 s):
# "slow" stays under it, so the node stays UP and only latency suffers; "too_slow" goes over it, so it is DOWN.
PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset("crash", "crash", {}, "the process dies: connections are refused"),
        Preset("hang", "hang", {}, "accepts connections, never answers (health checks time out)"),
        Preset(
            "slow",
            "slow",
            {"ms": 200.0, "jitter_ms": 30.0},
            "+200 ms per answer: health checks still pass, so it stays UP, but p99 suffers",
        ),
        Preset(
            "too_slow",
            "slow",
            {"ms": 600.0, "jitter_ms": 50.0},
            "+600 ms per answer: slower than the health check's timeout, so it is marked DOWN",
        ),
        Preset("error", "error", {"rate": 0.5, "status": 503}, "half the answers are 503, health checks too"),
        Preset("gray", "gray", {"rate": 0.5, "status": 503}, "health checks pass, half the real requests fail"),
        Preset("flap", "flap", {"period": 2.0}, "down 2 s, up 2 s, again and again"),
    )
}
