"""The balancer under abuse, as an attacker or a bad day would bring it, all on 127.0.0.1.

* chaos: five instance processes, random faults, up to four of them broken at once (one always healthy) — no GET
  may fail because of refused connections only, and every failure must say why;
* a flood of idle, half-sent connections against a process whose file descriptor limit is low (``ulimit -n``):
  normal requests, the admin API and the health checks go on;
* hundreds of concurrent 1 MiB uploads: the balancer's memory stays bounded (the retry buffer), and is given back.

The balancer runs in a child process where the test needs its own limits (RLIMIT_NOFILE) or its own memory figures.
"""

from __future__ import annotations

import asyncio
import os
import random
import resource
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import psutil
import pytest
from aiohttp import web
from conftest import wait_for

from spofkit.events import Event, RequestCompleted, RequestRetried
from spofkit.lab import Lab

pytestmark = [pytest.mark.timeout(180), pytest.mark.usefixtures("no_child_processes")]
ROOT = Path(__file__).resolve().parent.parent

# --- chaos -------------------------------------------------------------------------------------------------------

CHAOS_FAULTS = [("crash", {}), ("hang", {}), ("reset", {"rate": 0.5}), ("error", {"rate": 0.5, "status": 503})]


def only_refused(event: RequestCompleted, retried: dict[int, list[str]]) -> bool:
    """Whether every failed attempt of a request was a refused connection: the attempts it was retried after
    (its RequestRetried events), and the last one (named in its reason)."""
    last = [part for part in event.reason.split("; ") if ": " in part][-1:]
    attempts = retried.get(event.request_id, []) + last
    return bool(attempts) and all("connect failed" in attempt for attempt in attempts)


async def test_chaos_with_up_to_four_of_five_broken_no_get_fails_on_refused_connections_only() -> None:
    rng = random.Random(11)
    lab = await Lab.start(instances=5, isolation="process")
    completed: list[RequestCompleted] = []
    retried: dict[int, list[str]] = {}

    def record(event: Event) -> None:
        if isinstance(event, RequestCompleted):
            completed.append(event)
        elif isinstance(event, RequestRetried):
            retried.setdefault(event.request_id, []).append(f"{event.instance}: {event.reason}")

    lab.events.subscribe(record)
    names = sorted(lab.instances)
    broken: set[str] = set()
    log: list[str] = []

    async def breaks(name: str, kind: str, **params: object) -> None:
        await lab.inject(name, kind, **params)
        broken.add(name)
        log.append(f"{name} {kind}")

    async def mends(name: str) -> None:
        await lab.recover(name)
        broken.discard(name)

    async def all_up_again() -> None:
        # A recovered instance counts again once its health checks rise: until then the balancer does not know
        # it is healthy, and "at least one healthy" would not hold in its eyes.
        await wait_for(lambda: all(row.state == "up" for row in lab.status().instances), timeout=15)

    async def chaos() -> None:
        # 1. Random faults on random instances, up to four at once, for 5 s.
        loop = asyncio.get_running_loop()
        end = loop.time() + 5.0
        while loop.time() < end:
            await asyncio.sleep(rng.uniform(0.2, 0.5))
            healthy = [n for n in names if n not in broken]
            if broken and (len(broken) >= 4 or rng.random() < 0.35):
                await mends(rng.choice(sorted(broken)))
            elif len(healthy) > 1:
                kind, params = rng.choice(CHAOS_FAULTS)
                await breaks(rng.choice(healthy), kind, **params)
        for name in sorted(broken):
            await mends(name)
        await all_up_again()
        # 2. Two gray instances (health checks pass, every request fails) burn the retry budget, while two others
        #    crash and come back: their refused connections must still be retried.
        await breaks("a", "gray", rate=1.0, status=503)
        await breaks("b", "gray", rate=1.0, status=503)
        for _ in range(3):
            await asyncio.sleep(0.8)
            await asyncio.gather(breaks("c", "crash"), breaks("d", "crash"))
            await asyncio.sleep(0.8)
            await asyncio.gather(mends("c"), mends("d"))
        await asyncio.gather(mends("a"), mends("b"))
        await all_up_again()
        # 3. Four crash at once: one instance left, and nothing has noticed yet.
        await asyncio.sleep(1.0)
        await asyncio.gather(*(breaks(name, "crash") for name in names[:4]))
        await asyncio.sleep(1.0)
        await asyncio.gather(*(mends(name) for name in names[:4]))

    try:
        chaos_task = asyncio.create_task(chaos())
        await lab.run_load(rate=200, duration=20)
        await chaos_task
    finally:
        await lab.stop()
    gets = [e for e in completed if e.method == "GET"]
    failed = [e for e in gets if e.outcome == "failed"]
    assert len(log) >= 15 and len(gets) >= 2500, (log, len(gets))
    refused_only = [f"{retried.get(e.request_id)} {e.reason}" for e in failed if only_refused(e, retried)]
    print(f"chaos: {len(failed)} of {len(gets)} GETs failed, {len(refused_only)} on refused connections only")
    print("\n".join(refused_only[:10]))
    assert refused_only == [], f"{len(refused_only)} of {len(gets)} GETs failed on refused connections only"
    for event in failed:  # every other failure names its cause
        assert event.reason, event
        assert any(cause in event.reason for cause in ("answered", "no answer", "connection", "connect", "no ")), event


