"""From the lab to production: the lab's settings written as an HAProxy or an nginx configuration.

A learner who understood the lab's health checks and retries will next write a real proxy's configuration, and meet
other words and other defaults for the same ideas. This module writes that configuration for them, setting by
setting, with the lab's name for each one beside the proxy's::

    from spofkit.export import LabSettings, haproxy_config, nginx_config
    settings = LabSettings.for_instances(3)          # the lab's defaults, instances on 127.0.0.1:9001...
    print(haproxy_config(settings))

or from a shell: ``spofkit export haproxy --instances 3`` (the ``serve`` flags, or ``--scenario FILE``).

=============================  =============================================  ====================================
the lab                        HAProxy 2.6                                    nginx 1.22 (open source)
=============================  =============================================  ====================================
interval, fastinter, downinter ``check inter … fastinter … downinter …``      none: no active checks (nginx Plus)
timeout, rise, fall            ``timeout check``, ``rise``, ``fall``          none (passive ``max_fails`` nearest)
path, expect                   ``option httpchk``, ``http-check expect``      none
retries, per-try timeout       ``retries``, ``option redispatch 1``,          ``proxy_next_upstream``, ``…_tries``,
                               ``retry-on``, ``timeout connect/server``       ``proxy_connect/read_timeout``
deadline                       none                                           ``proxy_next_upstream_timeout``
idempotency rule               ``http-request disable-l7-retry``              built in (no ``non_idempotent``)
retry budget                   none                                           none
passive ejection               ``observe layer7 error-limit … mark-down``     ``max_fails=N fail_timeout=T``
strategy, weights, backups     ``balance …``, ``weight``, ``backup``          ``least_conn`` …, ``weight=``, ``backup``
max_conns, slow_start          ``maxconn``, ``slowstart``                     ``max_conns=``; slow start: Plus only
=============================  =============================================  ====================================

Whatever has no equivalent is written as a comment that starts ``# not in HAProxy:`` or ``# not in nginx:`` and says
what the nearest is, so nothing of the lab's settings is silently dropped. :func:`validate` runs the real binary's
own check (``haproxy -c -f``, ``nginx -t``) on a configuration.

:class:`RuntimeOptions` adds what the lab needs to *run* the proxy as its balancer (:mod:`spofkit.real_proxy`): a
second address of its own, a runtime API socket, logs on standard output, files in a temporary directory. They are
written in a block of their own, marked as the lab's, so a learner can tell them from the exported settings.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from spofkit import __version__
from spofkit.policy.attempts import SINGLE_ATTEMPT_TIMEOUT
from spofkit.policy.failover import CONNECT, RESET, STATUS, TIMEOUT, EjectionSettings, RetrySettings
from spofkit.policy.health import HealthSettings
from spofkit.policy.strategies import strategy_names

TARGETS = ("haproxy", "nginx")
# Where Debian puts the binaries (/usr/sbin is not on every user's PATH).
BINARIES = {"haproxy": "/usr/sbin/haproxy", "nginx": "/usr/sbin/nginx", "keepalived": "/usr/sbin/keepalived"}
BACKEND = "instances"  # the name of the pool in both configurations
NGINX_TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")  # nginx's own files, in the lab's folder
HASH_HEADER = "X-Hash-Key"  # the lab's consistent_hash strategy hashes this header, else the client address
# The methods the lab retries after they may have reached a backend (spofkit.policy.failover).
IDEMPOTENT = ("GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE")
# HAProxy's names for the lab's retry reasons (``retry-on``); 5xx statuses are added by number.
HAPROXY_RETRY_ON = {CONNECT: "conn-failure", RESET: "empty-response", TIMEOUT: "response-timeout"}
# nginx's names for the same (``proxy_next_upstream``): "error" covers a refused connect and a reset alike.
NGINX_NEXT_UPSTREAM = {CONNECT: "error", RESET: "error", TIMEOUT: "timeout"}
NGINX_STATUSES = (500, 502, 503, 504, 429)  # the 5xx statuses proxy_next_upstream can name (http_500 ...)
VALIDATE_TIMEOUT = 30.0  # seconds for `haproxy -c` / `nginx -t`
SERVER_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class ExportError(ValueError):
    """A setting that cannot be exported; ``field`` names it (``members``, ``strategy``, ``health.interval``...)."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


class ProxyNotInstalled(RuntimeError):
    """The HAProxy or nginx binary is not on this machine; the message says which Debian package to install."""


