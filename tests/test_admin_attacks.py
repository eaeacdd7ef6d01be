"""The admin API tried as an attacker would: concurrent conflicting calls, absurd values, floods, and a fuzzer.

Whatever it is sent, it answers 4xx with a JSON reason naming the field — never a 500 — and the lab keeps
serving. The fuzz test runs a lab and its admin API on a thread of their own and throws >= 10,000 generated
requests at every route with a plain HTTP client.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from conftest import child_pids, wait_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spofkit.admin import AdminServer
from spofkit.events import HealthProbe
from spofkit.health import HealthSettings
from spofkit.lab import MAX_INSTANCES, Lab

TOKEN = "attack-test-token-42"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def served() -> AsyncIterator[tuple[Lab, AdminServer, aiohttp.ClientSession]]:
    lab = await Lab.start(3)
    admin = AdminServer(lab, token=TOKEN)
    await admin.start()
    session = aiohttp.ClientSession(headers=AUTH, timeout=aiohttp.ClientTimeout(total=30))
    try:
        yield lab, admin, session
    finally:
        await session.close()
        await admin.stop()
        await lab.stop()


async def call(session: aiohttp.ClientSession, method: str, url: str, body: Any = None) -> tuple[int, Any]:
    async with session.request(method, url, json=body) as response:
        return response.status, await response.json(content_type=None)


async def test_concurrent_adds_give_distinct_manageable_instances(
    served: tuple[Lab, AdminServer, aiohttp.ClientSession],
) -> None:
    lab, admin, session = served
    answers = await asyncio.gather(*(call(session, "POST", f"{admin.url}/instances") for _ in range(6)))
    assert [code for code, _ in answers] == [201] * 6, answers
    names = [body["name"] for _, body in answers]
    assert len(set(names)) == 6
    for name in names:  # every one can be broken, mended and removed: no ghost
        assert (await call(session, "POST", f"{admin.url}/instances/{name}/fault", {"kind": "crash"}))[0] == 200
        assert (await call(session, "POST", f"{admin.url}/instances/{name}/recover"))[0] == 200
    removals = await asyncio.gather(*(call(session, "DELETE", f"{admin.url}/instances/{n}") for n in names))
    assert [code for code, _ in removals] == [200] * 6
    assert sorted(lab.instances) == ["a", "b", "c"]
    assert sorted(r.name for r in lab.status().instances) == ["a", "b", "c"]


async def test_concurrent_adds_in_process_isolation_leave_no_orphan() -> None:
    before = child_pids()
    lab = await Lab.start(1, isolation="process")
    admin = AdminServer(lab, token=TOKEN)
    await admin.start()
    try:
        async with aiohttp.ClientSession(headers=AUTH) as session:
            answers = await asyncio.gather(*(call(session, "POST", f"{admin.url}/instances") for _ in range(4)))
        assert [code for code, _ in answers] == [201] * 4, answers
        pids = [body["pid"] for _, body in answers]
        assert all(isinstance(pid, int) for pid in pids) and len(set(pids)) == 4
        assert set(pids) <= child_pids()
    finally:
        await admin.stop()
        await lab.stop()
    await wait_for(lambda: child_pids() == before, 10, message="every instance process gone")


async def test_the_same_instance_removed_twice_at_once(served: tuple[Lab, AdminServer, aiohttp.ClientSession]) -> None:
    lab, admin, session = served
    first, second = await asyncio.gather(
        call(session, "DELETE", f"{admin.url}/instances/b"), call(session, "DELETE", f"{admin.url}/instances/b")
    )
    codes = sorted([first[0], second[0]])
    assert codes in ([200, 404], [200, 409]), (first, second)
    assert "b" not in lab.instances


async def test_health_toggles_leave_one_probe_schedule_per_instance() -> None:
    interval = 0.1
    lab = await Lab.start(3, health=HealthSettings(interval=interval, timeout=0.05))
    admin = AdminServer(lab, token=TOKEN)
    await admin.start()
    try:
        async with aiohttp.ClientSession(headers=AUTH) as session:
            for _ in range(6):
                await call(session, "PUT", f"{admin.url}/settings", {"health_checks": False})
                await call(session, "PUT", f"{admin.url}/settings", {"health_checks": True})
            toggles = [call(session, "PUT", f"{admin.url}/settings", {"health_checks": on}) for on in (False, True) * 5]
            await asyncio.gather(*toggles)
        checker = lab.balancer.checker
        await wait_for(lambda: checker.scheduled + len(checker._probes) == 3, 2, message="one schedule each")
        probes: list[HealthProbe] = []
        unsubscribe = lab.events.subscribe(lambda e: probes.append(e) if isinstance(e, HealthProbe) else None)
        started = lab.now()
        await wait_for(lambda: lab.now() - started >= 1.0, 3)
        unsubscribe()
        window = lab.now() - started
        for name in "abc":
            mine = [p for p in probes if p.instance == name]
            # One schedule: at most one probe per interval (+1 for the edges). Two would double this.
            assert len(mine) <= window / interval + 1, (name, len(mine))
            assert len(mine) >= window / interval / 2, (name, len(mine))
    finally:
        await admin.stop()
        await lab.stop()


async def test_absurd_values_get_4xx_naming_the_field(served: tuple[Lab, AdminServer, aiohttp.ClientSession]) -> None:
    lab, admin, session = served
    cases = [
        ("POST", "/instances/a/fault", {"kind": "flap", "period": 1e-9}, 400, "period"),
        ("PUT", "/load", {"rate": 10000}, 400, "rate"),
        ("PUT", "/load", {"rate": 1e308}, 400, "rate"),
        ("POST", "/instances/a/fault", {"kind": "slow", "ms": 1e12}, 400, "ms"),
        ("POST", "/instances", {"weight": 10**30}, 400, "weight"),
        ("POST", "/commands", {"command": "Explode"}, 400, "command"),
        ("POST", "/commands", {"command": "InjectFault", "instance": "a"}, 400, "kind"),
    ]
    for method, path, body, status, field in cases:
        code, answer = await call(session, method, admin.url + path, body)
        assert (code, answer.get("field")) == (status, field), (path, body, answer)
    assert lab.status().instance("a").fault is None


async def test_deeply_nested_and_huge_bodies_are_refused(
    served: tuple[Lab, AdminServer, aiohttp.ClientSession],
) -> None:
    lab, admin, session = served
    deep = "[" * 20_000 + "]" * 20_000  # 40 kB: under the size limit, far past any sane nesting
    async with session.post(f"{admin.url}/instances/a/fault", data=deep) as response:
        assert response.status == 400
        assert (await response.json())["field"] == "body"
    huge = json.dumps({"kind": "crash", "padding": "x" * 1_000_000})
    async with session.post(f"{admin.url}/instances/a/fault", data=huge) as response:
        assert response.status == 413
        assert (await response.json())["field"] == "body"
    assert lab.status().instance("a").fault is None


async def test_the_lab_has_a_size_limit(served: tuple[Lab, AdminServer, aiohttp.ClientSession]) -> None:
    lab, admin, session = served
    for _ in range(MAX_INSTANCES - 3):
        assert (await call(session, "POST", f"{admin.url}/instances"))[0] == 201
    code, answer = await call(session, "POST", f"{admin.url}/instances")
    assert (code, answer["field"]) == (409, "name")
    assert f"at most {MAX_INSTANCES}" in answer["error"]
    assert len(lab.instances) == MAX_INSTANCES


async def test_changing_calls_need_the_token(served: tuple[Lab, AdminServer, aiohttp.ClientSession]) -> None:
    lab, admin, _ = served
    async with aiohttp.ClientSession() as anonymous:
        for headers in ({}, {"Authorization": "Bearer wrong-token-123"}, {"Authorization": TOKEN}):
            async with anonymous.post(f"{admin.url}/instances/b/fault", json={"kind": "crash"}, headers=headers) as r:
                assert r.status == 401
                assert (await r.json())["field"] == "authorization"
        async with anonymous.get(f"{admin.url}/status") as response:
            assert response.status == 200  # reads stay open on 127.0.0.1
    assert lab.status().instance("b").fault is None


# --- the fuzzer ----------------------------------------------------------------------------------------------


class LabThread:
    """A lab and its admin API on their own thread and loop, so a plain (sync) client can hammer them."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.lab: Lab | None = None
        self.admin: AdminServer | None = None

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(60)

    async def _start(self) -> None:
        self.lab = await Lab.start(3, health=HealthSettings(interval=0.2, timeout=0.1))
        self.admin = AdminServer(self.lab, token=TOKEN)
        await self.admin.start()

    def stop(self) -> None:
        async def stop() -> None:
            assert self.lab is not None and self.admin is not None
            await self.admin.stop()
            await self.lab.stop()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def lab_thread() -> Iterator[LabThread]:
    running = LabThread()
    running.start()
    try:
        yield running
    finally:
        running.stop()


