"""Scenario files: one experiment, written down once, run on either driver.

A scenario is a TOML file that says what a lab is made of, what load it gets and what goes wrong::

    seed = 1

    [lab]
    instances = 3
    strategy = "round_robin"
    work_ms = 5            # mean work time of a request
    concurrency = 8        # workers per instance (omit: no limit)
    queue = 64             # requests that may wait for a worker; beyond: 503

    [health]               # or: health = false
    interval = 0.2
    fall = 2

    [retries]              # or: retries = false
    per_try_timeout = 0.5

    [load]
    rate = 200             # requests per second
    duration = 5           # seconds

    [[faults]]
    at = 1.0
    instance = "b"
    kind = "crash"         # any fault of spofkit.faults, with its parameters: kind = "slow", ms = 300
    recover_at = 3.0       # optional; a later fault of the same instance replaces this one, as live

    [[faults]]             # a balancer's own fault (crash, hang, advert_loss), with [lab] balancers = 2
    at = 2.0
    balancer = "lb1"
    kind = "advert_loss"

    [failures]             # random failures of every instance
    mtbf = 30
    mttr = 3
    distribution = "exponential"   # or "weibull", with shape = 1.5

    [[groups]]             # instances that fail together: a zone, a rack
    name = "zone-1"
    instances = ["a", "b"]
    mtbf = 300
    mttr = 10

``spofkit run SCENARIO.toml [--sim | --live] [--seed S] [--json]`` runs it (:func:`run_scenario_cli`): in the
simulator by default — in virtual time, the same seed giving the same event log and so the same ``digest`` — or
on a live lab of real servers, in real time. Every key is checked before anything runs; a wrong one is named
(``lab.concurrency: must be a whole number, got 'eight'``). Times are seconds from the start of the load.

Instance capacity (``concurrency``, ``queue``, ``work_ms``, ``spread_ms``, ``distribution``) means the same on
both drivers: a live instance has that many workers and that queue, and sheds with 503 beyond it
(:mod:`spofkit.instance`). The live driver cannot do everything the simulator does (yet): Poisson arrivals and
fencing are simulator-only, and a live run is limited to a few minutes and 26 instances; asking for them live is
an error that says so, rather than a run that silently ignores them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from spofkit.capacity import Capacity, ModelError
from spofkit.commands import (
    BALANCER_FAULT_KINDS,
    BalancerFault,
    BalancerRecover,
    Command,
    InjectFault,
    Recover,
)
from spofkit.faults import FAULT_KINDS, FaultError, make_fault
from spofkit.loadgen import check_method
from spofkit.policy import EjectionSettings, HealthSettings, RetrySettings, strategy_names
from spofkit.report import Report
from spofkit.sim.failures import FailureGroup, FailureProcess, failure_plan
from spofkit.sim.lab import BYTES_PER_REQUEST, MAX_RUN_MEMORY, MAX_RUN_REQUESTS
from spofkit.sim.lab import MAX_INSTANCES as MAX_SIM_INSTANCES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 has no tomllib
    import tomli as tomllib  # type: ignore[import-not-found, no-redef]

DRIVERS = ("sim", "live")
MAX_LIVE_DURATION = 300.0  # a live run takes real time: longer ones belong to the simulator
MAX_LIVE_INSTANCES = 26
MAX_SIM_DURATION = 366 * 86400.0
MAX_SEED = 2**63 - 1  # seeds are 64-bit signed wherever they are stored
PAIR_MODES = ("active-passive", "active-active")
FAULT_KEYS = ("at", "instance", "balancer", "kind", "recover_at")


class ScenarioError(ValueError):
    """A scenario is wrong. ``key`` names the culprit, as ``lab.concurrency`` or ``faults[2].kind``."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # so that it crosses a process pool whole
        return (type(self), (self.key, self.message))


@dataclass(frozen=True)
class ScenarioFault:
    """A fault injected ``at`` seconds into the run, undone at ``recover_at`` (if given).

    It breaks an instance (``instance``, one of the 8 faults) or a balancer (``balancer``: crash, hang or
    advert_loss), never both.
    """

    at: float
    instance: str | None
    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)
    recover_at: float | None = None
    balancer: str | None = None


