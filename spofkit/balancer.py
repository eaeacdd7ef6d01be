"""The balancer, live: a reverse proxy on 127.0.0.1 that removes the single point of failure behind it.

Clients talk to one address; the balancer forwards each request to one of several instances. That alone spreads
load. What makes it *fail over* is what it does when an instance breaks — and all of that is decided by the pure
policy in :mod:`spofkit.policy` (which members are eligible, where each attempt goes, whether to retry, when to
eject). This module only moves bytes and keeps the policy's appointments:

1. for each client request it asks the request's attempt machine what to do, forwards the request to the
   instance it names within the timeout it gives, and tells it what happened (an answer, a refused connection,
   a reset, a timeout);
2. it runs the health checks the policy schedules (:class:`~spofkit.health.HealthChecker`) and sets a timer
   for the moment an ejection runs out;
3. it keeps a request body in memory for a possible retry only while the total kept stays under
   ``retry_buffer_size``; past that a body streams to one instance, once, and the response says so
   (``X-Spof-Attempts: 1; not retryable: retry buffer full``).

The bytes themselves move through :mod:`spofkit.proxy`: the client side (strict parsing, limits, timeouts,
pipelining) in :mod:`spofkit.proxy.server`, the instance side (a kept-alive pool per instance) in
:mod:`spofkit.proxy.upstream`, and what a proxy changes in a message in :mod:`spofkit.proxy.messages`.

When no instance can serve, the client gets an honest 502/503/504 with a JSON reason and ``X-Spof-Attempts``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from spofkit.clock import LoopScheduler, Wakeup
from spofkit.events import DEFAULT_BALANCER, EventBus
from spofkit.health import HealthChecker
from spofkit.policy import (
    Action,
    BalancerPolicy,
    EjectionSettings,
    HealthSettings,
    Member,
    Relay,
    RequestAttempts,
    RequestInfo,
    RetrySettings,
    Strategy,
    Try,
)
from spofkit.proxy.limits import MAX_REPLAYABLE_BODY, ProxyLimits
from spofkit.proxy.listener import Listener, listening_socket
from spofkit.proxy.messages import HeaderView, Refused, error_response, origin_form, request_head, response_head
from spofkit.proxy.server import ClientGone, ProxyRequest, ProxyServer, RequestBody
from spofkit.proxy.upstream import LENGTH, NONE, Failure, Reply, UpstreamConnection, UpstreamPool
from spofkit.status import BalancerStatus

# How long stop() lets in-flight requests finish before it closes their connections.
STOP_GRACE = 2.0
# Methods that carry no body by convention; others get "Content-Length: 0" when they have none.
BODYLESS_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"DELETE"})
# What the balancer answers for a client that left (nginx's 499: "client closed request").
CLIENT_GONE = 499


class Balancer:
    """A reverse proxy in front of its members, deciding nothing itself: ``policy`` decides.

    ``retries=None`` turns failover retries off; ``ejection=None`` turns passive ejection off; ``health=None``
    means no active checks (every member counts as up). ``slow_start`` (seconds) lets a member that just came
    back take a growing share of traffic instead of all of it at once. ``limits`` are the client side's
    timeouts and sizes (:class:`~spofkit.proxy.limits.ProxyLimits`: nginx-like defaults).
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
        limits: ProxyLimits | None = None,
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
        self.limits = limits or ProxyLimits()
        self._pools: dict[str, UpstreamPool] = {}  # by member name: kept-alive connections to it
        self._drained: dict[str, asyncio.Event] = {}  # members being drained: set when their last attempt ends
        # The moment an ejection runs out, the policy is woken to announce it (InstanceReturned).
        self._wakeup = Wakeup(self.scheduler, lambda: self.policy.next_wakeup(), lambda now: self.policy.wake(now))
        self._server: ProxyServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listeners: list[Listener] = []
        self._ports: set[int] = set()  # every port this balancer listens on (its own, the service address)
        self._own_authorities: set[bytes] = set()  # "host:port" of each, for absolute-form targets
        self.retry_buffered = 0  # bytes of request bodies kept for a possible retry, right now
        # Awaited before each request is forwarded: a balancer node's "hang" fault holds requests here.
        self.hold: Callable[[], Awaitable[None]] | None = None

    # --- lifecycle -----------------------------------------------------------------------------------

    async def start(self, *, listen: bool = True) -> None:
        """Start proxying and checking; ``listen`` on ``host:port`` at once (a pair's node listens on cue)."""
        self._loop = asyncio.get_running_loop()
        self._server = ProxyServer(self._handle, self.limits)
        self._server.start()
        if listen:
            await self.listen_on(listening_socket(self.host, self.port))
        await self.checker.start()

    async def listen_on(self, sock: socket.socket) -> Listener:
        """Also serve on ``sock`` (a bound socket); ``await listener.stop()`` stops listening there."""
        assert self._server is not None, "Balancer.start() first"
        listener = Listener(self._server, sock, self.limits.backlog)
        self._listeners.append(listener)
        self.port = self.port or listener.port
        self._ports.add(listener.port)
        self._own_authorities = {
            f"{host}:{port}".encode() for port in self._ports | {self.port} for host in (self.host, "localhost")
        }
        return listener

    async def stop(self) -> None:
        await self.checker.stop()
        self._wakeup.cancel()
        for listener in self._listeners:
            await listener.stop()
        self._listeners.clear()
        if self._server is not None:
            await self._server.stop(STOP_GRACE)
            self._server = None
        for pool in self._pools.values():
            pool.abort_all()  # the members (and their pools) stay configured: a stopped balancer may start again

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def proxy(self) -> ProxyServer | None:
        """The client side: open connections, the connection cap, refusals (None until started)."""
        return self._server

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

    async def _handle(self, request: ProxyRequest) -> None:
        """Every client request arrives here: what is not for us is refused, the rest is forwarded."""
        if self.hold is not None:
            await self.hold()
        try:
            if request.method == b"CONNECT":
                raise Refused(405, "CONNECT is refused: this is a reverse proxy, not an open proxy")
            target = origin_form(request.target, self._own_authorities)
        except Refused as refusal:
            request.respond(error_response(refusal.status, refusal.reason, close=request.closes))
            return
        if not request.has_body:
            await self._forward(request, target, None, "")
            return
        length = request.content_length
        if length is None or length > MAX_REPLAYABLE_BODY:
            why = "chunked body" if length is None else f"body over {MAX_REPLAYABLE_BODY} bytes"
            await self._forward(request, target, request.body, why)
            return
        if self.retry_buffered + length > self.limits.retry_buffer_size:
            await self._forward(request, target, request.body, "retry buffer full")
            return
        self.retry_buffered += length  # kept until the request is answered: a retry may need it
        try:
            try:
                body = await request.body.read()
            except Refused as refusal:  # the body took too long, or grew too large
                request.respond(error_response(refusal.status, refusal.reason, close=True))
                return
            await self._forward(request, target, body, "")
        finally:
            self.retry_buffered -= length

    async def _forward(
        self, request: ProxyRequest, target: bytes, body: bytes | RequestBody | None, not_retryable: str
    ) -> None:
        """Ask the attempt machine where to go, go there, and tell it what happened, until it decides."""
        method = request.method
        streamed = body if isinstance(body, RequestBody) else None
        if isinstance(body, bytes):
            framing = b"Content-Length: %d\r\n" % len(body)
        elif streamed is not None and streamed.length is not None:
            framing = b"Content-Length: %d\r\n" % streamed.length
        elif streamed is not None:
            framing = b"Transfer-Encoding: chunked\r\n"
        else:
            framing = b"" if method in BODYLESS_METHODS else b"Content-Length: 0\r\n"
        rest_of_head = request_head(request.headers, request.client, framing)
        start_of_head = method + b" " + target + b" HTTP/1.1\r\nHost: "
        info = RequestInfo(
            method.decode("latin-1"), target.decode("latin-1"), HeaderView(request.headers), request.client
        )
        now = self.events.now()
        attempts = self.policy.new_request(info, now, body_replayable=streamed is None)
        action: Action = attempts.begin(now)
        reply: Reply | None = None
        while isinstance(action, Try):
            tried = action.instance
            pool = self._pools[tried]
            head = start_of_head + pool.host_header + rest_of_head
            result = await self._attempt(pool, action.timeout, head, body, method == b"HEAD")
            now = self.events.now()
            if isinstance(result, Reply):
                action = attempts.answered(now, result.status)
                if result.status >= 500:
                    self._arm_wakeup()  # a 5xx counts as a failure of that instance: it may have been ejected
                if isinstance(action, Try):
                    result.connection.close()  # a retryable answer we will not pass on
                else:
                    reply = result
            elif isinstance(result, Failure):
                action = attempts.failed(now, result.kind, result.detail, reached_backend=result.reached_backend)
                self._arm_wakeup()  # a failure may have ejected someone: be there when it ends
            else:  # the client's body failed (too slow, too large, or the client left): the client's fault
                action = attempts.answered(now, result.status)
                self._note_drained(tried)
                if result.status != CLIENT_GONE:
                    request.respond(error_response(result.status, result.reason, attempts.attempts, close=True))
                attempts.finish(now, result.status, delivered=False, reason=result.reason)
                return
            self._note_drained(tried)  # the attempt that just ended, not the one the policy asks for next
        count = f"{attempts.attempts}; not retryable: {not_retryable}" if not_retryable else str(attempts.attempts)
        if isinstance(action, Relay):
            assert reply is not None
            await self._relay(attempts, request, action, reply, count, not_retryable)
        else:
            request.respond(error_response(action.status, action.reason, count, close=request.closes))
            attempts.finish(self.events.now(), action.status)

    async def _attempt(
        self, pool: UpstreamPool, timeout: float, head: bytes, body: bytes | RequestBody | None, head_request: bool
    ) -> Reply | Failure | Refused:
        """Send the request to one instance and wait for its answer (or its body, if small enough to read)."""
        connection = pool.idle_connection() or await pool.connect(timeout)
        if isinstance(connection, Failure):
            return connection
        loop = self._loop
        assert loop is not None, "Balancer.start() first"
        if not isinstance(body, RequestBody):
            answered = connection.send(head, body, head_request=head_request)
            timer = loop.call_at(loop.time() + timeout, connection.time_out, timeout)
            try:
                return await answered
            finally:
                timer.cancel()
        upload = _Upload(connection, body, timeout)
        answered = connection.send(head, None, head_request=head_request)
        upload.start()
        try:
            result = await answered
        finally:
            upload.stop()
        if upload.error is not None:
            return _client_fault(upload.error)
        if not body.complete and isinstance(result, Reply):
            result.keep_alive = False  # the instance answered before the whole body was sent: do not reuse
        return result

    async def _relay(
        self, attempts: RequestAttempts, request: ProxyRequest, action: Relay, reply: Reply, count: str, note: str
    ) -> None:
        """Pass the instance's answer on: at once if it was read whole, else as it arrives."""
        connection = reply.connection
        close = b"Connection: close\r\n" if request.closes else b""
        reason = f"not retryable: {note}" if note else ""
        if reply.complete:
            if reply.framing == NONE:
                framing = _declared_length(reply)  # HEAD, 204, 304: the length a GET would have had, if given
            else:
                body = b"".join(reply.body)
                framing = b"Content-Length: %d\r\n" % len(body)
            head = response_head(reply.status, reply.reason, reply.headers, action.instance, count, framing + close)
            request.respond(head + body if reply.framing != NONE else head)
            self._give_back(connection, reply)
            attempts.finish(self.events.now(), reply.status, reason=reason)
            return
        client = request.connection
        write: Callable[[bytes], None] = client.write
        chunked = False
        if reply.framing == LENGTH:
            framing = b"Content-Length: %d\r\n" % reply.length
        elif request.http_version == "1.1":
            framing, chunked = b"Transfer-Encoding: chunked\r\n", True
            write = _chunked(client.write)
        else:  # an HTTP/1.0 client: the end of the body is the end of the connection
            framing = b""
            client.closing = True
        request.write(response_head(reply.status, reply.reason, reply.headers, action.instance, count, framing + close))
        client.on_write_pause = lambda paused: connection.pause_reading() if paused else connection.resume_reading()
        request.on_gone = connection.close
        try:
            ended_cleanly = await connection.relay(write)
        finally:
            client.on_write_pause = None
            request.on_gone = None
        if ended_cleanly and not client.closed:
            if chunked:
                client.write(b"0\r\n\r\n")
            self._give_back(connection, reply)
            attempts.finish(self.events.now(), reply.status, reason=reason)
            return
        # Bytes already went to the client: we cannot retry. Cut the client's connection too, so it sees a
        # truncated reply rather than a silently short body.
        connection.close()
        client.abort()
        why = "the client closed the connection" if client.closed else f"{action.instance}: answer cut off"
        attempts.finish(self.events.now(), reply.status, delivered=False, reason=why)

    def _give_back(self, connection: UpstreamConnection, reply: Reply) -> None:
        if reply.keep_alive:
            connection.pool.give_back(connection)
        else:
            connection.close()

    def _note_drained(self, name: str) -> None:
        drained = self._drained.get(name)
        member = self.policy.pool.members.get(name)
        if drained is not None and (member is None or member.in_flight == 0):
            drained.set()

    def _arm_wakeup(self) -> None:
        self._wakeup.arm()


