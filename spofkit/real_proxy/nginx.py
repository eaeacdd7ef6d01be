"""nginx (open source) as the lab's balancer: reconfigured by SIGHUP, observed through its logs.

nginx has no active health checks and no runtime API, so the lab observes its passive behaviour. Its error log says
"upstream server temporarily disabled" when ``max_fails`` failures put a server out for ``fail_timeout``; its access
log (one line per request, every server tried and its status) shows the retries, and the first answer from a server
that was out shows it is back. It runs as a master and one worker, in a process group of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import signal
from pathlib import Path
from typing import Any

from spofkit.events import EventBus, InstanceDown, InstanceDraining, InstanceUp
from spofkit.export import NGINX_TEMP_PATHS, nginx_config, nginx_passive_limits
from spofkit.real_proxy.base import CONTROL_TIMEOUT, HOST, ProxyProcess, RealProxyNode, _accepts, _Member
from spofkit.status import DOWN, UP, MemberView

# An access log line of the lab's format: "$msec $status "$upstream_addr" "$upstream_status" $request_time".
_NGINX_ACCESS = re.compile(r'^(?P<msec>[\d.]+) (?P<status>\d{3}) "(?P<addrs>[^"]*)" "(?P<statuses>[^"]*)" ')
# An error log line naming an upstream server: its complaint, and the server's address.
_NGINX_ERROR = re.compile(
    r'\[(?P<level>\w+)\] \d+#\d+: (?:\*\d+ )?(?P<text>.*?), client: .*upstream: "http://(?P<addr>[^/"]+)'
)
_NGINX_DISABLED = "upstream server temporarily disabled"


@dataclasses.dataclass
class _NginxSeen:
    """What nginx's logs told of one server: answers, failures, and whether nginx has put it out."""

    served: int = 0
    failed: int = 0
    out: bool = False
    last_error: str = ""


