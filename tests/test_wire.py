"""The wire module: every event, status and command survives JSON and comes back equal (hypothesis)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import types
import typing
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spofkit.commands import (
    COMMANDS,
    MAX_LOAD_RATE,
    AddInstance,
    BalancerFault,
    BalancerRecover,
    BalancerRestart,
    ChangeSettings,
    CommandError,
    Deploy,
    InjectFault,
    Recover,
    RemoveInstance,
    Restart,
    SetLoad,
    SetStrategy,
)
from spofkit.events import PER_REQUEST_EVENTS, Event
from spofkit.faults import FAULT_KINDS
from spofkit.policy.strategies import STRATEGIES
from spofkit.status import STATES, BalancerStatus, InstanceStatus, LabStatus, MemberView
from spofkit.wire import (
    EVENT_CLASSES,
    command_from_dict,
    command_from_request,
    command_to_dict,
    event_from_dict,
    event_to_dict,
    request_for,
    status_from_dict,
    status_to_dict,
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
finite = st.floats(allow_nan=False, allow_infinity=False)


def for_type(hint: Any) -> st.SearchStrategy[Any]:
    """A hypothesis strategy for a field annotation of an event or status class."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return json_values
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(for_type(arg) for arg in typing.get_args(hint)))
    if origin is dict:
        return st.dictionaries(st.text(max_size=8), json_values, max_size=4)
    if origin is tuple:
        return st.lists(for_type(typing.get_args(hint)[0]), max_size=3).map(tuple)
    if origin is list:
        return st.lists(for_type(typing.get_args(hint)[0]), max_size=3)
    simple = {float: finite, int: st.integers(-(2**53), 2**53), str: st.text(max_size=20), bool: st.booleans()}
    if hint in simple:
        return simple[hint]
    if hint is type(None):
        return st.none()
    if dataclasses.is_dataclass(hint):
        return builds(hint)  # type: ignore[arg-type]
    raise AssertionError(f"no strategy for {hint!r}")


def builds(cls: type[Any]) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls)
    return st.builds(cls, **{f.name: for_type(hints[f.name]) for f in dataclasses.fields(cls)})


def through_json(data: dict[str, Any]) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(json.dumps(data, allow_nan=False))
    return decoded


def test_every_event_kind_is_known_to_the_wire() -> None:
    assert len(EVENT_CLASSES) >= 18
    assert {"InstanceDown", "RequestCompleted", "ClientRequest", "FaultInjected"} <= set(EVENT_CLASSES)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(sorted(EVENT_CLASSES)).flatmap(lambda name: builds(EVENT_CLASSES[name])))
def test_events_round_trip(event: Any) -> None:
    assert event_from_dict(through_json(event_to_dict(event))) == event


@given(st.sampled_from(sorted(EVENT_CLASSES)).flatmap(lambda name: builds(EVENT_CLASSES[name])))
def test_every_event_holds_its_fields_in_order_and_stays_frozen(event: Any) -> None:
    # The event log's digest reads vars() in order, and the log is only a record if no event can change.
    names = [f.name for f in dataclasses.fields(event)]
    assert list(vars(event)) == names
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(event, names[0], getattr(event, names[0]))


@pytest.mark.parametrize("cls", PER_REQUEST_EVENTS, ids=lambda cls: cls.__name__)
def test_a_per_request_event_is_made_as_its_dataclass_would_make_it(cls: type[Event]) -> None:
    # These four get a quicker __init__ (spofkit.events._quick_init): it must take and fill what the dataclass's does.
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    reference = dataclasses.make_dataclass(
        cls.__name__,
        [(f.name, f.type) if f.default is dataclasses.MISSING else (f.name, f.type, f.default) for f in fields],
        frozen=True,
    )
    assert inspect.signature(cls) == inspect.signature(reference)
    values = [f"value of {f.name}" for f in fields]
    for made, expected in (
        (cls(*values), reference(*values)),
        (cls(**{f.name: v for f, v in zip(fields, values, strict=True)}), reference(*values)),
        (cls(*values[:1], **dict(zip([f.name for f in fields[1:]], values[1:], strict=True))), reference(*values)),
    ):
        assert vars(made) == vars(expected)
    required = [v for f, v in zip(fields, values, strict=True) if f.default is dataclasses.MISSING]
    assert vars(cls(*required)) == vars(reference(*required))  # the defaults
    with pytest.raises(TypeError, match="missing"):
        cls(*required[:-1])
    with pytest.raises(TypeError, match="unexpected keyword"):
        cls(*values, no_such_field=1)
    with pytest.raises(TypeError, match="multiple values"):
        cls(*values, at=1.0)


def test_an_unknown_event_kind_decodes_to_none_and_unknown_fields_are_ignored() -> None:
    assert event_from_dict({"kind": "FromTheFuture", "at": 1.0}) is None
    event = event_from_dict({"kind": "InstanceDown", "at": 1.0, "instance": "b", "new_field": 3})
    assert event is not None and event.kind == "InstanceDown"