# --- a flood of idle connections, with few file descriptors ----------------------------------------------------

NOFILE = 256  # the soft RLIMIT_NOFILE of the child: a fraction of what the flood below needs


def _lower_nofile() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, hard))


@pytest.fixture
def serve_with_few_fds() -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    """``spofkit serve`` (balancer, admin API, health checks and two instances in one process) with ulimit -n 256."""
    command = [sys.executable, "-m", "spofkit", "serve", "--instances", "2", "--port", "0", "--admin-port", "0"]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_lower_nofile,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    urls: dict[str, str] = {}
    try:
        assert process.stdout is not None
        for line in process.stdout:
            words = line.split()
            if words[:1] in (["balancer"], ["admin"], ["token"]):
                urls[words[0]] = words[1]
            if words == ["ready"]:
                break
        assert "balancer" in urls, f"spofkit serve did not start: {process.stderr.read() if process.stderr else ''}"
        yield process, urls
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def test_an_idle_connection_flood_with_few_fds_stops_neither_requests_nor_admin_nor_checks(
    serve_with_few_fds: tuple[subprocess.Popen[str], dict[str, str]],
) -> None:
    process, urls = serve_with_few_fds
    port = int(urls["balancer"].rsplit(":", 1)[1])
    flood: list[asyncio.StreamWriter] = []
    try:
        for _ in range(400):  # each sends half a request head, then nothing: 400 > 256 descriptors
            try:
                _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            flood.append(writer)
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            statuses = []
            for _ in range(5):
                async with session.get(urls["balancer"] + "/") as response:
                    statuses.append(response.status)
            assert statuses == [200] * 5
            async with session.get(urls["admin"] + "/status") as response:
                assert response.status == 200
                status = await response.json()

            async def instances_stay_up() -> bool:
                async with session.get(urls["admin"] + "/status") as response:
                    rows = (await response.json())["instances"]
                return all(row["state"] == "up" for row in rows)

            # the health checks go on too: after a few more check intervals, every instance is still up
            await asyncio.sleep(0)  # let the flood's last bytes arrive before we start counting
            assert status["instances"] and await wait_for(instances_stay_up, timeout=5)
    finally:
        for writer in flood:
            writer.close()
    assert process.poll() is None, "spofkit serve died"
    process.terminate()
    _out, errors = process.communicate(timeout=20)
    assert "Traceback" not in errors, errors[-3000:]
    assert len(errors) < 20_000, f"{len(errors)} bytes on stderr"


# --- hundreds of uploads at once ----------------------------------------------------------------------------------


@pytest.fixture
async def upload_sink() -> AsyncIterator[str]:
    """An instance that reads every upload whole and answers with its size."""

    async def handle(request: web.BaseRequest) -> web.Response:
        return web.Response(text=str(len(await request.read())))

    runner = web.ServerRunner(web.Server(handle, access_log=None))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.fixture
