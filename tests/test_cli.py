"""The ``spofkit`` command: argument errors, and end to end as a real subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import child_pids, wait_for

from spofkit.cli import ActResult, Pauser, build_parser, main, play_demo
from spofkit.failover import RetrySettings

pytestmark = pytest.mark.timeout(120)


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
        (["serve", "--concurrency", "0"], "--concurrency"),
        (["serve", "--queue", "4"], "--queue"),  # a queue without a worker limit: nothing would ever wait
        (["serve", "--work-ms", "50", "--spread-ms", "5", "--distribution", "exponential"], "--spread-ms"),
        (["serve", "--distribution", "exponential"], "--work-ms"),
        (["serve", "--distribution", "gaussian"], "--distribution"),
        (["serve", "--head-timeout", "0"], "--head-timeout"),
        (["serve", "--max-connections", "lots"], "--max-connections"),
        (["serve", "--balancer", "nginx", "--body-timeout", "5"], "--body-timeout"),  # nginx has its own
        (["demo", "--rate", "0"], "--rate"),
        (["demo", "--duration", "nan"], "--duration"),
        (["demo", "--duration", "4", "--crash-at", "5"], "--crash-at"),
        (["demo", "--duration", "4", "--fault-at", "4"], "--fault-at"),
        (["demo", "--scenario", "meteor"], "--scenario"),
        (["demo", "--pause-timeout", "0"], "--pause-timeout"),
        (["demo", "--isolation", "vm"], "--isolation"),
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
        "--admin-port", "0", "--isolation", "process", "--concurrency", "2", "--queue", "4", "--work-ms", "5",
        "--head-timeout", "0.5",
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
        assert "# each instance: 2 workers, queue 4, work 5 ms" in output  # the capacity it was given
        assert "# balancer limits: head timeout 0.5 (the rest nginx's defaults)" in output
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
        for pid in printed_pids.values():  # each child process was given the same workers, queue and work
            arguments = cmdline(pid)
            assert arguments[arguments.index("--concurrency") :][:4] == ["--concurrency", "2", "--queue", "4"]
            assert arguments[arguments.index("--work-ms") + 1] == "5.0"

        # The balancer (in its own process) was given the head timeout: half a head gets its 408.
        host, port = balancer.removeprefix("http://").split(":")
        slow_reader, slow_writer = await asyncio.open_connection(host, int(port))
        slow_writer.write(b"GET / HTTP/1.1\r\nHost: lab\r\n")
        answer = await asyncio.wait_for(slow_reader.read(), 20)
        slow_writer.close()
        assert answer.startswith(b"HTTP/1.1 408 ") and b"0.5s" in answer

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
            await wait_for(lambda: not alive(old_pid), 15)  # a real kill -9 of a real process

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


# --- spofkit run: a scenario file on either driver ----------------------------------------------------

# 3 instances of 2 workers x 20 ms (100 req/s each), b crashed at 0.5 s; 40 req/s for 2 s is far below what is left.
SMALL_SCENARIO = """
name = "small"
seed = 2

[lab]
instances = 3
concurrency = 2
queue = 4
work_ms = 20

[load]
rate = 40
duration = 2

