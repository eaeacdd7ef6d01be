"""The admin API: the lab's control panel over HTTP, so other programs can watch it and break it.

Real load balancers are run through an admin endpoint like this one (HAProxy's stats socket,
Envoy's ``/clusters``, a Prometheus ``/metrics`` page). Here it lets a second terminal, a browser,
``curl`` or the TUI's *attach* mode watch the lab that ``spofkit serve`` runs, and break it::

    GET    /status                   the lab's status snapshot (JSON)
    GET    /metrics                  Prometheus text format: per-instance and balancer counters
    GET    /events                   server-sent events, one ``data: {json}`` per event;
                                     ?history=1 replays recent events first; ?all=1 adds the
                                     per-request and per-probe kinds (events.PER_REQUEST_KINDS)
    POST   /instances/{name}/fault   {"kind": "slow", "ms": 200}
    POST   /instances/{name}/recover
    POST   /instances/{name}/restart
    POST   /instances                {"name": "d", "backup": false, "weight": 1} (optional) -> 201
    DELETE /instances/{name}         drain, then remove
    PUT    /strategy                 {"strategy": "least_connections"}
    PUT    /settings                 any of {"retries": true, "health_checks": true,
                                     "ejection": true}
    PUT    /load                     {"rate": 100} starts or changes background load,
                                     {"rate": 0} stops it, {"paused": true} pauses it
    POST   /deploy                   {"batch": 1} rolling restart; {"how": "all-at-once"} the naive way;
                                     {"target": "balancers"} upgrade the pair by planned takeover
    POST   /balancers/{name}/fault   {"kind": "crash" | "hang" | "advert_loss"}: break a balancer
    POST   /balancers/{name}/recover · POST /balancers/{name}/restart

    POST   /commands                 any command as {"command": "InjectFault", ...} (see spofkit.wire)

Every changing call becomes a :mod:`command <spofkit.commands>` and goes through ``Lab.apply``: one at a
time, in order, with one code path whoever sends it.

Mistakes are answered, they never crash the lab: an unknown instance is a 404, a name taken or a
limit reached a 409, a bad body a 400, all as JSON ``{"error": "...", "field": "..."}`` naming what
was wrong.

**Who may change the lab.** Reads (``GET``) are open on 127.0.0.1. Changing calls need the admin
token, as Jupyter needs its token: ``Authorization: Bearer TOKEN``, else 401. ``spofkit serve``
takes ``--admin-token`` or ``SPOFKIT_ADMIN_TOKEN``, or makes one up; it prints it and writes it to
``~/.spofkit/admin-PORT.token``, readable by you only, where ``spofkit tui --connect`` and ``curl``
find it. On a shared classroom machine, another user cannot crash your lab.

The server listens on 127.0.0.1 only, and refuses requests whose ``Host`` or ``Origin`` is not
local: a web page open in your browser must not be able to crash your instances (DNS rebinding,
cross-site POSTs).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import os
import secrets
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from spofkit.commands import Command, CommandError
from spofkit.events import PER_REQUEST_KINDS, Event
from spofkit.faults import FaultError
from spofkit.status import SERVING_STATES
from spofkit.wire import command_from_dict, command_from_request, event_to_dict, status_to_dict

if TYPE_CHECKING:
    from spofkit.lab import Lab, LabStatus

# How often an idle event stream checks that its client is still there, and sends it a comment line.
STREAM_CHECK_SECONDS = 1.0
STREAM_KEEPALIVE_SECONDS = 15.0
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# A command is a few hundred bytes; anything much bigger is a mistake or an attack.
MAX_BODY_BYTES = 64 * 1024
TOKEN_ENV = "SPOFKIT_ADMIN_TOKEN"
CHANGING_METHODS = frozenset({"POST", "PUT", "DELETE", "PATCH"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def token_file(port: int) -> Path:
    """Where ``spofkit serve`` leaves the admin token of the API on ``port`` (readable by its user only)."""
    return Path.home() / ".spofkit" / f"admin-{port}.token"


def write_token_file(port: int, token: str) -> Path:
    path = token_file(port)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(token + "\n")
    path.chmod(0o600)  # also when the file was there already, with other rights
    return path


def find_token(port: int | None) -> str | None:
    """The token a client should send: ``SPOFKIT_ADMIN_TOKEN``, else the token file for ``port``, else None."""
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV]
    if port is None:
        return None
    try:
        return token_file(port).read_text().strip() or None
    except OSError:
        return None


class ApiError(Exception):
    """A request the API answers with ``status`` and ``{"error": message, "field": field}``."""

    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.field = field
        self.message = message


class AdminServer:
    """An aiohttp app serving the admin API for ``lab`` on ``host:port`` (0 = any free port)."""

    def __init__(self, lab: Lab, host: str = "127.0.0.1", port: int = 0, *, token: str | None = None) -> None:
        if host != "127.0.0.1":
            raise ValueError(f"host must be '127.0.0.1' (the admin API is local only), got {host!r}")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise ValueError(f"port must be a whole number 0..65535, got {port!r}")
        if token is not None and len(token) < 8:
            raise ValueError("an admin token must be at least 8 characters")
        self.lab = lab
        self.host = host
        self.port = port
        self.token = token or secrets.token_urlsafe(24)
        self._runner: web.AppRunner | None = None
        self._streams: set[asyncio.Task[Any]] = set()

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(
            middlewares=[self._local_only, self._errors_as_json, self._token_for_changes],
            client_max_size=MAX_BODY_BYTES,
        )
        app.router.add_get("/", self.index)
        app.router.add_get("/status", self.status)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/events", self.events)
        app.router.add_post("/instances", self.add_instance)
        app.router.add_delete("/instances/{name}", self.remove_instance)
        app.router.add_post("/instances/{name}/fault", self.inject)
        app.router.add_post("/instances/{name}/recover", self.recover)
        app.router.add_post("/instances/{name}/restart", self.restart)
        app.router.add_put("/strategy", self.set_strategy)
        app.router.add_put("/settings", self.set_settings)
        app.router.add_put("/load", self.set_load)
        app.router.add_post("/commands", self.command)
        app.router.add_post("/deploy", self.deploy)
        app.router.add_post("/balancers/{name}/fault", self.balancer_fault)
        app.router.add_post("/balancers/{name}/recover", self.balancer_recover)
        app.router.add_post("/balancers/{name}/restart", self.balancer_restart)
        # Event streams stay open until the client goes: stopping gives them a short grace, not aiohttp's 60 s.
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]  # the port the system picked when asked for 0

    async def stop(self) -> None:
        """Close open event streams, then the server. Safe to call twice."""
        for task in list(self._streams):
            task.cancel()
        if self._runner:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def open_streams(self) -> int:
        """How many ``/events`` clients are connected right now."""
        return len(self._streams)

    async def __aenter__(self) -> AdminServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # --- middlewares ------------------------------------------------------------------------------

    @web.middleware
    async def _local_only(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        local = {f"127.0.0.1:{self.port}", f"localhost:{self.port}"}
        if request.host not in local:
            raise web.HTTPForbidden(text=f"admin API answers only to Host {sorted(local)}\n")
        origin = request.headers.get("Origin")
        if origin is not None and origin not in {f"http://{h}" for h in local}:
            raise web.HTTPForbidden(text=f"cross-origin request from {origin!r} refused\n")
        return await handler(request)

    @web.middleware
    async def _errors_as_json(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as error:
            return _error(error.status, error.field, error.message)
        except CommandError as error:
            return _error(error.status, error.field, error.message)
        except FaultError as error:
            return _error(400, error.field, str(error))
        except KeyError as error:  # the instance went away between our check and the lab's
            return _error(404, "name", str(error.args[0] if error.args else error))
        except ValueError as error:  # a value the command checks did not foresee: still the caller's mistake
            return _error(400, "body", str(error))
        except web.HTTPException as error:
            if error.status == 413:
                return _error(413, "body", f"body is larger than {MAX_BODY_BYTES} bytes")
            if error.status >= 400:  # e.g. 404 for an unknown path, 405 for a wrong method
                return _error(error.status, "path", f"{error.reason}: {request.method} {request.path}")
            raise

    @web.middleware
    async def _token_for_changes(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method in CHANGING_METHODS:
            given = request.headers.get("Authorization", "")
            scheme, _, token = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.token.encode()):
                where = f"~/.spofkit/admin-{self.port}.token or {TOKEN_ENV}"
                message = f"changing the lab needs the admin token: send Authorization: Bearer TOKEN ({where})"
                return _error(401, "authorization", message)
        return await handler(request)

    # --- reading ----------------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.Response:
        routes = sorted({f"{r.method} {r.resource.canonical}" for r in request.app.router.routes() if r.resource})
        return web.json_response({"spofkit admin": self.url, "routes": [r for r in routes if "HEAD" not in r]})

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(status_to_dict(self.lab.status()))

    async def metrics(self, request: web.Request) -> web.Response:
        status = self.lab.status()
        serving = status.balancers[0]
        text = prometheus_text(status, serving.requests, serving.retried, serving.failed)
        return web.Response(body=text.encode(), headers={"Content-Type": PROMETHEUS_CONTENT_TYPE})

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: ``data: {"kind": "InstanceDown", "at": 3.2, ...}`` per event."""
        everything = _flag(request, "all")

        def wanted(event: Event) -> bool:
            return everything or event.kind not in PER_REQUEST_KINDS

        # Subscribe before replaying history, so no event falls between the two.
        queue, unsubscribe = self.lab.events.queue()
        backlog = list(self.lab.events.history) if _flag(request, "history") else []
        task = asyncio.current_task()
        assert task is not None
        self._streams.add(task)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        try:
            await response.prepare(request)
            await _send_events(response, (e for e in backlog if wanted(e)))
            idle = 0.0
            while request.transport is not None and not request.transport.is_closing():
                try:
                    event = await asyncio.wait_for(queue.get(), STREAM_CHECK_SECONDS)
                except asyncio.TimeoutError:
                    idle += STREAM_CHECK_SECONDS
                    if idle >= STREAM_KEEPALIVE_SECONDS:
                        await response.write(b": keep-alive\n\n")
                        idle = 0.0
                    continue
                idle = 0.0
                batch = [event] + [queue.get_nowait() for _ in range(queue.qsize())]
                await _send_events(response, (e for e in batch if wanted(e)))
        except ConnectionResetError:
            pass  # the client went away (stop() cancels the task instead: that ends it too)
        finally:
            unsubscribe()
            self._streams.discard(task)
        return response

    # --- changing the lab: every call is a command ------------------------------------------------

    async def _apply(self, command: Command, status: int = 200) -> web.Response:
        return web.json_response(await self.lab.apply(command), status=status)

    async def inject(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        return await self._apply(command_from_request("fault", body, request.match_info["name"]))

    async def recover(self, request: web.Request) -> web.Response:
        body = await _json_object(request, required=False)
        return await self._apply(command_from_request("recover", body, request.match_info["name"]))

    async def restart(self, request: web.Request) -> web.Response:
        body = await _json_object(request, required=False)
        return await self._apply(command_from_request("restart", body, request.match_info["name"]))

    async def add_instance(self, request: web.Request) -> web.Response:
        body = await _json_object(request, required=False)
        return await self._apply(command_from_request("add", body), status=201)

    async def remove_instance(self, request: web.Request) -> web.Response:
        body = await _json_object(request, required=False)
        return await self._apply(command_from_request("remove", body, request.match_info["name"]))

    async def set_strategy(self, request: web.Request) -> web.Response:
        return await self._apply(command_from_request("strategy", await _json_object(request)))

    async def set_settings(self, request: web.Request) -> web.Response:
        return await self._apply(command_from_request("settings", await _json_object(request)))

    async def set_load(self, request: web.Request) -> web.Response:
        return await self._apply(command_from_request("load", await _json_object(request)))

    async def deploy(self, request: web.Request) -> web.Response:
        body = await _json_object(request, required=False)
        return await self._apply(command_from_request("deploy", body))

    async def balancer_fault(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        return await self._apply(command_from_request("balancer_fault", body, request.match_info["name"]))

    async def balancer_recover(self, request: web.Request) -> web.Response:
        body = await _json_object(request, required=False)
        return await self._apply(command_from_request("balancer_recover", body, request.match_info["name"]))

    async def balancer_restart(self, request: web.Request) -> web.Response:
        body = await _json_object(request, required=False)
        return await self._apply(command_from_request("balancer_restart", body, request.match_info["name"]))

    async def command(self, request: web.Request) -> web.Response:
        """Any command, spelled as :mod:`spofkit.wire` spells it."""
        return await self._apply(command_from_dict(await _json_object(request)))


# --- helpers --------------------------------------------------------------------------------------


def _error(status: int, field: str, message: str) -> web.Response:
    return web.json_response({"error": message, "field": field}, status=status)


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "0").lower() in ("1", "true", "yes", "on")


async def _json_object(request: web.Request, *, required: bool = True) -> dict[str, Any]:
    """The request body as a JSON object; an empty body is ``{}`` when the body is optional."""
    text = await request.text()
    if not text.strip():
        if required:
            raise ApiError(400, "body", "this endpoint needs a JSON object body")
        return {}
    try:
        body = json.loads(text, parse_constant=_not_json)
    except ValueError as error:
        raise ApiError(400, "body", f"body is not valid JSON: {error}") from None
    except RecursionError:  # [[[[...]]]] thousands deep: valid JSON, but no command looks like that
        raise ApiError(400, "body", "body is nested too deeply to be a command") from None
    if not isinstance(body, dict):
        raise ApiError(400, "body", f"body must be a JSON object, got {type(body).__name__}")
    return body


def _not_json(constant: str) -> Any:
    # Python's json module reads NaN and Infinity; JSON (RFC 8259) has no such numbers, and they slip past checks.
    raise ValueError(f"{constant} is not a JSON number")


def event_json(event: Event) -> str:
    """One event as JSON, as :func:`spofkit.wire.event_to_dict` spells it (odd values become strings)."""
    return json.dumps(event_to_dict(event), default=str)


async def _send_events(response: web.StreamResponse, events: Iterable[Event]) -> None:
    chunk = "".join(f"data: {event_json(event)}\n\n" for event in events)
    if chunk:
        await response.write(chunk.encode())


# --- Prometheus -----------------------------------------------------------------------------------


def prometheus_text(status: LabStatus, requests: int, retried: int, failed: int) -> str:
    """The lab in Prometheus text exposition format 0.0.4: ``# HELP``, ``# TYPE``, then samples."""
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str, samples: Iterable[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{labels} {_number(value)}" for labels, value in samples)

    rows = status.instances
    label = {row.name: f'{{instance="{_label_value(row.name)}"}}' for row in rows}
    family(
        "spofkit_instance_up",
        "gauge",
        "1 if the balancer may send the instance traffic, else 0.",
        [(label[r.name], 1 if r.state in SERVING_STATES else 0) for r in rows],
    )
    family(
        "spofkit_instance_in_flight",
        "gauge",
        "Requests the instance is handling right now.",
        [(label[r.name], r.in_flight) for r in rows],
    )
    family(
        "spofkit_instance_served_total",
        "counter",
        "Requests the instance answered successfully.",
        [(label[r.name], r.served) for r in rows],
    )
    family(
        "spofkit_instance_failed_total",
        "counter",
        "Attempts on the instance that failed.",
        [(label[r.name], r.failed) for r in rows],
    )
    family(
        "spofkit_requests_total",
        "counter",
        "Client requests the balancer received.",
        [("", requests)],
    )
    family(
        "spofkit_retries_total",
        "counter",
        "Attempts the balancer retried on another instance.",
        [("", retried)],
    )
    family(
        "spofkit_failed_requests_total",
        "counter",
        "Client requests the balancer could not serve.",
        [("", failed)],
    )
    return "\n".join(lines) + "\n"


def _label_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    return str(value)
