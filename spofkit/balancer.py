"""The balancer, live: a reverse proxy on 127.0.0.1 that removes the single point of failure behind it.

Clients talk to one address; the balancer forwards each request to one of several instances. That alone spreads
load. What makes it *fail over* is what it does when an instance breaks — and all of that is decided by the pure
policy in :mod:`spofkit.policy` (which members are eligible, where each attempt goes, whether to retry, when to
eject). This module only moves bytes and keeps the policy's appointments:

1. for each client request it asks the request's attempt machine what to do, forwards the request to the
   instance it names within the timeout it gives, and tells it what happened (an answer, a refused connection,
   a reset, a timeout);
2. it runs the health checks the policy schedules (:class:`~spofkit.health.HealthChecker`) and sets a timer
   for the moment an ejection runs out.

When no instance can serve, the client gets an honest 502/503/504 with a JSON reason and ``X-Spof-Attempts``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from spofkit.clock import LoopScheduler, Timer
from spofkit.events import DEFAULT_BALANCER, EventBus
from spofkit.health import HealthChecker
from spofkit.policy import (
    CONNECT,
    RESET,
    TIMEOUT,
    Action,
    BalancerPolicy,
    EjectionSettings,
    Fail,
    HealthSettings,
    Member,
    Relay,
    RequestAttempts,
    RequestInfo,
    RetrySettings,
    Strategy,
    Try,
)
from spofkit.status import BalancerStatus
from spofkit.upstream import ConnectFailed, UpstreamPool, UpstreamResponse

# Headers that describe one connection, not the message: a proxy must not pass them on (RFC 9110, 7.6.1).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Request bodies up to this size are kept in memory so that a retry can send them again; larger ones stream.
# (It is also aiohttp's default limit for reading a request body whole, which the balancer relies on.)
MAX_BUFFERED_BODY = 1 << 20
# How long stop() lets in-flight requests finish before it closes their connections.
STOP_GRACE = 2.0
# Responses with a Content-Length up to this size are read whole before answering, so that a reset in the middle
# of one is still a retryable failure; larger or unsized ones stream to the client as they arrive.
MAX_BUFFERED_RESPONSE = 1 << 20


@dataclass
class _Attempt:
    """The outcome of forwarding once: an answer (``response``, with ``body`` if it was read whole) or a failure."""

    response: UpstreamResponse | None = None
    body: bytes | None = None
    failure: str | None = None
    detail: str = ""
    reached_backend: bool = True


class Balancer:
    """An aiohttp reverse proxy in front of its members, deciding nothing itself: ``policy`` decides.

    ``retries=None`` turns failover retries off; ``ejection=None`` turns passive ejection off; ``health=None``
    means no active checks (every member counts as up). ``slow_start`` (seconds) lets a member that just came
    back take a growing share of traffic instead of all of it at once.
    """

    def __init__(
        self,
        events: EventBus,
        *,
        name: str = DEFAULT_BALANCER,
        strategy: Strategy | str = "round_robin",
        retries: RetrySettings | None = RetrySettings(),  # noqa: B008 - frozen, so sharing is safe
        ejection: EjectionSettings | None = EjectionSettings(),  # noqa: B008
        health: HealthSettings | None = None,
        slow_start: float = 0.0,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.events = events
        self.name = name
        self.policy = BalancerPolicy(
            events.publish,
            name=name,
            strategy=strategy,
            retries=retries,
            ejection=ejection,
            health=health,
            slow_start=slow_start,
            seed=seed,
        )
        self.scheduler = LoopScheduler(events.clock)
        self.checker = HealthChecker(lambda: self.policy.health, self.scheduler)
        self.host = host
        self.port = port
        self._pools: dict[str, UpstreamPool] = {}  # by member name: kept-alive connections to it
        self._drained: dict[str, asyncio.Event] = {}  # members being drained: set when their last attempt ends
        self._wakeup: Timer | None = None
        self._wakeup_at: float | None = None
        self._runner: web.ServerRunner | None = None
        self._ports: set[int] = set()  # every port this balancer listens on (its own, the service address)
        # Awaited before each request is forwarded: a balancer node's "hang" fault holds requests here.
        self.hold: Callable[[], Awaitable[None]] | None = None

    # --- lifecycle -----------------------------------------------------------------------------------

    async def start(self, *, listen: bool = True) -> None:
        """Start proxying and checking; ``listen`` on ``host:port`` at once (a pair's node listens on cue)."""
        # aiohttp's low-level server: every request goes straight to _serve. A proxy has a single route
        # ("everything"), so an Application's router and middleware chain would only cost time.
        server = web.Server(self._serve, access_log=None)
        # Stopping waits at most STOP_GRACE for in-flight requests (a hung backend must not hold up stop()).
        self._runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=STOP_GRACE)
        await self._runner.setup()
        if listen:
            site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
            await site.start()
            self.port = self._runner.addresses[0][1]
        await self.checker.start()

    async def listen_on(self, sock: socket.socket) -> web.SockSite:
        """Also serve on ``sock`` (a bound socket); ``await site.stop()`` stops listening there."""
        assert self._runner is not None, "Balancer.start() first"
        site = web.SockSite(self._runner, sock)
        await site.start()
        port = int(sock.getsockname()[1])
        self.port = self.port or port
        self._ports.add(port)
        return site

    async def stop(self) -> None:
        await self.checker.stop()
        if self._wakeup is not None:
            self._wakeup.cancel()
            self._wakeup = self._wakeup_at = None
        if self._runner:
            await self._runner.cleanup()
            self._runner = None
        for pool in self._pools.values():
            pool.close()  # idle connections only; the members (and their pools) stay configured

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # --- configuration -------------------------------------------------------------------------------

    def add_member(
        self,
        name: str,
        url: str,
        *,
        weight: int = 1,
        backup: bool = False,
        max_conns: int | None = None,
        initially_up: bool = True,
    ) -> Member:
        """Put an instance in the pool. Without ``initially_up`` it waits for ``rise`` passed checks first."""
        address = _host_and_port(url)
        member = self.policy.add_member(
            name, url, self.events.now(), weight=weight, backup=backup, max_conns=max_conns, initially_up=initially_up
        )
        self._pools[name] = UpstreamPool(*address)
        self.checker.watch(name, url)
        return member

    async def remove_member(self, name: str, *, drain_timeout: float = 10.0) -> None:
        """Drain ``name`` (no new requests, in-flight ones finish, up to ``drain_timeout``), then remove it."""
        member = self.policy.drain(name, self.events.now())
        if member.in_flight:
            drained = self._drained.setdefault(name, asyncio.Event())
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(drained.wait(), drain_timeout)
        self._drained.pop(name, None)
        self.checker.unwatch(name)
        self.policy.remove_member(name, self.events.now())
        pool = self._pools.pop(name, None)
        if pool is not None:
            pool.retire()

    @property
    def members(self) -> dict[str, Member]:
        return self.policy.pool.members

    def member(self, name: str) -> Member:
        return self.policy.pool.member(name)

    def set_strategy(self, spec: Strategy | str) -> None:
        self.policy.set_strategy(spec, self.events.now())

    @property
    def strategy_name(self) -> str:
        return self.policy.strategy_name

    @property
    def retries(self) -> RetrySettings | None:
        return self.policy.retries

    @property
    def ejection(self) -> EjectionSettings | None:
        return self.policy.ejection

    @property
    def health(self) -> HealthSettings | None:
        """The health check settings, or None while checks are off."""
        return self.policy.health.settings if self.policy.health is not None else None

    def set_retries(self, settings: RetrySettings | None) -> None:
        self.policy.set_retries(settings, self.events.now())

    def set_ejection(self, settings: EjectionSettings | None) -> None:
        self.policy.set_ejection(settings, self.events.now())

    def set_health(self, settings: HealthSettings | None) -> None:
        """Health checks on with ``settings`` (every member starts from UP) or off (None)."""
        self.policy.set_health(settings, self.events.now())
        self.checker.reschedule()

    # --- reading -------------------------------------------------------------------------------------

    @property
    def requests(self) -> int:
        return self.policy.requests

    @property
    def retried(self) -> int:
        return self.policy.retried

    @property
    def failed(self) -> int:
        return self.policy.failed

    def state_of(self, name: str, now: float | None = None) -> str:
        """This balancer's state for ``name``: up, falling, down, rising, ejected or draining."""
        return self.policy.state_of(name, self.events.now() if now is None else now)

    def status(self) -> BalancerStatus:
        return self.policy.status(self.events.now(), self.url)

    # --- forwarding ----------------------------------------------------------------------------------

    async def _serve(self, request: web.BaseRequest) -> web.StreamResponse:
        """Every client request arrives here: what is not for us is refused, the rest is forwarded."""
        refusal = self._refusal(request)
        return refusal if refusal is not None else await self.handle(request)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if self.hold is not None:
            await self.hold()
        info = RequestInfo(request.method, request.path_qs, request.headers, request.remote or "")
        body, replayable = await self._request_body(request)
        headers = self._forward_headers(request)
        now = self.events.now()
        attempts = self.policy.new_request(info, now, body_replayable=replayable)
        action: Action = attempts.begin(now)
        answer: _Attempt | None = None
        while isinstance(action, Try):
            result = await self._forward(action, request, headers, body)
            now = self.events.now()
            if result.response is not None and result.failure is None:
                action = attempts.answered(now, result.response.status)
                if isinstance(action, Try):
                    result.response.release()  # a retryable answer we will not pass on
                else:
                    answer = result
            else:
                assert result.failure is not None
                action = attempts.failed(now, result.failure, result.detail, reached_backend=result.reached_backend)
                self._arm_wakeup()  # a failure may have ejected someone: be there when it ends
            self._note_drained(attempts.tried[-1])
        if isinstance(action, Relay):
            assert answer is not None
            return await self._answer(attempts, request, action, answer)
        return self._fail(attempts, action)

    def _refusal(self, request: web.BaseRequest) -> web.Response | None:
        """A reverse proxy forwards paths to its own instances only. Anything else is refused, never fetched."""
        if request.method == "CONNECT":
            return _json_error(405, "CONNECT is refused: this is a reverse proxy, not an open proxy", 0)
        target = request.raw_path
        if target.startswith("/"):
            return None
        ports = self._ports | {self.port}
        own = [f"http://{host}:{port}" for port in ports for host in (self.host, "localhost")]
        if any(target == o or target.startswith(o + "/") for o in own):
            return None
        host = target.split("/")[2] if target.count("/") >= 2 else target
        return _json_error(400, f"absolute-URI request for {host!r} refused: not an open proxy", 0)

    async def _request_body(self, request: web.BaseRequest) -> tuple[bytes | AsyncIterator[bytes] | None, bool]:
        """Small bodies are read whole so a retry can resend them; large or unsized ones stream, once."""
        if not request.body_exists:
            return None, True
        length = request.content_length
        if length is not None and length <= MAX_BUFFERED_BODY:
            return await request.read(), True
        return _stream(request.content), False

    def _forward_headers(self, request: web.BaseRequest) -> CIMultiDict[str]:
        listed = {h.strip().lower() for h in request.headers.get("Connection", "").split(",")}
        headers: CIMultiDict[str] = CIMultiDict()
        for key, value in request.headers.items():
            lower = key.lower()
            if lower in HOP_BY_HOP or lower in listed or lower in ("host", "content-length"):
                continue
            headers.add(key, value)
        client = request.remote or ""
        previous = request.headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{previous}, {client}" if previous else client
        headers["X-Forwarded-Proto"] = request.scheme
        return headers

    async def _forward(
        self,
        action: Try,
        request: web.BaseRequest,
        headers: CIMultiDict[str],
        body: bytes | AsyncIterator[bytes] | None,
    ) -> _Attempt:
        assert self._runner is not None, "Balancer.start() first"
        try:
            return await _within(action.timeout, self._send(action.instance, request, headers, body))
        except asyncio.TimeoutError:
            return _Attempt(failure=TIMEOUT, detail=f"no answer within {action.timeout:.2f}s")

    async def _send(
        self,
        name: str,
        request: web.BaseRequest,
        headers: CIMultiDict[str],
        body: bytes | AsyncIterator[bytes] | None,
    ) -> _Attempt:
        try:
            response = await self._pools[name].request(request.method, request.path_qs, headers, body)
        except ConnectFailed as error:
            return _Attempt(
                failure=CONNECT,
                detail=f"connect failed ({error.strerror or error})",
                reached_backend=False,
            )
        except (
            aiohttp.ServerDisconnectedError,
            aiohttp.ClientOSError,
            aiohttp.ClientPayloadError,
        ) as error:
            return _Attempt(failure=RESET, detail=f"connection lost ({type(error).__name__})")
        length = response.content_length
        if length is not None and length <= MAX_BUFFERED_RESPONSE:
            try:
                data = await response.read()
            except (
                aiohttp.ClientPayloadError,
                aiohttp.ClientOSError,
                aiohttp.ServerDisconnectedError,
            ) as error:
                response.release()
                return _Attempt(failure=RESET, detail=f"reset mid-response ({type(error).__name__})")
            return _Attempt(response, data)
        return _Attempt(response)  # streamed to the client in _answer

    def _note_drained(self, name: str) -> None:
        drained = self._drained.get(name)
        member = self.policy.pool.members.get(name)
        if drained is not None and (member is None or member.in_flight == 0):
            drained.set()

    def _arm_wakeup(self) -> None:
        """Set one timer for the earliest moment the policy changes by itself (an ejection running out)."""
        due = self.policy.next_wakeup()
        if due is None or (self._wakeup_at is not None and self._wakeup_at <= due):
            return
        if self._wakeup is not None:
            self._wakeup.cancel()
        self._wakeup_at = due
        self._wakeup = self.scheduler.call_at(due, self._wake)

    def _wake(self) -> None:
        self._wakeup = self._wakeup_at = None
        self.policy.wake(self.events.now())
        self._arm_wakeup()

    async def _answer(
        self, attempts: RequestAttempts, request: web.BaseRequest, action: Relay, attempt: _Attempt
    ) -> web.StreamResponse:
        upstream = attempt.response
        assert upstream is not None
        headers = _response_headers(upstream.headers)
        headers.setdefault("X-Served-By", action.instance)
        headers["X-Spof-Attempts"] = str(attempts.attempts)
        response: web.StreamResponse
        if attempt.body is not None or request.method == "HEAD":
            upstream.release()
            response = web.Response(status=upstream.status, headers=headers, body=attempt.body)
        else:
            response = web.StreamResponse(status=upstream.status, headers=headers)
            await response.prepare(request)
            try:
                async for chunk in upstream.iter_chunks():
                    await response.write(chunk)
            except (aiohttp.ClientError, asyncio.TimeoutError):
                # Bytes already went to the client: we cannot retry. Cut the client's connection too, so it
                # sees a truncated reply rather than a silently short body.
                upstream.release()
                attempts.finish(self.events.now(), upstream.status, delivered=False)
                if request.transport:
                    request.transport.abort()
                return response
            upstream.release()
            await response.write_eof()
        attempts.finish(self.events.now(), upstream.status)
        return response

    def _fail(self, attempts: RequestAttempts, action: Fail) -> web.Response:
        attempts.finish(self.events.now(), action.status)
        return _json_error(action.status, action.reason, attempts.attempts)