class _Upload:
    """A request body streamed to an instance as it arrives from the client (it cannot be sent twice).

    The per-try timeout starts once the whole body is sent: until then, the client's pace is the client's
    business (bounded by ``body_timeout``), not a sign that the instance is hung. An instance that stops reading
    the body, though, is: once it has held the upload still (back-pressure) for the per-try timeout, the attempt
    has timed out.
    """

    def __init__(self, connection: UpstreamConnection, body: RequestBody, timeout: float) -> None:
        self.connection = connection
        self.body = body
        self.timeout = timeout
        self.error: Exception | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._stall: asyncio.TimerHandle | None = None  # the instance holds the upload still: see _held
        self._stopped = False
        self._write = _chunked(connection.write) if body.length is None else connection.write

    def start(self) -> None:
        self.connection.on_write_pause = self._held
        self.body.pipe(self._write, self._ended)

    def _held(self, paused: bool) -> None:
        """The instance stopped taking the body (``paused``), or took it again."""
        self.body.connection.pause_reading_for_instance(paused)
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        if paused and not self._stopped:
            loop = asyncio.get_running_loop()
            self._stall = loop.call_at(loop.time() + self.timeout, self.connection.time_out, self.timeout)

    def _ended(self, error: Exception | None) -> None:
        if self._stopped:
            return
        if error is not None:
            self.error = error
            self.connection.time_out(0)  # ends the attempt; the balancer answers with the client's error
            return
        if self.body.length is None:
            self.connection.write(b"0\r\n\r\n")
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(loop.time() + self.timeout, self.connection.time_out, self.timeout)

    def stop(self) -> None:
        self._stopped = True
        self.connection.on_write_pause = None
        self.body.connection.pause_reading_for_instance(False)
        for timer in (self._timer, self._stall):
            if timer is not None:
                timer.cancel()
        if not self.body.complete:
            self.body.unpipe()


def _client_fault(error: Exception) -> Refused:
    if isinstance(error, Refused):
        return error
    if isinstance(error, ClientGone):
        return Refused(CLIENT_GONE, "the client closed the connection while sending its body")
    return Refused(400, str(error))


def _chunked(write: Callable[[bytes], None]) -> Callable[[bytes], None]:
    def write_chunk(piece: bytes) -> None:
        if piece:
            write(b"%x\r\n%b\r\n" % (len(piece), piece))

    return write_chunk


def _declared_length(reply: Reply) -> bytes:
    length = reply.headers.content_length
    return b"" if length is None else b"Content-Length: " + length + b"\r\n"


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
