"""Instance processes never outlive the process that started their lab, however it ends.

A lesson's lab may run with ``isolation="process"``: each instance is a child of the notebook's kernel. A learner
may leave the lab running and shut the kernel down, restart it, or the kernel may be killed (out of memory, or
``kill -9``). Each test starts a real parent (a Python script, or a real Jupyter kernel), reads the PIDs of its
instance children, ends the parent, and checks with a deadline that the children are gone.

"Gone" means not running: a child that has exited but not been reaped yet (a zombie, whose new parent is this
container's PID 1) no longer serves anything or holds a port.

The hard case is a parent that also forked a worker (``multiprocessing`` with the ``fork`` start method, as a
``ProcessPoolExecutor`` does on Linux): the worker inherits the parent's end of every child's stdin pipe, so a
child waiting for end-of-file on stdin would wait for the worker too.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import wait_until
from jupyter_client.manager import KernelManager

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 10.0  # seconds for a child to notice its parent is gone and stop


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@contextlib.contextmanager
def stopped_at_the_end(pids: list[int]) -> Iterator[None]:
    """Whatever the test finds, stop these processes (ours, by PID) before it ends."""
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()


# A parent that starts a process-isolated lab, makes one instance hang with requests stuck on it, optionally
# forks a worker that holds the pipes, prints the PIDs as one JSON line and then waits to be killed.
PARENT = textwrap.dedent(
    """
    import asyncio, json, multiprocessing, sys, time
    from spofkit.lab import Lab

    async def main(fork_a_worker):
        lab = await Lab.start(2, isolation="process", health=None)
        await lab.inject("a", "hang")
        lab.start_background_load(20, timeout=30)  # requests stuck on the hung a
        workers = []
        if fork_a_worker:
            worker = multiprocessing.get_context("fork").Process(target=time.sleep, args=(60,))
            worker.start()
            workers.append(worker.pid)
        await asyncio.sleep(0.3)
        print(json.dumps({"instances": [i.pid for i in lab.instances.values()], "workers": workers}), flush=True)
        await asyncio.sleep(60)

    asyncio.run(main(sys.argv[1] == "fork"))
    """
)


@pytest.mark.parametrize("worker", ["no worker", "fork"])
def test_instance_processes_die_with_a_parent_killed_by_sigkill(worker: str, no_child_processes: None) -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT, worker], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        assert line, f"the parent printed nothing (exit code {parent.poll()})"
        pids = json.loads(line)
    except BaseException:
        parent.kill()
        parent.wait()
        raise
    instances, workers = pids["instances"], pids["workers"]
    with stopped_at_the_end(instances + workers):
        assert len(instances) == 2 and all(running(pid) for pid in instances)
        os.kill(parent.pid, signal.SIGKILL)  # no clean-up, no atexit, no goodbye
        parent.wait()
        wait_until(lambda: not any(running(pid) for pid in instances), DEADLINE, f"instances {instances} gone")
        assert all(running(pid) for pid in workers), "the forked worker is not ours to stop: it must still be there"


# A parent that starts a process-isolated lab, never stops it, and exits normally. An atexit hook registered
# before spofkit is imported runs *after* spofkit's own (atexit runs hooks last-in, first-out): it reports
# whether the instances are still running at that moment, when only the interpreter's shutdown is left.
EXITS_NORMALLY = textwrap.dedent(
    """
    import atexit, json, os

    def running(pid):
        try:
            with open(f"/proc/{pid}/stat") as stat:
                return stat.read().rsplit(")", 1)[1].split()[0] not in "ZX"
        except FileNotFoundError:
            return False

    def report():
        print(json.dumps({"running_at_exit": [pid for pid in PIDS if running(pid)], "pids": PIDS}), flush=True)

    PIDS = []
    atexit.register(report)

    import asyncio
    from spofkit.lab import Lab

    loop = asyncio.new_event_loop()  # not asyncio.run: it would close the transports, and kill, by itself
    lab = loop.run_until_complete(Lab.start(2, isolation="process", health=None))
    PIDS.extend(instance.pid for instance in lab.instances.values())
    """
)


def test_a_lab_left_running_stops_its_instance_processes_when_the_interpreter_exits(
    no_child_processes: None,
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", EXITS_NORMALLY], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    with stopped_at_the_end(seen["pids"]):
        assert len(seen["pids"]) == 2
        assert seen["running_at_exit"] == [], "the instances were still running when the interpreter exited"
        wait_until(lambda: not any(running(pid) for pid in seen["pids"]), DEADLINE, "instances gone")


# --- a real Jupyter kernel ------------------------------------------------------------------------------

KERNEL_CODE = """
import json, multiprocessing, time
from spofkit.lab import Lab

lab = await Lab.start(2, isolation="process", health=None)
worker = multiprocessing.get_context("fork").Process(target=time.sleep, args=(60,))
worker.start()  # a worker such as a ProcessPoolExecutor's: it inherits the kernel's pipes
print(json.dumps({"instances": [i.pid for i in lab.instances.values()], "worker": worker.pid}))
"""


def run_in_kernel(manager: KernelManager, code: str) -> str:
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        printed: list[str] = []

        def keep(message: dict[str, Any]) -> None:
            if message["msg_type"] == "stream":
                printed.append(message["content"]["text"])
            elif message["msg_type"] == "error":
                printed.append("\n".join(message["content"]["traceback"]))

        reply = client.execute_interactive(code, output_hook=keep, timeout=60)
        assert reply["content"]["status"] == "ok", "".join(printed)
        return "".join(printed)
    finally:
        client.stop_channels()


@pytest.mark.parametrize("ending", ["shutdown", "restart", "kill -9"])
def test_a_kernel_shut_down_restarted_or_killed_leaves_no_instance_process(
    ending: str, no_child_processes: None
) -> None:
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(cwd=str(ROOT))
    try:
        pids = json.loads(run_in_kernel(manager, KERNEL_CODE).strip().splitlines()[-1])
        instances = pids["instances"]
        with stopped_at_the_end([*instances, pids["worker"]]):
            assert all(running(pid) for pid in instances)
            if ending == "shutdown":
                manager.shutdown_kernel(now=False)
            elif ending == "restart":
                manager.restart_kernel(now=False)
            else:
                kernel = psutil.Process(manager.provisioner.process.pid)  # type: ignore[union-attr]
                kernel.send_signal(signal.SIGKILL)
                kernel.wait(10)
            wait_until(lambda: not any(running(pid) for pid in instances), DEADLINE, f"instances {instances} gone")
    finally:
        if manager.has_kernel:
            manager.shutdown_kernel(now=True)