class NginxNode(RealProxyNode):
    """nginx (open source) as the lab's balancer: one process, reconfigured by SIGHUP, observed through its logs."""

    kind = "nginx"

    def __init__(self, name: str, events: EventBus, **settings: Any) -> None:
        super().__init__(name, events, **settings)
        self.generation = 0
        self.seen: dict[str, _NginxSeen] = {}
        self.requests = 0
        self.retried = 0
        self.failed = 0

    def config_text(self) -> str:
        return nginx_config(self.settings(), self.runtime(self.generation))

    async def control(self, path: str) -> str:
        """GET ``path`` on the lab's control socket (a Unix socket only the lab reaches)."""
        socket_path = str(self.runtime().nginx_control_socket)
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(socket_path), CONTROL_TIMEOUT)
        try:
            writer.write(f"GET {path} HTTP/1.0\r\nHost: spofkit\r\n\r\n".encode())
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), CONTROL_TIMEOUT)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return answer.decode(errors="replace").partition("\r\n\r\n")[2]

    async def _launch(self) -> None:
        self.generation += 1
        assert self.workdir is not None
        for kind in NGINX_TEMP_PATHS:
            (self.workdir / kind).mkdir(exist_ok=True)
        path = self._write("nginx.conf", self.config_text())
        error_log = self.workdir / "error.log"  # only until the configuration's own error_log (stderr) is read
        command = [self.binary, "-p", str(self.workdir), "-e", str(error_log), "-c", str(path)]
        process = await ProxyProcess.spawn(command, self._heard, group=True)
        self.current = process
        await self._until(self._is_live(self.generation), "answering on its control socket", process)
        await self._until(lambda: _accepts(self.service_port), f"listening on {HOST}:{self.service_port}", process)

    def _is_live(self, generation: int) -> Any:
        async def check() -> bool:
            return (await self.control("/generation")).strip() == str(generation)

        return check

    async def _reload(self) -> None:
        """A new configuration and SIGHUP; wait until nginx runs it. In-flight requests finish on the old one."""
        if not self.running or self.current is None:
            return
        self.generation += 1
        self._write("nginx.conf", self.config_text())
        old_workers = _children_of(self.current.pid)
        self.current.signal(signal.SIGHUP)
        await self._until(self._is_live(self.generation), f"running configuration {self.generation}", self.current)

        async def old_workers_stopped_accepting() -> bool:  # until then, an old worker may still take a request
            return all(_shutting_down(pid) for pid in old_workers)

        await self._until(old_workers_stopped_accepting, "its old worker shutting down", self.current)
        back = [name for name, seen in self.seen.items() if seen.out]
        for name in back:  # a reload forgets nginx's failure counts: every server is tried again
            self.seen[name].out = False
            reason = "nginx reloaded its configuration, which forgets its failure counts: it will be tried again"
            self._publish(InstanceUp(self.events.now(), name, reason, balancer=self.name))

    async def _member_added(self, member: _Member) -> None:
        self.seen.setdefault(member.name, _NginxSeen())
        await self._reload()
        if not member.initially_up:  # the lab would wait for `rise` checks; nginx has none and sends at once
            reason = "nginx has no health checks: a new server takes its share of requests at once"
            self._publish(InstanceUp(self.events.now(), member.name, reason, balancer=self.name))

    async def _member_removed(self, member: _Member, drain_timeout: float) -> None:
        self._publish(InstanceDraining(self.events.now(), member.name, 0, balancer=self.name))
        saved = self.members.pop(member.name)
        try:
            await self._reload()  # nginx finishes the requests it has on the old configuration
        finally:
            self.members[member.name] = saved
        self.seen.pop(member.name, None)

    async def _reconfigure(self) -> None:
        await self._reload()

    # --- what nginx says -------------------------------------------------------------------------------------

    def _heard(self, process: ProxyProcess, which: str, line: str) -> None:
        if process is not self.current or self._stopping:
            return
        if which == "stdout":
            self._heard_request(line)
        else:
            self._heard_error(line)

    def _heard_request(self, line: str) -> None:
        match = _NGINX_ACCESS.match(line)
        if match is None:
            return
        addresses = [a.strip() for a in match["addrs"].split(",") if a.strip() and a.strip() != "-"]
        statuses = [s.strip() for s in match["statuses"].split(",")]
        self.requests += 1
        self.retried += 1 if len(addresses) > 1 else 0
        self.failed += 1 if int(match["status"]) >= 500 else 0
        for address, status in zip(addresses, statuses, strict=False):
            name = self._name_of(address)
            if name is None:
                continue
            seen = self.seen.setdefault(name, _NginxSeen())
            if status.isdigit() and int(status) < 500:
                seen.served += 1
                if seen.out:
                    seen.out = False
                    reason = f"nginx tried it again after fail_timeout and it answered {status}"
                    self._publish(InstanceUp(self.events.now(), name, reason, balancer=self.name))
            else:
                seen.failed += 1

    def _heard_error(self, line: str) -> None:
        match = _NGINX_ERROR.search(line)
        if match is None:
            return
        name = self._name_of(match["addr"])
        if name is None:
            return
        seen = self.seen.setdefault(name, _NginxSeen())
        if not match["text"].startswith(_NGINX_DISABLED):
            seen.last_error = match["text"]
            return
        if seen.out:
            return  # tried again after fail_timeout, failed again: still out
        seen.out = True
        max_fails, fail_timeout = nginx_passive_limits(self.settings())
        why = f"; the last: {seen.last_error}" if seen.last_error else ""
        attempts = "attempt" if max_fails == 1 else "attempts"
        window = f"{fail_timeout:g} s"
        reason = f"nginx: {max_fails} failed {attempts} within fail_timeout ({window}): out for {window}{why}"
        self._publish(InstanceDown(self.events.now(), name, reason, balancer=self.name))

    def _member_view(self, member: _Member) -> MemberView:
        seen = self.seen.get(member.name, _NginxSeen())
        return MemberView(
            name=member.name,
            state=DOWN if seen.out else UP,
            backup=member.backup,
            weight=member.weight,
            served=seen.served,
            failed=seen.failed,
            max_conns=member.max_conns,
        )

    def _totals(self) -> tuple[int, int, int]:
        return self.requests, self.retried, self.failed


def _children_of(parent: int) -> set[int]:
    """The processes whose parent is ``parent`` (nginx's master: its workers), from /proc."""
    children = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if int(stat[stat.rindex(")") + 2 :].split()[1]) == parent:
                    children.add(int(entry.name))
    return children


def _shutting_down(pid: int) -> bool:
    """Gone, or an nginx worker that no longer accepts ("nginx: worker process is shutting down")."""
    try:
        return b"shutting down" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
