"""Compile the simulator's hot path with mypyc, into a copy of the package: the same source, about 1.5x as fast.

A simulated request runs through the policy (:mod:`spofkit.policy`) and the driver (:mod:`spofkit.sim`) some
forty Python calls deep; mypyc, the compiler that comes with mypy, turns those typed modules into C extensions.
Nothing in the source changes and neither does a run: the compiled copy publishes the same events, so a scenario
and a seed give the same digest (``tests/test_compiled_sim.py`` checks it).

The copy is built *beside* the source, never in it (``build/compiled`` by default): an extension module next to
its ``.py`` file would be imported instead of it, and a learner's edit of a policy would silently do nothing (a
target in the package, or around it, is refused). Use it by putting the copy first on the path, with the console
script (``python -m spofkit`` and ``python -c`` put the current folder first, so from the project folder they
import the source and pass over the copy)::

    make compiled                                  # or: .venv/bin/python bench/compile_sim.py [DIR]
    PYTHONPATH=build/compiled .venv/bin/spofkit run spofkit/sim/examples/zones.toml --sim
    .venv/bin/python bench/sim_bench.py --compiled build/compiled   # pure and compiled, side by side

What is compiled: the modules below. What stays Python: the strategies (a learner's own strategy, subclass or
not, works as before), the events and faults (dataclasses that other code reads with ``vars`` and ``replace``),
the settings and capacity (compiled, a wrong type would get mypyc's TypeError instead of the message naming the
field, and a frozen one would not unpickle for a process pool), the lab facade, reports, everything live. A copy
older than the source is rebuilt (:func:`build` compares a hash of every source file with the one it stored).

Needs a C compiler and Python's headers (``gcc`` and ``python3-dev`` on Debian); about a minute on one core.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TARGET = ROOT / "build" / "compiled"
# The modules a simulated request goes through (the policy's and the driver's), in the package.
COMPILED = (
    "spofkit/bus.py",
    "spofkit/policy/__init__.py",
    "spofkit/policy/attempts.py",
    "spofkit/policy/balancer.py",
    "spofkit/policy/counters.py",
    "spofkit/policy/pool.py",
    "spofkit/sim/balancer.py",
    "spofkit/sim/client.py",
    "spofkit/sim/digest.py",
    "spofkit/sim/frontdoor.py",
    "spofkit/sim/instance.py",
    "spofkit/sim/keep.py",
    "spofkit/sim/scheduler.py",
    "spofkit/worktime.py",
)
_STAMP = "SOURCE_SHA256"
_MARK = "COMPILED_BY_SPOFKIT"  # written first: a folder that has it (with this text) may be deleted and rebuilt
_MARK_TEXT = "a copy of spofkit built by bench/compile_sim.py; it deletes and rebuilds it\n"


def source_hash(root: Path = ROOT) -> str:
    """A hash of every Python file of the package (a change anywhere may change what a compiled module imports)."""
    digest = hashlib.sha256()
    for path in sorted((root / "spofkit").rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def is_fresh(target: Path, expected: str | None = None) -> bool:
    """Was ``target`` built from the source as it is now (whose :func:`source_hash` is ``expected``)?"""
    stamp = target / _STAMP
    return stamp.is_file() and stamp.read_text().strip() == (expected or source_hash())


def made_here(target: Path) -> bool:
    """Did this script make ``target``? Only then may it delete the folder: its mark, with the very text written.

    Not the stamp, nor a mark's name alone: a learner's folder may hold a file merely called so.
    """
    mark = target / _MARK
    try:
        return mark.is_file() and mark.read_text() == _MARK_TEXT
    except (OSError, UnicodeDecodeError):  # unreadable, or not text: not ours
        return False


def check_target(target: Path) -> None:
    """Refuse a resolved ``target`` in or around the package source, before anything is deleted or copied.

    Inside it, the copy would be copied into itself again and again (hundreds of MB, then a RecursionError),
    and an extension module there would shadow its source; around it (the project folder, its parents), a
    rebuild would delete the source.
    """
    package = (ROOT / "spofkit").resolve()
    if target.is_relative_to(package):
        raise RuntimeError(
            f"{target} is inside the package source {package}: the copy would copy itself into itself;"
            f" give a folder beside the source (e.g. {DEFAULT_TARGET})"
        )
    if package.is_relative_to(target):
        raise RuntimeError(
            f"{target} holds the package source {package}: a rebuild would delete the source;"
            f" give a folder of its own beside it (e.g. {DEFAULT_TARGET})"
        )


def build(target: Path = DEFAULT_TARGET, *, force: bool = False) -> Path:
    """Build the compiled copy in ``target`` (unless it is fresh already) and return ``target``.

    Raises RuntimeError with mypyc's last lines if the build fails (no compiler, no headers, a type error), and
    with a one-line reason for a target it refuses (in or around the source, a file, a folder it did not make,
    a folder it cannot make), before anything is deleted or copied.
    """
    target = Path(target).resolve()  # resolved: a relative path or a link into the source is seen for what it is
    check_target(target)
    expected = source_hash()
    if not force and is_fresh(target, expected):
        return target
    if target.exists():
        if not target.is_dir():
            raise RuntimeError(f"{target} is a file, not a folder: give a folder for the compiled copy")
        if any(target.iterdir()) and not made_here(target):
            # The old copy is deleted before the new one is built: never a folder this script did not make.
            raise RuntimeError(f"{target} is a folder with other files in it: give an empty or new folder")
    if shutil.which("gcc") is None and shutil.which("cc") is None:  # before the old copy is deleted
        raise RuntimeError("compiling the simulator needs a C compiler (on Debian: apt-get install gcc python3-dev)")
    if target.exists():
        shutil.rmtree(target)
    try:
        target.mkdir(parents=True)
    except NotADirectoryError as error:  # a file on the way, e.g. notes.txt/copy: exists() said nothing
        inside = next((parent for parent in target.parents if parent.exists() and not parent.is_dir()), None)
        raise RuntimeError(
            f"{target} is inside a file ({inside or 'a parent of it'}), not a folder:"
            " give a folder for the compiled copy"
        ) from error
    except OSError as error:  # permission denied, a read-only disk: a sentence, not a traceback
        raise RuntimeError(f"cannot make the folder {target}: {error.strerror or error}") from error
    (target / _MARK).write_text(_MARK_TEXT)
    # Only the package: a pyproject.toml in the working directory would be read by setuptools during the build.
    shutil.copytree(ROOT / "spofkit", target / "spofkit", ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    # Not the project's mypy settings (mypy would find them in a parent folder; their strictness is for
    # `make lint`): mypy's defaults, for the build only.
    (target / "mypy.ini").write_text("[mypy]\n")
    command = [sys.executable, "-m", "mypyc", "--config-file", "mypy.ini", *COMPILED]
    environment = {**os.environ, "MYPY_FORCE_COLOR": "0"}
    done = subprocess.run(command, cwd=target, capture_output=True, text=True, env=environment, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"mypyc failed to compile the simulator (exit {done.returncode}):\n{tail}")
    missing = [name for name in COMPILED if not list((target / name).parent.glob(f"{Path(name).stem}.*.so"))]
    if missing:
        raise RuntimeError(f"mypyc built no extension for: {', '.join(missing)}")
    shutil.rmtree(target / "build", ignore_errors=True)  # the generated C and objects (tens of MB)
    (target / _STAMP).write_text(expected + "\n")
    return target


def usage_hint(target: Path, executable: str = sys.executable) -> str:
    """How to run spofkit from the copy in ``target``, as two lines for the shell, right from any folder.

    The console script beside ``executable``, not ``python -m spofkit`` or ``python -c``: those put the current
    folder first on the path, ahead of PYTHONPATH, so from the project folder they import the source and the
    copy is silently passed over. A script puts its own folder (the venv's ``bin``) first instead. The target is
    absolute, since a relative PYTHONPATH is read from the folder a command is run in.
    """
    script = Path(executable).with_name("spofkit")
    command = shlex.quote(str(script)) if script.is_file() else "spofkit"
    return (
        f"use it with: PYTHONPATH={shlex.quote(str(Path(target).resolve()))} {command} run SCENARIO.toml\n"
        "(not python -m spofkit from the project folder: it imports the source there)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", nargs="?", type=Path, default=DEFAULT_TARGET)
    parser.add_argument("--force", action="store_true", help="rebuild even if the copy is fresh")
    options = parser.parse_args(argv)
    started = time.perf_counter()
    if not options.force and is_fresh(options.target):
        print(f"{options.target} is up to date with the source")
        print(usage_hint(options.target))
        return 0
    try:
        build(options.target, force=True)
    except RuntimeError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"compiled {len(COMPILED)} modules into {options.target} in {time.perf_counter() - started:.0f} s")
    print(usage_hint(options.target))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
