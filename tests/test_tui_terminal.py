"""End to end: ``spofkit tui`` in a real terminal (tmux), drawn, quit with ``q``, nothing left running.

tmux gives the app a real pseudo-terminal; ``capture-pane`` reads what a person would see. Each test uses its
own tmux server (``-S``, a socket in its temporary folder) so it cannot disturb anyone else's sessions.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("textual")

from conftest import child_pids

TMUX = shutil.which("tmux")
REPO = Path(__file__).resolve().parent.parent
DEADLINE = 40.0  # starting Python + a lab on a busy 2-core machine can be slow

pytestmark = pytest.mark.skipif(TMUX is None, reason="tmux is not installed")


def descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in child_pids(todo.pop()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped does not count: it holds no resources but a table slot)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] != "Z"


def wait_until(condition: Callable[[], object], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        time.sleep(0.1)


class Tmux:
    """A tmux server of our own, its socket in the test's temporary folder (nothing left in /tmp/tmux-*)."""

    def __init__(self, folder: Path) -> None:
        assert TMUX is not None
        self.base = [TMUX, "-S", str(folder / "tmux.sock"), "-f", "/dev/null"]

    def __call__(self, *args: str) -> str:
        done = subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=20, check=True)
        return done.stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "tui")

    def pane(self, field: str) -> str:
        return self("display-message", "-p", "-t", "tui", f"#{{{field}}}").strip()

    def kill(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True, timeout=20, check=False)


@pytest.mark.parametrize(
    ("command", "children"),
    [
        pytest.param([sys.executable, "-m", "spofkit", "tui"], 0, id="cli-inprocess"),
        pytest.param(
            [sys.executable, "-c", "from tui.app import run; run(isolation='process')"], 3, id="process-isolation"
        ),
    ],
)
def test_tui_starts_in_a_terminal_and_quits_cleanly(tmp_path: Path, command: list[str], children: int) -> None:
    tmux = Tmux(tmp_path)
    # A shell runs the app and writes down its exit status (tmux's own record of it proved unreliable).
    status_file = tmp_path / "exit-status"
    shell = f"{shlex.join(command)}; echo $? > {shlex.quote(str(status_file))}; sleep 60"
    try:
        tmux("new-session", "-d", "-s", "tui", "-x", "100", "-y", "32", "-c", str(REPO), shell)
        wait_until(lambda: "1 a" in tmux.screen() and "UP" in tmux.screen(), "the dashboard is drawn")
        screen = tmux.screen()
        assert "clients" in screen and "LB" in screen and "q quit" in screen

        pane_pid = int(tmux.pane("pane_pid"))
        started = {pane_pid} | descendants(pane_pid)
        # Under the shell: the app, and in process isolation its instance processes.
        wait_until(lambda: len(descendants(pane_pid)) >= 1 + children, f"the app and {children} instance processes")
        started |= descendants(pane_pid)

        tmux("send-keys", "-t", "tui", "q")
        wait_until(lambda: status_file.exists() and status_file.read_text().strip(), "the app exits after q")
        assert status_file.read_text().strip() == "0", tmux.screen()
        # Everything under the shell (the app, its instance processes) is gone; only the shell's sleep is left.
        app_processes = started - {pane_pid}
        wait_until(lambda: not any(alive(pid) for pid in app_processes), "every process it started is gone", 10.0)
    finally:
        tmux.kill()