def balancer_process(upload_sink: str) -> Iterator[tuple[psutil.Process, str]]:
    script = Path(__file__).with_name("balancer_child.py")
    process = subprocess.Popen(
        # Hundreds of uploads at once keep one instance busy for seconds (its health checks too slow to pass):
        # a per-try timeout to match, and no checks. Memory is what is measured here.
        [sys.executable, str(script), "--member", f"a={upload_sink}", "--per-try-timeout", "30", "--no-health"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("ready "), line
        yield psutil.Process(process.pid), f"http://127.0.0.1:{line.split()[1]}"
    finally:
        process.terminate()
        process.wait(timeout=20)


UPLOADS = 400
UPLOAD = b"u" * (1 << 20)  # 1 MiB: the largest body a balancer keeps for a retry


async def test_concurrent_uploads_keep_the_balancers_memory_bounded(
    balancer_process: tuple[psutil.Process, str],
) -> None:
    process, url = balancer_process
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def upload() -> str:
            async with session.post(url + "/upload", data=UPLOAD) as response:
                return f"{response.status} {await response.text()}"

        for _ in range(3):  # warm up: imports, first connections
            assert await upload() == f"200 {len(UPLOAD)}"
        baseline = process.memory_info().rss
        peaks = []
        for _burst in range(2):
            burst = asyncio.gather(*(upload() for _ in range(UPLOADS)))
            peak = 0
            while not burst.done():  # sample the balancer's memory while the burst goes through
                peak = max(peak, process.memory_info().rss)
                await asyncio.wait([burst], timeout=0.01)
            assert burst.result() == [f"200 {len(UPLOAD)}"] * UPLOADS
            peaks.append(peak)
    mib = 1 << 20
    print(f"balancer RSS: {baseline / mib:.0f} MiB before, peaks {[round(p / mib) for p in peaks]} MiB")
    # 400 MiB go through in each burst. The retry buffer keeps at most 32 MiB of bodies; the rest streams, with
    # at most a read's worth held per connection. A second burst needs no more memory than the first.
    assert peaks[0] - baseline < 96 * mib
    assert peaks[1] < peaks[0] + 16 * mib


# --- out of file descriptors -----------------------------------------------------------------------------------


def _tiny_nofile() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))


async def test_out_of_file_descriptors_no_busy_loop_one_line_per_burst_and_service_after(upload_sink: str) -> None:
    script = Path(__file__).with_name("balancer_child.py")
    # No cap (max_connections far above what 64 descriptors allow): accept() itself runs into EMFILE.
    command = [sys.executable, str(script), "--member", f"a={upload_sink}", "--limits", '{"max_connections": 100000}']
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_tiny_nofile,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("ready "), line
        url = f"http://127.0.0.1:{line.split()[1]}"
        child = psutil.Process(process.pid)
        flood = []
        for _ in range(120):  # the kernel completes these handshakes; the balancer cannot accept them all
            _reader, writer = await asyncio.open_connection("127.0.0.1", int(line.split()[1]))
            flood.append(writer)
        await wait_for(lambda: child.num_fds() >= 60, message="the balancer ran out of file descriptors")
        cpu_before = sum(child.cpu_times()[:2])
        wall_before = asyncio.get_running_loop().time()
        await asyncio.sleep(1.0)  # measuring: how much CPU does a second out of descriptors cost?
        cpu_used = sum(child.cpu_times()[:2]) - cpu_before
        wall = asyncio.get_running_loop().time() - wall_before
        assert cpu_used < 0.25 * wall, f"{cpu_used:.2f}s of CPU in {wall:.2f}s: a busy loop"
        for writer in flood:
            writer.close()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:

            async def served() -> bool:
                try:
                    async with session.get(url + "/") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            assert await wait_for(served, timeout=10, interval=0.2)
    finally:
        process.terminate()
        _out, errors = process.communicate(timeout=20)
    assert "Traceback" not in errors, errors[-3000:]
    bursts = [line for line in errors.splitlines() if "out of file descriptors (" in line]
    recoveries = [line for line in errors.splitlines() if "accepting connections again" in line]
    # One line per burst (and one when it ends), not one per failed accept(): ten of those a second here.
    assert 1 <= len(bursts) <= 3 and len(recoveries) == len(bursts), errors[-3000:]
