"""The balancer's side of the wire to its instances: kept-alive HTTP/1.1 connections and one exchange at a time.

A reverse proxy does two jobs per request: read it from a client, and forward it to an instance. This module is
the second, and it enforces these rules:

1. **Keep connections alive.** One :class:`UpstreamPool` per instance keeps idle connections open and reuses the
   most recently used one first (the likeliest to be alive), so a request costs no TCP handshake. Idle ones past
   :data:`KEEPALIVE_TIMEOUT` are closed from the old end, so a burst's extra connections do not stay open.
2. **Never send a request twice on its own.** A kept-alive connection that turns out dead is a failed attempt
   like any other: every retry is the balancer's decision, counted and published.
3. **Say exactly how an attempt failed**, because the retry rules depend on it: ``CONNECT`` when no connection
   could be made (the request provably never reached the instance), ``RESET`` when the connection was lost or
   the answer was malformed, ``TIMEOUT`` when the per-try timeout ran out. An answer is an answer, whatever its
   status: judging it is the policy's job.
4. **Parse answers strictly** (httptools, the llhttp parser Node.js uses): a malformed status line, conflicting
   lengths or bad chunking are a failed attempt, never passed on to the client.
5. **A body ends as RFC 9112 (6.3) says**: at once (HEAD, 1xx, 204, 304), after the last chunk, after
   ``Content-Length`` bytes, or when the instance closes the connection. Interim answers (``100 Continue``,
   ``103 Early Hints``) are skipped: the client gets the final one.
6. **Small answers are read whole, large ones stream.** An answer with a ``Content-Length`` up to
   :data:`MAX_BUFFERED_RESPONSE` is read whole before the client sees any of it, so a reset in its middle is still
   a retryable failure; a larger or unsized one streams to the client as it arrives, with back-pressure both ways
   (a slow client pauses reading from the instance).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from typing import cast

import httptools

from spofkit.policy import CONNECT, RESET, TIMEOUT
from spofkit.proxy.messages import AnswerHead, Headers

MAX_BUFFERED_RESPONSE = 1 << 20  # bytes: answers with a Content-Length up to this are read whole (rule 6)
KEEPALIVE_TIMEOUT = 15.0  # seconds an idle connection to an instance is kept (rule 1)
HIGH_WATER = 1 << 18  # bytes of a streamed answer held before reading from the instance pauses
NONE, LENGTH, CHUNKED, CLOSE = "none", "length", "chunked", "close"  # how an answer's body ends (rule 5)


class Failure:
    """A failed attempt: ``kind`` is CONNECT, RESET or TIMEOUT (rule 3); ``detail`` says what happened."""

    __slots__ = ("detail", "kind", "reached_backend")

    def __init__(self, kind: str, detail: str) -> None:
        self.kind = kind
        self.detail = detail
        self.reached_backend = kind != CONNECT


class Reply:
    """An instance's answer: ``status``, ``reason`` and its head (:class:`AnswerHead`); ``body`` (a list of pieces)
    holds all of it when ``complete``, else the start of a body that streams through :meth:`relay`."""

    __slots__ = ("body", "complete", "connection", "framing", "headers", "keep_alive", "length", "reason", "status")

    def __init__(self, connection: UpstreamConnection, status: int, headers: AnswerHead, framing: str, length: int):
        self.connection = connection
        self.status = status
        self.reason = b""
        self.headers = headers
        self.framing = framing
        self.length = length
        self.body: list[bytes] = []
        self.complete = False
        self.keep_alive = False


class UpstreamConnection(asyncio.Protocol):
    """One TCP connection to an instance, carrying one exchange at a time; parses what comes back."""

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._headers: Headers = []
        self._reason = b""
        self._head_request = False
        self._reply: Reply | None = None
        self._answered: asyncio.Future[Reply | Failure] | None = None  # resolved when the caller may go on
        self._ended: asyncio.Future[bool] | None = None  # a streamed body: True when it ended cleanly
        self._sink: Callable[[bytes], None] | None = None  # where a streamed body's pieces go
        self._buffered = 0
        self._streaming = False
        self._writable: asyncio.Future[None] | None = None
        self.on_write_pause: Callable[[bool], None] | None = None  # a streamed request body pauses its client

    # --- asyncio's calls -------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            reply = self._reply
            if reply is not None and reply.complete and self._head_request:
                self._parser = httptools.HttpResponseParser(self)  # stopped on purpose after a HEAD answer's head
            else:
                self._fail(Failure(RESET, "malformed answer"))
        except httptools.HttpParserError as error:
            self._fail(Failure(RESET, f"malformed answer ({error})"))

    def eof_received(self) -> bool:
        reply = self._reply
        if reply is not None and reply.framing == CLOSE and not reply.complete:
            reply.keep_alive = False
            self.on_message_complete()  # a body that ends when the instance closes: it just did
        return False

    def connection_lost(self, error: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        reply = self._reply
        if reply is None or not reply.complete:
            why = f"connection lost ({error.strerror or error})" if isinstance(error, OSError) else "connection closed"
            started = reply is not None or self._headers
            self._fail(Failure(RESET, why + (" in the middle of the answer" if started else " before any answer")))
        self.resume_writing()

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = asyncio.get_running_loop().create_future()
        if self.on_write_pause is not None:
            self.on_write_pause(True)

    def resume_writing(self) -> None:
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)
        if self.on_write_pause is not None:
            self.on_write_pause(False)

    # --- the parser's calls ------------------------------------------------------------------------------------

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        headers, self._headers = self._headers, []
        if status < 200:
            self._reason = b""  # an interim answer: the final one follows (rule 5)
            return
        answer = AnswerHead(headers)
        framing, length = NONE, 0
        if self._head_request or status in (204, 304):
            pass
        elif answer.chunked:
            framing = CHUNKED
        elif answer.content_length is not None:
            framing, length = LENGTH, int(answer.content_length)  # the parser checked it: digits only
        else:
            framing = CLOSE
        reply = Reply(self, status, answer, framing, length)
        reply.reason, self._reason = self._reason or b"-", b""
        tokens = answer.tokens
        reply.keep_alive = b"close" not in tokens and (
            self._parser.get_http_version() == "1.1" or b"keep-alive" in tokens
        )
        self._reply = reply
        if framing == NONE or (framing == LENGTH and length == 0):
            self.on_message_complete()
            if self._head_request:
                raise _AnswerHasNoBody  # the parser cannot know a HEAD answer has no body: stop it here
        elif not (framing == LENGTH and length <= MAX_BUFFERED_RESPONSE):
            self._streaming = True
            self._answer(reply)  # too large or unsized: streams once the balancer relays it

    def on_body(self, piece: bytes) -> None:
        if self._sink is not None:
            self._sink(piece)
            return
        reply = self._reply
        if reply is not None:
            reply.body.append(piece)
            self._buffered += len(piece)
            if self._streaming and self._buffered > HIGH_WATER and self.transport is not None:
                self.transport.pause_reading()  # nobody takes the pieces yet: stop reading until someone does

    def on_message_complete(self) -> None:
        reply = self._reply
        if reply is None or reply.complete:
            return  # the end of an interim answer
        reply.complete = True
        self._answer(reply)
        ended = self._ended
        if ended is not None and not ended.done():
            ended.set_result(True)

    # --- the exchange, as the balancer drives it ------------------------------------------------------------------

    def send(self, head: bytes, body: bytes | None, *, head_request: bool) -> asyncio.Future[Reply | Failure]:
        """Write a request (``head``, then ``body`` if given) and return a future of its answer."""
        self._head_request = head_request
        self._reply = None
        self._buffered = 0
        self._streaming = False
        self._sink = None
        self._ended = None
        self.on_write_pause = None
        self._answered = answered = asyncio.get_running_loop().create_future()
        assert self.transport is not None
        if body and len(body) > 1 << 14:
            self.transport.write(head)  # a large body is not copied just to put the head in front of it
            self.transport.write(body)
        else:
            self.transport.write(head + body if body else head)
        return answered

    def write(self, data: bytes) -> None:
        """Send more of a streamed request body."""
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def time_out(self, timeout: float) -> None:
        """The per-try timeout ran out: the attempt failed, and the connection is no use any more."""
        self._fail(Failure(TIMEOUT, f"no answer within {timeout:.2f}s"))
        self.close()

    def relay(self, write: Callable[[bytes], None]) -> asyncio.Future[bool]:
        """Send the rest of a streamed body to ``write`` as it arrives; the future says whether it ended cleanly."""
        reply = self._reply
        assert reply is not None
        self._ended = ended = asyncio.get_running_loop().create_future()
        for piece in reply.body:
            write(piece)
        reply.body.clear()
        if reply.complete:
            ended.set_result(True)
        else:
            self._sink = write
            self.resume_reading()
        return ended

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    async def drain(self) -> None:
        if self._writable is not None:
            await self._writable

    def _answer(self, result: Reply | Failure) -> None:
        answered = self._answered
        if answered is not None and not answered.done():
            answered.set_result(result)

    def _fail(self, failure: Failure) -> None:
        self._answer(failure)
        ended = self._ended
        if ended is not None and not ended.done():
            ended.set_result(False)
        self.close()

    def reusable(self, now: float) -> bool:
        transport = self.transport
        return (
            not self.closed
            and transport is not None
            and not transport.is_closing()
            and (now - self.idle_since < KEEPALIVE_TIMEOUT)
        )

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class _AnswerHasNoBody(Exception):
    """Raised inside the parser to stop it after a HEAD answer's head (see on_headers_complete)."""


