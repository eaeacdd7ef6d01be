"""``make test`` on a fresh machine: the system packages step of the Makefile, run for real with fake tools.

The step must install chromium, tmux, haproxy and nginx (and, as root, keepalived) with apt-get when it runs as root
and they are missing, and otherwise stop at once (before any Python set-up) with the exact command to run. We run
``make system-packages`` with a ``PATH`` that holds only stand-ins: an ``id`` that says who we are and an ``apt-get``
that writes down how it was called, and with ``SBIN_DIRS`` (where Debian puts haproxy, nginx and keepalived) pointed
at an empty folder, so no real package is installed and the real machine's binaries cannot hide a missing step.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAKE = shutil.which("make")  # the Quickstart needs make, so it is there


def fake_tools(folder: Path, *, uid: int, present: tuple[str, ...]) -> Path:
    """A bin folder with a fake ``id``, a recording ``apt-get`` and a stand-in for each of ``present``."""
    folder.mkdir()
    log = folder / "apt-get.log"
    (folder / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    (folder / "apt-get").write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    for name in present:
        (folder / name).write_text("#!/bin/sh\nexit 0\n")
    for tool in folder.iterdir():
        tool.chmod(0o755)
    return log


def run_make(tools: Path, *targets: str, **variables: str) -> subprocess.CompletedProcess[str]:
    assert MAKE is not None
    variables.setdefault("SBIN_DIRS", str(tools.parent / "no-sbin"))  # not the machine's /usr/sbin
    settings = [f"{key}={value}" for key, value in variables.items()]
    return subprocess.run(
        [MAKE, "--no-print-directory", "-C", str(ROOT), *targets, *settings],
        env={"PATH": str(tools), "HOME": os.environ.get("HOME", "/tmp")},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_as_root_missing_packages_are_installed_with_apt(tmp_path: Path) -> None:
    tools = tmp_path / "bin"
    log = fake_tools(tools, uid=0, present=("tmux",))
    result = run_make(tools, "system-packages")
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    assert calls[0].startswith("update")
    # Only what is missing; keepalived too, as root.
    assert calls[1].split() == ["install", "-y", "-qq", "chromium", "haproxy", "nginx", "keepalived"], calls
    assert "installing Debian packages the tests need: chromium haproxy nginx keepalived" in result.stdout


def test_not_root_stops_at_once_with_the_exact_command(tmp_path: Path) -> None:
    tools = tmp_path / "bin"
    log = fake_tools(tools, uid=1000, present=())
    venv = tmp_path / "venv"
    # The whole of `make test`, with a fresh VENV: it must stop before creating it.
    result = run_make(tools, "test", VENV=str(venv))
    assert result.returncode != 0
    assert "sudo apt-get install -y chromium tmux haproxy nginx" in result.stderr
    assert "keepalived" not in result.stderr  # its experiment needs root anyway: not asked of other users
    assert not log.exists(), "apt-get must not run without root"
    assert not venv.exists(), "make test must stop before setting up Python"


def test_a_proxy_in_sbin_counts_as_there_though_off_the_path(tmp_path: Path) -> None:
    tools, sbin = tmp_path / "bin", tmp_path / "sbin"
    log = fake_tools(tools, uid=0, present=("chromium", "tmux"))
    fake_tools(sbin, uid=0, present=("haproxy", "nginx"))
    result = run_make(tools, "system-packages", SBIN_DIRS=str(sbin))
    assert result.returncode == 0, result.stderr
    assert log.read_text().splitlines()[1].split() == ["install", "-y", "-qq", "keepalived"]


def test_nothing_to_do_when_everything_is_there(tmp_path: Path) -> None:
    tools = tmp_path / "bin"
    log = fake_tools(tools, uid=1000, present=("chromium", "tmux", "haproxy", "nginx"))
    result = run_make(tools, "system-packages")
    assert result.returncode == 0, result.stderr
    assert result.stdout == result.stderr == ""
    assert not log.exists()


def test_make_test_runs_the_system_packages_step_first() -> None:
    assert MAKE is not None
    database = subprocess.run([MAKE, "-C", str(ROOT), "-pn", "test"], capture_output=True, text=True, timeout=60).stdout
    rule = next(line for line in database.splitlines() if line.startswith("test:"))
    assert rule.split()[1] == "system-packages", rule


def test_ci_calls_only_make_test() -> None:
    commands = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert commands[-1] == "make test"
    assert not any("apt-get" in line for line in commands)