# --- what is exported ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportMember:
    """One instance of the pool: a name, an address ``host:port``, and its options in the lab."""

    name: str
    address: str
    weight: int = 1
    backup: bool = False
    max_conns: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not SERVER_NAME.match(self.name):
            raise ExportError(
                "members", f"an instance name must be 1-64 letters, digits, '_', '.', '-'; got {self.name!r}"
            )
        host, _, port = self.address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ExportError("members", f"instance {self.name}: address must be host:port, got {self.address!r}")
        if isinstance(self.weight, bool) or not isinstance(self.weight, int) or not 1 <= self.weight <= 256:
            raise ExportError(
                "members", f"instance {self.name}: weight must be a whole number 1..256, got {self.weight!r}"
            )
        if self.max_conns is not None and (isinstance(self.max_conns, bool) or not 1 <= self.max_conns <= 100_000):
            raise ExportError("members", f"instance {self.name}: max_conns must be 1..100000 or None")

    @property
    def host(self) -> str:
        return self.address.rpartition(":")[0]

    @property
    def port(self) -> int:
        return int(self.address.rpartition(":")[2])

    @classmethod
    def from_url(cls, name: str, url: str, **options: Any) -> ExportMember:
        """``ExportMember.from_url("a", "http://127.0.0.1:40001")``: a lab instance's URL as an address."""
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ExportError("members", f"instance {name}: url must be http://host:port, got {url!r}")
        return cls(name, f"{parts.hostname}:{parts.port}", **options)


@dataclass(frozen=True)
class LabSettings:
    """Everything about a lab's balancer that a proxy configuration can say. ``None`` switches a protection off.

    ``listen`` holds the service addresses (``host:port``) the proxy binds; ``source`` says where the settings came
    from (serve flags, a scenario file, a running lab), for the header comment.
    """

    members: tuple[ExportMember, ...] = ()
    strategy: str = "round_robin"
    health: HealthSettings | None = field(default_factory=HealthSettings)
    retries: RetrySettings | None = field(default_factory=RetrySettings)
    ejection: EjectionSettings | None = field(default_factory=EjectionSettings)
    slow_start: float = 0.0
    listen: tuple[str, ...] = ("127.0.0.1:8080",)
    source: str = "the lab's defaults"

    def __post_init__(self) -> None:
        if self.strategy not in strategy_names():
            raise ExportError(
                "strategy", f"unknown strategy {self.strategy!r}; a proxy can take one of {strategy_names()}"
            )
        names = [member.name for member in self.members]
        if len(set(names)) != len(names):
            raise ExportError("members", f"instance names must be unique, got {names}")
        if not isinstance(self.slow_start, (int, float)) or not 0 <= self.slow_start <= 3600:
            raise ExportError("slow_start", f"slow_start must be 0..3600 seconds, got {self.slow_start!r}")
        if not self.listen:
            raise ExportError("listen", "a proxy needs at least one address to listen on")
        for address in self.listen:
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ExportError("listen", f"listen address must be host:port, got {address!r}")

    @classmethod
    def for_instances(
        cls, instances: int = 3, *, backups: int = 0, first_port: int = 9001, host: str = "127.0.0.1", **settings: Any
    ) -> LabSettings:
        """Instances named a, b, c... on ``host:first_port``, ``first_port + 1``...; the backups after them."""
        if not 1 <= instances + backups <= 26:
            raise ExportError("members", f"instances + backups must be 1..26, got {instances + backups}")
        if not 1 <= first_port <= 65535 - instances - backups:
            raise ExportError("members", f"first_port must leave room for every instance, got {first_port}")
        members = tuple(
            ExportMember(chr(ord("a") + index), f"{host}:{first_port + index}", backup=index >= instances)
            for index in range(instances + backups)
        )
        return cls(members=members, **settings)

    def with_members(self, members: Iterable[ExportMember]) -> LabSettings:
        return dataclasses.replace(self, members=tuple(members))


@dataclass(frozen=True)
class RuntimeOptions:
    """What the lab adds to run the proxy as its balancer: files in ``workdir``, its own address, its log.

    ``own_listen`` is the proxy's own address (clients that know each balancer), besides the service address.
    """

    workdir: Path
    own_listen: str | None = None
    balancer_name: str = "lb1"
    generation: int = 0  # nginx: which configuration this is (the lab waits for a reload to show it)

    @property
    def haproxy_socket(self) -> Path:
        return self.workdir / "admin.sock"

    @property
    def nginx_control_socket(self) -> Path:
        return self.workdir / "control.sock"


