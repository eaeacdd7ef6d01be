"""How long the balancer waits for a client, and how much it lets one client take: the proxy's limits.

A reverse proxy faces the whole internet, slow and hostile clients included. Without limits, a client that sends
half a request and then nothing holds a connection (and a file descriptor) forever; a thousand of them are an
outage (*slowloris*). So, like nginx, the balancer bounds every wait and every size, and says which bound a client
hit:

================================  ==========  =============================================  ===================
setting                           default     what happens when a client exceeds it          nginx's name
================================  ==========  =============================================  ===================
``head_timeout``                  60 s        408, connection closed                         client_header_timeout
``body_timeout``                  60 s        408 (between two reads of the body)            client_body_timeout
``keepalive_timeout``             75 s        an idle kept-alive connection is closed        keepalive_timeout
``max_head_size``                 32 KiB      431 (request line and headers together)        large_client_header_buffers
``max_body_size``                 1 MiB       413, sent before reading the body              client_max_body_size
``retry_buffer_size``             32 MiB      bodies stream instead, with no retry           (client_body_buffer_size)
``max_connections``               from ulimit new connections are refused with a quick 503   worker_connections
``backlog``                       4096        (the kernel's queue of connections to accept)  listen ... backlog=
================================  ==========  =============================================  ===================

``max_body_size`` is nginx's default, and also what spofkit's instances accept, so an oversized upload is refused
by the balancer at once rather than streamed to an instance that refuses it. ``retry_buffer_size`` bounds the
memory held by request bodies kept for a possible retry (each up to :data:`MAX_REPLAYABLE_BODY`): 500 uploads of
1 MiB at once would otherwise hold 500 MiB. ``max_connections=None`` takes it from the process's file descriptor
limit (``ulimit -n``), keeping a reserve for the instances, health checks and the admin API.
"""

from __future__ import annotations

import dataclasses
import resource
from dataclasses import dataclass

KIB = 1 << 10
MIB = 1 << 20
# A request body up to this size is kept in memory so that a retry can send it again; a larger one streams, once.
MAX_REPLAYABLE_BODY = MIB
# File descriptors kept free for everything else in the process: the listening sockets, health checks, the admin
# API, log files, and the event loop's own.
FD_RESERVE = 100
# A client connection may need up to three descriptors: its own, its connection to an instance and, when the
# instances run in the same process (a lab's "inprocess" isolation), the instance's end of that connection.
FDS_PER_CONNECTION = 3


@dataclass(frozen=True)
class ProxyLimits:
    """Timeouts (seconds) and sizes (bytes) of the balancer's client side; see the module docstring."""

    head_timeout: float = 60.0
    body_timeout: float = 60.0
    keepalive_timeout: float = 75.0
    max_head_size: int = 32 * KIB
    max_body_size: int = MIB
    retry_buffer_size: int = 32 * MIB
    max_connections: int | None = None
    backlog: int = 4096

    def __post_init__(self) -> None:
        for name in ("head_timeout", "body_timeout", "keepalive_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a number of seconds > 0, got {value!r}")
        for name in ("max_head_size", "max_body_size", "retry_buffer_size", "backlog"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
        if self.max_head_size < 1024:
            raise ValueError(f"max_head_size must be at least 1024 bytes, got {self.max_head_size!r}")
        connections = self.max_connections
        if connections is not None and (isinstance(connections, bool) or not isinstance(connections, int)):
            raise ValueError(f"max_connections must be a whole number >= 1 or None, got {connections!r}")
        if connections is not None and connections < 1:
            raise ValueError(f"max_connections must be a whole number >= 1 or None, got {connections!r}")

    def connection_cap(self) -> int:
        """``max_connections``, or what the file descriptor limit leaves room for (at least 16)."""
        if self.max_connections is not None:
            return self.max_connections
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            soft = 1 << 16
        return max(16, (soft - FD_RESERVE) // FDS_PER_CONNECTION)

    def replace(self, **changes: float | int | None) -> ProxyLimits:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
