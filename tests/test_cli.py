"""The ``spofkit`` command: argument errors, and end to end as a real subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
import time
import types
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from spofkit.cli import main

pytestmark = pytest.mark.timeout(120)


async def wait_for(condition: Callable[[], Any], timeout: float = 15.0) -> None:
    """Poll ``condition`` (sync or async) until it is true, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# --- arguments -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["serve", "--port", "70000"], "--port"),
        (["serve", "--admin-port", "x"], "--admin-port"),
        (["serve", "--instances", "0"], "--instances"),
        (["serve", "--strategy", "fastest"], "--strategy"),
        (["serve", "--isolation", "vm"], "--isolation"),
        (["serve", "--work-ms", "-3"], "--work-ms"),
        (["demo", "--rate", "0"], "--rate"),
        (["demo", "--duration", "nan"], "--duration"),
        (["demo", "--duration", "4", "--crash-at", "5"], "--crash-at"),
        (["tui", "--connect", "http://example.com:8081"], "--connect"),
        (["explode"], "explode"),
    ],
)
def test_bad_arguments_exit_2_naming_the_flag(argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert flag in err
    if argv[0] != "explode":
        assert f"usage: spofkit {argv[0]}" in err  # the command's own usage, not the top-level one


def test_no_command_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().err


def test_port_in_use_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port), "--admin-port", "0"]) == 1
    assert "spofkit serve:" in capsys.readouterr().err


def test_lab_without_lessons_folder(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "--lessons", str(tmp_path / "missing")]) == 1
    assert "lessons folder not found" in capsys.readouterr().err


def test_tui_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "tui.app", None)  # None in sys.modules: import fails
    assert main(["tui"]) == 1
    assert "terminal dashboard is not available" in capsys.readouterr().err


def test_tui_gets_the_connect_url(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    fake = types.ModuleType("tui.app")
    fake.run = lambda connect=None: calls.append(connect)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tui.app", fake)
    assert main(["tui", "--connect", "http://127.0.0.1:8081/"]) == 0
    assert calls == ["http://127.0.0.1:8081"]


# --- end to end ------------------------------------------------------------------------------------


async def test_serve_in_process_isolation_end_to_end() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "spofkit", "serve", "--instances", "3", "--port", "0",
        "--admin-port", "0", "--isolation", "process",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout is not None
    output: list[str] = []
    pids: set[int] = set()
    ready = asyncio.Event()

    async def read_output() -> None:  # keep the pipe drained for the whole run
        assert process.stdout is not None
        while line := await process.stdout.readline():
            output.append(line.decode().rstrip("\n"))
            if output[-1] == "ready":
                ready.set()

    reader = asyncio.create_task(read_output())
    try:
        await asyncio.wait_for(ready.wait(), 60)
        # Before "ready": "# comment" lines and "key value" lines.
        listed = [line for line in output[: output.index("ready")] if not line.startswith("#")]
        listing = dict(line.split(" ", 1) for line in listed)
        admin = listing["admin"]
        balancer = listing["balancer"]
        token = listing["token"]
        token_path = Path(listing["token_file"])
        assert token_path.read_text().strip() == token
        assert token_path.stat().st_mode & 0o777 == 0o600  # readable by this user only
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", admin)
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", balancer)
        instances = [line.split() for line in listed if line.startswith("instance ")]
        assert [words[1] for words in instances] == ["a", "b", "c"]
        printed_pids = {words[1]: int(words[4]) for words in instances}
        pids.update(printed_pids.values())

        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as anonymous,
            anonymous.post(f"{admin}/instances/b/fault", json={"kind": "crash"}) as response,
        ):
            assert response.status == 401  # no token, no crash
            assert (await response.json())["field"] == "authorization"
        auth = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20), headers=auth) as http:

            async def status() -> dict[str, Any]:
                async with http.get(f"{admin}/status") as response:
                    assert response.status == 200
                    return dict(await response.json())

            def pid_of(status: dict[str, Any], name: str) -> int | None:
                return next(r["pid"] for r in status["instances"] if r["name"] == name)

            first = await status()
            assert {r["name"]: r["pid"] for r in first["instances"]} == printed_pids
            old_pid = printed_pids["b"]
            assert alive(old_pid)

            async with http.post(f"{admin}/instances/b/fault", json={"kind": "crash"}) as response:
                assert response.status == 200
            await wait_for(lambda: not alive(old_pid))  # a real kill -9 of a real process

            async with http.post(f"{admin}/instances/b/restart") as response:
                assert response.status == 200
            new_pid = pid_of(await status(), "b")
            assert new_pid is not None and new_pid != old_pid and alive(new_pid)
            pids.add(new_pid)

            for _ in range(20):
                async with http.get(f"{balancer}/") as response:
                    assert response.status == 200
                    assert response.headers["X-Served-By"] in ("a", "b", "c")

        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 60) == 0
        await asyncio.wait_for(reader, 10)
        assert output[-1] == "# stopped"
        assert not token_path.exists(), "serve removes its token file when it stops"
        for pid in pids:
            await wait_for(lambda pid=pid: not alive(pid), timeout=10)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


async def test_demo_runs_and_compares() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "spofkit", "demo", "--duration", "4", "--rate", "100",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        stdout, _ = await asyncio.wait_for(process.communicate(), 90)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = stdout.decode()
    assert process.returncode == 0, text
    assert "b CRASHES" in text
    header = next(line for line in text.splitlines() if "no failover" in line and "  " in line)
    assert header.split() == ["no", "failover", "failover"]
    rows = {}
    for label in ("client errors", "availability", "detection window", "latency p50", "latency p99"):
        line = next(line for line in text.splitlines() if line.startswith(label))
        rows[label] = line[len(label) :].split()
    without, with_failover = (int(n) for n in rows["client errors"])
    assert without > 0  # b's share failed after the crash
    assert without > with_failover
    assert rows["detection window"][0] == "never"
    assert "Without failover" in text and "With failover" in text