# --- HAProxy ----------------------------------------------------------------------------------------------


def haproxy_config(settings: LabSettings, runtime: RuntimeOptions | None = None) -> str:
    """The lab's ``settings`` as an ``haproxy.cfg`` (HAProxy 2.6 words); with ``runtime``, ready for the lab to run."""
    lines = _header("HAProxy", settings)
    lines += ["global"]
    lines += [
        _why("    log stdout format raw local0 info", "HAProxy's log, on its standard output"),
    ]
    health = settings.health
    if health is not None:
        spread = min(50, round(health.jitter * 100))
        lines.append(
            _why(f"    spread-checks {spread}", f"health jitter {health.jitter:g} (a fraction), as a percentage")
        )
        if health.jitter * 100 > 50:
            lines.append("    # not in HAProxy: a jitter above 0.5; spread-checks stops at 50 %, the nearest")
    if runtime is not None:
        lines += [
            "    # --- for the lab: its runtime API, and old processes gone within 3 s of a reload",
            f"    stats socket {runtime.haproxy_socket} mode 600 level admin",
            "    hard-stop-after 3s",
        ]
    lines += ["", "defaults", "    mode http", "    log global", "    option http-keep-alive"]
    lines.append(_why("    option forwardfor", "X-Forwarded-For, as the lab's balancer adds it"))
    lines += _haproxy_timeouts_and_retries(settings.retries)
    lines += ["", "frontend service"]
    for address in settings.listen:
        lines.append(_why(f"    bind {address}", "the service address"))
    if runtime is not None and runtime.own_listen:
        lines.append(_why(f"    bind {runtime.own_listen}", f"for the lab: {runtime.balancer_name}'s own address"))
    lines += [
        "    http-request set-header X-Forwarded-Proto http",
        f"    default_backend {BACKEND}",
        "",
        f"backend {BACKEND}",
    ]
    lines += _haproxy_balance(settings.strategy)
    if settings.retries is not None:
        lines += [
            "    # The lab's idempotency rule: a request that may have reached a server is retried only if idempotent.",
            f"    http-request disable-l7-retry if !{{ method {' '.join(IDEMPOTENT)} }}",
        ]
    lines += _haproxy_health(health)
    default_server = haproxy_server_options(settings)
    if default_server:
        lines.append(f"    default-server {default_server}")
    lines += _haproxy_ejection_notes(settings.ejection, health)
    if settings.slow_start and health is None:
        lines.append(
            f"    # not in HAProxy: slow_start {settings.slow_start:g} s without health checks; slowstart needs checks"
        )
    if not settings.members:
        lines.append("    # no instances yet: HAProxy answers 503 until servers are added")
    for member in settings.members:
        lines.append(f"    {haproxy_server_line(member)}")
    return "\n".join(lines) + "\n"


def haproxy_server_line(member: ExportMember) -> str:
    """``server a 127.0.0.1:9001 weight 2 maxconn 10 backup``: one instance, its own options only."""
    words = [f"server {member.name} {member.address}"]
    if member.weight != 1:
        words.append(f"weight {member.weight}")
    if member.max_conns is not None:
        words.append(f"maxconn {member.max_conns}")
    if member.backup:
        words.append("backup")
    return " ".join(words)


def haproxy_server_options(settings: LabSettings) -> str:
    """The options every server shares (``default-server``): health checks, passive ejection, slow start.

    Servers added at run time through HAProxy's runtime API do not inherit ``default-server`` (HAProxy 2.6), so
    :mod:`spofkit.real_proxy` hands these to each ``add server`` itself.
    """
    health = settings.health
    words = []
    if health is not None:
        words += [
            "check",
            f"inter {_haproxy_time(health.interval)}",
            f"fastinter {_haproxy_time(health.fast_interval)}",
            f"downinter {_haproxy_time(health.down_interval)}",
            f"rise {health.rise}",
            f"fall {health.fall}",
        ]
        if settings.ejection is not None:
            words.append(f"observe layer7 error-limit {settings.ejection.consecutive_failures} on-error mark-down")
        if settings.slow_start:
            words.append(f"slowstart {_haproxy_time(settings.slow_start)}")
    return " ".join(words)