names = st.sampled_from(["a", "b", "c", "d", "zz", "", "A", "a b", "%00", "../x", "a" * 40, "ü"]).map(
    lambda name: quote(name, safe="")  # as a client must send it in a path
)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
field_names = st.sampled_from(
    [
        *("kind", "ms", "jitter_ms", "rate", "status", "period", "seconds", "extra_ms", "name", "backup", "weight"),
        *("strategy", "retries", "health_checks", "ejection", "paused", "command", "instance", "params"),
    ]
)
kinds = st.sampled_from(["crash", "hang", "slow", "error", "gray", "flap", "reset", "warmup", "melt"])
bodies = st.one_of(
    st.dictionaries(field_names, json_value, max_size=4),
    st.builds(lambda kind, extra: {"kind": kind, **extra}, kinds, st.dictionaries(field_names, json_value, max_size=3)),
    st.dictionaries(st.text(max_size=6), json_value, max_size=3),
    json_value,
)
raw_bodies = st.one_of(
    bodies.map(lambda b: json.dumps(b, allow_nan=True)),
    st.sampled_from(["", "{", '{"kind": NaN}', '{"rate": Infinity}', "null", "[" * 3000 + "]" * 3000]),
    st.binary(max_size=64).map(lambda b: b.decode("latin-1")),
)
routes = st.one_of(
    st.tuples(st.just("POST"), names.map(lambda n: f"/instances/{n}/fault")),
    st.tuples(st.just("POST"), names.map(lambda n: f"/instances/{n}/recover")),
    st.tuples(st.just("POST"), names.map(lambda n: f"/instances/{n}/restart")),
    st.tuples(st.just("DELETE"), names.map(lambda n: f"/instances/{n}")),
    st.tuples(st.just("POST"), st.just("/instances")),
    st.tuples(st.just("PUT"), st.sampled_from(["/strategy", "/settings", "/load"])),
    st.tuples(st.just("POST"), st.just("/commands")),
    st.tuples(st.sampled_from(["GET", "PATCH", "PUT", "POST"]), st.sampled_from(["/status", "/metrics", "/nope"])),
)


