"""The balancer's upstream pool against a tiny real server on 127.0.0.1: what stays open after a burst."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from conftest import wait_for
from multidict import CIMultiDict

from spofkit import upstream
from spofkit.upstream import UpstreamPool

pytestmark = pytest.mark.timeout(20)

BURST = 20


class CountingServer:
    """Answers ``ok``; ``open_connections`` is how many TCP connections it holds open, as an instance sees them."""

    def __init__(self) -> None:
        self.port = 0
        self.release = asyncio.Event()  # requests wait for it, so a burst really needs BURST connections
        self._server = web.Server(self.handle, access_log=None)
        self._runner = web.ServerRunner(self._server)

    async def handle(self, request: web.BaseRequest) -> web.Response:
        await self.release.wait()
        return web.Response(text="ok")

    @property
    def open_connections(self) -> int:
        return len(self._server.connections)

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        self.release.set()
        await self._runner.cleanup()


@pytest.fixture
async def server() -> AsyncIterator[CountingServer]:
    counting = CountingServer()
    await counting.start()
    try:
        yield counting
    finally:
        await counting.stop()


async def get(pool: UpstreamPool) -> bytes:
    response = await pool.request("GET", "/", CIMultiDict())
    try:
        return await response.read()
    finally:
        response.release()


async def test_a_bursts_extra_connections_are_closed_once_idle_too_long(
    server: CountingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upstream, "KEEPALIVE_TIMEOUT", 0.3)  # seconds; 15 in the real balancer
    pool = UpstreamPool("127.0.0.1", server.port)
    try:
        # A burst: BURST requests at once need BURST connections, all kept alive afterwards.
        burst = [asyncio.ensure_future(get(pool)) for _ in range(BURST)]
        await wait_for(lambda: server.open_connections == BURST, message="one connection per request of the burst")
        server.release.set()
        assert await asyncio.gather(*burst) == [b"ok"] * BURST
        assert len(pool._idle) == BURST

        # Then one request at a time, as after the burst: each takes the most recently used connection, and the
        # burst's others must be closed once idle longer than KEEPALIVE_TIMEOUT, on both sides.
        async def steady_traffic_has_closed_the_rest() -> bool:
            assert await get(pool) == b"ok"
            return len(pool._idle) <= 2 and server.open_connections <= 2

        await wait_for(steady_traffic_has_closed_the_rest, timeout=5.0, interval=0.05)
    finally:
        pool.close()


async def test_a_connection_given_back_is_reused_while_fresh(server: CountingServer) -> None:
    server.release.set()
    pool = UpstreamPool("127.0.0.1", server.port)
    try:
        for _ in range(5):
            assert await get(pool) == b"ok"
        assert len(pool._idle) == 1 and server.open_connections == 1  # one connection carried all five
    finally:
        pool.close()
