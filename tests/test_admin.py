"""The admin API, driven with a real HTTP client against a real in-process lab."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from conftest import wait_for

from spofkit.admin import PROMETHEUS_CONTENT_TYPE, AdminServer
from spofkit.lab import Lab

pytestmark = pytest.mark.timeout(60)

# One Prometheus text-format sample: name, optional {label="value",...}, a number.
SAMPLE = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"'
    r'(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")*\})? '
    r"(-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?|NaN|[+-]Inf)$"
)


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    lab = await Lab.start(3)
    try:
        yield lab
    finally:
        await lab.stop()


@pytest.fixture
async def admin(lab: Lab) -> AsyncIterator[AdminServer]:
    server = AdminServer(lab, token=TOKEN)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        yield session


TOKEN = "test-token-0123456789"


async def call(
    http: aiohttp.ClientSession, method: str, url: str, body: Any = None, raw: str | None = None
) -> tuple[int, Any]:
    data = raw if raw is not None else (json.dumps(body) if body is not None else None)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with http.request(method, url, data=data, headers=headers) as response:
        return response.status, await response.json(content_type=None)


async def status_of(http: aiohttp.ClientSession, admin: AdminServer) -> dict[str, Any]:
    code, body = await call(http, "GET", f"{admin.url}/status")
    assert code == 200
    return dict(body)


def row(status: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in status["instances"] if r["name"] == name)


async def balancer_answers(http: aiohttp.ClientSession, lab: Lab) -> None:
    async with http.get(f"{lab.balancer_url}/hello") as response:
        assert response.status == 200


def test_refuses_non_local_host(lab: Lab) -> None:
    with pytest.raises(ValueError, match="host"):
        AdminServer(lab, host="0.0.0.0")
    with pytest.raises(ValueError, match="port"):
        AdminServer(lab, port=70000)


async def test_status(admin: AdminServer, http: aiohttp.ClientSession, lab: Lab) -> None:
    status = await status_of(http, admin)
    assert status["strategy"] == "round_robin"
    assert status["retries"] is True and status["health_checks"] is True
    assert status["balancer_url"] == lab.balancer_url
    assert [r["name"] for r in status["instances"]] == ["a", "b", "c"]
    for instance in status["instances"]:
        assert instance["url"].startswith("http://127.0.0.1:")
        assert instance["state"] == "up"
        assert {"pid", "in_flight", "served", "failed", "fault"} <= set(instance)


async def test_metrics_format_and_values_move(admin: AdminServer, http: aiohttp.ClientSession, lab: Lab) -> None:
    async def metrics() -> dict[str, float]:
        async with http.get(f"{admin.url}/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == PROMETHEUS_CONTENT_TYPE
            text = await response.text()
        values = {}
        for line in text.splitlines():
            if line.startswith("#"):
                assert re.match(r"^# (HELP|TYPE) spofkit_\w+ \S", line), line
                continue
            assert SAMPLE.match(line), f"not a Prometheus sample: {line!r}"
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
        return values

    before = await metrics()
    assert before['spofkit_instance_up{instance="b"}'] == 1
    assert before["spofkit_requests_total"] == 0
    for _ in range(9):
        await balancer_answers(http, lab)
    after = await metrics()
    assert after["spofkit_requests_total"] == 9
    served = sum(v for k, v in after.items() if k.startswith("spofkit_instance_served_total"))
    assert served == 9
    assert after['spofkit_instance_served_total{instance="a"}'] == 3  # round robin
    assert {"spofkit_retries_total", "spofkit_failed_requests_total"} <= set(after)
    assert 'spofkit_instance_in_flight{instance="c"}' in after
    assert 'spofkit_instance_failed_total{instance="c"}' in after

    await lab.inject("b", "crash")
    await wait_for(lambda: lab.status().instance("b").state == "down", 10)
    assert (await metrics())['spofkit_instance_up{instance="b"}'] == 0


async def read_events(
    response: aiohttp.ClientResponse, until: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """Events from an SSE response up to and including the first one ``until`` accepts."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        line = await asyncio.wait_for(response.content.readline(), 10)
        assert line, "event stream ended"
        text = line.decode().strip()
        if text.startswith("data: "):
            seen.append(json.loads(text[len("data: ") :]))
            if until(seen[-1]):
                return seen
    raise AssertionError(f"event not seen; got {[e['kind'] for e in seen]}")


