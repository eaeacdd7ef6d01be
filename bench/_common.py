"""Shared pieces of the benchmark scripts: external tools, child processes, wrk and its output.

Every process a benchmark starts goes through :class:`Children`, which stops them all *by pid* (SIGTERM, then
SIGKILL) when the ``with`` block ends — normally, on an error, or on Ctrl-C.

This file is also a small program, so the balancer can run in its own OS process like nginx and HAProxy do::

    python bench/_common.py serve-balancer --port 8080 --member a=http://127.0.0.1:40001 ...
        [--no-health] [--profile /tmp/balancer.prof] [--uvloop]

It prints ``ready <port>`` once it listens and runs until SIGTERM; ``--profile`` runs it under cProfile and writes
the stats when it stops. It imports ``spofkit`` from ``PYTHONPATH``, so :func:`start_balancer` can point it at
another copy of the package (a proposed change) to measure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
INSTALL_HINT = "apt-get install wrk nginx haproxy"
TOOL_PATHS = {"wrk": "/usr/bin/wrk", "nginx": "/usr/sbin/nginx", "haproxy": "/usr/sbin/haproxy"}
STARTUP_TIMEOUT = 20.0  # seconds for a child to say it is ready (Python imports are slow on a busy machine)


# --- external tools ----------------------------------------------------------------------------------------


def find_tool(name: str) -> str:
    """The path of ``wrk``, ``nginx`` or ``haproxy``; exits with the package to install if it is missing."""
    path = shutil.which(name) or (TOOL_PATHS[name] if os.access(TOOL_PATHS.get(name, ""), os.X_OK) else None)
    if path is None:
        sys.exit(f"error: {name!r} not found. It comes from the Debian package {name!r}: {INSTALL_HINT}")
    return path


def free_port() -> int:
    """A port nobody listens on right now (the OS picks it; there is a tiny race until the child binds it)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, timeout: float = STARTUP_TIMEOUT, process: subprocess.Popen[Any] | None = None) -> None:
    """Poll until something accepts connections on ``port`` (or fail, naming the port)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process {process.args!r} exited with {process.returncode} before listening")
        with socket.socket() as probe:
            if probe.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {HOST}:{port} after {timeout:.0f}s")


# --- child processes ---------------------------------------------------------------------------------------


class Children:
    """Starts child processes and stops every one of them by pid when the ``with`` block ends.

    SIGTERM is turned into ``KeyboardInterrupt`` inside the block, so ``kill <bench pid>`` cleans up like Ctrl-C.
    """

    stop_timeout = 5.0

    def __init__(self, pin: str | None = None) -> None:
        self.pin = pin  # a taskset CPU list for every child, or None for no pinning
        self.processes: list[subprocess.Popen[Any]] = []
        self._previous_handler: Any = None

    def __enter__(self) -> Children:
        def interrupt(_signum: int, _frame: FrameType | None) -> None:
            raise KeyboardInterrupt

        self._previous_handler = signal.signal(signal.SIGTERM, interrupt)
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.stop_all()
        finally:
            signal.signal(signal.SIGTERM, self._previous_handler)

    def start(self, command: Sequence[str], *, pin: str | None = None, **popen: Any) -> subprocess.Popen[Any]:
        cpus = pin if pin is not None else self.pin
        full = (["taskset", "-c", cpus] if cpus else []) + list(command)
        process = subprocess.Popen(full, **popen)
        self.processes.append(process)
        return process

    def stop(self, process: subprocess.Popen[Any]) -> None:
        """SIGTERM this one child, SIGKILL if it does not go within ``stop_timeout``."""
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
                process.wait()
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        if process in self.processes:
            self.processes.remove(process)

    def stop_all(self) -> None:
        for process in reversed(list(self.processes)):
            self.stop(process)


def _read_line(stream: IO[str], timeout: float, what: str) -> str:
    """One line from a child's stdout, or an error naming ``what`` if none comes within ``timeout``."""
    import selectors

    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise RuntimeError(f"{what} did not report ready within {timeout:.0f}s")
    line = stream.readline()
    if not line:
        raise RuntimeError(f"{what} exited before reporting ready")
    return line


def python_env(spofkit_root: str | Path = ROOT) -> dict[str, str]:
    """The environment for a child Python: ``spofkit_root`` (this checkout by default) first on the path."""
    path = os.environ.get("PYTHONPATH")
    return dict(os.environ, PYTHONPATH=str(spofkit_root) + (os.pathsep + path if path else ""))


@dataclass(frozen=True)
class Instance:
    """A spofkit service instance running as a child process."""

    name: str
    url: str
    pid: int


def start_instances(children: Children, count: int, *, pin: str | None = None) -> list[Instance]:
    """``count`` spofkit service instances, each its own OS process.

    They are the same children :class:`spofkit.instance.ProcessInstance` runs; their stdin stays open (a child
    exits when its stdin closes, so it can never outlive this script).
    """
    members = []
    for index in range(count):
        name = chr(ord("a") + index)
        command = [sys.executable, "-m", "spofkit._instance_child", "--name", name, "--port", "0"]
        process = children.start(
            command, pin=pin, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=python_env()
        )
        assert process.stdout is not None
        hello = json.loads(_read_line(process.stdout, STARTUP_TIMEOUT, f"instance {name}"))
        if not hello.get("ok"):
            raise RuntimeError(f"instance {name} failed to start: {hello.get('error')}")
        members.append(Instance(name, f"http://{HOST}:{hello['port']}", process.pid))
    return members