class UpstreamPool:
    """Kept-alive connections to one instance at ``host:port`` (rule 1)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.host_header = f"{host}:{port}".encode()
        self._idle: collections.deque[UpstreamConnection] = collections.deque()
        self._open: set[UpstreamConnection] = set()
        self.retired = False  # set by retire(): the instance left the balancer, keep nothing open to it

    def idle_connection(self) -> UpstreamConnection | None:
        """A kept-alive connection that is still good, or None (then :meth:`connect` makes a new one)."""
        now = time.monotonic()
        idle = self._idle
        while idle:
            connection = idle.pop()  # the most recently used: the likeliest to be alive
            if connection.reusable(now):
                return connection
            connection.close()
        return None

    async def connect(self, timeout: float) -> UpstreamConnection | Failure:
        """A new connection to the instance, or the failure to make one (CONNECT: it was refused)."""
        loop = asyncio.get_running_loop()
        try:
            _transport, connection = await asyncio.wait_for(
                loop.create_connection(lambda: UpstreamConnection(self), self.host, self.port), timeout
            )
        except asyncio.TimeoutError:
            failure = Failure(TIMEOUT, f"no connection within {timeout:.2f}s")
            failure.reached_backend = False  # not even connected: the request never left the balancer
            return failure
        except OSError as error:
            return Failure(CONNECT, f"connect failed ({error.strerror or error})")
        self._open.add(connection)
        return connection

    def give_back(self, connection: UpstreamConnection) -> None:
        """After a complete exchange: keep the connection for the next request, if it is still good."""
        if self.retired or connection.closed:
            connection.close()  # a request that outlived the drain: its connection must not linger
            return
        now = time.monotonic()
        connection.idle_since = now
        self._idle.append(connection)
        while self._idle and not self._idle[0].reusable(now):
            self._idle.popleft().close()

    def forget(self, connection: UpstreamConnection) -> None:
        self._open.discard(connection)

    @property
    def idle(self) -> int:
        return len(self._idle)

    def close(self) -> None:
        """Close the idle connections; the pool stays usable (a stopped balancer may start again)."""
        while self._idle:
            self._idle.pop().close()

    def abort_all(self) -> None:
        """Close every connection, idle or busy (the balancer is stopping and its grace period is over)."""
        self.close()
        for connection in list(self._open):
            connection.close()

    def retire(self) -> None:
        """Close the idle connections, and every connection given back from now on."""
        self.retired = True
        self.close()
