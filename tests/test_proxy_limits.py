"""The balancer's client side against raw sockets: what a slow, sloppy or hostile client gets, byte for byte.

Every test talks HTTP by hand over a TCP connection to a real balancer on 127.0.0.1, in front of a real aiohttp
instance that records what reached it, so each one checks both what the client saw and what the instance saw.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from conftest import wait_for

from spofkit.balancer import Balancer
from spofkit.events import EventBus, RequestCompleted
from spofkit.policy import RetrySettings
from spofkit.proxy.limits import ProxyLimits
from spofkit.proxy.server import ProxyServer

pytestmark = pytest.mark.timeout(60)


@dataclass
class Recorder:
    """An instance that records the raw request target and body of every request reaching it."""

    name: str = "a"
    behaviour: str = "ok"  # ok | abort_after_read | slow
    targets: list[str] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    runner: web.ServerRunner | None = None
    port: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)  # a "slow" instance answers once it is set

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        self.targets.append(request.raw_path)
        try:
            self.bodies.append(await request.read())
        except Exception:
            self.bodies.append(b"<cut off>")
            raise
        if self.behaviour == "abort_after_read":
            assert request.transport is not None
            request.transport.abort()
            return web.Response()
        if self.behaviour == "slow":
            await self.release.wait()
        return web.Response(text=f"{self.name} {request.raw_path}")

    async def start(self) -> None:
        self.runner = web.ServerRunner(web.Server(self.handle, access_log=None))
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        self.release.set()
        if self.runner is not None:
            await self.runner.cleanup()


Make = Callable[..., Awaitable[tuple[Balancer, list[Recorder]]]]


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    started: list[Balancer | Recorder] = []

    async def build(*behaviours: str, **limits: float | int | None) -> tuple[Balancer, list[Recorder]]:
        recorders = [Recorder(chr(ord("a") + i), b) for i, b in enumerate(behaviours or ("ok",))]
        for recorder in recorders:
            await recorder.start()
            started.append(recorder)
        balancer = Balancer(EventBus(), limits=ProxyLimits(**limits))  # type: ignore[arg-type]
        await balancer.start()
        started.append(balancer)
        for recorder in recorders:
            balancer.add_member(recorder.name, f"http://127.0.0.1:{recorder.port}")
        return balancer, recorders

    yield build
    for thing in reversed(started):
        await thing.stop()


class Client:
    """One raw TCP connection to the balancer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, balancer: Balancer) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", balancer.port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
        """Read one response (Content-Length framed, as the balancer's own answers are)."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        status_line, *lines = head.decode("latin-1").split("\r\n")[:-2]
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = b""
        if "content-length" in headers:
            body = await asyncio.wait_for(self.reader.readexactly(int(headers["content-length"])), timeout)
        return int(status_line.split(" ")[1]), headers, body

    async def closed_by_balancer(self, timeout: float = 5.0) -> bool:
        """True once the balancer has closed the connection (EOF), after whatever it still sends."""
        try:
            await asyncio.wait_for(self.reader.read(), timeout)
        except (ConnectionError, asyncio.IncompleteReadError):
            return True
        return self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()


async def get(balancer: Balancer, target: str = "/") -> tuple[int, dict[str, str], bytes]:
    client = await Client.open(balancer)
    try:
        await client.send(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        return await client.response()
    finally:
        client.close()


# --- rule: strict parsing -------------------------------------------------------------------------------------

SMUGGLING = {
    "content-length and transfer-encoding": (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "two content-lengths": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    "obs-fold": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
    "bare LF": b"GET / HTTP/1.1\nHost: x\n\n",
    "transfer-encoding not chunked": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
    "no host": b"GET / HTTP/1.1\r\n\r\n",
    "two hosts": b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
    "space before colon": b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
}


@pytest.mark.parametrize("vector", list(SMUGGLING))
async def test_smuggling_vectors_are_refused_with_400_and_closed(make: Make, vector: str) -> None:
    balancer, (instance,) = await make()
    client = await Client.open(balancer)
    await client.send(SMUGGLING[vector] + b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, body = await client.response()
    assert status == 400, vector
    assert headers["connection"] == "close"
    assert json.loads(body)["error"] == "bad_request"
    assert await client.closed_by_balancer()
    assert instance.targets == []  # neither the request nor what was smuggled behind it reached the instance
    assert (await get(balancer))[0] == 200  # and the balancer still serves


async def test_pipelined_requests_are_answered_in_order(make: Make) -> None:
    balancer, (instance,) = await make()
    client = await Client.open(balancer)
    await client.send(b"".join(f"GET /{n} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for n in range(5)))
    bodies = [(await client.response())[2] for _ in range(5)]
    client.close()
    assert bodies == [f"a /{n}".encode() for n in range(5)]
    assert instance.targets == [f"/{n}" for n in range(5)]


# --- rule: the request target goes on byte for byte -------------------------------------------------------------


@pytest.mark.parametrize("target", ["//x", "/a/../b", "/%2F%2e?q=a%20b&q=//c", "/x;y=1?", "/?", "/%C3%BC//"])
async def test_origin_form_targets_reach_the_instance_byte_for_byte(make: Make, target: str) -> None:
    balancer, (instance,) = await make()
    client = await Client.open(balancer)
    await client.send(b"GET " + target.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _headers, _body = await client.response()
    client.close()
    assert status == 200
    assert instance.targets == [target]


async def test_absolute_form_for_our_own_address_becomes_origin_form(make: Make) -> None:
    balancer, (instance,) = await make()
    for target in (f"http://127.0.0.1:{balancer.port}", f"HTTP://localhost:{balancer.port}//x?y=1"):
        status, _headers, _body = await get(balancer, target)
        assert status == 200, target
    assert instance.targets == ["/", "//x?y=1"]


@pytest.mark.parametrize("target", ["http://example.com/", "http://127.0.0.1:1/", "*", "ftp://x/", "x"])
async def test_other_targets_are_refused_not_fetched(make: Make, target: str) -> None:
    balancer, (instance,) = await make()
    status, _headers, body = await get(balancer, target)
    assert status == 400
    assert json.loads(body)["error"] == "bad_request"  # refused by the balancer, or already by the parser ("x")
    assert instance.targets == []


# --- rule: bounded sizes ---------------------------------------------------------------------------------------


async def test_a_head_over_the_limit_gets_431_from_the_balancer(make: Make) -> None:
    balancer, (instance,) = await make(max_head_size=4096)
    client = await Client.open(balancer)
    await client.send(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"b" * 5000 + b"\r\n\r\n")
    status, _headers, body = await client.response()
    assert status == 431 and "4096" in json.loads(body)["reason"]
    assert await client.closed_by_balancer()
    assert instance.targets == []


async def test_an_endless_header_sent_in_small_pieces_gets_431_before_it_ends(make: Make) -> None:
    balancer, (instance,) = await make(max_head_size=4096)
    client = await Client.open(balancer)
    await client.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Endless: ")
    status = None
    for _ in range(200):  # up to 200 KiB, far past the limit; the balancer must answer long before the end
        try:
            await client.send(b"e" * 1024)
        except ConnectionError:
            break
        if client.reader._buffer:  # type: ignore[attr-defined]  # the answer has started to arrive
            break
    status, _headers, _body = await client.response()
    assert status == 431
    assert instance.targets == []


async def test_a_body_over_the_limit_gets_413_before_it_is_sent(make: Make) -> None:
    balancer, (instance,) = await make()
    client = await Client.open(balancer)
    # Only the head: the balancer must not wait for 200 MiB it will refuse anyway.
    await client.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 209715200\r\n\r\n")
    status, headers, body = await client.response()
    assert status == 413
    assert headers["connection"] == "close"
    assert "209715200" in json.loads(body)["reason"]
    assert await client.closed_by_balancer()
    assert instance.targets == []


async def test_an_endless_chunked_upload_is_cut_at_the_limit_with_413(make: Make) -> None:
    balancer, (instance,) = await make(max_body_size=256 << 10)  # the upload streams to it, then is cut
    client = await Client.open(balancer)
    await client.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%b\r\n" % (16 << 10, b"u" * (16 << 10))
    sent = 0
    with pytest.raises(ConnectionError):
        for _ in range(1000):  # 16 MiB at most: far past the limit
            await client.send(chunk)
            sent += 16 << 10
            if client.reader._buffer or client.reader.at_eof():  # type: ignore[attr-defined]
                raise ConnectionError("answered")
    status, _headers, body = await client.response()
    assert status == 413, body
    assert sent < 4 << 20  # refused long before 16 MiB went through
    assert instance.targets == ["/upload"]  # a chunked body streams (it cannot be kept for a retry)
    completed = [e for e in balancer.events.history if isinstance(e, RequestCompleted)]
    assert [(e.status, e.outcome) for e in completed] == [(413, "failed")]


# --- rule: bounded waits ---------------------------------------------------------------------------------------


async def test_a_slow_header_client_gets_408_while_others_are_served(make: Make) -> None:
    balancer, _ = await make(head_timeout=0.6)
    slow = await Client.open(balancer)
    await slow.send(b"GET / HTTP/1.1\r\nHost: x\r\n")  # ... and never the blank line that ends the head
    loop = asyncio.get_running_loop()
    started = loop.time()
    served = 0
    while loop.time() - started < 0.3:
        served += (await get(balancer))[0] == 200
    status, headers, body = await slow.response(timeout=5)
    assert status == 408 and headers["connection"] == "close"
    assert "0.6s" in json.loads(body)["reason"]
    assert await slow.closed_by_balancer()
    assert served > 0


async def test_a_slow_body_client_gets_408_and_is_closed(make: Make) -> None:
    balancer, (instance,) = await make(body_timeout=0.6)
    slow = await Client.open(balancer)
    await slow.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
    status, _headers, body = await slow.response(timeout=5)
    assert status == 408
    assert "body" in json.loads(body)["reason"]
    assert await slow.closed_by_balancer()
    assert instance.targets == []  # a buffered body: nothing was sent before it was complete
    assert (await get(balancer))[0] == 200


async def test_an_idle_kept_alive_connection_is_closed_after_keepalive_timeout(make: Make) -> None:
    balancer, _ = await make(keepalive_timeout=0.5)
    client = await Client.open(balancer)
    await client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await client.response())[0] == 200
    assert await client.closed_by_balancer(timeout=5)  # no answer is owed: just closed
    assert not balancer.proxy or len(balancer.proxy.connections) == 0


# --- rule: the retry buffer ----------------------------------------------------------------------------------------


async def test_a_body_kept_for_retries_is_resent_and_one_past_the_buffer_streams_once(make: Make) -> None:
    balancer, (dying, healthy) = await make("abort_after_read", "ok", retry_buffer_size=1000)
    put = b"PUT /thing HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%b"
    client = await Client.open(balancer)
    await client.send(put % (500, b"s" * 500))  # fits in the buffer: a retry can send it again
    status, headers, _body = await client.response()
    assert (status, headers["x-spof-attempts"]) == (200, "2")
    assert healthy.bodies == [b"s" * 500]
    await client.send(put % (2000, b"L" * 2000))  # over the buffer: streamed, once; "a" fails it, no retry
    status, headers, body = await client.response()
    client.close()
    assert status == 502
    assert headers["x-spof-attempts"] == "1; not retryable: retry buffer full"
    assert "cannot be sent again" in json.loads(body)["reason"]
    assert dying.bodies[-1] == b"L" * 2000 and len(healthy.bodies) == 1
    assert balancer.retry_buffered == 0


async def test_a_streamed_body_is_said_so_in_the_event_when_served(make: Make) -> None:
    balancer, (instance,) = await make(retry_buffer_size=100)
    client = await Client.open(balancer)
    await client.send(b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 300\r\n\r\n" + b"p" * 300)
    status, headers, _body = await client.response()
    client.close()
    assert (status, headers["x-spof-attempts"]) == (200, "1; not retryable: retry buffer full")
    assert instance.bodies == [b"p" * 300]
    (done,) = [e for e in balancer.events.history if isinstance(e, RequestCompleted)]
    assert done.outcome == "served" and done.reason == "not retryable: retry buffer full"


# --- rule: the connection cap and the backlog --------------------------------------------------------------------


async def test_at_the_cap_the_longest_idle_connection_makes_room(make: Make) -> None:
    balancer, _ = await make(max_connections=4)
    idle = [await Client.open(balancer) for _ in range(4)]
    assert balancer.proxy is not None
    await wait_for(lambda: len(balancer.proxy.connections) == 4)  # type: ignore[union-attr]
    served = []
    for _ in range(3):  # each new client takes the place of the one that has waited longest
        client = await Client.open(balancer)
        await client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await client.response())[0] == 200
        served.append(client)
    assert [await c.closed_by_balancer() for c in idle[:3]] == [True] * 3
    assert not idle[3].reader.at_eof()  # the youngest idle one was not needed
    for client in idle + served:
        client.close()


async def test_at_the_cap_with_every_connection_busy_a_new_one_gets_503_at_once(make: Make) -> None:
    balancer, _ = await make("slow", max_connections=3)
    busy = [await Client.open(balancer) for _ in range(3)]
    for client in busy:
        await client.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    await wait_for(lambda: balancer.members["a"].in_flight == 3)
    status, headers, body = await get(balancer)
    assert status == 503 and headers["connection"] == "close"
    assert "connection cap" in json.loads(body)["reason"]
    assert balancer.proxy is not None and balancer.proxy.refused_connections == 1
    for client in busy:
        client.close()


async def test_the_listen_backlog_is_at_least_1024(make: Make) -> None:
    balancer, _ = await make()
    listing = subprocess.run(
        ["ss", "-ltnH", f"sport = :{balancer.port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    # ss -lt shows a listening socket's backlog in the Send-Q column: State Recv-Q Send-Q Local Peer
    backlog = int(listing[2])
    assert backlog >= 1024, listing


# --- rule: quiet about clients' mistakes --------------------------------------------------------------------------


async def test_each_malformed_request_is_one_line_without_traceback_and_a_flood_is_rate_limited(
    make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    balancer, _ = await make()
    caplog.set_level(logging.WARNING, logger="spofkit.proxy")
    began = time.monotonic()
    for _ in range(30):
        client = await Client.open(balancer)
        await client.send(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n")
        assert (await client.response())[0] == 400
        client.close()
    seconds_touched = int(time.monotonic()) - int(began) + 1  # the log allows 5 lines in each calendar second
    lines = [r for r in caplog.records if r.name == "spofkit.proxy"]
    assert 1 <= len(lines) <= 5 * seconds_touched < 30, (len(lines), seconds_touched)
    for record in lines:
        assert record.exc_info is None and "\n" not in record.getMessage()
        assert record.getMessage().startswith("400 to 127.0.0.1: malformed request")


class GoneTransport(asyncio.Transport):
    """A transport whose client has already gone: shutting down the write side fails as the kernel says."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 1) if name == "peername" else default

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        raise OSError(107, "Transport endpoint is not connected")

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