@settings(
    max_examples=10_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)
@given(route=routes, body=raw_bodies)
def test_no_admin_input_gets_a_500(lab_thread: LabThread, route: tuple[str, str], body: str) -> None:
    method, path = route
    assert lab_thread.admin is not None
    connection = http.client.HTTPConnection("127.0.0.1", lab_thread.admin.port, timeout=30)
    try:
        connection.request(method, path, body=body.encode("utf-8", "surrogatepass"), headers=AUTH)
        response = connection.getresponse()
        payload = response.read()
    finally:
        connection.close()
    assert response.status < 500, (method, path, body[:200], payload[:300])
    if response.status >= 400:
        answer = json.loads(payload)
        assert answer["error"] and answer["field"], answer


def test_after_the_fuzzer_the_lab_still_serves(lab_thread: LabThread) -> None:
    lab = lab_thread.lab
    assert lab is not None

    async def heal_and_measure() -> Any:
        await lab.stop_background_load()
        for name in list(lab.instances):
            await lab.recover(name)
        await lab.set_health_checks(True)
        lab.set_retries(True)
        return await lab.run_load(rate=50, duration=1.0)

    report = asyncio.run_coroutine_threadsafe(heal_and_measure(), lab_thread.loop).result(60)
    assert report.requests == 50 and report.failed == 0, report.to_text()