def _haproxy_timeouts_and_retries(retries: RetrySettings | None) -> list[str]:
    per_try = retries.per_try_timeout if retries else SINGLE_ATTEMPT_TIMEOUT
    lines = [
        _why(f"    timeout connect {_haproxy_time(per_try)}", f"per-try timeout {per_try:g} s: to connect..."),
        _why(f"    timeout server {_haproxy_time(per_try)}", "...and to answer (each attempt has its own)"),
        "    # not in HAProxy: a per-try timeout for the whole answer; `timeout server` is the longest silence,",
        "    #   restarted at every read (the same for an answer's head, longer for a slowly streamed body)",
        "    timeout client 30s",
        "    timeout http-request 10s",
    ]
    if retries is None:
        lines += [
            _why("    retries 0", "retries off: one attempt, its error goes to the client"),
            "    retry-on none",
        ]
        return lines
    retry_on = [HAPROXY_RETRY_ON[kind] for kind in (CONNECT, RESET, TIMEOUT) if kind in retries.retry_on]
    if STATUS in retries.retry_on:
        retry_on += [str(status) for status in sorted(retries.retry_statuses) if status in (500, 502, 503, 504)]
        other = sorted(status for status in retries.retry_statuses if status not in (500, 502, 503, 504))
        if other:
            lines.append(f"    # not in HAProxy: retrying on status {other}; retry-on names only 500, 502, 503, 504")
    lines += [
        _why(
            f"    retries {retries.max_attempts - 1}",
            f"max_attempts {retries.max_attempts}: the first try and the retries",
        ),
        _why("    option redispatch 1", "every retry goes to another server"),
        f"    retry-on {' '.join(retry_on) or 'none'}",
        f"    # not in HAProxy: the deadline ({retries.deadline:g} s for all attempts of a request); nearest:",
        f"    #   each attempt's timeout x attempts = {per_try * retries.max_attempts:g} s at most",
        f"    # not in HAProxy: the retry budget ({retries.budget_ratio:.0%} extra load + "
        f"{retries.budget_min_per_second:g}/s over {retries.budget_window:g} s);",
        "    #   nearest: `retries` above bounds the retries of each request, nothing bounds them all together",
    ]
    return lines


def _haproxy_balance(strategy: str) -> list[str]:
    if strategy in ("round_robin", "weighted_round_robin"):
        return [_why("    balance roundrobin", "weighted round robin (weights below)")]
    if strategy == "least_connections":
        return ["    balance leastconn"]
    if strategy == "random":
        return [_why("    balance random(1)", "one random draw (weighted)")]
    if strategy == "power_of_two":
        return [_why("    balance random(2)", "two random draws, the less busy wins")]
    if strategy == "consistent_hash":
        return [
            f"    # consistent_hash: the {HASH_HEADER} header, else the client address, on a hash ring",
            f"    http-request set-var(txn.hash_key) req.hdr({HASH_HEADER})",
            f"    http-request set-var(txn.hash_key) src if !{{ req.hdr({HASH_HEADER}) -m found }}",
            "    balance hash var(txn.hash_key)",
            "    hash-type consistent",
            "    # not in HAProxy: the lab's own hash function; HAProxy's ring is another, so a key may land elsewhere",
        ]
    return [
        "    balance leastconn",
        f"    # not in HAProxy: {strategy} (latency-aware, as in Envoy or Linkerd); nearest: leastconn above",
    ]


def _haproxy_health(health: HealthSettings | None) -> list[str]:
    if health is None:
        return ["    # health checks off: no `check` on the servers, every server counts as up"]
    if len(health.expect) == 1:
        expect = f"status {health.expect[0]}"
    else:
        expect = "rstatus ^(" + "|".join(str(status) for status in health.expect) + ")$"
    return [
        f"    option httpchk GET {health.path}",
        f"    http-check expect {expect}",
        _why(f"    timeout check {_haproxy_time(health.timeout)}", f"health timeout {health.timeout:g} s, to answer"),
        "    #   (HAProxy connects within min(timeout connect, inter) first; the lab's timeout covers both)",
    ]


def _haproxy_ejection_notes(ejection: EjectionSettings | None, health: HealthSettings | None) -> list[str]:
    if ejection is None:
        return []
    if health is None:
        return [
            f"    # not in HAProxy: passive ejection ({ejection.consecutive_failures} failures) without health checks;",
            "    #   `observe ... on-error mark-down` needs checks to bring a server back, so it is not written",
        ]
    return [
        f"    # passive ejection: {ejection.consecutive_failures} errors in a row mark a server down (observe)",
        f"    # not in HAProxy: an ejection time ({ejection.base_time:g} s, up to {ejection.max_time:g} s); nearest:",
        f"    #   back once it passes rise={health.rise} checks, {health.down_interval:g} s apart",
        f"    # not in HAProxy: max_ejected_percent {ejection.max_ejected_percent:g}; HAProxy may mark all down",
    ]


