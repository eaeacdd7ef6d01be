"""The failover client: several entry addresses, retries only what is safe, only on connection errors."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from spofkit.client import FailoverClient


def closed_port() -> int:
    """A port nobody listens on (connections to it are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[str]]]:
    seen: list[str] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        seen.append(f"{request.method} {request.path}")
        if request.path == "/cut":
            assert request.transport is not None
            request.transport.abort()  # the connection dies before any answer
            return web.Response()
        if request.path == "/busy":
            return web.Response(status=503)
        return web.Response(text="ok")

    runner = web.AppRunner(web.Application(), handle_signals=False)
    runner.app.router.add_route("*", "/{tail:.*}", answer)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def test_a_refused_address_fails_over_to_the_next(server: tuple[str, list[str]]) -> None:
    url, seen = server
    async with FailoverClient([f"http://127.0.0.1:{closed_port()}", url]) as client:
        answer = await client.get("/x")
    assert (answer.status, answer.url, answer.tries) == (200, url, 2)
    assert answer.errors[0].endswith("refused")
    assert seen == ["GET /x"]


async def test_a_post_that_may_have_arrived_is_not_repeated(server: tuple[str, list[str]]) -> None:
    url, seen = server
    async with FailoverClient([url, url]) as client:
        answer = await client.request("POST", "/cut", b"charge 10")
    assert answer.status is None and answer.tries == 1
    assert seen == ["POST /cut"]  # once: the server may have acted on it


async def test_a_get_that_was_cut_is_repeated(server: tuple[str, list[str]]) -> None:
    url, seen = server
    async with FailoverClient([url], retry_for=0.5) as client:
        answer = await client.get("/cut")
    assert answer.status is None and answer.tries > 1
    # aiohttp itself repeats an idempotent request once when the connection dies before any answer, so the server
    # may see each try twice; what matters is that the client went on trying a GET, unlike the POST above.
    assert answer.tries <= len(seen) <= 2 * answer.tries


async def test_a_refused_post_is_repeated_because_it_never_left(server: tuple[str, list[str]]) -> None:
    url, seen = server
    async with FailoverClient([f"http://127.0.0.1:{closed_port()}", url]) as client:
        answer = await client.request("POST", "/pay", b"charge 10")
    assert answer.status == 200 and seen == ["POST /pay"]


async def test_a_5xx_answer_is_the_services_word_and_is_not_retried(server: tuple[str, list[str]]) -> None:
    url, seen = server
    async with FailoverClient([url, url]) as client:
        answer = await client.get("/busy")
    assert (answer.status, answer.tries, answer.ok) == (503, 1, False)
    assert seen == ["GET /busy"]


async def test_it_gives_up_after_retry_for() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with FailoverClient([f"http://127.0.0.1:{closed_port()}"], retry_for=0.3) as client:
        answer = await client.get("/")
    took = loop.time() - started
    assert answer.status is None and answer.tries >= 3
    assert took < 2.0  # bounded by retry_for (plus one backoff), not endless


def test_only_loopback_entry_addresses() -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.1 or localhost"):
        FailoverClient(["http://example.com:80"])
    with pytest.raises(ValueError, match="at least one"):
        FailoverClient([])