def start_balancer(
    children: Children,
    members: Sequence[Instance],
    *,
    health: bool = True,
    spofkit_root: str | None = None,
    profile: str | None = None,
    uvloop: bool = False,
    pin: str | None = None,
) -> tuple[subprocess.Popen[Any], str]:
    """The spofkit balancer in its own process (this file's ``serve-balancer``). Returns (process, url).

    ``spofkit_root`` is a directory holding another copy of the ``spofkit`` package (a proposed change) to
    import the balancer from; the instances always run this checkout's.
    """
    command = [sys.executable, __file__, "serve-balancer", "--port", str(free_port())]
    for member in members:
        command += ["--member", f"{member.name}={member.url}"]
    if not health:
        command.append("--no-health")
    if profile:
        command += ["--profile", profile]
    if uvloop:
        command.append("--uvloop")
    env = python_env(spofkit_root or ROOT)
    process = children.start(command, pin=pin, stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    port = int(_read_line(process.stdout, STARTUP_TIMEOUT, "balancer").split()[1])
    return process, f"http://{HOST}:{port}"


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by process ``pid`` and all its descendants (e.g. nginx's worker)."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # it exited meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (name) ": state ppid ...
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
    family = {pid}
    grew = True
    while grew:
        new = {child for child, parent in parents.items() if parent in family} - family
        family |= new
        grew = bool(new)
    return sum(times.get(member, 0.0) for member in family)


# --- wrk -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run measured. Latencies in seconds."""

    requests: int
    requests_per_second: float
    p50: float
    p99: float
    socket_errors: int
    non_2xx: int

    @property
    def errors(self) -> int:
        return self.socket_errors + self.non_2xx


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _seconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"cannot read wrk duration {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> WrkResult:
    """Read the figures from ``wrk --latency`` output (raises ValueError naming what is missing)."""

    def find(pattern: str, what: str) -> re.Match[str]:
        match = re.search(pattern, output, re.MULTILINE)
        if match is None:
            raise ValueError(f"wrk output has no {what}:\n{output}")
        return match

    socket_errors = 0
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if errors:
        socket_errors = sum(int(n) for n in errors.groups())
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkResult(
        requests=int(find(r"^\s*(\d+) requests in", "request count").group(1)),
        requests_per_second=float(find(r"^Requests/sec:\s*([\d.]+)", "Requests/sec").group(1)),
        p50=_seconds(find(r"^\s*50%\s+(\S+)", "50% latency").group(1)),
        p99=_seconds(find(r"^\s*99%\s+(\S+)", "99% latency").group(1)),
        socket_errors=socket_errors,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
    )


def run_wrk(
    url: str,
    *,
    duration: float,
    connections: int,
    threads: int,
    pin: str | None = None,
    children: Children | None = None,
) -> WrkResult:
    """One wrk run at ``url`` (loopback only). Runs as a tracked child, so Ctrl-C stops it too."""
    if not url.startswith(f"http://{HOST}:"):
        raise ValueError(f"wrk url must be on {HOST}, got {url!r}")
    command = [find_tool("wrk"), "--latency", "-t", str(threads), "-c", str(connections)]
    command += ["-d", f"{max(1, round(duration))}s", "--timeout", "5s", url + "/"]
    owner = children or Children()
    process = owner.start(command, pin=pin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = process.communicate(timeout=duration + 30)
    finally:
        owner.stop(process)
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed (exit {process.returncode}):\n{output}")
    return parse_wrk(output)


# --- the balancer as its own process -------------------------------------------------------------------


async def _serve_balancer(args: argparse.Namespace) -> None:
    from spofkit.balancer import Balancer
    from spofkit.events import EventBus
    from spofkit.health import HealthSettings

    events = EventBus()
    members = [tuple(spec.split("=", 1)) for spec in args.member]
    balancer = Balancer(events, health=HealthSettings() if args.health else None, port=args.port)
    for name, url in members:
        balancer.add_member(name, url)
    await balancer.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    print(f"ready {balancer.port}", flush=True)
    try:
        await stop.wait()
    finally:
        await balancer.stop()


def serve_balancer_main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="_common.py serve-balancer")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--member", action="append", default=[], help="name=url (repeat)")
    parser.add_argument("--no-health", dest="health", action="store_false")
    parser.add_argument("--profile", help="write cProfile stats to this file when stopped")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop (pip package, not a spofkit dependency)")
    args = parser.parse_args(argv)
    if not args.member:
        parser.error("give at least one --member name=url")
    if args.uvloop:
        try:
            import uvloop  # type: ignore[import-not-found, unused-ignore]
        except ImportError:
            sys.exit("error: --uvloop needs the uvloop package (pip install uvloop); spofkit does not depend on it")
        uvloop.install()  # asyncio.run() now makes a uvloop event loop
    if args.profile:
        import cProfile

        # CPU time, not wall time: on a busy 2-core machine a process is often descheduled (e.g. right after a
        # send() wakes up the receiver), and wall time would charge that wait to whatever function was running.
        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
        try:
            asyncio.run(_serve_balancer(args))
        finally:
            profiler.disable()
            profiler.dump_stats(args.profile)
    else:
        asyncio.run(_serve_balancer(args))


@contextlib.contextmanager
def temporary_directory(prefix: str) -> Iterator[Path]:
    import tempfile

    with tempfile.TemporaryDirectory(prefix=prefix) as path:
        yield Path(path)


if __name__ == "__main__":
    if sys.argv[1:2] != ["serve-balancer"]:
        sys.exit("usage: python bench/_common.py serve-balancer --member name=url ... (used by bench/throughput.py)")
    serve_balancer_main(sys.argv[2:])
