"""The balancer: a reverse proxy that removes the single point of failure behind it.

Clients talk to one address; the balancer forwards each request to one of several instances. That alone spreads
load. What makes it *fail over* is what it does when an instance breaks:

1. **Only eligible instances are chosen**: not marked down by the health checker, not ejected, not draining,
   not at their connection limit. Backups serve only when no primary can.
2. **Failed attempts are retried on a different instance** (redispatch), within a per-try timeout, an overall
   deadline and a retry budget, and never for a non-idempotent request that may have reached a backend
   (see :mod:`spofkit.failover`).
3. **Real failures eject** an instance for a while (passive ejection), catching what health checks miss.

When no instance can serve, the client gets an honest 502/503/504 with a JSON reason and ``X-Spof-Attempts``.

This module only moves bytes and keeps counters; every decision is made by a pure policy object (strategy,
retry rule, budget, outlier detector) that a lesson can call on its own.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import sys
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from spofkit.events import (
    EventBus,
    InstanceAdded,
    InstanceDraining,
    InstanceEjected,
    InstanceRemoved,
    InstanceReturned,
    RequestCompleted,
    RequestRetried,
    SettingChanged,
    StrategyChanged,
)
from spofkit.failover import (
    CONNECT,
    RESET,
    STATUS,
    TIMEOUT,
    EjectionSettings,
    OutlierDetector,
    RetryBudget,
    RetrySettings,
    retry_decision,
)
from spofkit.health import HealthChecker
from spofkit.strategies import Backend, RequestInfo, Strategy, make_strategy
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
class Member:
    """One configured instance, as the balancer sees it."""

    name: str
    url: str
    weight: int = 1
    backup: bool = False
    max_conns: int | None = None
    in_flight: int = 0
    served: int = 0
    failed: int = 0
    draining: bool = False
    up_since: float = 0.0


class NoInstance(Exception):
    """No instance can take this attempt; ``status`` and ``reason`` go to the client."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class _Attempt:
    """The outcome of forwarding once."""

    response: UpstreamResponse | None = None
    body: bytes | None = None
    failure: str | None = None
    detail: str = ""
    reached_backend: bool = True


