"""The balancer as a real reverse proxy on 127.0.0.1, with hand-made backends that count what reaches them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from conftest import wait_for

from spofkit.balancer import Balancer
from spofkit.events import EventBus, InstanceEjected, RequestCompleted, RequestRetried
from spofkit.failover import EjectionSettings, RetrySettings
from spofkit.proxy.limits import ProxyLimits
from spofkit.proxy.upstream import Reply, UpstreamConnection, UpstreamPool

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Backend:
    """A tiny aiohttp server that counts the requests reaching it and the headers it saw."""

    name: str
    behaviour: str = "ok"  # ok | abort_after_read | status503 | slow
    hits: int = 0
    seen_headers: list[dict[str, str]] = field(default_factory=list)
    seen_bodies: list[bytes] = field(default_factory=list)
    runner: web.AppRunner | None = None
    port: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.hits += 1
        self.seen_headers.append(dict(request.headers))
        self.seen_bodies.append(body)
        if self.behaviour == "abort_after_read":
            assert request.transport is not None
            request.transport.abort()  # processed, then the connection dies before any answer
            return web.Response()
        if self.behaviour == "status503":
            return web.Response(status=503, text="busy")
        if self.behaviour == "slow":
            await asyncio.sleep(5)
        headers = {
            "X-Served-By": self.name,
            "Connection": "keep-alive, X-Secret",
            "X-Secret": "hop",
        }
        return web.json_response({"instance": self.name, "bytes": len(body)}, headers=headers)

    async def start(self) -> None:
        app = web.Application(client_max_size=8 << 20)
        app.router.add_route("*", "/{path:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        assert site._server is not None
        self.port = site._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
async def make_balancer() -> AsyncIterator[Callable[..., Awaitable[tuple[Balancer, list[Backend]]]]]:
    started: list[Balancer | Backend] = []

    async def make(*behaviours: str, **options: object) -> tuple[Balancer, list[Backend]]:
        backends = [Backend(chr(ord("a") + i), b) for i, b in enumerate(behaviours)]
        for backend in backends:
            await backend.start()
            started.append(backend)
        balancer = Balancer(EventBus(), **options)  # type: ignore[arg-type]
        await balancer.start()
        started.append(balancer)
        for backend in backends:
            balancer.add_member(backend.name, backend.url)
        return balancer, backends

    yield make
    for thing in reversed(started):
        if isinstance(thing, Balancer):
            await thing.stop()
        elif thing.runner:
            await thing.runner.cleanup()


async def test_a_post_that_reached_a_backend_is_never_replayed(make_balancer) -> None:  # type: ignore[no-untyped-def]
    balancer, (dying, healthy) = await make_balancer("abort_after_read", "ok", strategy="round_robin")
    async with aiohttp.ClientSession() as client:
        async with client.post(balancer.url + "/pay", data=b"charge 10") as response:
            assert response.status == 502
            body = await response.json()
            assert "not idempotent" in body["reason"]
            assert response.headers["X-Spof-Attempts"] == "1"
        assert dying.hits == 1
        assert healthy.hits == 0
        # The same failure on a GET is retried on the other instance: the client never sees it.
        attempts = []
        for _ in range(2):
            async with client.get(balancer.url + "/x") as response:
                assert response.status == 200
                assert response.headers["X-Served-By"] == "b"
                attempts.append(response.headers["X-Spof-Attempts"])
    assert sorted(attempts) == ["1", "2"]
    assert dying.hits == 2 and healthy.hits == 2


async def test_a_post_refused_at_connect_is_safely_retried(make_balancer) -> None:  # type: ignore[no-untyped-def]
    balancer, (gone, healthy) = await make_balancer("ok", "ok")
    assert gone.runner is not None
    await gone.runner.cleanup()  # the port now refuses connections: the request provably never arrived
    gone.runner = None
    async with aiohttp.ClientSession() as client:
        for _ in range(4):
            async with client.post(balancer.url + "/pay", data=b"charge 10") as response:
                assert response.status == 200
                assert (await response.json())["instance"] == "b"
    assert healthy.hits == 4
    assert healthy.seen_bodies == [b"charge 10"] * 4


async def test_retryable_status_goes_to_another_instance_and_is_counted(make_balancer) -> None:  # type: ignore[no-untyped-def]
    balancer, (busy, healthy) = await make_balancer("status503", "ok", ejection=None)
    retried: list[RequestRetried] = []
    balancer.events.subscribe(lambda e: retried.append(e) if isinstance(e, RequestRetried) else None)
    async with aiohttp.ClientSession() as client:
        for _ in range(4):
            async with client.get(balancer.url + "/") as response:
                assert response.status == 200
    # Round robin's turn comes back to "a" after every retry on "b", so each request tries "a" first.
    assert busy.hits == 4 and healthy.hits == 4
    assert [e.instance for e in retried] == ["a"] * 4


async def test_without_retries_the_backend_answer_reaches_the_client(make_balancer) -> None:  # type: ignore[no-untyped-def]
    balancer, (_busy, _) = await make_balancer("status503", "ok", retries=None, ejection=None)
    async with aiohttp.ClientSession() as client:
        statuses = []
        for _ in range(4):
            async with client.get(balancer.url + "/") as response:
                statuses.append(response.status)
    assert sorted(statuses) == [200, 200, 503, 503]


async def test_per_try_timeout_redispatches_and_504_when_nothing_answers(make_balancer) -> None:  # type: ignore[no-untyped-def]
    retries = RetrySettings(per_try_timeout=0.3, deadline=2.0)
    balancer, (_slow, _fast) = await make_balancer("slow", "ok", retries=retries, ejection=None)
    async with aiohttp.ClientSession() as client:
        for _ in range(2):
            async with client.get(balancer.url + "/") as response:
                assert response.status == 200
                assert response.headers["X-Served-By"] == "b"
        await balancer.remove_member("b", drain_timeout=1)
        async with client.get(balancer.url + "/") as response:
            assert response.status == 504
            body = await response.json()
            assert body["error"] == "timeout" and "no answer within" in body["reason"]
    failed = [e for e in balancer.events.history if isinstance(e, RequestCompleted) and e.outcome == "failed"]
    assert [(e.instance, e.last_tried) for e in failed] == [(None, "a")]  # no answer came, but it went to a


async def test_no_instance_gives_503_with_a_json_reason(make_balancer) -> None:  # type: ignore[no-untyped-def]
    balancer, _ = await make_balancer()
    async with aiohttp.ClientSession() as client, client.get(balancer.url + "/") as response:
        assert response.status == 503
        assert response.headers["X-Spof-Attempts"] == "0"
        assert "no instance is available" in (await response.json())["reason"]


async def test_backup_serves_only_when_no_primary_can(make_balancer) -> None:  # type: ignore[no-untyped-def]
    balancer, (primary,) = await make_balancer("ok")
    backup = Backend("z")
    await backup.start()
    try:
        balancer.add_member("z", backup.url, backup=True)
        async with aiohttp.ClientSession() as client:
            for _ in range(3):
                async with client.get(balancer.url + "/") as response:
                    assert response.headers["X-Served-By"] == "a"
            balancer.members["a"].draining = True
            async with client.get(balancer.url + "/") as response:
                assert response.headers["X-Served-By"] == "z"
        assert backup.hits == 1 and primary.hits == 3
    finally:
        assert backup.runner is not None
        await backup.runner.cleanup()


async def test_max_conns_sends_excess_to_503(make_balancer) -> None:  # type: ignore[no-untyped-def]
    retries = RetrySettings(per_try_timeout=3.0)
    balancer, (slow,) = await make_balancer("slow", retries=retries)
    balancer.members["a"].max_conns = 1
    async with aiohttp.ClientSession() as client:
        first = asyncio.create_task(client.get(balancer.url + "/"))
        deadline = asyncio.get_running_loop().time() + 3
        while balancer.members["a"].in_flight < 1:
            assert asyncio.get_running_loop().time() < deadline, "first request never reached the backend"
            await asyncio.sleep(0.01)
        async with client.get(balancer.url + "/") as response:
            assert response.status == 503
            assert "max_conns" in (await response.json())["reason"]
        # in_flight counts the first request from when the balancer took it: it reaches the backend a moment later
        await wait_for(lambda: slow.hits >= 1, 3, message="the first request reached the backend")
        first.cancel()
    assert slow.hits == 1  # and the second never did


async def test_consecutive_failures_eject_an_instance(make_balancer) -> None:  # type: ignore[no-untyped-def]
    ejection = EjectionSettings(consecutive_failures=2, base_time=30.0)
    balancer, (busy, _healthy) = await make_balancer("status503", "ok", retries=None, ejection=ejection)
    ejected: list[InstanceEjected] = []
    balancer.events.subscribe(lambda e: ejected.append(e) if isinstance(e, InstanceEjected) else None)
    async with aiohttp.ClientSession() as client:
        for _ in range(10):
            async with client.get(balancer.url + "/") as response:
                await response.read()
    assert [e.instance for e in ejected] == ["a"]
    assert busy.hits == 2  # after two failures it got no more traffic
    assert balancer.state_of("a") == "ejected"


async def test_proxy_headers_hop_by_hop_and_streamed_bodies(make_balancer) -> None:  # type: ignore[no-untyped-def]
    balancer, (backend,) = await make_balancer("ok", limits=ProxyLimits(max_body_size=8 << 20))
    big = b"x" * (3 << 20)  # larger than the buffer: streamed through

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 1 << 16):
            yield big[start : start + (1 << 16)]

    async with aiohttp.ClientSession() as client:
        headers = {
            "Connection": "keep-alive, X-Private",
            "X-Private": "drop me",
            "X-Forwarded-For": "10.9.9.9",
        }
        async with client.post(balancer.url + "/upload", data=chunks(), headers=headers) as response:
            assert response.status == 200
            assert (await response.json())["bytes"] == len(big)
            assert "X-Secret" not in response.headers  # listed in the backend's Connection header
    seen = backend.seen_headers[0]
    assert "X-Private" not in seen
    assert seen["X-Forwarded-For"] == "10.9.9.9, 127.0.0.1"
    assert seen["X-Forwarded-Proto"] == "http"
    assert backend.seen_bodies[0] == big


@pytest.mark.parametrize(
    "request_line",
    [
        b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n",
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n",
    ],
)
async def test_not_an_open_proxy(make_balancer, request_line: bytes) -> None:  # type: ignore[no-untyped-def]
    balancer, (backend,) = await make_balancer("ok")
    reader, writer = await asyncio.open_connection("127.0.0.1", balancer.port)
    writer.write(request_line + b"Connection: close\r\n\r\n")
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), timeout=5)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] in (b"400", b"405")
    assert "open proxy" in json.loads(body)["reason"]
    assert backend.hits == 0
    # and the balancer still serves
    async with aiohttp.ClientSession() as client, client.get(balancer.url + "/ok") as response:
        assert response.status == 200


class FramingBackend:
    """An instance whose answers end in every way HTTP/1.1 allows; it counts the connections it was sent on."""

    def __init__(self) -> None:
        self.peers: set[tuple[str, int]] = set()
        self.runner: web.ServerRunner | None = None
        self.port = 0

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        assert request.transport is not None
        self.peers.add(request.transport.get_extra_info("peername"))
        if request.path == "/chunked":  # no Content-Length: the body ends with the last chunk
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            for piece in (b"a" * 500_000, b"b" * 700_000, b"c" * 10):
                await response.write(piece)
            await response.write_eof()
            return response
        if request.path == "/big":  # sized, but too large to buffer: streamed by its length
            return web.Response(body=b"z" * (2 << 20))
        if request.path == "/sized":  # the largest answer read whole before the client gets any of it
            return web.Response(body=b"s" * (1 << 20))
        if request.path == "/empty":
            return web.Response(status=204)
        if request.path == "/close":  # the instance will not keep this connection
            return web.Response(text="bye", headers={"Connection": "close"})
        return web.Response(text="plain")

    async def start(self) -> None:
        self.runner = web.ServerRunner(web.Server(self.handle, access_log=None))
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        assert site._server is not None
        self.port = site._server.sockets[0].getsockname()[1]


@pytest.fixture
async def framing_balancer() -> AsyncIterator[tuple[Balancer, FramingBackend]]:
    backend = FramingBackend()
    await backend.start()
    balancer = Balancer(EventBus())
    await balancer.start()
    balancer.add_member("a", f"http://127.0.0.1:{backend.port}")
    yield balancer, backend
    await balancer.stop()
    assert backend.runner is not None
    await backend.runner.cleanup()


async def test_every_kind_of_response_body_passes_through_on_kept_alive_connections(framing_balancer) -> None:  # type: ignore[no-untyped-def]
    balancer, backend = framing_balancer
    expected = {
        "/chunked": (200, b"a" * 500_000 + b"b" * 700_000 + b"c" * 10),
        "/big": (200, b"z" * (2 << 20)),
        "/sized": (200, b"s" * (1 << 20)),
        "/empty": (204, b""),
        "/plain": (200, b"plain"),
    }
    async with aiohttp.ClientSession() as client:
        for _ in range(3):
            for path, (status, body) in expected.items():
                async with client.get(balancer.url + path) as response:
                    assert response.status == status, path
                    assert await response.read() == body, path
                    assert response.headers["X-Spof-Attempts"] == "1"
            async with client.head(balancer.url + "/plain") as response:
                assert response.status == 200
                assert await response.read() == b""
    # One request at a time: every answer ended cleanly, so one connection to the instance carried them all.
    assert len(backend.peers) == 1
    assert balancer.retried == 0 and balancer.failed == 0


async def test_a_connection_the_instance_closes_is_not_reused(framing_balancer) -> None:  # type: ignore[no-untyped-def]
    balancer, backend = framing_balancer
    async with aiohttp.ClientSession() as client:
        for _ in range(3):
            async with client.get(balancer.url + "/close") as response:
                assert response.status == 200
                assert await response.text() == "bye"
                assert response.headers["X-Spof-Attempts"] == "1"
    assert len(backend.peers) == 3  # a new connection each time, and never a failed attempt on a dead one
    assert balancer.retried == 0 and balancer.failed == 0


@pytest.mark.parametrize("url", ["http://127.0.0.1", "https://127.0.0.1:8080", "http://127.0.0.1:8080/api"])
def test_an_instance_url_must_be_plain_http_host_and_port(url: str) -> None:
    balancer = Balancer(EventBus())
    with pytest.raises(ValueError, match="http://HOST:PORT"):
        balancer.add_member("a", url)
    assert "a" not in balancer.members


async def test_a_retired_pool_closes_a_connection_given_back_after_the_drain() -> None:
    backend = FramingBackend()
    await backend.start()
    pool = UpstreamPool("127.0.0.1", backend.port)
    request = b"GET /plain HTTP/1.1\r\nHost: a\r\n\r\n"
    try:
        kept = await pool.connect(1.0)
        assert isinstance(kept, UpstreamConnection)
        reply = await kept.send(request, None, head_request=False)
        assert isinstance(reply, Reply) and reply.complete and b"".join(reply.body) == b"plain"
        pool.give_back(kept)  # kept alive: back in the pool
        late = pool.idle_connection()  # still in flight when the instance is removed
        assert late is kept
        assert pool.idle_connection() is None  # the only one is taken
        reply = await late.send(request, None, head_request=False)
        pool.retire()
        assert not late.closed
        assert isinstance(reply, Reply) and b"".join(reply.body) == b"plain"
        pool.give_back(late)  # given back after the drain: closed, not kept
        assert late.closed and pool.idle == 0
    finally:
        pool.close()
        assert backend.runner is not None
        await backend.runner.cleanup()


async def test_an_instance_ejected_for_5xx_answers_comes_back_on_time() -> None:
    from spofkit.events import InstanceEjected, InstanceReturned
    from spofkit.lab import Lab

    lab = await Lab.start(2, health=None, ejection=EjectionSettings(consecutive_failures=2, base_time=0.5))
    try:
        await lab.inject("b", "error", rate=1.0, status=500)  # 500: passed on to the client, not retried
        async with aiohttp.ClientSession() as client:
            for _ in range(8):
                async with client.get(lab.balancer_url + "/") as response:
                    await response.read()
        ejected = [e for e in lab.events.history if isinstance(e, InstanceEjected) and e.instance == "b"]
        assert ejected, "two 500s in a row eject b"
        await wait_for(
            lambda: any(isinstance(e, InstanceReturned) and e.instance == "b" for e in lab.events.history),
            3,
            message="b's ejection runs out and is announced (a timer set after a 5xx answer)",
        )
    finally:
        await lab.stop()


async def test_a_draining_instance_whose_attempt_is_retried_elsewhere_is_released_at_once() -> None:
    from spofkit.lab import Lab

    lab = await Lab.start(2, health=None, ejection=None, retries=RetrySettings(per_try_timeout=0.3))
    try:
        await lab.inject("b", "hang")
        async with aiohttp.ClientSession() as client:
            answers = [asyncio.ensure_future(client.get(lab.balancer_url + "/")) for _ in range(2)]  # one goes to b
            await wait_for(lambda: lab.status().instance("b").in_flight == 1, 5, message="a request hangs on b")
            started = asyncio.get_running_loop().time()
            await lab.remove_instance("b", drain_timeout=10.0)
            took = asyncio.get_running_loop().time() - started
            for answer in answers:
                async with await answer as response:
                    assert response.status == 200  # b's request timed out there and was served by a
        # 0.3 s (the attempt's timeout) when right, the whole drain_timeout (10 s) when not: room for a slow machine
        assert took < 8.0, f"the drain waited {took:.1f}s for an attempt that had ended (retried elsewhere)"
    finally:
        await lab.stop()