def _host_and_port(url: str) -> tuple[str, int]:
    """``http://HOST:PORT`` (an instance's address) -> ``(HOST, PORT)``; anything else is refused."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise ValueError(f"url must look like http://HOST:PORT, got {url!r}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        raise ValueError(f"url must give a port, like http://HOST:PORT, got {url!r}")
    return parts.hostname, port


async def _stream(content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    async for chunk in content.iter_any():
        yield chunk


if sys.version_info >= (3, 11):

    async def _within(timeout: float, work: Awaitable[_Attempt]) -> _Attempt:
        """``await work``, or raise TimeoutError after ``timeout`` s (no extra task, unlike ``wait_for``)."""
        async with asyncio.timeout(timeout):
            return await work

else:  # Python 3.10 has no asyncio.timeout

    async def _within(timeout: float, work: Awaitable[_Attempt]) -> _Attempt:
        return await asyncio.wait_for(work, timeout)


def _response_headers(upstream: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    listed = {h.strip().lower() for h in upstream.get("Connection", "").split(",")}
    headers: CIMultiDict[str] = CIMultiDict()
    for key, value in upstream.items():
        lower = key.lower()
        if lower in HOP_BY_HOP or lower in listed or lower in ("content-length", "date", "server"):
            continue
        headers.add(key, value)
    return headers


def _json_error(status: int, reason: str, attempts: int) -> web.Response:
    kind = {
        400: "bad_request",
        405: "method_refused",
        502: "bad_gateway",
        503: "unavailable",
        504: "timeout",
    }
    body = {"error": kind.get(status, "error"), "reason": reason, "attempts": attempts}
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type="application/json",
        headers={"X-Spof-Attempts": str(attempts)},
    )