[[faults]]
at = 0.5
instance = "b"
kind = "crash"
"""


def spofkit_run(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``spofkit run ...`` as a learner types it: a real process, its exit status and what it printed."""
    return subprocess.run(
        [sys.executable, "-m", "spofkit", "run", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def without_wall_time(report: str) -> list[str]:
    return [line for line in report.splitlines() if "wall time" not in line]


def test_run_prints_the_report_and_the_digest_of_a_simulated_run(tmp_path: Path) -> None:
    (tmp_path / "small.toml").write_text(SMALL_SCENARIO)
    first, again = spofkit_run("small.toml", cwd=tmp_path), spofkit_run("small.toml", "--sim", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0] == "== small (sim, seed 2) =="  # the file's name and seed; the simulator by default
    assert "requests      80  (succeeded 80, failed 0)" in lines
    assert any(line.startswith("fault         b at 0.50 s") for line in lines)
    assert any(re.fullmatch(r"detected      \d+\.\d\d s after it \(at \d+\.\d\d s\)", line) for line in lines)
    digest = re.search(r"^events        \d+ \(digest ([0-9a-f]{64})\)$", first.stdout, re.MULTILINE)
    assert digest is not None, first.stdout
    # Same file, same seed: the same run, line for line (but for the wall time it took).
    assert again.returncode == 0 and without_wall_time(again.stdout) == without_wall_time(first.stdout)
    other = spofkit_run("small.toml", "--seed", "3", cwd=tmp_path)
    assert other.returncode == 0 and other.stdout.splitlines()[0] == "== small (sim, seed 3) =="
    assert digest.group(1) not in other.stdout


def test_run_json_is_one_object_with_the_figures(tmp_path: Path) -> None:
    (tmp_path / "small.toml").write_text(SMALL_SCENARIO)
    text = spofkit_run("small.toml", cwd=tmp_path).stdout
    done = spofkit_run("small.toml", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)  # the whole output is one JSON object
    assert (figures["scenario"], figures["driver"], figures["seed"]) == ("small", "sim", 2)
    assert (figures["requests"], figures["failed"], figures["availability"]) == (80, 0, 1.0)
    assert figures["detection_window"] > 0
    assert f"(digest {figures['digest']})" in text  # the same run as the report's


@pytest.mark.usefixtures("no_child_processes")
def test_run_live_runs_the_same_file_on_real_servers(tmp_path: Path) -> None:
    (tmp_path / "small.toml").write_text(SMALL_SCENARIO)
    done = spofkit_run("small.toml", "--live", "--seed", "3", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "== small (live, seed 3) =="
    assert "requests      80  (succeeded 80, failed 0)" in lines  # far below the capacity left after the crash
    assert any(line.startswith("fault         b at 0.5") for line in lines)
    assert re.search(r"^wall time     \d+\.\d\d s$", done.stdout, re.MULTILINE), done.stdout
    assert "digest" not in done.stdout  # a live run has no event log to digest


def test_run_live_takes_the_capacity_keys_one_worker_sheds_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One worker of 300 ms and no queue (3.3 req/s) at 10 req/s: live, through the command, most requests are
    answered 503 by the instance (502 once the balancer's retry found it full too), none time out."""
    path = tmp_path / "overload.toml"
    path.write_text(
        "[lab]\ninstances = 1\nconcurrency = 1\nqueue = 0\nwork_ms = 300\n[load]\nrate = 10\nduration = 1\n"
    )
    assert main(["run", str(path), "--live", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["driver"] == "live" and figures["requests"] == 10
    assert 5 <= figures["failed"] <= 9, figures
    assert set(figures["errors_by_kind"]) <= {"http_502", "http_503"}, figures
    assert "digest" not in figures


@pytest.mark.parametrize(
    ("content", "argv", "named"),
    [
        ("[lab]\nconcurency = 2\n", [], "lab.concurency: unknown key 'concurency'"),
        ("[lab]\nconcurrency = 2\nqueue = -1\n", [], "lab.queue"),
        ("[load]\nrate = 'fast'\n", [], "load.rate"),
        ("[load]\narrivals = 'poisson'\n", ["--live"], "load.arrivals"),  # the simulator's only: it says so
    ],
)
def test_run_a_bad_file_exits_2_naming_the_key(
    content: str, argv: list[str], named: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(content)
    assert main(["run", str(path), *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing ran
    assert captured.err.startswith(f"error: {path}: ") and named in captured.err
    assert "Traceback" not in captured.err


def test_run_arguments_and_help(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run"]) == 2
    assert "usage: spofkit run" in capsys.readouterr().err  # its own usage, not the top-level one
    assert main(["run", str(tmp_path / "missing.toml")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["run", "x.toml", "--sim", "--live"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    listed = " ".join(capsys.readouterr().out.split())  # (argparse wraps to the terminal's width)
    assert "run run a scenario file (TOML) in the simulator or on a live lab" in listed  # in `spofkit --help`
    assert main(["run", "--help"]) == 0
    assert "--json" in capsys.readouterr().out


# --- the classroom demo ------------------------------------------------------------------------------

# Short runs: every demo here is bounded by its --duration (plus the demo clients' 4 s timeout for a hang).
# The fault comes between two per-second tallies, so no tally line falls between the kill and the crash.
SHORT_DEMO = ["--duration", "3", "--rate", "60", "--fault-at", "1.5"]


def test_demo_defaults_to_a_real_crash_in_process_isolation() -> None:
    args = build_parser().parse_args(["demo"])
    assert (args.scenario, args.isolation, args.pause) == ("crash", "process", False)


class LiveOutput:
    """Collects a subprocess's stdout as it comes (prompts end without a newline, so not line by line)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.text = ""
        self._task = asyncio.create_task(self._read(process))

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while chunk := await process.stdout.read(4096):
            self.text += chunk.decode()

    async def close(self) -> None:
        await asyncio.wait_for(self._task, 30)


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


@pytest.mark.usefixtures("no_child_processes")
async def test_demo_crash_is_a_real_kill_9_of_the_pid_it_prints() -> None:
    """The default demo, as a learner runs it: b's PID is a real child process, and it dies when the narration says."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "spofkit", "demo", *SHORT_DEMO,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output = LiveOutput(process)
    announced: list[int] = []
    try:
        for act in (1, 2):
            # "b is process N (the others: a N1, c N2)": N must be a child of the demo, serving as b.
            await wait_for(lambda act=act: len(re.findall(r"b is process (\d+)", output.text)) >= act, timeout=60)
            pid = int(re.findall(r"b is process (\d+)", output.text)[act - 1])
            announced.append(pid)
            assert pid in child_pids(process.pid)
            assert cmdline(pid)[1:5] == ["-m", "spofkit._instance_child", "--name", "b"]
            await wait_for(lambda act=act: output.text.count("kill -9 ") >= act, timeout=30)
            kill_line = [line for line in output.text.splitlines() if "kill -9 " in line][act - 1]
            assert re.fullmatch(rf"  \[ 1\.[56]\ds\] kill -9 {pid}   <- b's process", kill_line)
            await wait_for(lambda pid=pid: not alive(pid), timeout=10)  # really gone, and reaped by the demo
        assert await asyncio.wait_for(process.wait(), 60) == 0
        await output.close()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = output.text
    lines = text.splitlines()
    for pid in announced:
        # Said as it happens: "kill -9 <pid>", then the crash event, then the exit status the OS reported.
        kill = lines.index(next(line for line in lines if line.endswith(f"kill -9 {pid}   <- b's process")))
        crash = next(i for i, line in enumerate(lines) if i > kill and "b CRASHES" in line)
        exited = next(i for i, line in enumerate(lines) if f"process {pid} has exited" in line)
        assert kill < crash < exited <= kill + 3
        assert lines[exited].endswith(
            f"process {pid} has exited: status -9 (killed by SIGKILL: no warning, no cleanup)"
        )
    header = next(line for line in lines if "no failover" in line and "  " in line and "—" not in line)
    assert header.split() == ["no", "failover", "failover"]
    errors = next(line for line in lines if line.startswith("client errors")).split()[2:]
    without, with_failover = (int(n) for n in errors)
    done = [tuple(map(int, m)) for m in re.findall(r"done: (\d+) requests, (\d+) failed", text)]
    assert [failed for _requests, failed in done] == [without, with_failover]
    assert without > 0 and with_failover < without
    assert f"nothing noticed that b died (process {announced[0]}, kill -9)" in " ".join(lines)


def run_demo_in_this_process(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[list[ActResult], str]:
    results = play_demo(build_parser().parse_args(["demo", *argv]))
    return results, capsys.readouterr().out


def explanation(text: str) -> str:
    """The paragraphs after the comparison table, their lines joined again."""
    return " ".join(text.rstrip("\n").split("\n\n")[-1].split("\n"))


@pytest.mark.parametrize("scenario", ["crash", "hang", "gray", "slow"])
@pytest.mark.usefixtures("no_child_processes")
def test_demo_scenarios_tell_the_truth(scenario: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Every figure the narration prints is the measured one, and each scenario shows what its protections did."""
    results, text = run_demo_in_this_process(["--scenario", scenario, *SHORT_DEMO], capsys)
    unprotected, protected = results
    assert (unprotected.act.title, protected.act.title) == ("no failover", "failover")
    lines = text.splitlines()

    # The PIDs printed are the victims', and the processes stayed up except where the scenario kills them.
    printed_pids = [int(pid) for pid in re.findall(r"b is process (\d+)", text)]
    assert printed_pids == [unprotected.victim_pid, protected.victim_pid]
    for result in results:
        assert result.victim_pid is not None and not alive(result.victim_pid)  # the lab stopped every process
        assert result.victim_exit_code == (-signal.SIGKILL if scenario == "crash" else None)
    assert (text.count("kill -9 ") == 2) == (scenario == "crash")

    # The tallies, the table and the explanation repeat the reports' figures.
    done = [tuple(map(int, m)) for m in re.findall(r"done: (\d+) requests, (\d+) failed", text)]
    assert done == [(r.report.requests, r.report.failed) for r in results]
    table = {line[:22].strip(): line[22:].split() for line in lines if line[:22].strip() in TABLE_ROWS}
    assert table["client errors"] == [str(r.report.failed) for r in results]
    assert table["retried"] == [str(r.report.retried) for r in results]
    without, with_ = unprotected.report, protected.report
    second = explanation(text)
    if with_.failed or without.failed:
        assert f"Clients saw {with_.failed} errors (without failover: {without.failed})" in second
    if with_.retried:
        assert f"{with_.retried} requests were retried on another instance" in second
        assert sum(protected.retries_by_cause.values()) >= with_.retried
    if with_.detection_window is not None:
        assert f"marked b DOWN {with_.detection_window:.2f} s after the fault" in second
    if protected.ejections:
        assert "passive ejection took b out of the pool" in second
    else:
        assert "passive ejection never fired" in second

    # What each fault teaches, as measured.
    if scenario == "crash":
        assert without.failed > 0 and with_.failed < without.failed
        assert f"and {without.failed} requests failed until the run ended" in second
    elif scenario == "hang":
        assert without.errors_by_kind == {"timeout": without.failed} and without.failed > 0
        assert "timed out" in protected.retries_by_cause  # the per-try timeout cut attempts on b short
        assert with_.failed < without.failed
        assert f"the per-try timeout ({RetrySettings().per_try_timeout:g} s) did the first rescue" in second
        assert f"some waited up to {protected.longest_wait:.2f} s" in second
        assert 3.9 < unprotected.longest_wait < 5.0  # the clients' own 4 s timeout ended b's requests
        assert f"({without.failed} errors, the longest wait {unprotected.longest_wait:.1f} s;" in second
    elif scenario == "gray":
        assert with_.detection_window is None  # the health checks pass: that is what makes it gray
        passed, failed = protected.victim_probes
        assert passed > 0 and failed == 0
        assert f"the health checks did nothing: all {passed} probes of b passed" in second
        assert without.failed > 0 and with_.failed < without.failed
        assert "answered 503" in protected.retries_by_cause
        assert f"Without failover {without.failed} requests got b's 503 answers" in second
    else:  # slow: nothing fails, nothing fires, p99 suffers either way
        assert without.failed == with_.failed == 0
        assert with_.retried == 0 and protected.ejections == 0 and with_.detection_window is None
        for report in (without, with_):
            assert report.latency_p99 is not None and report.latency_p99 >= 0.2
        assert "retries never fired: a slow answer is still an answer" in second
        assert "passive ejection never fired: it counts failed requests, and none failed" in second
        p99s = [f"{report.latency_p99 * 1000:.1f}" for report in (without, with_) if report.latency_p99 is not None]
        assert table["latency p99"] == [p99s[0], "ms", p99s[1], "ms"]
        assert f"p99 was {p99s[1]} ms with failover and {p99s[0]} ms without" in second
        assert without.latency_p50 is not None
        assert f"share late: p50 {without.latency_p50 * 1000:.1f} ms, p99 {p99s[0]} ms." in second
        passed, failed = protected.victim_probes
        assert passed > 0 and failed == 0  # +200 ms is inside the health check's timeout: b stays UP
        assert f"the health checks did nothing: all {passed} probes of b passed" in second


TABLE_ROWS = ("requests", "client errors", "retried", "detection window", "latency p99")


# --- --pause: time for predictions -----------------------------------------------------------------

# In-process instances here: these tests are about the pauses, and starting fewer processes spares the machine.
PAUSE_DEMO = ["demo", "--pause", "--duration", "1.5", "--rate", "30", "--fault-at", "0.5", "--isolation", "inprocess"]
PROMPT = "Press Enter to start act {}..."


async def start_demo(*argv: str, stdin: int) -> tuple[asyncio.subprocess.Process, LiveOutput]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "spofkit", *argv,
        stdin=stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    return process, LiveOutput(process)


async def finish(process: asyncio.subprocess.Process, output: LiveOutput) -> str:
    try:
        assert await asyncio.wait_for(process.wait(), 90) == 0, output.text
        await output.close()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return output.text


def assert_acts_in_order(text: str) -> None:
    """Each act: its heading, then its prompt, then what it does; act 1 before act 2 before act 3."""
    marks = []
    for act in (1, 2, 3):
        heading = text.index(f"Act {act} of 3")
        prompt = text.index(PROMPT.format(act))
        started = text.index("done:" if act < 3 else "client errors", prompt)
        assert heading < prompt < started
        marks += [heading, prompt, started]
    assert marks == sorted(marks)


@pytest.mark.usefixtures("no_child_processes")
async def test_demo_pause_waits_for_each_enter_from_a_pipe() -> None:
    process, output = await start_demo(*PAUSE_DEMO, "--pause-timeout", "2", stdin=asyncio.subprocess.PIPE)
    assert process.stdin is not None
    # Act 1: nobody presses Enter. The demo must wait (no act yet) and, input not being a terminal, go on after 2 s.
    await wait_for(lambda: PROMPT.format(1) in output.text, timeout=30)
    prompted = time.monotonic()
    assert output.text.rstrip().endswith(PROMPT.format(1))  # nothing of act 1 yet
    await wait_for(lambda: "no Enter within 2 s: going on" in output.text, timeout=30)
    assert time.monotonic() - prompted >= 1.5  # it did wait its limit (2 s from its prompt, seen a little after)
    # Acts 2 and 3: Enter, each time only once the prompt is there.
    for act in (2, 3):
        await wait_for(lambda act=act: PROMPT.format(act) in output.text, timeout=30)
        assert output.text.rstrip().endswith(PROMPT.format(act))  # waiting: nothing of the act yet
        process.stdin.write(b"\n")
        await process.stdin.drain()
    text = await finish(process, output)
    assert_acts_in_order(text)
    assert text.count("going on") == 1 and "end of input" not in text  # each Enter answered its own prompt
    waited = text[text.index(PROMPT.format(1)) + len(PROMPT.format(1)) : text.index("  (no Enter within")]
    assert not waited.strip()  # nothing happened while it waited


@pytest.mark.usefixtures("no_child_processes")
async def test_demo_pause_takes_one_line_per_act_even_when_they_come_at_once() -> None:
    process, output = await start_demo(*PAUSE_DEMO, "--pause-timeout", "20", stdin=asyncio.subprocess.PIPE)
    assert process.stdin is not None
    process.stdin.write(b"\n\n\n")  # typed ahead, in one write; the pipe stays open (no end of input)
    await process.stdin.drain()
    text = await finish(process, output)
    assert_acts_in_order(text)
    assert "going on" not in text and "end of input" not in text


@pytest.mark.usefixtures("no_child_processes")
async def test_demo_pause_at_end_of_input_runs_through() -> None:
    process, output = await start_demo(*PAUSE_DEMO, stdin=asyncio.subprocess.DEVNULL)
    text = await finish(process, output)
    assert text.count("Press Enter") == 1  # asked once, then it knows no answer will come
    assert PROMPT.format(1) + " \n  (end of input: no more pauses)" in text
    assert "client errors" in text


def test_pause_on_a_terminal_has_no_time_limit(capsys: pytest.CaptureFixture[str]) -> None:
    """A teacher may talk for ten minutes: on a terminal the limit for pipes does not apply, and Enter echoes."""
    controller, terminal_fd = os.openpty()
    try:
        with os.fdopen(terminal_fd, "r") as terminal:
            pauser = Pauser(terminal, limit=0.5)
            assert pauser.on_terminal and pauser.limit is None
            os.write(controller, b"\n")  # the teacher presses Enter
            pauser.wait(PROMPT.format(1))
            assert not pauser.ended
    finally:
        os.close(controller)
    assert capsys.readouterr().out == PROMPT.format(1) + " "  # the terminal echoes Enter; the demo adds nothing


def test_pause_without_any_input_does_not_pause(capsys: pytest.CaptureFixture[str]) -> None:
    pauser = Pauser(io.StringIO(), limit=30)  # no file descriptor at all (stdin replaced, as under pytest)
    pauser.wait(PROMPT.format(1))
    assert pauser.ended and capsys.readouterr().out == ""


def test_bench_runs_the_headline_benchmarks_in_order_and_passes_on_a_failure(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ran: list[str] = []

    def fake_run(argv: list[str], check: bool) -> subprocess.CompletedProcess[str]:
        ran.append(Path(argv[1]).name)
        return subprocess.CompletedProcess(argv, 3 if ran[-1] == "failover.py" else 0)

    monkeypatch.setattr("spofkit.cli.subprocess.run", fake_run)
    assert main(["bench"]) == 3  # a script that failed is not hidden by the ones after it
    assert ran == ["throughput.py", "failover.py", "pair_failover.py", "compare_proxies.py"]
    assert "== compare_proxies.py ==" in capsys.readouterr().out