class Balancer:
    """An aiohttp reverse proxy in front of ``members``.

    ``retries=None`` turns failover retries off; ``ejection=None`` turns passive ejection off; ``health=None``
    means every member counts as up (no active checks). ``slow_start`` (seconds) lets a member that just came
    back take a growing share of traffic instead of all of it at once.
    """

    def __init__(
        self,
        events: EventBus,
        *,
        strategy: Strategy | str = "round_robin",
        retries: RetrySettings | None = RetrySettings(),  # noqa: B008 - frozen, so sharing is safe
        ejection: EjectionSettings | None = EjectionSettings(),  # noqa: B008
        health: HealthChecker | None = None,
        slow_start: float = 0.0,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if slow_start < 0:
            raise ValueError(f"slow_start must be >= 0 seconds, got {slow_start!r}")
        self.events = events
        self.strategy: Strategy = make_strategy(strategy)
        self.retries = retries
        self.ejection = ejection
        self.health = health
        self.slow_start = slow_start
        self.host = host
        self.port = port
        self.members: dict[str, Member] = {}
        self.rng = random.Random(seed)
        self.budget = self._new_budget()
        self.outliers = OutlierDetector(ejection or EjectionSettings())
        self._ids = itertools.count(1)
        self._pools: dict[str, UpstreamPool] = {}  # by member name: kept-alive connections to it
        self._runner: web.ServerRunner | None = None
        self.requests = 0
        self.retried = 0
        self.failed = 0

    # --- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        # aiohttp's low-level server: every request goes straight to _serve. A proxy has a single route
        # ("everything"), so an Application's router and middleware chain would only cost time.
        server = web.Server(self._serve, access_log=None)
        # Stopping waits at most STOP_GRACE for in-flight requests (a hung backend must not hold up stop()).
        self._runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=STOP_GRACE)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
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
    ) -> Member:
        if name in self.members:
            raise ValueError(f"instance name {name!r} is already in the pool")
        if not isinstance(weight, int) or not 0 <= weight <= 256:
            raise ValueError(f"weight must be a whole number 0..256, got {weight!r}")
        if max_conns is not None and (not isinstance(max_conns, int) or max_conns < 1):
            raise ValueError(f"max_conns must be a whole number >= 1, got {max_conns!r}")
        self._pools[name] = UpstreamPool(*_host_and_port(url))
        member = Member(name, url, weight, backup, max_conns, up_since=self.events.now())
        self.members[name] = member
        self.events.publish(InstanceAdded(self.events.now(), name, url, backup))
        return member

    async def remove_member(self, name: str, *, drain_timeout: float = 10.0) -> None:
        """Drain ``name`` (no new requests, in-flight ones finish, up to ``drain_timeout``), then remove it."""
        member = self.member(name)
        member.draining = True
        self.events.publish(InstanceDraining(self.events.now(), name, member.in_flight))
        deadline = time.monotonic() + drain_timeout
        while member.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # polling the in-flight count; draining is rare
        self.members.pop(name, None)
        self.outliers.forget(name)
        pool = self._pools.pop(name, None)
        if pool is not None:
            pool.retire()
        self.events.publish(InstanceRemoved(self.events.now(), name))

    def member(self, name: str) -> Member:
        try:
            return self.members[name]
        except KeyError:
            raise KeyError(f"no instance named {name!r}; known: {sorted(self.members)}") from None

    def set_strategy(self, spec: Strategy | str) -> None:
        self.strategy = make_strategy(spec)
        self.events.publish(StrategyChanged(self.events.now(), self.strategy_name))

    @property
    def strategy_name(self) -> str:
        return str(getattr(self.strategy, "name", type(self.strategy).__name__))

    def set_retries(self, settings: RetrySettings | None) -> None:
        self.retries = settings
        self.budget = self._new_budget()
        self.events.publish(SettingChanged(self.events.now(), "retries", settings is not None))

    def set_ejection(self, settings: EjectionSettings | None) -> None:
        self.ejection = settings
        self.outliers = OutlierDetector(settings or EjectionSettings())
        self.events.publish(SettingChanged(self.events.now(), "ejection", settings is not None))

    def _new_budget(self) -> RetryBudget:
        settings = self.retries or RetrySettings()
        return RetryBudget(settings.budget_ratio, settings.budget_min_per_second, settings.budget_window)

    def note_came_up(self, name: str) -> None:
        """Called when the health checker marks ``name`` up: slow start counts from here."""
        if name in self.members:
            self.members[name].up_since = self.events.now()

    # --- choosing ------------------------------------------------------------------------------------

    def state_of(self, name: str, now: float | None = None) -> str:
        """``draining``, ``ejected``, ``down`` or ``up`` — why this member may not be chosen."""
        now = self.events.now() if now is None else now
        member = self.members[name]
        if member.draining:
            return "draining"
        if self.ejection and self.outliers.is_ejected(name, now):
            return "ejected"
        if self.health and not self.health.is_up(name):
            return "down"
        return "up"

    def _eligible(self, now: float, tried: set[str]) -> list[Member]:
        """Members that may take the next attempt: primaries if any can, otherwise backups."""
        usable = [m for m in self.members.values() if m.name not in tried and self.state_of(m.name, now) == "up"]
        primaries = [m for m in usable if not m.backup]
        return primaries or [m for m in usable if m.backup]

    def choose(self, request: RequestInfo, now: float, tried: set[str]) -> Member:
        """Pick a member for one attempt, or raise :class:`NoInstance` saying why none can take it."""
        eligible = self._eligible(now, tried)
        if not eligible:
            if tried:
                raise NoInstance(502, "no other instance left to try")
            raise NoInstance(503, "no instance is available (all down, ejected or draining)")
        open_slots = [m for m in eligible if m.max_conns is None or m.in_flight < m.max_conns]
        if not open_slots:
            raise NoInstance(503, "every available instance is at its max_conns limit")
        candidates = open_slots
        while True:
            backends = [Backend(m.name, m.weight, m.in_flight) for m in candidates]
            picked = self.strategy.pick(backends, request, now, self.rng)
            member = self.members[picked.name]
            if len(candidates) == 1 or self._admitted_by_slow_start(member, now):
                return member
            candidates = [m for m in candidates if m is not member]

    def _admitted_by_slow_start(self, member: Member, now: float) -> bool:
        # During slow start a member takes a share that grows linearly from 0 to full.
        if self.slow_start <= 0:
            return True
        warmed = (now - member.up_since) / self.slow_start
        return warmed >= 1 or self.rng.random() < warmed

    # --- forwarding ----------------------------------------------------------------------------------

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        request_id = next(self._ids)
        started = self.events.now()
        self.requests += 1
        self.budget.record_request(started)
        info = RequestInfo(request.method, request.path_qs, request.headers, request.remote or "")
        body, body_replayable = await self._request_body(request)
        headers = self._forward_headers(request)
        tried: set[str] = set()
        last_tried: str | None = None
        attempts = 0
        last_failure = ""
        last_status = 502
        retries = self.retries
        per_try = retries.per_try_timeout if retries else 30.0
        deadline = retries.deadline if retries else 30.0
        while True:
            now = self.events.now()
            try:
                member = self.choose(info, now, tried)
            except NoInstance as no_instance:
                status = last_status if tried else no_instance.status
                reason = f"{last_failure}; {no_instance.reason}" if tried else no_instance.reason
                return self._fail(request_id, request, started, attempts, status, reason, last_tried)
            tried.add(member.name)
            last_tried = member.name
            attempts += 1
            timeout = max(0.001, min(per_try, deadline - (now - started)))
            attempt = await self._forward(member, request, headers, body, timeout)
            finished = self.events.now()
            ok = attempt.failure is None and attempt.response is not None and attempt.response.status < 500
            self._observe(member, ok, finished - now, finished)
            if attempt.failure is None:
                assert attempt.response is not None
                return await self._answer(request_id, request, member, attempt, attempts, started)
            last_failure = f"{member.name}: {attempt.detail}"
            last_status = 504 if attempt.failure == TIMEOUT else 502
            decision = retry_decision(
                retries or RetrySettings(max_attempts=1),
                failure=attempt.failure,
                method=request.method,
                reached_backend=attempt.reached_backend,
                attempts_made=attempts,
                elapsed=finished - started,
                budget_allows=True,
                body_replayable=body_replayable or not attempt.reached_backend,
            )
            if decision.retry and not self.budget.try_spend(finished):
                decision = decision.__class__(False, "retry budget exhausted")
            if attempt.response is not None and not decision.retry:
                # A retryable status we may not retry: the backend's own answer is the most honest reply.
                return await self._answer(request_id, request, member, attempt, attempts, started)
            if not decision.retry:
                reason = f"{last_failure} (not retried: {decision.reason})"
                return self._fail(request_id, request, started, attempts, last_status, reason, last_tried)
            self.retried += 1
            self.events.publish(RequestRetried(finished, request_id, attempts, member.name, attempt.detail))

    async def _serve(self, request: web.BaseRequest) -> web.StreamResponse:
        """Every client request arrives here: what is not for us is refused, the rest is forwarded."""
        refusal = self._refusal(request)
        return refusal if refusal is not None else await self.handle(request)

    def _refusal(self, request: web.BaseRequest) -> web.Response | None:
        """A reverse proxy forwards paths to its own instances only. Anything else is refused, never fetched."""
        if request.method == "CONNECT":
            return _json_error(405, "CONNECT is refused: this is a reverse proxy, not an open proxy", 0)
        target = request.raw_path
        if target.startswith("/"):
            return None
        own = (f"http://{self.host}:{self.port}", f"http://localhost:{self.port}")
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
        member: Member,
        request: web.BaseRequest,
        headers: CIMultiDict[str],
        body: bytes | AsyncIterator[bytes] | None,
        timeout: float,
    ) -> _Attempt:
        assert self._runner is not None, "Balancer.start() first"
        member.in_flight += 1
        try:
            return await _within(timeout, self._send(member, request, headers, body))
        except asyncio.TimeoutError:
            return _Attempt(failure=TIMEOUT, detail=f"no answer within {timeout:.2f}s")
        finally:
            member.in_flight -= 1

    async def _send(
        self,
        member: Member,
        request: web.BaseRequest,
        headers: CIMultiDict[str],
        body: bytes | AsyncIterator[bytes] | None,
    ) -> _Attempt:
        retries = self.retries
        try:
            response = await self._pools[member.name].request(request.method, request.path_qs, headers, body)
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
        if retries and response.status in retries.retry_statuses:
            body_bytes = await _read_or_none(response)
            return _Attempt(response, body_bytes, STATUS, f"answered {response.status}")
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

    def _observe(self, member: Member, ok: bool, latency: float, now: float) -> None:
        """Tell the strategy and the outlier detector how one attempt went."""
        observe = getattr(self.strategy, "observe", None)  # optional for a learner's own strategy
        if observe is not None:
            observe(member.name, latency, ok, now)
        if ok:
            member.served += 1
        else:
            member.failed += 1
        if self.ejection is None:
            return
        primaries = sum(1 for m in self.members.values() if not m.backup) or 1
        ejected_for = self.outliers.record(member.name, ok, now, primaries)
        if ejected_for is not None:
            failures = self.ejection.consecutive_failures
            self.events.publish(InstanceEjected(now, member.name, ejected_for, failures))

    def publish_returns(self) -> None:
        """Announce members whose ejection ran out (the lab calls this on a timer)."""
        now = self.events.now()
        for name in self.outliers.returned(now):
            self.events.publish(InstanceReturned(now, name))

    async def _answer(
        self,
        request_id: int,
        request: web.BaseRequest,
        member: Member,
        attempt: _Attempt,
        attempts: int,
        started: float,
    ) -> web.StreamResponse:
        upstream = attempt.response
        assert upstream is not None
        headers = _response_headers(upstream.headers)
        headers.setdefault("X-Served-By", member.name)
        headers["X-Spof-Attempts"] = str(attempts)
        outcome = "served" if attempts == 1 else "retried"
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
                self._record(request_id, request, upstream.status, member.name, attempts, started, "failed")
                if request.transport:
                    request.transport.abort()
                return response
            upstream.release()
            await response.write_eof()
        self._record(request_id, request, upstream.status, member.name, attempts, started, outcome)
        return response

    def _fail(
        self,
        request_id: int,
        request: web.BaseRequest,
        started: float,
        attempts: int,
        status: int,
        reason: str,
        last_tried: str | None,
    ) -> web.Response:
        self.failed += 1
        self._record(request_id, request, status, None, attempts, started, "failed", reason, last_tried)
        return _json_error(status, reason, attempts)

    def _record(
        self,
        request_id: int,
        request: web.BaseRequest,
        status: int,
        instance: str | None,
        attempts: int,
        started: float,
        outcome: str,
        reason: str = "",
        last_tried: str | None = None,
    ) -> None:
        now = self.events.now()
        self.events.publish(
            RequestCompleted(
                now,
                request_id,
                request.method,
                request.path,
                status,
                instance,
                attempts,
                now - started,
                outcome,
                reason,
                last_tried or instance,
            )
        )

    # --- reading the state ---------------------------------------------------------------------------

    def snapshot(self) -> list[dict[str, Any]]:
        now = self.events.now()
        rows = []
        for member in self.members.values():
            rows.append(
                {
                    "name": member.name,
                    "url": member.url,
                    "state": self.state_of(member.name, now),
                    "backup": member.backup,
                    "weight": member.weight,
                    "in_flight": member.in_flight,
                    "served": member.served,
                    "failed": member.failed,
                    "max_conns": member.max_conns,
                    "ejected_until": self.outliers.ejected_until(member.name),
                }
            )
        return rows


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


async def _read_or_none(response: UpstreamResponse) -> bytes | None:
    try:
        return await response.read()
    except aiohttp.ClientError:
        return None
    finally:
        response.release()


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