async def test_closing_after_an_answer_to_a_client_already_gone_just_closes() -> None:
    server = ProxyServer(lambda request: asyncio.sleep(0), ProxyLimits())
    connection = server.make_connection()
    transport = GoneTransport()
    connection.connection_made(transport)
    connection.linger()  # must not raise: an exception here would be lost in the request's task
    assert transport.closed


@pytest.mark.parametrize(("header", "count"), [("2", 2), ("3; not retryable: retry buffer full", 3), (None, 1)])
def test_the_load_generator_reads_the_attempt_count_before_a_note(header: str | None, count: int) -> None:
    from spofkit.loadgen import _parse_attempts

    assert _parse_attempts(header) == count


async def test_a_streamed_upload_an_instance_stops_reading_times_out_after_the_per_try_timeout() -> None:
    stalled: list[asyncio.StreamWriter] = []

    async def reads_the_head_then_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        stalled.append(writer)  # never reads the body, never answers: the upload fills the socket and stops

    instance = await asyncio.start_server(reads_the_head_then_nothing, "127.0.0.1", 0)
    balancer = Balancer(
        EventBus(), retries=RetrySettings(per_try_timeout=0.5), limits=ProxyLimits(max_body_size=256 << 20)
    )
    await balancer.start()
    balancer.add_member("a", f"http://127.0.0.1:{instance.sockets[0].getsockname()[1]}")
    client = await Client.open(balancer)
    try:
        await client.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%b\r\n" % (64 << 10, b"u" * (64 << 10))
        sending = asyncio.ensure_future(_send_until_answered(client, chunk, limit=4000))  # up to 250 MiB
        status, _headers, body = await client.response(timeout=10)
        sending.cancel()
        assert status == 504
        assert "no answer within 0.50s" in json.loads(body)["reason"]
    finally:
        client.close()
        for writer in stalled:
            writer.close()
        await balancer.stop()
        instance.close()
        await instance.wait_closed()


async def _send_until_answered(client: Client, chunk: bytes, limit: int) -> None:
    for _ in range(limit):
        try:
            await client.send(chunk)
        except ConnectionError:
            return
