"""The balancer's side of the wire to its clients: HTTP/1.1 read strictly, every wait and every size bounded.

Each client connection is a :class:`ClientConnection` (an ``asyncio.Protocol``) that feeds the bytes it receives
to httptools (llhttp, the parser Node.js uses) and hands each complete request head to the balancer as a
:class:`ProxyRequest`. The rules it enforces, before the balancer sees anything:

1. **Strict parsing.** llhttp refuses the request-smuggling vectors — ``Content-Length`` with
   ``Transfer-Encoding``, two ``Content-Length`` headers, folded header lines (obs-fold), bare LF line ends,
   malformed chunks — and an HTTP/1.1 request needs exactly one ``Host``. Any of them: **400**, and the
   connection closes (what follows a malformed request cannot be trusted to start where it seems to).
2. **In order.** Requests sent back to back on one connection (*pipelining*) are answered one at a time, in
   the order they came.
3. **Bounded sizes** (:mod:`spofkit.proxy.limits`): a head larger than ``max_head_size`` gets **431**; a
   ``Content-Length`` over ``max_body_size`` gets **413** at once, before any of the body is read, and a chunked
   body that grows past it gets 413 when it does. Either way the connection closes.
4. **Bounded waits**: a head not complete within ``head_timeout`` of its first byte, or a body with no new bytes
   for ``body_timeout``, gets **408** and the connection closes; a kept-alive connection idle for
   ``keepalive_timeout`` is closed (no answer is owed to a client that asked nothing).
5. ``Connection: close`` or HTTP/1.0: the connection closes after the answer.
6. **Quiet about clients' mistakes**: each refused request is one log line (``spofkit.proxy``, at most
   :data:`LOG_LINES_PER_SECOND` a second, then a count of those left out), never a traceback.

:class:`ProxyServer` holds what the connections share: the limits, the handler, the set of open connections (so
a sweep every fraction of a second can find the ones past their deadline) and the connection cap.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable
from typing import cast

import httptools

from spofkit.proxy.limits import ProxyLimits
from spofkit.proxy.messages import CONTINUE, Headers, Refused, error_response

log = logging.getLogger("spofkit.proxy")
LOG_LINES_PER_SECOND = 5
# How many parsed requests may wait behind the one being answered before reading from the client pauses.
MAX_PIPELINED = 16
# Bytes of a request body held while nobody reads them yet (waiting for an instance) before reading pauses.
BODY_HIGH_WATER = 1 << 16
# Every connection reads into one buffer of this size, shared (each read is parsed before the next one starts, and
# the parser copies what it hands on): memory for reading does not grow with the number of connections.
READ_SIZE = 1 << 16
# Seconds a connection being closed still reads (and drops) what its client sends: see ClientConnection.linger.
LINGER = 2.0
Handler = Callable[["ProxyRequest"], Awaitable[None]]


class ClientGone(Exception):
    """The client closed its connection while its request was being served."""


class RateLimitedLog:
    """At most ``per_second`` lines a second; the next line after a quiet spell says how many were left out."""

    def __init__(self, logger: logging.Logger, per_second: int = LOG_LINES_PER_SECOND) -> None:
        self.logger = logger
        self.per_second = per_second
        self._second = 0
        self._lines = 0
        self.suppressed = 0

    def warning(self, line: str) -> None:
        second = int(time.monotonic())
        if second != self._second:
            self._second, self._lines = second, 0
        if self._lines >= self.per_second:
            self.suppressed += 1
            return
        self._lines += 1
        if self.suppressed:
            line += f" ({self.suppressed} similar lines left out)"
            self.suppressed = 0
        self.logger.warning(line)


class RequestBody:
    """A request's body as it arrives: kept until the balancer reads it whole, or passed to a sink as it comes.

    ``length`` is the Content-Length (``None`` for a chunked body). A failure (the client went away, timed out,
    or sent too much) is kept in ``error`` and raised to whoever waits for the body.
    """

    __slots__ = (
        "_on_end",
        "_sink",
        "_waiter",
        "complete",
        "connection",
        "error",
        "length",
        "pieces",
        "received",
        "wanted_whole",
    )

    def __init__(self, connection: ClientConnection, length: int | None) -> None:
        self.connection = connection
        self.length = length
        self.pieces: list[bytes] = []
        self.received = 0
        self.complete = length == 0
        self.error: Exception | None = None
        self.wanted_whole = False  # the balancer reads it whole (to keep it for a retry)
        self._waiter: asyncio.Future[None] | None = None
        self._sink: Callable[[bytes], None] | None = None
        self._on_end: Callable[[Exception | None], None] | None = None

    def feed(self, piece: bytes) -> None:
        self.received += len(piece)
        if self._sink is not None:
            self._sink(piece)
            return
        self.pieces.append(piece)

    def end(self, error: Exception | None = None) -> None:
        if self.complete or self.error is not None:
            return
        if error is None:
            self.complete = True
        else:
            self.error = error
        if self._on_end is not None:
            self._on_end(error)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def read(self) -> bytes:
        """The whole body (raises the body's ``error``: :class:`Refused` or :class:`ClientGone`)."""
        self.wanted_whole = True
        self.connection.body_wanted()
        while not self.complete:
            if self.error is not None:
                raise self.error
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        data = b"".join(self.pieces)
        self.pieces.clear()
        return data

    def pipe(self, sink: Callable[[bytes], None], on_end: Callable[[Exception | None], None]) -> None:
        """Stream the body: what came so far at once, the rest as it comes; ``on_end(error or None)`` at the end."""
        self.connection.body_wanted()
        for piece in self.pieces:
            sink(piece)
        self.pieces.clear()
        if self.complete or self.error is not None:
            on_end(self.error)
            return
        self._sink = sink
        self._on_end = on_end

    def unpipe(self) -> None:
        """Stop streaming (the attempt it went to is over); what still arrives is kept."""
        self._sink = None
        self._on_end = None

    @property
    def streaming(self) -> bool:
        return self._sink is not None

    @property
    def buffered(self) -> int:
        return sum(len(piece) for piece in self.pieces)


class ProxyRequest:
    """One client request, as parsed. The balancer answers it with :meth:`respond` (a whole response) or
    :meth:`write` (a streamed one, ended by returning from the handler)."""

    __slots__ = (
        "body",
        "chunked",
        "client",
        "connection",
        "content_length",
        "expect_continue",
        "headers",
        "http_version",
        "keep_alive",
        "method",
        "on_gone",
        "responded",
        "target",
    )

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.client = connection.client
        self.method = b""
        self.target = b""
        self.headers: Headers = []
        self.http_version = "1.1"
        self.keep_alive = True
        self.content_length: int | None = None
        self.chunked = False
        self.expect_continue = False
        self.body = RequestBody(connection, 0)
        self.responded = False  # some of the response was written
        self.on_gone: Callable[[], None] | None = None  # called if the client goes away mid-request

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    @property
    def closes(self) -> bool:
        """Whether the connection closes after this response (so the response should say so)."""
        return not self.keep_alive or self.connection.closing

    def respond(self, data: bytes) -> None:
        self.responded = True
        self.connection.write(data)

    def write(self, data: bytes) -> None:
        self.responded = True
        self.connection.write(data)

    async def drain(self) -> None:
        await self.connection.drain()


class ClientConnection(asyncio.BufferedProtocol):
    """One client's TCP connection: parses requests, queues them, answers them in order (rules 1–6)."""

    def __init__(self, server: ProxyServer) -> None:
        self.server = server
        self.limits = server.limits
        self.transport: asyncio.Transport | None = None
        self.client = ""
        self.closed = False
        self.closing = False  # close once the request being answered is done
        self._parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        self._loop = asyncio.get_running_loop()
        self._pending: collections.deque[ProxyRequest] = collections.deque()  # parsed, waiting their turn
        self.active: ProxyRequest | None = None  # being answered
        self._reading: ProxyRequest | None = None  # whose head or body is arriving
        self._refusal: Refused | None = None  # to send once the requests before it are answered
        self._head_open = False
        self._head_size = 0  # bytes of the head's parts the parser has reported
        self._unreported = 0  # bytes fed since the parser last reported a part: a header still arriving
        self._head_started = 0.0
        self._last_read = 0.0
        self.idle_since = 0.0
        self._served = 0
        self._lingering_since: float | None = None
        self._paused_by: set[str] = set()  # why reading from the client is paused
        self._writable: asyncio.Future[None] | None = None
        self.on_write_pause: Callable[[bool], None] | None = None  # a relayed answer pauses its instance

    # --- asyncio's calls -------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.client = str(peer[0]) if peer else ""
        self.idle_since = self._last_read = self._loop.time()
        self.server.opened(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.server.read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self.server.read_buffer[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        parser = self._parser
        if parser is None:
            return  # refused: nothing more is read
        self._last_read = self._loop.time()
        head_was_open = self._head_open
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # An Upgrade or CONNECT request: what follows it is another protocol. Answer it, then close.
            self._stop_reading()
            self.closing = True
            self._after_message()
        except httptools.HttpParserCallbackError:
            pass  # a callback refused the request and said why (see _refuse)
        except httptools.HttpParserError as error:
            self._refuse(Refused(400, f"malformed request: {error}"))
            return
        if self._head_open:
            if head_was_open:
                self._unreported += len(data)  # all of it belongs to a header still arriving
            if self._head_size + self._unreported > self.limits.max_head_size:
                self._refuse(Refused(431, f"request head larger than {self.limits.max_head_size} bytes"))

    def eof_received(self) -> bool:
        return self.active is not None and self._lingering_since is None  # finish the answer, then close

    def connection_lost(self, error: Exception | None) -> None:
        self.closed = True
        self._parser = None
        self.server.closed(self)
        for request in (self.active, self._reading):
            if request is not None:
                request.body.end(ClientGone("the client closed the connection"))
                if request.on_gone is not None:
                    request.on_gone()
        self._pending.clear()
        self._wake_writer()

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = self._loop.create_future()
        if self.on_write_pause is not None:
            self.on_write_pause(True)

    def resume_writing(self) -> None:
        self._wake_writer()
        if self.on_write_pause is not None:
            self.on_write_pause(False)

    def _wake_writer(self) -> None:
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    # --- the parser's calls ------------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._reading = ProxyRequest(self)
        self._head_open = True
        self._head_size = self._unreported = 0
        self._head_started = self._last_read

    def on_url(self, url: bytes) -> None:
        request = self._reading
        assert request is not None
        request.target += url
        self._head_size += len(url)
        self._unreported = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        request = self._reading
        assert request is not None
        request.headers.append((name, value))
        self._head_size += len(name) + len(value) + 4
        self._unreported = 0

    def on_headers_complete(self) -> None:
        request = self._reading
        parser = self._parser
        assert request is not None and parser is not None
        self._head_open = False
        limits = self.limits
        if self._head_size > limits.max_head_size:
            self._refuse(Refused(431, f"request head larger than {limits.max_head_size} bytes"))
            raise _Stop
        request.method = parser.get_method()
        request.http_version = parser.get_http_version()
        request.keep_alive = parser.should_keep_alive()
        hosts = 0
        for name, value in request.headers:
            lower = name.lower()
            if lower == b"content-length":
                request.content_length = int(value)  # the parser checked: digits, and only one
            elif lower == b"transfer-encoding":
                # llhttp checks the coding only after this callback: refuse here, before the request is served.
                if value.strip().lower() != b"chunked":
                    self._refuse(Refused(400, f"Transfer-Encoding {value[:40].decode('latin-1')!r} is not chunked"))
                    raise _Stop
                request.chunked = True  # the parser checked: only one, and no Content-Length with it
            elif lower == b"host":
                hosts += 1
            elif lower == b"expect" and value.lower() == b"100-continue":
                request.expect_continue = True
        if request.http_version == "1.1" and hosts != 1:
            self._refuse(Refused(400, f"an HTTP/1.1 request needs one Host header, this one has {hosts}"))
            raise _Stop
        if request.content_length is not None and request.content_length > limits.max_body_size:
            length = request.content_length
            self._refuse(Refused(413, f"request body of {length} bytes is over the limit of {limits.max_body_size}"))
            raise _Stop
        request.body = RequestBody(self, None if request.chunked else (request.content_length or 0))
        self._pending.append(request)
        if len(self._pending) > MAX_PIPELINED:
            self._pause("pipelined")
        if self.active is None:
            self._start_next()

    def on_body(self, piece: bytes) -> None:
        request = self._reading
        assert request is not None
        body = request.body
        if body.received + len(piece) > self.limits.max_body_size:
            self._refuse(Refused(413, f"request body over the limit of {self.limits.max_body_size} bytes"))
            raise _Stop
        body.feed(piece)
        if not body.streaming and not body.wanted_whole and body.received > BODY_HIGH_WATER:
            self._pause("body")  # nobody takes it yet: wait until the balancer reads or streams it

    def on_message_complete(self) -> None:
        self._after_message()

    def _after_message(self) -> None:
        request, self._reading = self._reading, None
        if request is not None:
            request.body.end()

    # --- answering, in order -----------------------------------------------------------------------------------

    def _start_next(self) -> None:
        if self._pending:
            request = self._pending.popleft()
            if "pipelined" in self._paused_by and len(self._pending) <= MAX_PIPELINED // 2:
                self._resume("pipelined")
            self.active = request
            self.server.serving(self)
            self.server.tasks.add(self._loop.create_task(self._serve(request)))
        elif self._refusal is not None:
            self._send_refusal()
        elif self.closing:
            self.linger()
        elif self._reading is None:
            self.idle_since = self._loop.time()
            self.server.waiting(self)

    async def _serve(self, request: ProxyRequest) -> None:
        task = asyncio.current_task()
        try:
            await self.server.handler(request)
        except (ClientGone, ConnectionError):
            self.closing = True
        except Exception as error:  # a bug in the balancer: the client gets a 502, the log one line
            self.server.log.warning(f"error answering {request.method.decode()} from {self.client}: {error!r}")
            if not request.responded:
                request.respond(error_response(502, f"the balancer failed: {type(error).__name__}", close=True))
            self.closing = True
        finally:
            if task is not None:
                self.server.tasks.discard(task)
        self.active = None
        self._served += 1
        if not request.keep_alive or not request.body.complete:
            self.closing = True  # the client asked to close, or the rest of its body would be read as a request
        if self.closed:
            return
        if self.closing and not self._pending and self._refusal is None:
            self.linger()
            return
        self._start_next()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    async def drain(self) -> None:
        if self.closed:
            raise ClientGone("the client closed the connection")
        if self._writable is not None:
            await self._writable

    def body_wanted(self) -> None:
        """The balancer reads the body now: send ``100 Continue`` if the client waits for it, resume reading."""
        request = self.active
        if request is not None and request.expect_continue and not request.body.complete:
            request.expect_continue = False
            self.write(CONTINUE)
        self._resume("body")

    # --- refusals, timeouts, closing ---------------------------------------------------------------------------

    def _refuse(self, refusal: Refused) -> None:
        """Rules 1, 3, 4: answer ``refusal`` (after the requests before it) and close; log one line."""
        self.server.log.warning(f"{refusal.status} to {self.client or 'a client'}: {refusal.reason}")
        self._stop_reading()
        self.closing = True
        request = self._reading
        if request is not None and request is self.active:
            request.body.end(refusal)  # the balancer is waiting for this body: it answers with the refusal
            self._reading = None
            return
        self._reading = None
        self._refusal = refusal
        if self.active is None and not self._pending:
            self._send_refusal()

    def _send_refusal(self) -> None:
        refusal, self._refusal = self._refusal, None
        if refusal is not None:
            self.write(error_response(refusal.status, refusal.reason, close=True))
        self.linger()

    def linger(self) -> None:
        """Close after an answer, nginx's *lingering close*: say we are done (FIN), then read and discard what
        the client still sends, for at most :data:`LINGER` seconds. Closing at once while its bytes keep coming
        would make the kernel answer them with a reset, and a reset can destroy the answer before it is read."""
        transport = self.transport
        if transport is None or self.closed:
            return
        if not transport.can_write_eof():
            self.close()
            return
        self._parser = None
        self._head_open = False
        self._reading = None
        try:
            transport.write_eof()
        except OSError:  # the client is already gone (ENOTCONN): nothing to linger for
            self.close()
            return
        self._lingering_since = self._loop.time()
        self.server.lingering(self)
        self._paused_by.clear()
        transport.resume_reading()

    def check_deadline(self, now: float) -> None:
        """Called by the server's sweep: rule 4."""
        limits = self.limits
        if self._lingering_since is not None:
            if now - self._lingering_since > LINGER:
                self.close()
        elif self._head_open:
            if now - self._head_started > limits.head_timeout:
                self._refuse(Refused(408, f"request head not complete within {limits.head_timeout:g}s"))
        elif self._reading is not None:
            if now - self._last_read > limits.body_timeout and not self._paused_by:
                self._refuse(Refused(408, f"no request body data for {limits.body_timeout:g}s"))
        elif self.active is None and not self._pending:
            allowed = limits.keepalive_timeout if self._served else limits.head_timeout
            if now - self.idle_since > allowed:
                self.close()

    def evict(self) -> None:
        """Make room for a new connection (the cap is reached): idle ones close, half-sent ones get 408 and close
        at once (no lingering: the room is needed now)."""
        if self._head_open and self._lingering_since is None:
            refusal = Refused(408, "request head not complete while the balancer is at its connection cap")
            self.server.log.warning(f"408 to {self.client or 'a client'}: {refusal.reason}")
            self.write(error_response(refusal.status, refusal.reason, close=True))
        self.close()

    def _stop_reading(self) -> None:
        self._parser = None
        self._head_open = False
        self._pause("refused")

    def _pause(self, why: str) -> None:
        if not self._paused_by and self.transport is not None and not self.closed:
            self.transport.pause_reading()
        self._paused_by.add(why)

    def _resume(self, why: str) -> None:
        if why not in self._paused_by:
            return
        self._paused_by.discard(why)
        if not self._paused_by and self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def pause_reading_for_instance(self, paused: bool) -> None:
        """A streamed request body: the instance reads slower than the client sends."""
        if paused:
            self._pause("instance")
        else:
            self._resume("instance")

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()


class _Stop(Exception):
    """Raised in a parser callback to stop parsing after a refusal."""


class ProxyServer:
    """What a balancer's client connections share: the handler, the limits, the log, the open connections.

    Every ``sweep_interval`` seconds it checks each connection's deadline (rule 4): one timer for all of them,
    instead of one per connection and request.
    """

    def __init__(self, handler: Handler, limits: ProxyLimits) -> None:
        self.handler = handler
        self.limits = limits
        self.log = RateLimitedLog(log)
        self.connections: set[ClientConnection] = set()
        self.tasks: set[asyncio.Task[None]] = set()  # one per request being answered
        # Connections with no request being answered, oldest first: idle kept-alive ones and half-sent heads.
        # At the cap, the oldest makes room for a new connection (see Listener).
        self._waiting: dict[ClientConnection, None] = {}
        self._lingering: dict[ClientConnection, None] = {}  # answered and closing: the first to go at the cap
        self.cap = limits.connection_cap()
        self.refused_connections = 0
        self._sweeper: asyncio.TimerHandle | None = None
        shortest = min(limits.head_timeout, limits.body_timeout, limits.keepalive_timeout)
        self.sweep_interval = min(1.0, shortest / 4)
        self.read_buffer = memoryview(bytearray(READ_SIZE))

    def make_connection(self) -> ClientConnection:
        return ClientConnection(self)

    def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(self.sweep_interval, self._sweep)

    def _sweep(self) -> None:
        now = asyncio.get_running_loop().time()
        for connection in list(self.connections):
            connection.check_deadline(now)
        self._sweeper = asyncio.get_running_loop().call_later(self.sweep_interval, self._sweep)

    # --- bookkeeping, called by the connections ------------------------------------------------------------------

    def opened(self, connection: ClientConnection) -> None:
        self.connections.add(connection)
        self._waiting[connection] = None

    def closed(self, connection: ClientConnection) -> None:
        self.connections.discard(connection)
        self._waiting.pop(connection, None)
        self._lingering.pop(connection, None)

    def waiting(self, connection: ClientConnection) -> None:
        self._waiting.pop(connection, None)
        self._waiting[connection] = None  # to the end: the newest waiter

    def serving(self, connection: ClientConnection) -> None:
        # A head still arriving keeps its place among the waiting (a slow client may be an attacker): only a
        # connection with a request being answered is safe from eviction.
        self._waiting.pop(connection, None)

    def lingering(self, connection: ClientConnection) -> None:
        self._waiting.pop(connection, None)
        self._lingering[connection] = None

    def make_room(self) -> bool:
        """At the cap: close a connection that is only lingering (its answer is sent), else the one that has
        waited longest without a request being answered. False if every connection is being answered."""
        for pool in (self._lingering, self._waiting):
            for connection in pool:
                del pool[connection]
                connection.evict()
                return True
        return False

    # --- stopping ----------------------------------------------------------------------------------------------

    async def stop(self, grace: float) -> None:
        """Close idle connections now, give requests being answered ``grace`` seconds, then cut the rest."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for connection in list(self.connections):
            if connection.active is None:
                connection.close()
            else:
                connection.closing = True
        tasks = [task for task in self.tasks if not task.done()]
        if tasks:
            _done, late = await asyncio.wait(tasks, timeout=grace)
            for task in late:
                task.cancel()
        for connection in list(self.connections):
            connection.abort()
        self.connections.clear()
        self._waiting.clear()
        self._lingering.clear()
