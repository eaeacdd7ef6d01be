"""The admin API: the lab's control panel over HTTP, so other programs can watch it and break it.

Real load balancers are run through an admin endpoint like this one (HAProxy's stats socket,
Envoy's ``/clusters``, a Prometheus ``/metrics`` page). Here it lets a second terminal, a browser,
``curl`` or the TUI's *attach* mode watch the lab that ``spofkit serve`` runs, and break it::

    GET    /status                   the lab's status snapshot (JSON)
    GET    /metrics                  Prometheus text format: per-instance and balancer counters
    GET    /events                   server-sent events, one ``data: {json}`` per event;
                                     ?history=1 replays recent events first; ?all=1 adds the
                                     high-volume kinds HealthProbe, RequestCompleted, ClientRequest
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

Mistakes are answered, they never crash the lab: an unknown instance is a 404, a bad body a 400,
both as JSON ``{"error": "...", "field": "..."}`` naming what was wrong.

The server listens on 127.0.0.1 only, and refuses requests whose ``Host`` or ``Origin`` is not
local: a web page open in your browser must not be able to crash your instances (DNS rebinding,
cross-site POSTs).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from spofkit.events import Event
from spofkit.faults import FaultError, make_fault

if TYPE_CHECKING:
    from spofkit.lab import Lab, LabStatus

# Emitted many times a second under load; a stream carries them only when asked (?all=1).
HIGH_VOLUME_KINDS = frozenset({"HealthProbe", "RequestCompleted", "ClientRequest"})
# How often an idle event stream checks that its client is still there, and sends it a comment line.
STREAM_CHECK_SECONDS = 1.0
STREAM_KEEPALIVE_SECONDS = 15.0
# Names that make a clean URL path segment and Prometheus label.
INSTANCE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
SETTINGS = ("retries", "health_checks", "ejection")
# States in which an instance gets traffic ("falling": failing checks, not yet marked down).
SERVING_STATES = ("up", "falling")
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """A request the API answers with ``status`` and ``{"error": message, "field": field}``."""

    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.field = field
        self.message = message


class AdminServer:
    """An aiohttp app serving the admin API for ``lab`` on ``host:port`` (0 = any free port)."""

    def __init__(self, lab: Lab, host: str = "127.0.0.1", port: int = 0) -> None:
        if host != "127.0.0.1":
            raise ValueError(f"host must be '127.0.0.1' (the admin API is local only), got {host!r}")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise ValueError(f"port must be a whole number 0..65535, got {port!r}")
        self.lab = lab
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        self._streams: set[asyncio.Task[Any]] = set()
        self._removing: set[str] = set()  # instances being drained by a DELETE

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(middlewares=[self._local_only, self._errors_as_json])
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
        except FaultError as error:
            return _error(400, error.field, str(error))
        except KeyError as error:  # the instance went away between our check and the lab's
            return _error(404, "name", str(error.args[0] if error.args else error))
        except ValueError as error:
            return _error(400, "body", str(error))
        except web.HTTPException as error:
            if error.status >= 400:  # e.g. 404 for an unknown path, 405 for a wrong method
                return _error(error.status, "path", f"{error.reason}: {request.method} {request.path}")
            raise

    # --- reading ----------------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.Response:
        routes = sorted({f"{r.method} {r.resource.canonical}" for r in request.app.router.routes() if r.resource})
        return web.json_response({"spofkit admin": self.url, "routes": [r for r in routes if "HEAD" not in r]})

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(self.lab.status().as_dict())

    async def metrics(self, request: web.Request) -> web.Response:
        balancer = self.lab.balancer
        text = prometheus_text(self.lab.status(), balancer.requests, balancer.retried, balancer.failed)
        return web.Response(body=text.encode(), headers={"Content-Type": PROMETHEUS_CONTENT_TYPE})

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: ``data: {"kind": "InstanceDown", "at": 3.2, ...}`` per event."""
        everything = _flag(request, "all")

        def wanted(event: Event) -> bool:
            return everything or event.kind not in HIGH_VOLUME_KINDS

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

    # --- instances --------------------------------------------------------------------------------

    def _known(self, request: web.Request) -> str:
        name = request.match_info["name"]
        if name not in self.lab.instances:
            raise ApiError(404, "name", f"no instance named {name!r}; known: {sorted(self.lab.instances)}")
        return name

    async def inject(self, request: web.Request) -> web.Response:
        name = self._known(request)
        body = await _json_object(request)
        kind = body.pop("kind", None)
        if not isinstance(kind, str):
            raise ApiError(400, "kind", f'body must name the fault: {{"kind": "crash"}}, got kind={kind!r}')
        # make_fault raises FaultError naming the field, before anything is touched.
        fault = make_fault(kind, **body)
        await self.lab.inject(name, kind, **body)
        return web.json_response({"instance": name, "fault": fault.kind, "params": fault.params()})

    async def recover(self, request: web.Request) -> web.Response:
        name = self._known(request)
        await self.lab.recover(name)
        return web.json_response(self._instance_dict(name))

    async def restart(self, request: web.Request) -> web.Response:
        name = self._known(request)
        await self.lab.restart(name)
        return web.json_response(self._instance_dict(name))

    async def add_instance(self, request: web.Request) -> web.Response:
        body = await _json_object(request, required=False)
        _only(body, ("name", "backup", "weight"))
        name = body.get("name")
        if name is not None and (not isinstance(name, str) or not INSTANCE_NAME.match(name)):
            raise ApiError(400, "name", f"name must be 1-32 of a-z 0-9 _ - (starting a-z0-9), got {name!r}")
        if name in self.lab.instances:
            raise ApiError(409, "name", f"instance name {name!r} is already in use")
        backup = body.get("backup", False)
        if not isinstance(backup, bool):
            raise ApiError(400, "backup", f"backup must be true or false, got {backup!r}")
        weight = body.get("weight", 1)
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 256:
            raise ApiError(400, "weight", f"weight must be a whole number 0..256, got {weight!r}")
        added = await self.lab.add_instance(name, backup=backup, weight=weight)
        return web.json_response({"name": added, **self._instance_dict(added)}, status=201)

    async def remove_instance(self, request: web.Request) -> web.Response:
        name = self._known(request)
        if name in self._removing:
            raise ApiError(409, "name", f"instance {name!r} is already being removed")
        self._removing.add(name)
        try:
            await self.lab.remove_instance(name)
        finally:
            self._removing.discard(name)
        return web.json_response({"removed": name})

    def _instance_dict(self, name: str) -> dict[str, Any]:
        return dict(vars(self.lab.status().instance(name)))

    # --- switches ---------------------------------------------------------------------------------

    async def set_strategy(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        _only(body, ("strategy",))
        strategy = body.get("strategy")
        if not isinstance(strategy, str):
            raise ApiError(400, "strategy", f'strategy must be a name such as "round_robin", got {strategy!r}')
        try:
            self.lab.set_strategy(strategy)
        except ValueError as error:
            raise ApiError(400, "strategy", str(error)) from None
        return web.json_response({"strategy": self.lab.status().strategy})

    async def set_settings(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        _only(body, SETTINGS)
        for key, value in body.items():  # check all before changing any
            if not isinstance(value, bool):
                raise ApiError(400, key, f"{key} must be true or false, got {value!r}")
        if "retries" in body:
            self.lab.set_retries(body["retries"])
        if "ejection" in body:
            self.lab.set_ejection(body["ejection"])
        if "health_checks" in body:
            await self.lab.set_health_checks(body["health_checks"])
        status = self.lab.status()
        return web.json_response({key: getattr(status, key) for key in SETTINGS})

    async def set_load(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        _only(body, ("rate", "paused"))
        rate, paused = body.get("rate"), body.get("paused")
        if rate is not None and (
            isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 10000
        ):
            raise ApiError(400, "rate", f"rate must be a number of requests/s 0..10000, got {rate!r}")
        if paused is not None and not isinstance(paused, bool):
            raise ApiError(400, "paused", f"paused must be true or false, got {paused!r}")
        if rate == 0:
            await self.lab.stop_background_load()
        elif rate is not None:
            if self.lab.status().load_rate is None:
                # The generator takes its rate when its task first runs; set it now so that this
                # answer (and any status read before then) already shows it.
                self.lab.start_background_load(rate).rate = rate
            else:
                self.lab.set_load_rate(rate)
        if paused is True:
            self.lab.pause_load()
        elif paused is False:
            self.lab.resume_load()
        status = self.lab.status()
        return web.json_response({"load_rate": status.load_rate, "load_paused": status.load_paused})


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
    if not isinstance(body, dict):
        raise ApiError(400, "body", f"body must be a JSON object, got {type(body).__name__}")
    return body


def _not_json(constant: str) -> Any:
    # Python's json module reads NaN and Infinity; JSON (RFC 8259) has no such numbers, and they slip past checks.
    raise ValueError(f"{constant} is not a JSON number")


def _only(body: dict[str, Any], allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    for key in body:
        if key not in allowed:
            raise ApiError(400, key, f"unknown field {key!r} (allowed: {', '.join(allowed)})")


def event_json(event: Event) -> str:
    """One event as JSON: ``{"kind": ..., "at": ..., **fields}`` (odd values become strings)."""
    fields = vars(event) | {"at": round(event.at, 4)}  # a tenth of a millisecond is precise enough
    return json.dumps({"kind": event.kind, **fields}, default=str)


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