def _haproxy_time(seconds: float) -> str:
    milliseconds = round(seconds * 1000)
    return f"{milliseconds // 1000}s" if milliseconds % 1000 == 0 else f"{milliseconds}ms"


# --- nginx ---------------------------------------------------------------------------------------------------


def nginx_config(settings: LabSettings, runtime: RuntimeOptions | None = None) -> str:
    """The lab's ``settings`` as an ``nginx.conf`` (nginx 1.22 open source); with ``runtime``, for the lab to run.

    For the lab, nginx runs in the foreground as a master and one worker, in a process group of their own: the
    master's PID is the balancer's, and a crash is a ``kill -9`` of the group (master and worker together).
    """
    lines = _header("nginx", settings)
    if runtime is not None:
        workdir = runtime.workdir
        lines += [
            "# --- for the lab: in the foreground, its files in a temporary directory, errors on stderr",
            "daemon off;",
            f"pid {workdir / 'nginx.pid'};",
            "error_log stderr warn;",
        ]
        if os.geteuid() == 0:
            lines.append(_why("user root;", "the worker runs as the lab does (its files are the lab's)"))
    lines += ["worker_processes 1;", "events { worker_connections 1024; }", "", "http {"]
    if runtime is not None:
        workdir = runtime.workdir
        lines += [
            "    # --- for the lab: one line per request (which servers were tried, with which status) on stdout",
            '    log_format spofkit \'$msec $status "$upstream_addr" "$upstream_status" $request_time\';',
            "    access_log /dev/stdout spofkit;",
            *(f"    {kind}_temp_path {workdir / kind};" for kind in NGINX_TEMP_PATHS),
            "    # the number of servers tried, for the lab's load generator (X-Spof-Attempts, as the lab sends it)",
            "    map $upstream_addr $spof_attempts {",
            '        "~^[^,]*$" 1;',
            '        "~^[^,]*,[^,]*$" 2;',
            '        "~^[^,]*,[^,]*,[^,]*$" 3;',
            "        default 4;",
            "    }",
        ]
    else:
        lines.append("    access_log off;")
    lines += _nginx_hash_key(settings.strategy)
    lines += ["", f"    upstream {BACKEND} {{"]
    lines += _nginx_method(settings.strategy)
    lines += _nginx_health_notes(settings)
    server_options = _nginx_server_options(settings)
    backups_allowed = settings.strategy not in ("consistent_hash", "random", "power_of_two")
    if not settings.members:
        lines.append(_why("        server 127.0.0.1:9 down;", "no instances yet: nginx answers 502"))
    for member in settings.members:
        words = [f"server {member.address}"]
        if member.weight != 1:
            words.append(f"weight={member.weight}")
        if member.max_conns is not None:
            words.append(f"max_conns={member.max_conns}")
        words += server_options
        if member.backup and not backups_allowed:
            lines.append(
                f"        # not in nginx: {member.name} as a backup with {settings.strategy}; nginx allows `backup`"
                " only with round robin and least_conn, so it is left out"
            )
            lines.append(f"        # {' '.join(words)} backup;")
            continue
        if member.backup:
            words.append("backup")
        lines.append(_why(f"        {' '.join(words)};", member.name))
    lines.append(_why("        keepalive 32;", "keep-alive connections to the instances"))
    lines.append("    }")
    lines += ["", "    server {"]
    for address in settings.listen:
        lines.append(_why(f"        listen {address};", "the service address"))
    if runtime is not None and runtime.own_listen:
        lines.append(
            _why(f"        listen {runtime.own_listen};", f"for the lab: {runtime.balancer_name}'s own address")
        )
    lines += ["        location / {", f"            proxy_pass http://{BACKEND};"]
    lines += [
        "            proxy_http_version 1.1;",
        '            proxy_set_header Connection "";',
        "            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "            proxy_set_header X-Forwarded-Proto $scheme;",
    ]
    lines += _nginx_retries(settings.retries)
    if runtime is not None:
        lines.append(
            _why("            add_header X-Spof-Attempts $spof_attempts always;", "for the lab's load generator")
        )
    lines += ["        }", "    }"]
    if runtime is not None:
        lines += [
            "",
            "    # --- for the lab: a control address only the lab reaches (a Unix socket): which configuration runs",
            "    server {",
            f"        listen unix:{runtime.nginx_control_socket};",
            "        access_log off;",
            f"        location = /generation {{ return 200 '{runtime.generation}'; }}",
            "        location = /status { stub_status; }",
            "    }",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"


def _nginx_hash_key(strategy: str) -> list[str]:
    if strategy != "consistent_hash":
        return []
    variable = "$http_" + HASH_HEADER.lower().replace("-", "_")
    return [
        f"    # consistent_hash hashes the {HASH_HEADER} header, else the client address",
        f"    map {variable} $spof_hash_key {{",
        '        "" $remote_addr;',
        f"        default {variable};",
        "    }",
    ]


def _nginx_method(strategy: str) -> list[str]:
    if strategy in ("round_robin", "weighted_round_robin"):
        return ["        # round robin, weighted: nginx's default method"]
    if strategy == "least_connections":
        return ["        least_conn;"]
    if strategy == "random":
        return ["        random;"]
    if strategy == "power_of_two":
        return [_why("        random two least_conn;", "two random draws, the less busy wins")]
    if strategy == "consistent_hash":
        return [
            _why("        hash $spof_hash_key consistent;", "a ketama ring (the lab's own hash function is another)"),
        ]
    return [
        "        least_conn;",
        f"        # not in nginx: {strategy} (latency-aware; nginx Plus has least_time); nearest: least_conn",
    ]


def _nginx_health_notes(settings: LabSettings) -> list[str]:
    health = settings.health
    lines = []
    if health is not None:
        lines += [
            f"        # not in nginx: active health checks (GET {health.path} every {health.interval:g} s, timeout "
            f"{health.timeout:g} s, rise {health.rise}, fall {health.fall},",
            f"        #   expect {', '.join(str(s) for s in health.expect)}): nginx Plus has `health_check`, the open "
            "source nginx has none.",
            "        #   Nearest: the passive max_fails / fail_timeout on each server below, counted from real",
            "        #   requests (per worker process): a dead instance costs real requests before nginx leaves it.",
        ]
        if health.jitter:
            lines.append(f"        # not in nginx: health jitter {health.jitter:g} (there are no checks to spread)")
    ejection = settings.ejection
    if ejection is not None:
        lines += [
            f"        # passive ejection: {ejection.consecutive_failures} failures within fail_timeout="
            f"{_nginx_time(ejection.base_time)} and a server is left alone for fail_timeout",
            f"        # not in nginx: ejection growing to {ejection.max_time:g} s, and max_ejected_percent "
            f"{ejection.max_ejected_percent:g}",
            "        #   (nginx: always fail_timeout; when every server has failed, it tries them all again)",
        ]
    elif health is not None:
        lines.append(
            f"        # nearest to the checks: fall={health.fall} failures -> max_fails={health.fall}, and the time a "
            f"dead instance stays out ~ rise x downinter = {_nginx_time(health.rise * health.down_interval)}"
        )
    else:
        lines.append(
            "        # no health checks, no ejection: max_fails=0, nginx never stops sending to a failing server"
        )
    if settings.slow_start:
        lines.append(
            f"        # not in nginx: slow_start {settings.slow_start:g} s (`slow_start=` is nginx Plus only); nearest:"
            " none, a returning server gets its full share at once"
        )
    return lines


def nginx_passive_limits(settings: LabSettings) -> tuple[int, float]:
    """(max_fails, fail_timeout in seconds) nginx gets for the lab's settings; max_fails 0: never put out.

    From passive ejection if it is on (consecutive failures, base time); else the nearest to the health checks:
    ``fall`` failures, out for about ``rise`` x ``downinter`` (when the lab would have seen it pass again).
    """
    if settings.ejection is not None:
        return settings.ejection.consecutive_failures, settings.ejection.base_time
    if settings.health is not None:
        return settings.health.fall, settings.health.rise * settings.health.down_interval
    return 0, 10.0


def _nginx_server_options(settings: LabSettings) -> list[str]:
    max_fails, fail_timeout = nginx_passive_limits(settings)
    if max_fails == 0:
        return ["max_fails=0"]
    return [f"max_fails={max_fails}", f"fail_timeout={_nginx_time(fail_timeout)}"]


def _nginx_retries(retries: RetrySettings | None) -> list[str]:
    per_try = retries.per_try_timeout if retries else SINGLE_ATTEMPT_TIMEOUT
    lines = [
        _why(
            f"            proxy_connect_timeout {_nginx_time(per_try)};", f"per-try timeout {per_try:g} s: to connect,"
        ),
        f"            proxy_send_timeout {_nginx_time(per_try)};",
        _why(f"            proxy_read_timeout {_nginx_time(per_try)};", "and between two reads of the answer"),
        "            # not in nginx: a per-try timeout for the whole answer; proxy_read_timeout restarts at every",
        "            #   read (the same for an answer's head, longer for a slowly streamed body)",
    ]
    if retries is None:
        return [*lines, _why("            proxy_next_upstream off;", "retries off: one attempt")]
    reasons = sorted({NGINX_NEXT_UPSTREAM[kind] for kind in (CONNECT, RESET, TIMEOUT) if kind in retries.retry_on})
    if STATUS in retries.retry_on:
        reasons += [f"http_{status}" for status in sorted(retries.retry_statuses) if status in NGINX_STATUSES]
        other = sorted(status for status in retries.retry_statuses if status not in NGINX_STATUSES)
        if other:
            lines.append(f"            # not in nginx: retrying on status {other}; nginx names 500, 502-504, 429 only")
    if CONNECT in retries.retry_on and RESET not in retries.retry_on:
        lines.append("            # not in nginx: retrying a refused connect but not a reset; `error` covers both")
    lines += [
        f"            proxy_next_upstream {' '.join(reasons) or 'off'};",
        _why(f"            proxy_next_upstream_tries {retries.max_attempts};", "max_attempts, the first try included"),
        _why(
            f"            proxy_next_upstream_timeout {_nginx_time(retries.deadline)};",
            "the deadline, all tries together",
        ),
        "            # The lab's idempotency rule is nginx's own: a POST that was sent does not go to the next server",
        "            # (unless `non_idempotent` is added to proxy_next_upstream).",
        f"            # not in nginx: the retry budget ({retries.budget_ratio:.0%} extra load + "
        f"{retries.budget_min_per_second:g}/s over {retries.budget_window:g} s); nearest:",
        "            #   proxy_next_upstream_tries bounds each request's tries, nothing bounds them all together",
    ]
    return lines


def _nginx_time(seconds: float) -> str:
    milliseconds = round(seconds * 1000)
    return f"{milliseconds // 1000}s" if milliseconds % 1000 == 0 else f"{milliseconds}ms"


COMMENT_COLUMN = 52  # where a line's "# why" starts, so the configuration reads as two columns


def _why(directive: str, why: str) -> str:
    """``directive`` with the lab setting it comes from as a comment beside it, in the comment column."""
    return f"{directive:<{COMMENT_COLUMN - 1}} # {why}"


def _header(target: str, settings: LabSettings) -> list[str]:
    mark = f"not in {target}"
    return [
        f"# {target} configuration written by spofkit {__version__} (spofkit export) from {settings.source}.",
        f"# Each line says which lab setting it comes from; a lab setting {target} has no word for is a comment",
        f'# starting "{mark}:" that says what the nearest is.',
        f"# strategy {settings.strategy}; health checks {_on(settings.health)}, retries {_on(settings.retries)}, "
        f"passive ejection {_on(settings.ejection)}; slow_start {settings.slow_start:g} s",
        "",
    ]


def _on(setting: object) -> str:
    return "off" if setting is None else "on"


def config_for(target: str, settings: LabSettings, runtime: RuntimeOptions | None = None) -> str:
    """:func:`haproxy_config` or :func:`nginx_config`, by name."""
    if target == "haproxy":
        return haproxy_config(settings, runtime)
    if target == "nginx":
        return nginx_config(settings, runtime)
    raise ExportError("target", f"export target must be one of {TARGETS}, got {target!r}")


# --- the real binaries ----------------------------------------------------------------------------------------


def find_binary(name: str) -> str:
    """The path of ``haproxy``, ``nginx`` or ``keepalived``; :class:`ProxyNotInstalled` says how to get it."""
    found = shutil.which(name) or (BINARIES[name] if os.access(BINARIES.get(name, ""), os.X_OK) else None)
    if found is None:
        raise ProxyNotInstalled(
            f"{name} is not installed here: it comes from the Debian package {name!r} "
            f"(sudo apt-get install -y {name}); `make test` installs it when run as root"
        )
    return found


@dataclass(frozen=True)
class Validation:
    """What the real binary said of a configuration: ``ok``, its words, and the command that was run."""

    ok: bool
    output: str
    command: tuple[str, ...]


def validate(target: str, text: str) -> Validation:
    """Run ``haproxy -c -f`` or ``nginx -t`` on ``text`` (in a temporary directory) and say what it found."""
    binary = find_binary(target)
    with tempfile.TemporaryDirectory(prefix=f"spofkit-check-{target}-") as folder:
        path = Path(folder) / ("haproxy.cfg" if target == "haproxy" else "nginx.conf")
        path.write_text(text)
        if target == "haproxy":
            command = [binary, "-c", "-f", str(path)]
        else:
            # -p and -e keep nginx's own files (its default error log) in the folder, not in /var/log.
            command = [binary, "-t", "-q", "-p", folder, "-e", str(Path(folder) / "error.log"), "-c", str(path)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=VALIDATE_TIMEOUT)
    return Validation(done.returncode == 0, (done.stdout + done.stderr).strip(), tuple(command))


# --- where the settings come from --------------------------------------------------------------------------------


def settings_from_scenario(path: str | Path, *, first_port: int = 9001) -> LabSettings:
    """The settings of a scenario file (TOML): ``[lab]`` instances, backups, strategy, slow_start, port;
    ``[health]``, ``[retries]``, ``[ejection]`` with the fields of the lab's settings, or ``health = false`` etc.

    A scenario's load, faults and failures are the experiment, not the proxy, and are not exported. An unknown key
    in the tables above is an :class:`ExportError` naming it.
    """
    data = _read_toml(Path(path))
    lab = data.get("lab", {})
    if not isinstance(lab, Mapping):
        raise ExportError("lab", "[lab] must be a table")
    known_lab = {"instances", "backups", "strategy", "slow_start", "port", "work_ms", "concurrency", "queue"}
    unknown = sorted(set(lab) - known_lab)
    if unknown:
        raise ExportError(f"lab.{unknown[0]}", f"unknown key lab.{unknown[0]}; known: {sorted(known_lab)}")
    instances = _whole(lab.get("instances", 3), "lab.instances")
    backups = _whole(lab.get("backups", 0), "lab.backups")
    port = _whole(lab.get("port", 8080), "lab.port")
    strategy = str(lab.get("strategy", "round_robin")).strip().lower().replace("-", "_")
    slow_start = lab.get("slow_start", 0.0)
    return LabSettings.for_instances(
        instances,
        backups=backups,
        first_port=first_port,
        strategy=strategy,
        health=_section(data, "health", HealthSettings),
        retries=_section(data, "retries", RetrySettings),
        ejection=_section(data, "ejection", EjectionSettings),
        slow_start=float(slow_start),
        listen=(f"127.0.0.1:{port}",),
        source=f"the scenario {Path(path).name}",
    )


def _read_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib  # type: ignore[import-not-found, no-redef, unused-ignore]
        except ImportError:
            raise ExportError("scenario", "reading a scenario file on Python 3.10 needs `pip install tomli`") from None
    try:
        with path.open("rb") as file:
            return dict(tomllib.load(file))
    except OSError as error:
        raise ExportError("scenario", f"cannot read the scenario {str(path)!r}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ExportError("scenario", f"the scenario {path.name} is not valid TOML: {error}") from None


def _section(data: Mapping[str, Any], name: str, kind: Any) -> Any:
    """``[name]`` as ``kind(**fields)``; ``name = false`` switches it off; absent: the lab's default."""
    value = data.get(name, {})
    if value is False:
        return None
    if value is True:
        value = {}
    if not isinstance(value, Mapping):
        raise ExportError(name, f"{name} must be a table [{name}] or false, got {value!r}")
    known = {f.name for f in dataclasses.fields(kind)}
    for key in value:
        if key not in known:
            raise ExportError(f"{name}.{key}", f"unknown key {name}.{key}; known: {sorted(known)}")
    fields = dict(value)
    for key in ("expect",):
        if key in fields and isinstance(fields[key], list):
            fields[key] = tuple(fields[key])
    for key in ("retry_on", "retry_statuses"):
        if key in fields and isinstance(fields[key], list):
            fields[key] = frozenset(fields[key])
    try:
        return kind(**fields)
    except (TypeError, ValueError) as error:
        raise ExportError(name, f"[{name}]: {error}") from None


def _whole(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ExportError(name, f"{name} must be a whole number, got {value!r}")
    return value
