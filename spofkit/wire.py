"""The wire: events, status snapshots and commands as JSON-ready dicts, and back — the one place that knows how.

The admin API sends events and status as JSON and takes commands; the TUI's remote source and any script read
them back. Both sides use the functions here, so a field added to an event travels without anyone writing a
decoder for it. Every ``*_to_dict`` has a ``*_from_dict`` that rebuilds an equal object (a property test checks
it for every event and command type).

- An event: ``{"kind": "InstanceDown", "at": 3.2, "instance": "b", "reason": "...", "balancer": "lb1"}``.
- A status: :class:`~spofkit.status.LabStatus` as nested dicts (``instances`` rows, ``balancers`` views).
- A command: ``{"command": "InjectFault", "instance": "b", "kind": "slow", "params": {"ms": 200}}``.
  :func:`request_for` and :func:`command_from_request` map a command to the admin API's REST route and back.

Decoding is strict where a person typed the input (a command: unknown fields and wrong values are a
:class:`~spofkit.commands.CommandError` naming the field) and lenient where a program did (an event or status
from a newer server: unknown fields are ignored; an unknown event kind decodes to None).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from spofkit import events as events_module
from spofkit.commands import (
    COMMANDS,
    AddInstance,
    BalancerFault,
    BalancerRecover,
    BalancerRestart,
    ChangeSettings,
    Command,
    CommandError,
    Deploy,
    InjectFault,
    Recover,
    RemoveInstance,
    Restart,
    SetLoad,
    SetStrategy,
)
from spofkit.events import Event
from spofkit.status import BalancerStatus, InstanceStatus, LabStatus, MemberView


class WireError(ValueError):
    """Data from the wire that cannot be decoded (not a command a person typed: that is a CommandError)."""


def _all_event_classes() -> dict[str, type[Event]]:
    found: dict[str, type[Event]] = {}
    pending = list(Event.__subclasses__())
    while pending:
        cls = pending.pop()
        if cls.__module__ == events_module.__name__:
            found[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    return found


EVENT_CLASSES: dict[str, type[Event]] = _all_event_classes()


# --- events -------------------------------------------------------------------------------------------------


def event_to_dict(event: Event) -> dict[str, Any]:
    fields = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
    return {"kind": event.kind, **fields}


def event_from_dict(data: Mapping[str, Any]) -> Event | None:
    """Rebuild an event; None for a kind this version does not know. Raises WireError if a field is missing."""
    cls = EVENT_CLASSES.get(str(data.get("kind")))
    if cls is None:
        return None
    values = {}
    for spec in dataclasses.fields(cls):
        if spec.name in data:
            values[spec.name] = data[spec.name]
        elif spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
            raise WireError(f"{cls.__name__} needs {spec.name!r}; got fields {sorted(data)}")
    return cls(**values)


# --- status -------------------------------------------------------------------------------------------------


def status_to_dict(status: LabStatus) -> dict[str, Any]:
    return {
        **{f.name: getattr(status, f.name) for f in dataclasses.fields(status) if f.name not in _NESTED},
        "instances": [dataclasses.asdict(row) for row in status.instances],
        "balancers": [balancer_status_to_dict(b) for b in status.balancers],
    }


def balancer_status_to_dict(balancer: BalancerStatus) -> dict[str, Any]:
    fields = {k: v for k, v in dataclasses.asdict(balancer).items() if k != "members"}
    return {**fields, "members": [dataclasses.asdict(member) for member in balancer.members]}


def balancer_status_from_dict(data: Mapping[str, Any]) -> BalancerStatus:
    members = tuple(MemberView(**_known(MemberView, m)) for m in data.get("members", []))
    return BalancerStatus(**{k: v for k, v in _known(BalancerStatus, data).items() if k != "members"}, members=members)


_NESTED = ("instances", "balancers")


def _known(cls: type[Any], data: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def status_from_dict(data: Mapping[str, Any]) -> LabStatus:
    """Rebuild a :class:`LabStatus` from ``GET /status`` JSON (fields this version does not know are ignored)."""
    try:
        rows = [InstanceStatus(**_known(InstanceStatus, row)) for row in data.get("instances", [])]
        balancers = [balancer_status_from_dict(b) for b in data.get("balancers", [])]
        top = {k: v for k, v in _known(LabStatus, data).items() if k not in _NESTED}
        return LabStatus(**top, instances=rows, balancers=balancers)
    except TypeError as error:  # a required field is missing
        raise WireError(f"not a spofkit status: {error}") from None


# --- settings (for a balancer in its own process) -------------------------------------------------------------

SettingsT = TypeVar("SettingsT")


def settings_to_dict(settings: Any) -> dict[str, Any] | None:
    """Retry, ejection or health settings as JSON (sets and tuples become lists); None stays None (off)."""
    if settings is None:
        return None
    out = {}
    for spec in dataclasses.fields(settings):
        value = getattr(settings, spec.name)
        out[spec.name] = (
            sorted(value)
            if isinstance(value, (set, frozenset))
            else (list(value) if isinstance(value, tuple) else value)
        )
    return out


def settings_from_dict(cls: type[SettingsT], data: Mapping[str, Any] | None) -> SettingsT | None:
    """The inverse of :func:`settings_to_dict` for ``cls`` (RetrySettings, EjectionSettings, HealthSettings)."""
    if data is None:
        return None
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for spec in dataclasses.fields(cls):  # type: ignore[arg-type]
        if spec.name not in data:
            continue
        value = data[spec.name]
        origin = typing.get_origin(hints[spec.name])
        if origin is frozenset:
            value = frozenset(value)
        elif origin is tuple:
            value = tuple(value)
        values[spec.name] = value
    return cls(**values)


# --- commands -----------------------------------------------------------------------------------------------


def command_to_dict(command: Command) -> dict[str, Any]:
    if isinstance(command, SetStrategy) and not isinstance(command.strategy, str):
        raise CommandError("strategy", "only a named strategy can be sent over the wire")
    fields = {f.name: getattr(command, f.name) for f in dataclasses.fields(command)}
    if isinstance(command, InjectFault):
        fields["params"] = dict(command.params)
    return {"command": type(command).__name__, **fields}


def command_from_dict(data: Mapping[str, Any]) -> Command:
    """Build a command from ``{"command": NAME, **fields}``; CommandError names a wrong or unknown field."""
    if not isinstance(data, Mapping):
        raise CommandError("body", f"a command is a JSON object, got {type(data).__name__}")
    name = data.get("command")
    cls = COMMANDS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise CommandError("command", f"unknown command {name!r}; known: {', '.join(COMMANDS)}")
    fields = {k: v for k, v in data.items() if k != "command"}
    return _build(cls, fields)


def _build(cls: type[Command], fields: Mapping[str, Any]) -> Command:
    allowed = [f.name for f in dataclasses.fields(cls)]
    for key in fields:
        if key not in allowed:
            raise CommandError(_field(key), f"unknown field {key!r} (allowed: {', '.join(allowed)})")
    for spec in dataclasses.fields(cls):
        required = spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING
        if required and spec.name not in fields:
            raise CommandError(spec.name, f"{cls.__name__} needs {spec.name!r}")
    return cls(**fields)


# --- commands as the admin API's REST routes -------------------------------------------------------------------


def request_for(command: Command) -> tuple[str, str, dict[str, Any] | None]:
    """The admin API request that carries ``command``: ``(method, path, JSON body or None)``."""
    if isinstance(command, InjectFault):
        return "POST", f"/instances/{command.instance}/fault", {"kind": command.kind, **command.params}
    if isinstance(command, Recover):
        return "POST", f"/instances/{command.instance}/recover", None
    if isinstance(command, Restart):
        return "POST", f"/instances/{command.instance}/restart", None
    if isinstance(command, AddInstance):
        body: dict[str, Any] = {"backup": command.backup, "weight": command.weight}
        if command.name is not None:
            body["name"] = command.name
        return "POST", "/instances", body
    if isinstance(command, RemoveInstance):
        return "DELETE", f"/instances/{command.instance}", None
    if isinstance(command, SetStrategy):
        return "PUT", "/strategy", {"strategy": command_to_dict(command)["strategy"]}
    if isinstance(command, Deploy):
        return "POST", "/deploy", {"batch": command.batch, "target": command.target, "how": command.how}
    if isinstance(command, BalancerFault):
        return "POST", f"/balancers/{command.balancer}/fault", {"kind": command.kind}
    if isinstance(command, BalancerRecover):
        return "POST", f"/balancers/{command.balancer}/recover", None
    if isinstance(command, BalancerRestart):
        return "POST", f"/balancers/{command.balancer}/restart", None
    if isinstance(command, (ChangeSettings, SetLoad)):  # only the switches the command changes
        path = "/settings" if isinstance(command, ChangeSettings) else "/load"
        fields = dataclasses.fields(command)
        return "PUT", path, {f.name: getattr(command, f.name) for f in fields if getattr(command, f.name) is not None}
    raise CommandError("command", f"{type(command).__name__} has no admin route")


def command_from_request(route: str, body: Mapping[str, Any], instance: str | None = None) -> Command:
    """The command an admin request carries. ``route`` names the endpoint: ``fault``, ``recover``, ``restart``,
    ``add``, ``remove``, ``strategy``, ``settings`` or ``load``; ``instance`` comes from the path."""
    if route == "fault":
        kind = body.get("kind")
        if not isinstance(kind, str):
            raise CommandError("kind", f'body must name the fault: {{"kind": "crash"}}, got kind={kind!r}')
        params = {k: v for k, v in body.items() if k != "kind"}
        return InjectFault(_instance(instance), kind, params)
    if route in ("recover", "restart", "remove"):
        _only(body, ())
        cls = {"recover": Recover, "restart": Restart, "remove": RemoveInstance}[route]
        return cls(_instance(instance))
    if route == "add":
        return _build(AddInstance, body)
    if route == "deploy":
        return _build(Deploy, body)
    if route == "balancer_fault":
        _only(body, ("kind",))
        return BalancerFault(_named(instance, "balancer"), body.get("kind"))  # type: ignore[arg-type]
    if route in ("balancer_recover", "balancer_restart"):
        _only(body, ())
        if route == "balancer_recover":
            return BalancerRecover(_named(instance, "balancer"))
        return BalancerRestart(_named(instance, "balancer"))
    if route == "strategy":
        return _build(SetStrategy, body)
    if route == "settings":
        if not body:
            raise CommandError("body", "name at least one of retries, health_checks, ejection")
        return _build(ChangeSettings, body)
    if route == "load":
        if not body:
            raise CommandError("body", "name rate and/or paused")
        return _build(SetLoad, body)
    raise CommandError("path", f"no command behind route {route!r}")


def _instance(name: str | None) -> str:
    return _named(name, "instance")


def _named(name: str | None, what: str) -> str:
    if name is None:
        raise CommandError(what, f"this route needs a {what} name in its path")
    return name


def _only(body: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    for key in body:
        if key not in allowed:
            raise CommandError(_field(key), f"unknown field {key!r} (this endpoint takes no body fields)")


def _field(key: object) -> str:
    """The name to report for a body key; an empty key is reported as the body itself."""
    return str(key) or "body"