async def test_events_stream_delivers_a_fault(admin: AdminServer, http: aiohttp.ClientSession, lab: Lab) -> None:
    # Let some high-volume events exist: the default stream leaves them out.
    await wait_for(lambda: any(e.kind == "HealthProbe" for e in lab.events.history))
    async with http.get(f"{admin.url}/events?history=1") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        await wait_for(lambda: admin.open_streams == 1)
        code, _ = await call(http, "POST", f"{admin.url}/instances/b/fault", {"kind": "slow", "ms": 5})
        assert code == 200
        seen = await read_events(response, lambda e: e["kind"] == "FaultInjected")
    fault = seen[-1]
    assert fault["instance"] == "b" and fault["fault"] == "slow" and fault["params"]["ms"] == 5
    assert seen[0]["kind"] == "InstanceStarted"  # the replayed history comes first
    assert not {"HealthProbe", "RequestCompleted", "ClientRequest"} & {e["kind"] for e in seen}
    # The client went away: the server notices and unsubscribes.
    await wait_for(lambda: admin.open_streams == 0)


async def test_events_all_includes_high_volume_kinds(admin: AdminServer, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{admin.url}/events?all=1") as response:
        seen = await read_events(response, lambda e: e["kind"] == "HealthProbe")
    assert seen[-1]["instance"] in ("a", "b", "c")


async def test_stop_ends_open_streams(lab: Lab, http: aiohttp.ClientSession) -> None:
    admin = AdminServer(lab, token=TOKEN)
    await admin.start()
    async with http.get(f"{admin.url}/events") as response:
        await wait_for(lambda: admin.open_streams == 1)
        await asyncio.wait_for(admin.stop(), 10)
        assert admin.open_streams == 0
        with pytest.raises((aiohttp.ClientError, AssertionError)):
            await read_events(response, lambda e: True)


async def test_fault_recover_restart(admin: AdminServer, http: aiohttp.ClientSession, lab: Lab) -> None:
    code, body = await call(http, "POST", f"{admin.url}/instances/b/fault", {"kind": "crash"})
    assert (code, body["fault"]) == (200, "crash")
    status = await status_of(http, admin)
    assert row(status, "b")["fault"] == "crash" and row(status, "b")["running"] is False

    code, body = await call(http, "POST", f"{admin.url}/instances/b/recover")
    assert code == 200 and body["fault"] is None and body["running"] is True

    await call(http, "POST", f"{admin.url}/instances/c/fault", {"kind": "error", "rate": 1.0})
    assert row(await status_of(http, admin), "c")["fault"] == "error"
    code, body = await call(http, "POST", f"{admin.url}/instances/c/restart")
    assert code == 200 and body["name"] == "c" and body["fault"] is None
    assert any(e.kind == "InstanceRestarted" for e in lab.events.history)
    await balancer_answers(http, lab)


async def test_add_and_remove_instances(admin: AdminServer, http: aiohttp.ClientSession, lab: Lab) -> None:
    code, body = await call(http, "POST", f"{admin.url}/instances")
    assert code == 201 and body["name"] == "d"
    code, body = await call(http, "POST", f"{admin.url}/instances", {"name": "spare", "backup": True})
    assert code == 201 and body["name"] == "spare" and body["backup"] is True
    names = [r["name"] for r in (await status_of(http, admin))["instances"]]
    assert names == ["a", "b", "c", "d", "spare"]

    code, body = await call(http, "DELETE", f"{admin.url}/instances/b")
    assert (code, body) == (200, {"removed": "b"})
    names = [r["name"] for r in (await status_of(http, admin))["instances"]]
    assert names == ["a", "c", "d", "spare"]
    assert "b" not in lab.instances
    await balancer_answers(http, lab)

    code, body = await call(http, "POST", f"{admin.url}/instances", {"name": "a"})
    assert (code, body["field"]) == (409, "name")
    for bad, field in (
        ({"name": "Not OK!"}, "name"),
        ({"backup": "yes"}, "backup"),
        ({"weight": -1}, "weight"),
        ({"colour": "red"}, "colour"),
    ):
        code, body = await call(http, "POST", f"{admin.url}/instances", bad)
        assert (code, body["field"]) == (400, field), body


async def test_strategy_and_settings(admin: AdminServer, http: aiohttp.ClientSession, lab: Lab) -> None:
    code, body = await call(http, "PUT", f"{admin.url}/strategy", {"strategy": "least_connections"})
    assert (code, body) == (200, {"strategy": "least_connections"})
    assert (await status_of(http, admin))["strategy"] == "least_connections"

    code, body = await call(http, "PUT", f"{admin.url}/settings", {"retries": False, "health_checks": False})
    assert (code, body) == (200, {"retries": False, "health_checks": False, "ejection": True})
    status = await status_of(http, admin)
    assert (status["retries"], status["health_checks"], status["ejection"]) == (False, False, True)

    code, body = await call(http, "PUT", f"{admin.url}/settings", {"ejection": False, "health_checks": True})
    assert (code, body) == (200, {"retries": False, "health_checks": True, "ejection": False})
    await balancer_answers(http, lab)


async def test_load_control(admin: AdminServer, http: aiohttp.ClientSession, lab: Lab) -> None:
    code, body = await call(http, "PUT", f"{admin.url}/load", {"rate": 20})
    assert (code, body) == (200, {"load_rate": 20, "load_paused": False})
    await wait_for(lambda: lab.balancer.requests > 0)
    code, body = await call(http, "PUT", f"{admin.url}/load", {"rate": 30, "paused": True})
    assert (code, body) == (200, {"load_rate": 30, "load_paused": True})
    code, body = await call(http, "PUT", f"{admin.url}/load", {"rate": 0})
    assert (code, body["load_rate"]) == (200, None)
    code, body = await call(http, "PUT", f"{admin.url}/load", {"rate": -5})
    assert (code, body["field"]) == (400, "rate")


async def test_unknown_instance_is_404(admin: AdminServer, http: aiohttp.ClientSession) -> None:
    for method, path, body in (
        ("POST", "/instances/zz/fault", {"kind": "crash"}),
        ("POST", "/instances/zz/recover", None),
        ("POST", "/instances/zz/restart", None),
        ("DELETE", "/instances/zz", None),
    ):
        code, answer = await call(http, method, admin.url + path, body)
        assert code == 404, (method, path)
        assert answer["field"] == "name" and "zz" in answer["error"]


@pytest.mark.parametrize(
    ("method", "path", "raw", "field"),
    [
        ("POST", "/instances/a/fault", '{"kind": "sl', "body"),
        ("POST", "/instances/a/fault", "", "body"),
        ("POST", "/instances/a/fault", "[1, 2]", "body"),
        ("POST", "/instances/a/fault", '{"ms": 5}', "kind"),
        ("POST", "/instances/a/fault", '{"kind": "meteor"}', "kind"),
        ("POST", "/instances/a/fault", '{"kind": "slow", "ms": -1}', "ms"),
        ("POST", "/instances/a/fault", '{"kind": "slow", "ms": "fast"}', "ms"),
        ("POST", "/instances/a/fault", '{"kind": "error", "rate": 2}', "rate"),
        ("POST", "/instances/a/fault", '{"kind": "slow", "ms": NaN}', "body"),
        ("POST", "/instances/a/fault", '{"kind": "slow", "ms": Infinity}', "body"),
        ("POST", "/instances/a/fault", '{"kind": "error", "status": 100}', "status"),
        ("PUT", "/load", '{"rate": NaN}', "body"),
        ("POST", "/instances/a/fault", '{"kind": "crash", "name": "b"}', "name"),
        ("PUT", "/strategy", '{"strategy": "fastest"}', "strategy"),
        ("PUT", "/strategy", '{"strategy": 3}', "strategy"),
        ("PUT", "/strategy", "{}", "strategy"),
        ("PUT", "/settings", '{"retries": "yes"}', "retries"),
        ("PUT", "/settings", '{"turbo": true}', "turbo"),
    ],
)
async def test_bad_requests_are_400_naming_the_field(
    admin: AdminServer,
    http: aiohttp.ClientSession,
    lab: Lab,
    method: str,
    path: str,
    raw: str,
    field: str,
) -> None:
    code, answer = await call(http, method, admin.url + path, raw=raw)
    assert (code, answer["field"]) == (400, field), answer
    assert answer["error"]
    # Nothing changed, nothing broke: the lab keeps serving.
    status = await status_of(http, admin)
    assert row(status, "a")["fault"] is None
    assert status["strategy"] == "round_robin" and status["retries"] is True
    await balancer_answers(http, lab)


async def test_unknown_path_and_method_are_json(admin: AdminServer, http: aiohttp.ClientSession) -> None:
    code, answer = await call(http, "GET", f"{admin.url}/nope")
    assert (code, answer["field"]) == (404, "path")
    code, answer = await call(http, "DELETE", f"{admin.url}/status")
    assert code == 405
    code, answer = await call(http, "GET", f"{admin.url}/")
    assert code == 200 and "POST /instances/{name}/fault" in answer["routes"]


async def test_foreign_host_and_origin_are_refused(admin: AdminServer, http: aiohttp.ClientSession, lab: Lab) -> None:
    url = f"{admin.url}/instances/b/fault"
    crash = json.dumps({"kind": "crash"})
    async with http.post(url, data=crash, headers={"Host": "evil.example"}) as response:
        assert response.status == 403
    async with http.post(url, data=crash, headers={"Origin": "http://evil.example"}) as response:
        assert response.status == 403
    assert lab.status().instance("b").fault is None
    async with http.get(f"{admin.url}/status", headers={"Origin": admin.url}) as response:
        assert response.status == 200
