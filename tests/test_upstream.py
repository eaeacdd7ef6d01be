"""The balancer's upstream pool against a tiny real server on 127.0.0.1: what stays open after a burst.

Driven through a real :class:`~spofkit.balancer.Balancer` (its pool, :mod:`spofkit.proxy.upstream`, is how it reaches
an instance), with the instance counting the TCP connections it holds open.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from conftest import wait_for

from spofkit.balancer import Balancer
from spofkit.events import EventBus
from spofkit.proxy import upstream

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


@pytest.fixture
async def balancer(server: CountingServer) -> AsyncIterator[Balancer]:
    front = Balancer(EventBus(), health=None, ejection=None)
    front.add_member("a", f"http://127.0.0.1:{server.port}")
    await front.start()
    try:
        yield front
    finally:
        await front.stop()


async def get(session: aiohttp.ClientSession, balancer: Balancer) -> bytes:
    async with session.get(balancer.url + "/") as response:
        return await response.read()


def kept(balancer: Balancer) -> int:
    """Idle connections the balancer keeps to its instance."""
    return balancer._pools["a"].idle  # the pool is the balancer's own business: read it, never change it


async def test_a_bursts_extra_connections_are_closed_once_idle_too_long(
    server: CountingServer, balancer: Balancer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upstream, "KEEPALIVE_TIMEOUT", 0.3)  # seconds; 15 in the real balancer
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        # A burst: BURST requests at once need BURST connections to the instance, all kept alive afterwards.
        burst = [asyncio.ensure_future(get(session, balancer)) for _ in range(BURST)]
        await wait_for(lambda: server.open_connections == BURST, message="one connection per request of the burst")
        server.release.set()
        assert await asyncio.gather(*burst) == [b"ok"] * BURST
        assert kept(balancer) == BURST

        # Then one request at a time, as after the burst: each takes the most recently used connection, and the
        # burst's others must be closed once idle longer than KEEPALIVE_TIMEOUT, on both sides.
        async def steady_traffic_has_closed_the_rest() -> bool:
            assert await get(session, balancer) == b"ok"
            return kept(balancer) <= 2 and server.open_connections <= 2

        await wait_for(steady_traffic_has_closed_the_rest, timeout=5.0, interval=0.05)


async def test_a_connection_given_back_is_reused_while_fresh(server: CountingServer, balancer: Balancer) -> None:
    server.release.set()
    async with aiohttp.ClientSession() as session:
        for _ in range(5):
            assert await get(session, balancer) == b"ok"
    assert kept(balancer) == 1 and server.open_connections == 1  # one connection carried all five
