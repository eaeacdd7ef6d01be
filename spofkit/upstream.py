"""The balancer's side of the wire to its instances: a small HTTP/1.1 client that keeps connections open.

A reverse proxy does two jobs per request: read it from a client, and forward it to an instance. aiohttp's
``ClientSession`` can do the second, but it is built for any web client (cookies, redirects, URL normalisation,
proxies, tracing, automatic headers), and that generality cost the balancer more than half of its CPU time per
request. A proxy that talks only to its own instances needs much less, and this module is that much:

* one :class:`UpstreamPool` per instance keeps idle connections open (*keep-alive*) and reuses them, so a
  request costs no TCP handshake;
* a request goes out with exactly the headers the balancer chose, plus ``Host`` and the framing its body
  needs (``Content-Length`` for bytes, ``Transfer-Encoding: chunked`` for a stream);
* a response body ends as RFC 9112 (section 6.3) says: at once (HEAD, 1xx, 204, 304), after the last chunk,
  after ``Content-Length`` bytes, or when the instance closes the connection.

Each connection is an :class:`asyncio.Protocol` that only collects bytes; the request's coroutine parses them.
Failures are raised as aiohttp's own exception types, so the balancer sorts them as it would aiohttp's:
:class:`ConnectFailed` when no connection could be made (the request provably never reached the instance),
otherwise ``aiohttp.ServerDisconnectedError`` (closed before a full answer), ``aiohttp.ClientOSError`` (a socket
error such as a reset) or ``aiohttp.ClientPayloadError`` (a body cut short, or a malformed answer).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator
from typing import cast

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

MAX_HEAD = 1 << 16  # bytes: a response head larger than this is malformed
# Bytes buffered before we stop reading from the socket until they are consumed. Back-pressure only: when the
# reader asks for more than this (a whole body to buffer, say), reading resumes (see _Connection.receive).
MAX_BUFFER = 1 << 18
KEEPALIVE_TIMEOUT = 15.0  # seconds an idle connection is kept (aiohttp's default too)
# Methods that carry no body by convention; others get "Content-Length: 0" when they have none (as aiohttp does).
BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "CONNECT"})

Body = bytes | AsyncIterator[bytes] | None


class ConnectFailed(Exception):
    """No TCP connection to the instance: the request never left the balancer."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.strerror = error.strerror or str(error)


class _Connection(asyncio.Protocol):
    """One TCP connection to an instance. It only collects bytes; :meth:`receive` waits for more of them."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.closed = False  # the instance closed its side, or the socket failed
        self.error: Exception | None = None
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None  # pending while the socket's send buffer is full
        self._reading_paused = False

    # --- called by asyncio --------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a TCP transport (uvloop's is no subclass of it)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > MAX_BUFFER and self.transport is not None:
            self.transport.pause_reading()  # back-pressure: the reader is slower than the instance
            self._reading_paused = True
        self._wake()

    def eof_received(self) -> None:
        self.closed = True
        self._wake()

    def connection_lost(self, error: Exception | None) -> None:
        self.closed = True
        self.error = error
        self._wake()
        self.resume_writing()

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- called by the request's coroutine ----------------------------------------------------------------

    async def receive(self) -> bool:
        """Wait for more bytes in ``buffer``: True once some came, False if none will (the instance closed).

        A socket error (e.g. a reset) is raised as ``aiohttp.ClientOSError``.
        """
        before = len(self.buffer)
        self._resume_reading()  # the reader wants more than is buffered: a paused socket would never send it
        if not self.closed:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if len(self.buffer) > before:
            return True
        if isinstance(self.error, OSError):
            raise aiohttp.ClientOSError(self.error.errno, self.error.strerror or str(self.error))
        return False

    def take(self, size: int) -> bytes:
        """Remove and return the first ``size`` bytes of the buffer."""
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        if len(self.buffer) <= MAX_BUFFER // 2:
            self._resume_reading()
        return data

    def _resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()

    async def drain(self) -> None:
        if self._writable is not None:
            await self._writable

    def reusable(self, now: float) -> bool:
        # Closed by the instance, holding stray bytes, or idle too long: not worth sending a request on.
        return (
            not self.closed
            and not self.buffer
            and self.transport is not None
            and not self.transport.is_closing()
            and now - self.idle_since < KEEPALIVE_TIMEOUT
        )

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class UpstreamPool:
    """Kept-alive connections to one instance at ``host:port``."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._host_header = f"{host}:{port}"
        self._idle: collections.deque[_Connection] = collections.deque()
        self.retired = False  # set by retire(): the instance left the balancer, keep nothing open to it

    async def request(self, method: str, target: str, headers: CIMultiDict[str], body: Body = None) -> UpstreamResponse:
        """Send one request and read the response's head; read the body with the response's methods.

        Raises :class:`ConnectFailed`, or one of the aiohttp errors named in the module docstring. A request is
        never sent again on its own (not even on a kept-alive connection that turns out dead): every retry is
        the balancer's decision, counted and published.
        """
        connection = await self._connection()
        try:
            await _send_request(connection, method, target, self._host_header, headers, body)
            return await _read_head(self, connection, method)
        except BaseException:
            connection.close()  # a half-sent request or half-read answer leaves the connection unusable
            raise

    async def _connection(self) -> _Connection:
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()  # the most recently used: the likeliest to be alive
            if connection.reusable(now):
                return connection
            connection.close()
        loop = asyncio.get_running_loop()
        try:
            _transport, connection = await loop.create_connection(_Connection, self.host, self.port)
        except OSError as error:
            raise ConnectFailed(error) from error
        return connection

    def give_back(self, connection: _Connection) -> None:
        if self.retired:
            connection.close()  # a request that outlived the drain: its connection must not linger
            return
        now = time.monotonic()
        connection.idle_since = now
        self._idle.append(connection)
        # Requests take the most recently used connection, so the oldest idle ones wait at the other end. Close
        # those idle too long: a burst's extra connections must not stay open (on both sides) for good.
        while self._idle and not self._idle[0].reusable(now):
            self._idle.popleft().close()

    def close(self) -> None:
        """Close the idle connections; the pool stays usable (a stopped balancer may start again)."""
        while self._idle:
            self._idle.pop().close()

    def retire(self) -> None:
        """Close the idle connections, and every connection given back from now on."""
        self.retired = True
        self.close()


