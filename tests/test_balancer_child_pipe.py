"""A balancer in its own process keeps serving while the lab (its parent) does not read what it says.

The child streams its events to the parent over a pipe that holds 64 KiB: at a few hundred requests a second, a
fraction of a second of events. A parent busy for longer (a TUI frame, a notebook cell, a garbage collection) once
stopped the balancer with it — the blocking write held its event loop, nothing was served, its health checks timed
out and every instance was marked DOWN at once (seen as 343 failed requests after a deploy under load). Here the
lab's event loop is blocked on purpose while a client in another thread keeps sending requests.
"""

from __future__ import annotations

import http.client
import threading
import time
from urllib.parse import urlsplit

from conftest import wait_for

from spofkit.commands import ChangeSettings
from spofkit.events import SettingChanged
from spofkit.health import HealthSettings
from spofkit.lab import Lab
from spofkit.process_balancer import ProcessBalancer

STALL = 2.0  # seconds the parent reads nothing: several pipes' worth of events at this client's rate
MAX_REQUESTS = 20_000  # the client's bound (it stops far earlier, when told)


class Client(threading.Thread):
    """Sequential keep-alive GETs to ``url`` from a thread of its own: (sent at, latency, status) for each."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.results: list[tuple[float, float, int]] = []
        self.done = threading.Event()

    def run(self) -> None:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
        deadline = time.monotonic() + 60
        while not self.done.is_set() and len(self.results) < MAX_REQUESTS and time.monotonic() < deadline:
            sent = time.monotonic()
            try:
                connection.request("GET", "/")
                response = connection.getresponse()
                response.read()
                status = response.status
            except OSError:
                status = 0
                connection.close()
                connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
            self.results.append((sent, time.monotonic() - sent, status))
        connection.close()


async def test_a_balancer_process_serves_on_while_its_parent_reads_nothing() -> None:
    checks = HealthSettings(interval=0.2, timeout=0.15, rise=2, fall=2)  # quick to mark DOWN: a stall would show
    async with await Lab.start(3, isolation="process", health=checks) as lab:
        node = lab.front.nodes["lb1"]
        assert isinstance(node, ProcessBalancer)
        client = Client(lab.balancer_url)
        client.start()
        try:
            await wait_for(lambda: len(client.results) >= 200, 30, message="the client is under way")
            stall_began = time.monotonic()
            time.sleep(STALL)  # the fault under test: the lab's event loop is blocked, nobody reads the pipe
            stall_ended = time.monotonic()
            await wait_for(lambda: len(client.results) > 0 and client.results[-1][0] > stall_ended + 0.5, 30)
        finally:
            client.done.set()
            client.join(15)
        during = [result for result in client.results if stall_began <= result[0] < stall_ended]
        late_in_the_stall = [r for r in during if r[0] >= stall_began + STALL / 2]
        assert len(late_in_the_stall) >= 20, f"only {len(late_in_the_stall)} requests answered in the stall's 2nd half"
        assert max(latency for _, latency, _ in during) < STALL / 2
        assert all(status == 200 for _, _, status in client.results), "no request failed, before, during or after"
        # The parent catches up: the balancer's counters are exact, and no instance was ever marked down.
        await wait_for(lambda: lab.status().balancer("lb1").requests >= len(client.results), 20)
        assert [i.state for i in lab.status().instances] == ["up", "up", "up"]
        assert not [e for e in lab.events.history if e.kind == "InstanceDown"]


async def test_the_events_a_command_caused_arrive_before_its_reply() -> None:
    # A view that applies a command and then reads the event history must find what the command did.
    async with await Lab.start(1, balancers=2, isolation="process") as lab:
        for on in (False, True, False):
            await lab.apply(ChangeSettings(retries=on))
            changes = [e for e in lab.events.history if isinstance(e, SettingChanged) and e.setting == "retries"]
            assert {(e.balancer, e.value) for e in changes[-2:]} == {("lb1", on), ("lb2", on)}