@settings(max_examples=60, deadline=None)
@given(
    st.builds(
        LabStatus,
        at=finite,
        strategy=st.sampled_from(sorted(STRATEGIES)),
        retries=st.booleans(),
        health_checks=st.booleans(),
        ejection=st.booleans(),
        balancer_url=st.text(max_size=20),
        load_rate=st.none() | finite,
        load_paused=st.booleans(),
        instances=st.lists(builds(InstanceStatus), max_size=3),
        balancers=st.lists(
            st.builds(
                BalancerStatus,
                **{
                    f.name: for_type(typing.get_type_hints(BalancerStatus)[f.name])
                    for f in dataclasses.fields(BalancerStatus)
                    if f.name != "members"
                },
                members=st.lists(
                    builds(MemberView).map(lambda m: dataclasses.replace(m, state=STATES[0])), max_size=3
                ).map(tuple),
            ),
            max_size=2,
        ),
    )
)
def test_status_round_trips(status: LabStatus) -> None:
    assert status_from_dict(through_json(status_to_dict(status))) == status


names = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,8}", fullmatch=True)
FAULT_EXAMPLES = [
    ("crash", {}),
    ("hang", {}),
    ("slow", {"ms": 200.0, "jitter_ms": 30.0}),
    ("error", {"rate": 0.5, "status": 503}),
    ("gray", {"rate": 0.25, "status": 500}),
    ("flap", {"period": 2.0}),
    ("reset", {"rate": 0.1}),
    ("warmup", {"seconds": 5.0, "extra_ms": 100.0}),
]
fault_params = st.sampled_from(FAULT_EXAMPLES)
commands = st.one_of(
    st.builds(lambda n, kp: InjectFault(n, kp[0], kp[1]), names, fault_params),
    st.builds(Recover, names),
    st.builds(Restart, names),
    st.builds(AddInstance, st.none() | names, st.booleans(), st.integers(0, 256)),
    st.builds(RemoveInstance, names),
    st.builds(SetStrategy, st.sampled_from(sorted(STRATEGIES))),
    st.builds(ChangeSettings, st.none() | st.booleans(), st.none() | st.booleans(), st.none() | st.booleans()),
    st.builds(SetLoad, st.none() | st.floats(0, MAX_LOAD_RATE), st.none() | st.booleans()),
    st.builds(BalancerFault, st.sampled_from(["lb1", "lb2"]), st.sampled_from(["crash", "hang", "advert_loss"])),
    st.builds(BalancerRecover, st.sampled_from(["lb1", "lb2"])),
    st.builds(BalancerRestart, st.sampled_from(["lb1", "lb2"])),
    st.builds(
        Deploy,
        st.integers(1, 32),
        st.sampled_from(["instances", "balancers"]),
        st.sampled_from(["rolling", "all-at-once"]),
    ),
)


def test_every_command_type_is_generated() -> None:
    assert set(COMMANDS) == {
        "InjectFault",
        "Recover",
        "Restart",
        "AddInstance",
        "RemoveInstance",
        "SetStrategy",
        "ChangeSettings",
        "SetLoad",
        "BalancerFault",
        "BalancerRecover",
        "BalancerRestart",
        "Deploy",
    }
    assert set(FAULT_KINDS) == {kind for kind, _ in FAULT_EXAMPLES}


@settings(max_examples=200, deadline=None)
@given(commands)
def test_commands_round_trip(command: Any) -> None:
    assert command_from_dict(through_json(command_to_dict(command))) == command


ROUTES = {
    "InjectFault": "fault",
    "Recover": "recover",
    "Restart": "restart",
    "AddInstance": "add",
    "RemoveInstance": "remove",
    "SetStrategy": "strategy",
    "ChangeSettings": "settings",
    "SetLoad": "load",
    "BalancerFault": "balancer_fault",
    "BalancerRecover": "balancer_recover",
    "BalancerRestart": "balancer_restart",
    "Deploy": "deploy",
}


@settings(max_examples=200, deadline=None)
@given(commands)
def test_commands_round_trip_through_their_rest_routes(command: Any) -> None:
    if isinstance(command, (ChangeSettings, SetLoad)) and all(
        getattr(command, f.name) is None for f in dataclasses.fields(command)
    ):
        with pytest.raises(CommandError):  # an empty PUT says nothing: the API refuses it by name
            command_from_request(ROUTES[type(command).__name__], request_for(command)[2] or {})
        return
    _method, path, body = request_for(command)
    instance = path.split("/")[2] if path.startswith(("/instances/", "/balancers/")) else None
    rebuilt = command_from_request(ROUTES[type(command).__name__], through_json(body or {}), instance)
    assert rebuilt == command


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"command": "Explode"}, "command"),
        ({"command": "InjectFault", "instance": "b", "kind": "melt"}, "kind"),
        ({"command": "InjectFault", "instance": "b", "kind": "slow", "params": {"ms": -1}}, "ms"),
        ({"command": "InjectFault", "instance": "B!", "kind": "crash"}, "instance"),
        ({"command": "Recover"}, "instance"),
        ({"command": "AddInstance", "weight": 1000}, "weight"),
        ({"command": "AddInstance", "colour": "red"}, "colour"),
        ({"command": "SetStrategy", "strategy": "fastest"}, "strategy"),
        ({"command": "ChangeSettings", "retries": "yes"}, "retries"),
        ({"command": "SetLoad", "rate": 1e9}, "rate"),
        ({"command": "SetLoad", "rate": True}, "rate"),
    ],
)
def test_bad_commands_name_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(CommandError) as error:
        command_from_dict(data)
    assert error.value.field == field
    assert error.value.status == 400