class UpstreamResponse:
    """An instance's answer: ``status`` and ``headers`` now, the body through :meth:`read` or :meth:`iter_chunks`.

    Call :meth:`release` when done: the connection goes back to the pool if the body was read to its end and
    the instance keeps connections alive; otherwise it is closed.
    """

    def __init__(
        self,
        pool: UpstreamPool,
        connection: _Connection,
        status: int,
        headers: CIMultiDictProxy[str],
        framing: str,
        length: int,
        keep_alive: bool,
    ) -> None:
        self.status = status
        self.headers = headers
        self.content_length = length if framing == "length" else None
        self._pool = pool
        self._connection: _Connection | None = connection
        self._framing = framing  # "none", "length", "chunked" or "close"
        self._remaining = length
        self._keep_alive = keep_alive and framing != "close"
        self._done = framing == "none" or (framing == "length" and length == 0)

    async def read(self) -> bytes:
        """The whole body."""
        connection = self._connection
        if self._framing == "length" and connection is not None and not self._done:
            try:
                while len(connection.buffer) < self._remaining:
                    if not await connection.receive():
                        raise aiohttp.ClientPayloadError(f"body cut short: {self._remaining} bytes expected")
            except BaseException:
                self._give_up()
                raise
            self._done = True
            return connection.take(self._remaining)
        return b"".join([chunk async for chunk in self.iter_chunks()])

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body, piece by piece, as it arrives."""
        connection = self._connection
        if self._done or connection is None:
            return
        try:
            if self._framing == "length":
                while self._remaining:
                    if not connection.buffer and not await connection.receive():
                        raise aiohttp.ClientPayloadError(f"body cut short: {self._remaining} bytes missing")
                    chunk = connection.take(self._remaining)
                    self._remaining -= len(chunk)
                    yield chunk
            elif self._framing == "chunked":
                async for chunk in _dechunk(connection):
                    yield chunk
            else:  # "close": the body ends when the instance closes the connection
                while connection.buffer or await connection.receive():
                    yield connection.take(len(connection.buffer))
        except BaseException:
            self._give_up()
            raise
        self._done = True

    def release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if self._done and self._keep_alive:
            self._pool.give_back(connection)
        else:
            connection.close()

    def _give_up(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


async def _send_request(
    connection: _Connection, method: str, target: str, host: str, headers: CIMultiDict[str], body: Body
) -> None:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    for name, value in headers.items():
        if "\r" in value or "\n" in value:  # never let a header value smuggle in another header
            raise ValueError(f"header {name!r} has a line break in its value")
        lines.append(f"{name}: {value}")
    if isinstance(body, bytes):
        lines.append(f"Content-Length: {len(body)}")
    elif body is not None:
        lines.append("Transfer-Encoding: chunked")
    elif method not in BODYLESS_METHODS:
        lines.append("Content-Length: 0")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")
    transport = connection.transport
    assert transport is not None
    if isinstance(body, bytes):
        transport.write(head + body)
    else:
        transport.write(head)
        if body is not None:
            async for chunk in body:
                if chunk:
                    transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                    await connection.drain()
            transport.write(b"0\r\n\r\n")
    await connection.drain()


async def _read_head(pool: UpstreamPool, connection: _Connection, method: str) -> UpstreamResponse:
    buffer = connection.buffer
    while True:
        end = buffer.find(b"\r\n\r\n")
        while end < 0:
            if len(buffer) > MAX_HEAD:
                raise aiohttp.ClientPayloadError(f"response head larger than {MAX_HEAD} bytes")
            if not await connection.receive():
                raise aiohttp.ServerDisconnectedError()
            end = buffer.find(b"\r\n\r\n")
        status_line, *header_lines = connection.take(end + 4)[:-4].decode("utf-8", "surrogateescape").split("\r\n")
        version, _, rest = status_line.partition(" ")
        status_text = rest[:3]
        if not version.startswith("HTTP/1.") or not status_text.isdigit():
            raise aiohttp.ClientPayloadError(f"malformed status line {status_line[:80]!r}")
        status = int(status_text)
        if status >= 200 or status == 101:
            break  # 1xx answers (100 Continue, 103 Early Hints) are interim: the real one follows
    headers: CIMultiDict[str] = CIMultiDict()
    for line in header_lines:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise aiohttp.ClientPayloadError(f"malformed header line {line[:80]!r}")
        headers.add(name, value.strip())
    tokens = headers.get("Connection", "").lower()
    keep_alive = "close" not in tokens and (version == "HTTP/1.1" or "keep-alive" in tokens)
    framing, length = _framing(method, status, headers)
    return UpstreamResponse(pool, connection, status, CIMultiDictProxy(headers), framing, length, keep_alive)


def _framing(method: str, status: int, headers: CIMultiDict[str]) -> tuple[str, int]:
    """How the body ends (RFC 9112, 6.3): ``none``, ``chunked``, ``length`` (with the length) or ``close``."""
    if method == "HEAD" or status in (204, 304) or status < 200:
        return "none", 0
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        return "chunked", 0
    lengths = set(headers.getall("Content-Length", []))
    if len(lengths) > 1:
        raise aiohttp.ClientPayloadError(f"conflicting Content-Length headers {sorted(lengths)}")
    if lengths:
        text = lengths.pop().strip()
        if not text.isdigit():
            raise aiohttp.ClientPayloadError(f"malformed Content-Length {text!r}")
        return "length", int(text)
    return "close", 0


async def _dechunk(connection: _Connection) -> AsyncIterator[bytes]:
    """The data of a chunked body: a size line, that many bytes, CRLF, ... then size 0 and the trailers."""
    buffer = connection.buffer

    async def line() -> bytes:
        while (end := buffer.find(b"\r\n")) < 0:
            if len(buffer) > MAX_HEAD:
                raise aiohttp.ClientPayloadError("chunk size line too long")
            if not await connection.receive():
                raise aiohttp.ClientPayloadError("chunked body cut short")
        return connection.take(end + 2)[:-2]

    while True:
        size_text = (await line()).split(b";", 1)[0].strip()
        if not size_text or size_text.strip(b"0123456789abcdefABCDEF"):  # int() would also take "-1", "0x1f"
            raise aiohttp.ClientPayloadError(f"malformed chunk size {size_text[:20]!r}")
        size = int(size_text, 16)
        if size == 0:
            while await line():
                pass  # trailer fields: a proxy may drop them
            return
        # A chunk's data is passed on as it arrives: an instance may send one huge chunk, and holding all of it
        # before passing any on would defeat the back-pressure.
        while size:
            if not buffer and not await connection.receive():
                raise aiohttp.ClientPayloadError("chunked body cut short")
            data = connection.take(size)
            size -= len(data)
            yield data
        if await line():
            raise aiohttp.ClientPayloadError("chunk not followed by CRLF")
