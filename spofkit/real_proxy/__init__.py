"""A real HAProxy or nginx as the lab's balancer: the same instances, faults, load and Report, another proxy.

``Lab.start(balancer="haproxy")`` (or ``"nginx"``, or ``spofkit serve --balancer haproxy``) runs the Debian-packaged
binary as a child of the lab, in front of the lab's instances, configured by :mod:`spofkit.export` from the lab's
settings. What the lab needs of a balancer (:class:`spofkit.frontdoor.Node`) it gets from the proxy's own ways:

- **HAProxy** (:class:`HAProxyNode`): its *runtime API* on a Unix socket (``add server``, ``set server ... state
  drain``, ``del server``, ``show stat``) changes the pool while it runs and says what it sees; its log (on its
  standard output) says when it marks a server DOWN or UP, with its reason, at once. Settings that HAProxy cannot
  change at run time (the strategy, retries, the checks themselves) are a *reload*: a new process takes over the
  listening sockets (``-sf``) and the old one finishes what it was doing.
- **nginx** (:class:`NginxNode`): the open source nginx has no active health checks and no runtime API, so the lab
  observes its passive behaviour. Its error log says "upstream server temporarily disabled" when ``max_fails``
  failures put a server out for ``fail_timeout``; its access log (one line per request, with every server tried and
  its status) shows the retries, and the first answer from a server that was out shows it is back. A change of the
  pool is a new configuration and a ``SIGHUP`` (in-flight requests finish on the old one).

Both publish the usual events (``InstanceDown``, ``InstanceUp``, ``InstanceAdded``, ``StrategyChanged``...), each
naming its balancer, so the Report measures the detection window the same way, and the TUI and widgets show them.

The proxy is a child process of the lab, stopped by its PID, with its configuration, sockets and logs in a
temporary directory; it listens on 127.0.0.1 only (the service address and an address of its own). ``crash`` is a
``kill -9``; ``hang`` stops the process (``SIGSTOP``): the kernel still accepts connections, nobody answers —
the front door's gray failure, for real. If the lab's process dies, the kernel stops the proxy too
(``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

from typing import Any

from spofkit.events import EventBus
from spofkit.real_proxy.base import ProxyFailed, ProxyProcess, RealProxyNode
from spofkit.real_proxy.haproxy import HAProxyNode
from spofkit.real_proxy.nginx import NginxNode

REAL_PROXIES = ("haproxy", "nginx")

__all__ = [
    "REAL_PROXIES",
    "HAProxyNode",
    "NginxNode",
    "ProxyFailed",
    "ProxyProcess",
    "RealProxyNode",
    "make_real_proxy",
]


def make_real_proxy(kind: str, name: str, events: EventBus, **settings: Any) -> RealProxyNode:
    """An :class:`HAProxyNode` or a :class:`NginxNode` (``kind``), not started yet. ``settings``: the lab's."""
    if kind == "haproxy":
        return HAProxyNode(name, events, **settings)
    if kind == "nginx":
        return NginxNode(name, events, **settings)
    raise ValueError(f"a real proxy is one of {REAL_PROXIES}, got {kind!r}")
