"""Accepting connections: a long queue, a cap, and no panic when the process runs out of file descriptors.

The rules:

1. **A long accept queue.** The kernel completes TCP handshakes by itself and queues the connections until the
   program accepts them; the queue's length is the ``backlog`` given to ``listen()``. With Python's usual 100 or
   128, a burst of 2,000 connections overflows it, the kernel drops SYNs, and clients retry them one second
   later (then three, then seven): a p99 of seconds from nothing but the queue. The balancer asks for
   ``backlog`` (4096 by default; the kernel caps it at ``net.core.somaxconn``).
2. **A cap on connections** (``max_connections``). At the cap, the connection that has waited longest without
   a request being answered — an idle kept-alive one, or one still sending its head, as a slowloris attacker
   does — is closed to make room (nginx also reuses idle kept-alive connections when it runs out). If every
   connection is busy being answered, the new one gets a quick ``503`` and is closed: refused at once, instead
   of file descriptors running out for everyone (the instances, the health checks, the admin API).
3. **Out of file descriptors** (``EMFILE``): stop accepting for :data:`EMFILE_PAUSE` seconds and try again —
   no busy loop — with one log line per burst, not one per attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import time

from spofkit.proxy.messages import error_response
from spofkit.proxy.server import ProxyServer

ACCEPTS_PER_WAKEUP = 128  # connections accepted per readiness event before other work gets its turn
EMFILE_PAUSE = 0.1  # seconds without accepting after the process ran out of file descriptors
_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class Listener:
    """Accepts connections on ``sock`` (bound, not yet listening) for ``server``; :meth:`stop` stops that."""

    def __init__(self, server: ProxyServer, sock: socket.socket, backlog: int) -> None:
        self.server = server
        self.sock = sock
        self.port = int(sock.getsockname()[1])
        self._loop = asyncio.get_running_loop()
        self._paused: asyncio.TimerHandle | None = None
        self._out_of_fds_since: float | None = None
        self._adopting: set[asyncio.Task[None]] = set()
        self._refusal = error_response(503, "too many connections: the balancer is at its connection cap", close=True)
        sock.setblocking(False)
        sock.listen(backlog)
        self._loop.add_reader(sock.fileno(), self._accept)
        self.listening = True

    def _accept(self) -> None:
        server = self.server
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                conn, _address = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                if error.errno in _OUT_OF_RESOURCES:
                    self._out_of_fds(error)
                    return
                if error.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue  # the client gave up before we accepted it
                raise
            if self._out_of_fds_since is not None:
                lasted = time.monotonic() - self._out_of_fds_since
                server.log.warning(f"accepting connections again after {lasted:.1f}s out of file descriptors")
                self._out_of_fds_since = None
            if len(server.connections) >= server.cap and not server.make_room():
                server.refused_connections += 1
                with contextlib.suppress(OSError):
                    conn.send(self._refusal)  # rule 2: refused at once, with a reason
                conn.close()
                continue
            conn.setblocking(False)
            task = self._loop.create_task(self._adopt(conn))
            self._adopting.add(task)
            task.add_done_callback(self._adopting.discard)

    async def _adopt(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self.server.make_connection, conn)
        except OSError:
            conn.close()

    def _out_of_fds(self, error: OSError) -> None:
        """Rule 3: pause accepting; one line per burst."""
        if self._out_of_fds_since is None:
            self._out_of_fds_since = time.monotonic()
            soft = _fd_limit()
            self.server.log.warning(
                f"out of file descriptors ({error.strerror}; ulimit -n is {soft}, "
                f"{len(self.server.connections) + len(self._adopting)} client connections open): "
                f"not accepting for {EMFILE_PAUSE}s at a time until some close"
            )
        self._loop.remove_reader(self.sock.fileno())
        self._paused = self._loop.call_later(EMFILE_PAUSE, self._resume)

    def _resume(self) -> None:
        self._paused = None
        if self.listening:
            self._loop.add_reader(self.sock.fileno(), self._accept)
            self._accept()

    async def stop(self) -> None:
        """Stop accepting and close the listening socket (connections already open are the server's)."""
        if not self.listening:
            return
        self.listening = False
        if self._paused is not None:
            self._paused.cancel()
            self._paused = None
        else:
            self._loop.remove_reader(self.sock.fileno())
        self.sock.close()


def _fd_limit() -> int:
    import resource

    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (0: any free port), ready for :class:`Listener`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart while old sockets sit in TIME_WAIT
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock
