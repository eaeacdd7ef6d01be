"""End to end: ``spofkit tui`` in a real terminal (tmux), drawn, quit with ``q``, nothing left running.

tmux gives the app a real pseudo-terminal; ``capture-pane`` reads what a person would see. Each test uses its
own tmux server (``-S``, a socket in its temporary folder) so it cannot disturb anyone else's sessions.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("textual")

from conftest import child_pids
from conftest import wait_until as wait_until_in_time

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
    """conftest's wait_until, with this file's order of arguments and its deadline."""
    wait_until_in_time(condition, timeout, what, interval=0.1)


def app_shell(command: list[str], status_file: Path) -> str:
    """A shell line that runs ``command`` in the pane and writes down its exit status (tmux's own record of it
    proved unreliable). COLUMNS and LINES are unset first: a pane can inherit them (80 and 24, seen under pytest),
    and an app that believes them draws 80 columns in a wider window."""
    return f"unset COLUMNS LINES; {shlex.join(command)}; echo $? > {shlex.quote(str(status_file))}; sleep 60"


def wait_until_settled(tmux: Tmux) -> str:
    """The screen once two captures a poll apart are the same (an animation has ended)."""
    last = [tmux.screen()]

    def unchanged() -> bool:
        now = tmux.screen()
        same, last[0] = now == last[0], now
        return same

    wait_until(unchanged, "the screen stopped moving", 10.0)
    return last[0]


class Tmux:
    """A tmux server of our own, its socket in the test's temporary folder (nothing left in /tmp/tmux-*)."""

    def __init__(self, folder: Path) -> None:
        assert TMUX is not None
        self.base = [TMUX, "-S", str(folder / "tmux.sock"), "-f", "/dev/null"]

    def __call__(self, *args: str) -> str:
        done = subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=20, check=True)
        return done.stdout

    def start(self, width: int, height: int, shell: str) -> None:
        """Session ``tui`` running ``shell`` in a ``width`` x ``height`` window that keeps its size: with no
        client attached tmux may otherwise recalculate a window's size (a 3-row pane was seen once, mid-test)."""
        self("new-session", "-d", "-s", "tui", "-x", str(width), "-y", str(height), "-c", str(REPO), shell)
        self("set-option", "-g", "window-size", "manual")
        self("resize-window", "-t", "tui", "-x", str(width), "-y", str(height))

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
    status_file = tmp_path / "exit-status"
    shell = app_shell(command, status_file)
    try:
        tmux.start(100, 32, shell)
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


# --- reading colours back from the terminal ----------------------------------------------------------------

SGR = re.compile(r"\x1b\[([0-9;]*)m")
BLACK_BACKGROUNDS = {None, 0, 16}  # the terminal's default, ANSI black, 256-colour black
HALF_BLOCKS = "▁▂▃▄▅▆▇"


def cells(line: str) -> list[tuple[str, int | None]]:
    """One ``capture-pane -e`` line as (character, background colour seen) per cell (256-colour numbers).

    Only what tells a drawn bar from a glyph on black is kept: foreground, background and reverse video.
    """
    result: list[tuple[str, int | None]] = []
    fg: int | None = None
    bg: int | None = None
    reverse = False
    position = 0
    for match in SGR.finditer(line + "\x1b[m"):
        for char in line[position : match.start()]:
            result.append((char, fg if reverse else bg))
        position = match.end()
        codes = [int(code) if code else 0 for code in match[1].split(";")]
        while codes:
            code = codes.pop(0)
            if code == 0:
                fg, bg, reverse = None, None, False
            elif code == 7:
                reverse = True
            elif code == 27:
                reverse = False
            elif code == 39:
                fg = None
            elif code == 49:
                bg = None
            elif code in (38, 48) and codes[:1] == [5]:
                colour = codes[1]
                codes = codes[2:]
                if code == 38:
                    fg = colour
                else:
                    bg = colour
    return result


def test_rapid_adds_and_the_help_overlay_at_80x24(tmp_path: Path) -> None:
    """In a real 80x24 terminal: three quick adds give three new instances, and the screen stays clean (the
    log shows its newest lines and no scrollbar glyphs, the panels' scrollbar is a drawn bar); the help
    overlay says there is more and scrolls to every key."""
    tmux = Tmux(tmp_path)
    status_file = tmp_path / "exit-status"
    command = [sys.executable, "-m", "spofkit", "tui"]
    shell = app_shell(command, status_file)
    try:
        tmux.start(80, 24, shell)
        wait_until(lambda: "1 a" in tmux.screen() and "▶ c ● UP" in tmux.screen(), "the dashboard is drawn")
        tmux("send-keys", "-t", "tui", "aaa")  # one write: the app reads the three keys at once
        wait_until(lambda: all(f"▶ {name} ● UP" in tmux.screen() for name in "def"), "d, e and f UP")
        wait_until(lambda: tmux.screen().count("marked UP") == 3, "the log shows the three newest lines")
        screen = tmux.screen()
        assert "already" not in screen and "not running" not in screen and "failed" not in screen, screen
        assert "watching 3 instances" not in screen  # the log is longer than its box: it shows its newest lines

        lines = tmux("capture-pane", "-p", "-e", "-N", "-t", "tui").splitlines()  # -N: keep trailing cells
        plain = screen.splitlines()
        # No lone half-block glyph at the end of the log's lines (a scrollbar thumb's edge, drawn on black).
        top = next(row for row, text in enumerate(plain) if "events (lab time)" in text)
        bottom = next(row for row in range(top + 1, len(plain)) if plain[row].lstrip("│ ").startswith("╰"))
        log_edge = [plain[row][plain[top].rindex("╮") - 1] for row in range(top + 1, bottom)]
        assert not set(log_edge) & set(HALF_BLOCKS), log_edge
        # The panels (two rows of three, one row shown) scroll: their scrollbar is a drawn bar, not black cells
        # with a glyph or two (the right-most column of the panel rows).
        first = next(row for row, text in enumerate(plain) if "1 a ●" in text)
        panel_rows = range(first, first + 6)  # a panel is six rows high
        scrollbar = [cells(lines[row])[79] for row in panel_rows]
        assert all(background not in BLACK_BACKGROUNDS for _, background in scrollbar), scrollbar

        tmux("send-keys", "-t", "tui", "?")
        wait_until(lambda: "spofkit keys" in tmux.screen(), "the help overlay")
        # The hint is set once the list is laid out (after the title, which comes with the screen).
        wait_until(lambda: "more below" in tmux.screen(), "the help says there is more below")
        seen = tmux.screen()
        assert "q ^c   quit" not in seen
        # Line by line (↓): each screen overlaps the one before, so no key can scroll past unseen, however the
        # scrolling is timed (a page key pressed just as the overlay opens can land two pages on).
        for _ in range(120):  # bounded: the list is about two screens long at 80x24
            if "close this screen" in tmux.screen():
                break
            tmux("send-keys", "-t", "tui", "Down")
            wait_until(lambda before=seen: tmux.screen() not in before, "the help scrolled", 10.0)
            seen += wait_until_settled(tmux)
        size = tmux.pane("pane_width") + "x" + tmux.pane("pane_height")
        wait_until(lambda: "end · ↑ PgUp back" in tmux.screen(), f"the help's end (pane {size})", 10.0)
        end = tmux.screen()
        tmux("send-keys", "-t", "tui", "Home")
        wait_until(lambda: "more below" in tmux.screen(), "back at the top")
        top = wait_until_settled(tmux)
        tmux("send-keys", "-t", "tui", "Space")  # space turns a page
        wait_until(lambda: tmux.screen() not in (top, end), "space turned a page")
        for row in ("s      slow", "S      too slow", "t      retries", "k      checks", "p      pause", "q ^c   quit"):
            assert row in seen, f"{row!r} never shown in the help"
        tmux("send-keys", "-t", "tui", "Escape")
        wait_until(lambda: "spofkit keys" not in tmux.screen(), "the help closed")
        tmux("send-keys", "-t", "tui", "q")
        wait_until(lambda: status_file.exists() and status_file.read_text().strip(), "the app exits after q")
        assert status_file.read_text().strip() == "0", tmux.screen()
    finally:
        tmux.kill()


def strip_line(screen: str, name: str) -> str:
    """The front door strip's line for balancer ``name`` as the terminal shows it, spaces squeezed, from the name."""
    for line in screen.splitlines()[1:4]:  # the strip sits under the status bar
        words = line.split()
        if name in words:
            return " ".join(words[words.index(name) :])
    return ""


@pytest.mark.parametrize(
    ("options", "children"),
    [
        pytest.param([], 0, id="inprocess"),
        # Two balancers and three instances, each its own process: C is a real kill -9 of lb1's.
        pytest.param(["--isolation", "process"], 5, id="process-isolation"),
    ],
)
def test_crash_key_on_lb1_in_a_real_terminal_shows_lb2_master_and_quit_leaves_nothing(
    tmp_path: Path, options: list[str], children: int
) -> None:
    tmux = Tmux(tmp_path)
    status_file = tmp_path / "exit-status"
    command = [sys.executable, "-m", "spofkit", "tui", "--balancers", "2", *options]
    shell = app_shell(command, status_file)
    try:
        tmux.start(100, 32, shell)
        wait_until(
            lambda: (
                strip_line(tmux.screen(), "lb1").startswith("lb1 ◉ MASTER ● running")
                and strip_line(tmux.screen(), "lb2").startswith("lb2 ○ BACKUP")
            ),
            "the front door drawn: lb1 master, lb2 backup",
        )
        assert "C crash LB" in tmux.screen()  # the footer shows the pair's keys
        pane_pid = int(tmux.pane("pane_pid"))
        wait_until(lambda: len(descendants(pane_pid)) >= 1 + children, f"the app and {children} child processes")
        started = descendants(pane_pid)
        if children:  # lb1's line ends with its process id
            wait_until(lambda: re.search(r"pid \d+$", strip_line(tmux.screen(), "lb1")), "lb1's pid shown")
            lb1_pid = int(strip_line(tmux.screen(), "lb1").rsplit(" ", 1)[1])
            assert lb1_pid in started, (lb1_pid, started)

        tmux("send-keys", "-t", "tui", "C")  # lb1 is the selected balancer
        wait_until(
            lambda: (
                strip_line(tmux.screen(), "lb2").startswith("lb2 ◉ MASTER")
                and "CRASHED" in strip_line(tmux.screen(), "lb1")
            ),
            "lb2 MASTER, lb1 crashed, read back from the terminal",
        )
        screen = tmux.screen()
        assert "lb2 is now MASTER" in screen, screen
        if children:
            wait_until(lambda: not alive(lb1_pid), "lb1's process is gone (kill -9)", 10.0)

        tmux("send-keys", "-t", "tui", "q")
        wait_until(lambda: status_file.exists() and status_file.read_text().strip(), "the app exits after q")
        assert status_file.read_text().strip() == "0", tmux.screen()
        # Everything the app started (the app, its balancers and instances) is gone; under the shell only its sleep.
        wait_until(lambda: not any(alive(pid) for pid in started), "every process the app started is gone", 10.0)
        left = [pid for pid in descendants(pane_pid) if alive(pid) and command_name(pid) != "sleep"]
        assert not left, [command_name(pid) for pid in left]
    finally:
        tmux.kill()


def command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""