@dataclass(frozen=True)
class Scenario:
    """A parsed, checked scenario. Build one with :func:`load_scenario` or :func:`parse_scenario`."""

    name: str = "scenario"
    seed: int = 0
    instances: int = 3
    backups: int = 0
    strategy: str = "round_robin"
    capacity: Capacity = field(default_factory=Capacity)
    slow_start: float = 0.0
    balancers: int = 1
    pair: str | None = None
    advert_interval: float = 0.2
    preempt: bool = True
    fencing: bool = False
    health: HealthSettings | None = field(default_factory=HealthSettings)
    retries: RetrySettings | None = field(default_factory=RetrySettings)
    ejection: EjectionSettings | None = field(default_factory=EjectionSettings)
    rate: float = 100.0
    duration: float = 5.0
    arrivals: str = "uniform"
    method: str = "GET"
    client_timeout: float = 5.0
    faults: tuple[ScenarioFault, ...] = ()
    failures: FailureProcess | None = None
    groups: tuple[FailureGroup, ...] = ()

    @property
    def instance_names(self) -> list[str]:
        from spofkit.sim.lab import instance_names

        names = instance_names()
        return [next(names) for _ in range(self.instances + self.backups)]


# --- reading a scenario ---------------------------------------------------------------------------------


def load_scenario(path: str | Path) -> Scenario:
    """Read and check a scenario file. Raises :class:`ScenarioError` (an unreadable file is ``file``)."""
    source = Path(path)
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except OSError as error:
        raise ScenarioError("file", f"cannot read {str(source)!r}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise ScenarioError(
            "file", f"{source.name} is not UTF-8 text (byte {error.object[error.start]:#04x} at offset {error.start})"
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError("file", f"{source.name} is not valid TOML: {error}") from None
    return parse_scenario(data, name=source.stem)


def parse_scenario(data: Mapping[str, Any], *, name: str = "scenario") -> Scenario:
    """Check a scenario given as a mapping (what a TOML file holds) and build it."""
    _only(
        "scenario",
        data,
        ("seed", "name", "lab", "health", "retries", "ejection", "load", "faults", "failures", "groups"),
    )
    lab = _table(data, "lab")
    _only(
        "lab",
        lab,
        (
            "instances",
            "backups",
            "strategy",
            "work_ms",
            "spread_ms",
            "distribution",
            "concurrency",
            "queue",
            "slow_start",
            "balancers",
            "pair",
            "advert_interval",
            "preempt",
            "fencing",
        ),
    )
    load = _table(data, "load")
    _only("load", load, ("rate", "duration", "arrivals", "method", "timeout"))
    instances = _whole(lab, "lab", "instances", 3, low=1, high=MAX_SIM_INSTANCES)
    backups = _whole(lab, "lab", "backups", 0, low=0, high=MAX_SIM_INSTANCES)
    if instances + backups > MAX_SIM_INSTANCES:  # the live driver checks its own, smaller, limit before a live run
        raise ScenarioError(
            "lab.backups", f"instances and backups together at most {MAX_SIM_INSTANCES}, got {instances} + {backups}"
        )
    strategy = _text(lab, "lab", "strategy", "round_robin")
    if strategy not in strategy_names():
        raise ScenarioError("lab.strategy", f"unknown strategy {strategy!r}; known: {', '.join(strategy_names())}")
    capacity = _capacity(lab)
    balancers = _whole(lab, "lab", "balancers", 1, low=1, high=2)
    pair = lab.get("pair")
    if pair is not None and pair not in PAIR_MODES:
        raise ScenarioError("lab.pair", f"pair must be one of {', '.join(PAIR_MODES)}, got {pair!r}")
    if balancers == 2 and pair is None:
        pair = "active-passive"
    if balancers == 1 and pair is not None:
        raise ScenarioError("lab.pair", "a pair needs balancers = 2")
    scenario = Scenario(
        name=_text(data, "scenario", "name", name),
        seed=_whole(data, "scenario", "seed", 0, low=0, high=MAX_SEED),
        instances=instances,
        backups=backups,
        strategy=strategy,
        capacity=capacity,
        slow_start=_number(lab, "lab", "slow_start", 0.0, low=0.0, high=3600.0),
        balancers=balancers,
        pair=pair,
        advert_interval=_number(lab, "lab", "advert_interval", 0.2, low=0.01, high=60.0),
        preempt=_flag(lab, "lab", "preempt", True),
        fencing=_flag(lab, "lab", "fencing", False),
        health=_settings(data, "health", HealthSettings),
        retries=_settings(data, "retries", RetrySettings),
        ejection=_settings(data, "ejection", EjectionSettings),
        rate=_number(load, "load", "rate", 100.0, low=0.0, high=1e7, low_open=True),
        duration=_number(load, "load", "duration", 5.0, low=0.0, high=MAX_SIM_DURATION, low_open=True),
        arrivals=_choice(load, "load", "arrivals", "uniform", ("uniform", "poisson")),
        method=_method(load),
        client_timeout=_number(load, "load", "timeout", 5.0, low=0.0, high=3600.0, low_open=True),
    )
    if scenario.rate * scenario.duration > MAX_RUN_REQUESTS:
        raise ScenarioError(
            "load.rate",
            f"{_plain(scenario.rate)} requests a second for {_plain(scenario.duration)} s is"
            f" {scenario.rate * scenario.duration:,.0f} requests; a run sends at most {MAX_RUN_REQUESTS:,}"
            f" ({MAX_RUN_MEMORY}): lower the rate or shorten the run",
        )
    if balancers == 1 and not scenario.preempt:
        raise ScenarioError("lab.preempt", "preempt is a setting of a pair: it needs balancers = 2")
    if balancers == 1 and scenario.fencing:
        raise ScenarioError("lab.fencing", "fencing is a setting of a pair: it needs balancers = 2")
    names = scenario.instance_names
    faults = tuple(
        _fault(entry, index, names, scenario.duration, scenario.balancers, pair)
        for index, entry in enumerate(_list(data, "faults"))
    )
    _check_balancer_faults(faults)
    failures = _failure_process(_table(data, "failures"), "failures") if "failures" in data else None
    groups = tuple(_group(entry, index, names) for index, entry in enumerate(_list(data, "groups")))
    seen: set[str] = set()
    for index, group in enumerate(groups):
        if group.name in seen:
            raise ScenarioError(f"groups[{index}].name", f"group name {group.name!r} is used twice")
        seen.add(group.name)
    return _replace(scenario, faults=faults, failures=failures, groups=groups)


def _replace(scenario: Scenario, **changes: Any) -> Scenario:
    values = {f.name: getattr(scenario, f.name) for f in fields(scenario)}
    values.update(changes)
    return Scenario(**values)


def _only(section: str, table: Mapping[str, Any], allowed: Sequence[str]) -> None:
    for key in table:
        if key not in allowed:
            where = key if section == "scenario" else f"{section}.{key}"
            raise ScenarioError(where, f"unknown key {key!r} (known here: {', '.join(allowed)})")


def _table(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise ScenarioError(key, f"[{key}] must be a table of settings, got {value!r}")
    return value


def _list(data: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, Mapping) for item in value):
        raise ScenarioError(key, f"{key} must be a list of tables ([[{key}]]), got {value!r}")
    return value


def _key(section: str, key: str) -> str:
    return key if section == "scenario" else f"{section}.{key}"


def _plain(value: Any) -> str:
    """A number as a person writes it: 31622400, not 3.16224e+07 (and 0.01 as 0.01)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


def _number(
    table: Mapping[str, Any],
    section: str,
    key: str,
    default: float,
    *,
    low: float,
    high: float,
    low_open: bool = False,
    high_is: str = "",
) -> float:
    """``table[key]`` as a number within ``low..high``; ``high_is`` names where ``high`` comes from, if not fixed."""
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ScenarioError(_key(section, key), f"must be a number, got {value!r}")
    if (value <= low if low_open else value < low) or value > high:
        bound = f"> {_plain(low)}" if low_open else f">= {_plain(low)}"
        ceiling = f"{_plain(high)} ({high_is})" if high_is else _plain(high)
        raise ScenarioError(_key(section, key), f"must be {bound} and <= {ceiling}, got {_plain(value)}")
    return float(value)


def _whole(table: Mapping[str, Any], section: str, key: str, default: int, *, low: int, high: int) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScenarioError(_key(section, key), f"must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise ScenarioError(_key(section, key), f"must be {low}..{high}, got {value!r}")
    return value


def _text(table: Mapping[str, Any], section: str, key: str, default: str) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not value:
        raise ScenarioError(_key(section, key), f"must be a non-empty string, got {value!r}")
    return value


def _flag(table: Mapping[str, Any], section: str, key: str, default: bool) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ScenarioError(_key(section, key), f"must be true or false, got {value!r}")
    return value


def _choice(table: Mapping[str, Any], section: str, key: str, default: str, choices: Sequence[str]) -> str:
    value = table.get(key, default)
    if value not in choices:
        raise ScenarioError(_key(section, key), f"must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


def _method(load: Mapping[str, Any]) -> str:
    method = _text(load, "load", "method", "GET")
    try:
        return check_method(method)
    except ValueError as error:
        raise ScenarioError("load.method", str(error).removeprefix("method ")) from None


def _capacity(lab: Mapping[str, Any]) -> Capacity:
    concurrency = lab.get("concurrency")
    try:
        return Capacity(
            concurrency=concurrency,
            queue=lab.get("queue", 0),
            work_ms=lab.get("work_ms", 0.0),
            spread_ms=lab.get("spread_ms", 0.0),
            distribution=lab.get("distribution"),
        )
    except ModelError as error:
        # The model's message names its argument ("concurrency must be ..."); the key in front says it already.
        message = str(error).removeprefix(f"{error.field} ")
        raise ScenarioError(f"lab.{error.field}", message) from None


def _settings(data: Mapping[str, Any], key: str, cls: type[Any]) -> Any:
    """``[health]`` (a table of the settings' fields), ``health = false`` (off) or nothing (the defaults)."""
    value = data.get(key, True)
    if value is False:
        return None
    if value is True:
        return cls()
    if not isinstance(value, Mapping):
        raise ScenarioError(key, f"must be a table of settings or false, got {value!r}")
    known = [f.name for f in fields(cls)]
    _only(key, value, known)
    options: dict[str, Any] = {}
    for name, item in value.items():
        if isinstance(item, list):  # retry_statuses, expect, retry_on: TOML arrays
            item = frozenset(item) if name in ("retry_statuses", "retry_on") else tuple(item)
        options[name] = item
    try:
        return cls(**options)
    except (ValueError, TypeError) as error:
        culprit = next((name for name in options if name in str(error)), None)
        raise ScenarioError(f"{key}.{culprit}" if culprit else key, str(error)) from None


def _fault(
    entry: Mapping[str, Any], index: int, names: list[str], duration: float, balancers: int, pair: str | None
) -> ScenarioFault:
    where = f"faults[{index}]"
    for required in ("at", "kind"):
        if required not in entry:
            raise ScenarioError(f"{where}.{required}", "is missing")
    at = _number(entry, where, "at", 0.0, low=0.0, high=duration, high_is="load.duration")
    recover_at = None
    if "recover_at" in entry:
        recover_at = _number(entry, where, "recover_at", 0.0, low=at, high=duration, high_is="load.duration")
    kind = entry["kind"]
    if not isinstance(kind, str):
        raise ScenarioError(f"{where}.kind", f'must be the name of a fault, such as "crash", got {kind!r}')
    if "balancer" in entry:
        if "instance" in entry:
            raise ScenarioError(f"{where}.balancer", "a fault breaks an instance or a balancer, not both")
        return _balancer_fault(entry, where, at, recover_at, balancers, pair)
    if "instance" not in entry:
        raise ScenarioError(f"{where}.instance", "is missing (or name a balancer)")
    instance = _text(entry, where, "instance", "")
    if instance not in names:
        raise ScenarioError(f"{where}.instance", f"no instance named {instance!r} (the lab has {', '.join(names)})")
    if kind not in FAULT_KINDS:
        raise ScenarioError(f"{where}.kind", f"unknown fault kind {kind!r} (known: {', '.join(FAULT_KINDS)})")
    params = {key: value for key, value in entry.items() if key not in FAULT_KEYS}
    try:
        make_fault(kind, **params)
    except FaultError as error:
        raise ScenarioError(f"{where}.{error.field}", str(error)) from None
    return ScenarioFault(at, instance, kind, params, recover_at)


def _balancer_fault(
    entry: Mapping[str, Any], where: str, at: float, recover_at: float | None, balancers: int, pair: str | None
) -> ScenarioFault:
    known = [f"lb{i + 1}" for i in range(balancers)]
    balancer = entry["balancer"]
    if not isinstance(balancer, str) or balancer not in known:
        raise ScenarioError(f"{where}.balancer", f"no balancer named {balancer!r} (the lab has {', '.join(known)})")
    kind = entry["kind"]
    if kind not in BALANCER_FAULT_KINDS:
        raise ScenarioError(
            f"{where}.kind", f"a balancer fault is one of {', '.join(BALANCER_FAULT_KINDS)}, got {kind!r}"
        )
    if kind == "advert_loss" and balancers == 1:
        raise ScenarioError(f"{where}.kind", "advert_loss cuts the link between a pair: it needs balancers = 2")
    if kind == "advert_loss" and pair == "active-active":
        raise ScenarioError(
            f"{where}.kind", "advert_loss needs an active-passive pair: active-active balancers send no adverts"
        )
    extra = [key for key in entry if key not in FAULT_KEYS]
    if extra:
        raise ScenarioError(f"{where}.{extra[0]}", f"a balancer fault takes no parameters, got {extra[0]!r}")
    return ScenarioFault(at, None, kind, {}, recover_at, balancer=balancer)


def _check_balancer_faults(faults: Sequence[ScenarioFault]) -> None:
    """Refuse a fault of a balancer that an earlier fault crashed and nothing has brought back by then: a crashed
    balancer cannot hang or lose its adverts, and crashing it again means nothing. (Both drivers would meet it in
    the middle of the run; here it is named before anything runs.)"""
    order = sorted(range(len(faults)), key=lambda index: faults[index].at)
    crashed: dict[str, int] = {}  # balancer -> the index of the fault that crashed it, while it is down
    for index in order:
        fault = faults[index]
        if fault.balancer is None:
            continue
        earlier = crashed.get(fault.balancer)
        if earlier is not None:
            first = faults[earlier]
            if first.recover_at is None or first.recover_at >= fault.at:
                raise ScenarioError(
                    f"faults[{index}].at",
                    f"{fault.balancer} crashed at {first.at:g} s (faults[{earlier}]) and is not back at {fault.at:g} s:"
                    f" give faults[{earlier}] a recover_at before {fault.at:g}, or drop one of them",
                )
            del crashed[fault.balancer]
        if fault.kind == "crash":
            crashed[fault.balancer] = index


def _failure_process(table: Mapping[str, Any], where: str, extra: Sequence[str] = ()) -> FailureProcess:
    _only(where, table, ("mtbf", "mttr", "distribution", "shape", *extra))
    for required in ("mtbf", "mttr"):
        if required not in table:
            raise ScenarioError(f"{where}.{required}", "is missing")
    try:
        return FailureProcess(
            mtbf=table["mtbf"],
            mttr=table["mttr"],
            distribution=table.get("distribution", "exponential"),
            shape=table.get("shape", 1.0),
        )
    except ModelError as error:
        raise ScenarioError(f"{where}.{error.field}", str(error)) from None


def _group(entry: Mapping[str, Any], index: int, names: list[str]) -> FailureGroup:
    where = f"groups[{index}]"
    process = _failure_process(entry, where, extra=("name", "instances"))
    name = _text(entry, where, "name", "")
    members = entry.get("instances")
    if not isinstance(members, list) or not members or not all(isinstance(m, str) for m in members):
        raise ScenarioError(f"{where}.instances", f"must be a list of instance names, got {members!r}")
    unknown = [m for m in members if m not in names]
    if unknown:
        raise ScenarioError(f"{where}.instances", f"no instance named {unknown[0]!r} (the lab has {', '.join(names)})")
    return FailureGroup(name, tuple(members), process)


# --- running it --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScenarioResult:
    """What one run of a scenario gave: the report, and how the run went."""

    scenario: str
    driver: str
    seed: int
    report: Report
    wall_s: float  # how long the run took on this machine
    virtual_s: float | None = None  # how much lab time passed (sim)
    digest: str | None = None  # the hash of the whole event log (sim)
    events: int | None = None  # how many events were published (sim)
    timers: int | None = None  # how many timers the scheduler ran (sim)
    compiled: bool | None = None  # did the simulator run from a compiled copy (sim)

    def figures(self) -> dict[str, Any]:
        """The run as one JSON-ready object (``spofkit run --json``)."""
        report = self.report
        figures: dict[str, Any] = {
            "scenario": self.scenario,
            "driver": self.driver,
            "seed": self.seed,
            "requests": report.requests,
            "failed": report.failed,
            "availability": report.availability,
            "retried": report.retried,
            "detection_window": report.detection_window,
            "ejection_window": report.ejection_window,
            "client_visible_outage": report.client_visible_outage,
            "latency_p50": report.latency_p50,
            "latency_p99": report.latency_p99,
            "errors_by_kind": report.errors_by_kind,
            "wall_s": round(self.wall_s, 3),
        }
        if self.driver == "sim":
            figures.update(
                digest=self.digest,
                events=self.events,
                timers=self.timers,
                virtual_s=self.virtual_s,
                compiled=self.compiled,
            )
        return figures


def run_scenario(
    scenario: Scenario,
    driver: str = "sim",
    *,
    seed: int | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> ScenarioResult:
    """Run ``scenario`` on the simulator (``"sim"``) or a live lab (``"live"``); ``seed`` overrides the file's.
    ``on_progress`` (simulator) is called with the share of the run done, 20 times a run."""
    if driver not in DRIVERS:
        raise ScenarioError("driver", f"driver must be one of {', '.join(DRIVERS)}, got {driver!r}")
    chosen = scenario.seed if seed is None else seed
    if driver == "sim":
        return _run_sim(scenario, chosen, on_progress)
    check_live(scenario)
    return asyncio.run(run_live(scenario, chosen))


def _instance_faults(scenario: Scenario) -> list[tuple[float, str, str, dict[str, Any]]]:
    """The instance faults, as ``run_load`` takes them."""
    return [(f.at, f.instance, f.kind, dict(f.params)) for f in scenario.faults if f.instance is not None]


def _timed_commands(scenario: Scenario) -> list[tuple[float, Command]]:
    """The balancer faults, and every ``recover_at``, as commands at times in the run."""
    commands: list[tuple[float, Command]] = []
    for fault in scenario.faults:
        if fault.balancer is not None:
            commands.append((fault.at, BalancerFault(fault.balancer, fault.kind)))
            if fault.recover_at is not None:
                commands.append((fault.recover_at, BalancerRecover(fault.balancer)))
        elif fault.recover_at is not None and fault.instance is not None:
            commands.append((fault.recover_at, Recover(fault.instance)))
    return commands


def _lab_options(scenario: Scenario, seed: int) -> dict[str, Any]:
    """The ``[lab]``, ``[health]``, ``[retries]`` and ``[ejection]`` settings, as both drivers' labs take them."""
    return {
        "strategy": scenario.strategy,
        "health": scenario.health,
        "retries": scenario.retries,
        "ejection": scenario.ejection,
        "capacity": scenario.capacity,
        "backups": scenario.backups,
        "slow_start": scenario.slow_start,
        "seed": seed,
        "balancers": scenario.balancers,
        "pair": scenario.pair,
        "advert_interval": scenario.advert_interval,
        "preempt": scenario.preempt,
    }


def _run_sim(scenario: Scenario, seed: int, on_progress: Callable[[float], None] | None = None) -> ScenarioResult:
    from spofkit.sim import is_compiled
    from spofkit.sim.lab import SimLab

    started = time.perf_counter()
    lab = SimLab(
        scenario.instances,
        **_lab_options(scenario, seed),
        fencing=scenario.fencing,
        failures=scenario.failures,
        groups=scenario.groups,
    )
    began = lab.now()
    report = lab.run_load_sync(
        scenario.rate,
        scenario.duration,
        faults=_instance_faults(scenario),
        commands=_timed_commands(scenario),
        method=scenario.method,
        timeout=scenario.client_timeout,
        arrivals=scenario.arrivals,
        on_progress=on_progress,
    )
    return ScenarioResult(
        scenario=scenario.name,
        driver="sim",
        seed=seed,
        report=report,
        wall_s=time.perf_counter() - started,
        virtual_s=round(lab.now() - began, 6),
        digest=lab.digest.hexdigest(),
        events=lab.digest.events,
        timers=lab.scheduler.processed,
        compiled=is_compiled(),
    )


def check_live(scenario: Scenario) -> None:
    """Refuse, naming the key, what the live driver cannot do (rather than silently leaving it out)."""
    simulator_only = [
        ("lab.fencing", scenario.fencing),
        ("load.arrivals", scenario.arrivals != "uniform"),
    ]
    for key, asked in simulator_only:
        if asked:
            raise ScenarioError(key, "the live driver cannot do this yet; run the scenario with --sim")
    if scenario.instances + scenario.backups > MAX_LIVE_INSTANCES:
        raise ScenarioError("lab.instances", f"a live lab holds at most {MAX_LIVE_INSTANCES} instances; use --sim")
    if scenario.duration > MAX_LIVE_DURATION:
        raise ScenarioError(
            "load.duration", f"a live run takes real time: at most {MAX_LIVE_DURATION:g} s (use --sim for longer)"
        )


async def run_live(scenario: Scenario, seed: int) -> ScenarioResult:
    """The scenario on a live lab: real instances on 127.0.0.1, real time. Random failures are the simulator's
    plan for the same seed (:func:`spofkit.sim.failures.failure_plan`), applied as crash and recover commands."""
    from spofkit.lab import Lab

    check_live(scenario)
    started = time.perf_counter()
    commands = _timed_commands(scenario)
    if scenario.failures is not None or scenario.groups:
        plan = failure_plan(
            scenario.instance_names, scenario.failures, scenario.groups, horizon=scenario.duration, seed=seed
        )
        commands += [
            (change.at, InjectFault(change.instance, "crash") if change.down else Recover(change.instance))
            for change in plan
        ]
    commands.sort(key=lambda item: item[0])
    async with await Lab.start(scenario.instances, **_lab_options(scenario, seed)) as lab:
        began = lab.now()

        async def apply_on_time() -> None:
            for at, command in commands:
                await asyncio.sleep(max(0.0, began + at - lab.now()))
                await lab.apply(command)

        timed = asyncio.create_task(apply_on_time())
        try:
            report = await lab.run_load(
                scenario.rate,
                scenario.duration,
                faults=_instance_faults(scenario),
                method=scenario.method,
                timeout=scenario.client_timeout,
            )
            await timed
        finally:
            timed.cancel()
    return ScenarioResult(
        scenario=scenario.name, driver="live", seed=seed, report=report, wall_s=time.perf_counter() - started
    )


# --- the command line --------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spofkit run",
        description="Run a scenario file on the simulator (the default) or on a live lab.",
    )
    parser.add_argument("scenario", help="a scenario file (TOML)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--sim", dest="driver", action="store_const", const="sim", help="in virtual time (default)")
    where.add_argument("--live", dest="driver", action="store_const", const="live", help="real servers, real time")
    parser.add_argument("--seed", type=_seed, help="overrides the file's seed")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    parser.set_defaults(driver="sim")
    return parser


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be 0..{MAX_SEED} (as a scenario file's seed), got {value}")
    return value


def planned_faults(scenario: Scenario) -> list[str]:
    """What the scenario breaks, a line each, for the text output: the report itself names only the first fault of
    an instance (the one its detection window is measured from), and no balancer's."""
    lines = []
    for fault in sorted(scenario.faults, key=lambda fault: fault.at):
        target = fault.balancer if fault.balancer is not None else fault.instance
        params = "".join(f", {key} = {value!r}" for key, value in fault.params.items())
        until = f" -> {fault.recover_at:.2f} s" if fault.recover_at is not None else " (not recovered)"
        lines.append(f"planned       {target} {fault.kind}{params} at {fault.at:.2f} s{until}")
    if scenario.failures is not None:
        process = scenario.failures
        lines.append(
            f"planned       random failures of every instance: MTBF {process.mtbf:g} s, MTTR {process.mttr:g} s"
            f" ({process.distribution}{f', shape {process.shape:g}' if process.distribution == 'weibull' else ''})"
        )
    for group in scenario.groups:
        lines.append(
            f"planned       {group.name} ({', '.join(group.instances)}) fails as a whole:"
            f" MTBF {group.process.mtbf:g} s, MTTR {group.process.mttr:g} s"
        )
    return lines


# A simulated run of this many requests or more takes a while (about 10-40 s per million here): it says so first.
BIG_RUN_REQUESTS = 1_000_000


def _progress_for(scenario: Scenario) -> Callable[[float], None] | None:
    """For a big simulated run, a note on stderr that it will take a while, and a function that shows how far it
    got (on a terminal, one line redrawn; elsewhere nothing more, so logs and --json pipes stay clean)."""
    requests = scenario.rate * scenario.duration
    if requests < BIG_RUN_REQUESTS:
        return None
    print(
        f"note: about {requests:,.0f} requests to simulate: this takes a while (10-40 s per million here) and"
        f" about {requests * BYTES_PER_REQUEST / 1e9:.1g} GB of memory",
        file=sys.stderr,
        flush=True,
    )
    if not sys.stderr.isatty():
        return None

    def show(done: float) -> None:
        end = "\n" if done >= 1.0 else ""
        print(f"\r  simulated {done:4.0%} of the run", end=end, file=sys.stderr, flush=True)

    return show


def live_notes(report: Report) -> list[str]:
    """What a live run's text output adds below the report: requests this machine could not even send are not
    the lab's failures (a simulated run has no such limit), yet they count in its availability."""
    unsent = report.errors_by_kind.get("client_overload", 0)
    if not unsent:
        return []
    return [
        f"note          {unsent} requests were never sent (client_overload): the load generator could not keep up"
        " on this machine, so these figures show its limit as much as the lab's; lower load.rate, or run it --sim"
    ]


def run_scenario_cli(argv: Sequence[str] | None = None) -> int:
    """``spofkit run SCENARIO.toml [--sim | --live] [--seed S] [--json]``. Returns the exit status (2: bad input)."""
    try:
        options = _parser().parse_args(argv)
    except SystemExit as exit_:  # argparse has printed the error (or the help)
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        scenario = load_scenario(options.scenario)
        result = run_scenario(scenario, options.driver, seed=options.seed, on_progress=_progress_for(scenario))
    except (ValueError, TypeError, ArithmeticError) as error:
        # A ScenarioError names its key; a setting's own check (a ValueError or TypeError that a lab or a model
        # raised while the scenario was set up or run) names its argument: either way, one line, not a traceback.
        if isinstance(error, ScenarioError) and error.key == "file":  # its message names the file already
            print(f"error: {error.message}", file=sys.stderr)
        else:
            print(f"error: {options.scenario}: {error}", file=sys.stderr)
        return 2
    if options.json:
        print(json.dumps(result.figures(), sort_keys=True))
        return 0
    print(result.report.to_text(f"{result.scenario} ({result.driver}, seed {result.seed})"))
    for line in planned_faults(scenario):
        print(line)
    if result.digest is not None:
        build = "the compiled copy" if result.compiled else "the source"
        print(f"virtual time  {result.virtual_s:.2f} s in {result.wall_s:.2f} s of wall time (simulator from {build})")
        print(f"events        {result.events} (digest {result.digest})")
    else:
        print(f"wall time     {result.wall_s:.2f} s")
        for line in live_notes(result.report):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(run_scenario_cli())
