"""The mypyc-compiled copy of the simulator (bench/compile_sim.py) is the same simulator, only faster.

One build (about a minute), then the same observations made twice, each in a fresh process: once importing
spofkit from the source, once from the compiled copy. Every example scenario must give the same digest (the hash
of its whole event log), a learner's own strategy (not a subclass of Strategy) must run and give the same digest,
replications through a process pool must give the same figures, and bad input must get the same messages.
The targets the build refuses (in or around the source, inside a file, a folder it did not make) are refused
before anything is deleted, copied or compiled, and the hint it prints runs the copy even from the project folder.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import compile_sim  # noqa: E402

# Run in a child process: what a run of each kind gives, as JSON.
OBSERVE = r"""
import contextlib, io, json, sys
from pathlib import Path

import spofkit.sim.scheduler
from spofkit.capacity import Capacity
from spofkit.cli import main
from spofkit.policy import HealthSettings, RetrySettings
from spofkit.sim import SimLab
from spofkit.sim.replicate import replicate

seen = {"compiled": not spofkit.sim.scheduler.__file__.endswith(".py"), "scenarios": {}, "errors": {}}
for path in sorted(Path(sys.argv[1]).glob("*.toml")):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["run", str(path), "--sim", "--json", "--seed", "3"])
    figures = json.loads(out.getvalue())
    seen["scenarios"][path.name] = [code, figures["digest"], figures["requests"], figures["failed"]]


class Heaviest:  # a learner's strategy: no base class, the least loaded by hand
    name = "mine"

    def pick(self, backends, request, now, rng):
        return min(backends, key=lambda backend: (backend.in_flight, backend.name))


lab = SimLab(4, strategy=Heaviest(), capacity=Capacity(concurrency=2, queue=4, work_ms=8.0), seed=5)
report = lab.run_load_sync(400.0, 3.0, faults=[(1.0, "b", "crash", {})])
seen["learner_strategy"] = [lab.digest.hexdigest(), report.requests, report.failed]

runs = replicate(Path(sys.argv[1]) / "crash.toml", seeds=[1, 2])
seen["replicate"] = [runs["availability"].mean, [run["digest"] for run in runs.runs]]

for name, make in {
    "health": lambda: HealthSettings(timeout="soon"),
    "retries": lambda: RetrySettings(max_attempts=0),
    "capacity": lambda: Capacity(concurrency=-1),
    "strategy": lambda: SimLab(3, strategy="fastest"),
    "load": lambda: SimLab(3).run_load_sync(-5, 1.0),
}.items():
    try:
        make()
    except Exception as error:
        seen["errors"][name] = f"{type(error).__name__}: {error}"
    else:
        seen["errors"][name] = "no error"
print(json.dumps(seen))
"""


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        return compile_sim.build(tmp_path_factory.mktemp("compiled"))
    except RuntimeError as error:  # no compiler, no headers: say so (a failure, not a skip)
        pytest.fail(f"could not build the compiled copy: {error}")


def observe(compiled: Path | None, cwd: Path) -> dict[str, Any]:
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    if compiled is not None:
        environment["PYTHONPATH"] = str(compiled)
    examples = ROOT / "spofkit" / "sim" / "examples"
    done = subprocess.run(
        [sys.executable, "-c", OBSERVE, str(examples)],
        cwd=cwd,  # not the repository: `python -c` puts the working directory first on the path
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return seen


def test_the_copy_compiles_every_listed_module_and_knows_when_it_is_stale(compiled: Path) -> None:
    for name in compile_sim.COMPILED:
        module = compiled / name
        assert list(module.parent.glob(f"{module.stem}.*.so")), f"{name} was not compiled"
    assert not list((compiled / "spofkit" / "policy").glob("strategies.*.so")), "strategies must stay Python"
    assert compile_sim.is_fresh(compiled)
    stamp = compiled / "SOURCE_SHA256"
    original = stamp.read_text()
    try:
        stamp.write_text("0" * 64 + "\n")  # as if the source had changed since the build
        assert not compile_sim.is_fresh(compiled)
    finally:
        stamp.write_text(original)


def test_the_compiled_copy_runs_the_same_simulation(compiled: Path, tmp_path: Path) -> None:
    source, fast = observe(None, tmp_path), observe(compiled, tmp_path)
    assert source["compiled"] is False and fast["compiled"] is True  # each child imported what it should
    assert len(source["scenarios"]) >= 4
    for name, (code, digest, requests, _failed) in source["scenarios"].items():
        assert code == 0 and requests > 0 and len(digest) == 64, name
    assert fast["scenarios"] == source["scenarios"]
    assert fast["learner_strategy"] == source["learner_strategy"]
    assert source["learner_strategy"][1] == 1200
    assert fast["replicate"] == source["replicate"]
    assert len(set(source["replicate"][1])) == 2  # two seeds, two different runs
    assert fast["errors"] == source["errors"]
    assert all(message != "no error" for message in source["errors"].values()), source["errors"]


def test_the_build_deletes_no_folder_it_did_not_make(tmp_path: Path) -> None:
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "keep.txt").write_text("a learner's work")
    with pytest.raises(RuntimeError, match="a folder with other files in it: give an empty or new folder"):
        compile_sim.build(mine)
    assert (mine / "keep.txt").read_text() == "a learner's work"
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(RuntimeError, match="is a file, not a folder"):
        compile_sim.build(a_file)
    assert a_file.read_text() == "x"


class WouldBuild(Exception):
    """Raised instead of deleting, copying, compiling or making a folder in the repository."""


@pytest.fixture
def no_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """A refusal must come before any of the build's work: without it, the test stops here, harmlessly.

    (Without the check for a target inside the package, the build would copy the package into itself in the
    repository, hundreds of MB deep.) A folder may still be made outside the repository, so that a real mkdir
    can fail.
    """

    def stop(*args: object, **kwargs: object) -> None:
        raise WouldBuild(args)

    make_folder = Path.mkdir

    def mkdir_outside_the_repository(self: Path, *args: Any, **kwargs: Any) -> None:
        if self.resolve().is_relative_to(ROOT) or ROOT.is_relative_to(self.resolve()):
            raise WouldBuild(self)
        make_folder(self, *args, **kwargs)

    monkeypatch.setattr(compile_sim.shutil, "rmtree", stop)
    monkeypatch.setattr(compile_sim.shutil, "copytree", stop)
    monkeypatch.setattr(compile_sim.subprocess, "run", stop)
    monkeypatch.setattr(Path, "mkdir", mkdir_outside_the_repository)


def refused_by_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """main()'s one-line message for a refused target (exit status 1, nothing on stdout)."""
    capsys.readouterr()
    assert compile_sim.main(argv) == 1
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1, err
    return err.strip()


def test_a_target_in_or_around_the_package_source_is_refused(
    no_build: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    package = ROOT / "spofkit"
    link = tmp_path / "link"
    link.symlink_to(package / "sim")  # resolved, a link into the package is inside it too
    for target in (package / "x", package, package / "sim", package / "sim" / "new" / "deeper", link / "x"):
        with pytest.raises(RuntimeError, match=r"is inside the package source .*: the copy would copy itself") as seen:
            compile_sim.build(target)
        assert str(target.resolve()) in str(seen.value) and "\n" not in str(seen.value)
    for target in (ROOT, ROOT.parent):
        with pytest.raises(RuntimeError, match=r"holds the package source .*: a rebuild would delete the source"):
            compile_sim.build(target, force=True)
    monkeypatch.chdir(ROOT)
    message = refused_by_main(["spofkit/x"], capsys)  # as typed: bench/compile_sim.py spofkit/x
    assert message.startswith(f"{package / 'x'} is inside the package source"), message
    assert refused_by_main([".."], capsys).startswith(f"{ROOT.parent} holds the package source")
    assert not (package / "x").exists() and not (package / "sim" / "new").exists()
    assert (package / "__init__.py").is_file() and (package / "sim" / "scheduler.py").is_file()
    for folder in (package, package / "sim", ROOT, ROOT.parent):
        assert not (folder / "COMPILED_BY_SPOFKIT").exists() and not (folder / "SOURCE_SHA256").exists()


def test_a_target_inside_a_file_gets_a_sentence_not_a_traceback(
    no_build: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("a learner's notes")
    for target in (notes / "copy", notes / "a" / "b"):
        with pytest.raises(RuntimeError, match=re.escape(f"{target} is inside a file ({notes}), not a folder")):
            compile_sim.build(target)
    message = refused_by_main([str(notes / "copy")], capsys)
    assert message == f"{notes / 'copy'} is inside a file ({notes}), not a folder: give a folder for the compiled copy"
    assert notes.read_text() == "a learner's notes"


def test_a_folder_that_cannot_be_made_gets_a_sentence(
    no_build: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def denied(self: Path, *args: object, **kwargs: object) -> None:  # as for a folder not the user's (not root)
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))

    monkeypatch.setattr(Path, "mkdir", denied)
    target = tmp_path / "locked" / "copy"
    with pytest.raises(RuntimeError, match=re.escape(f"cannot make the folder {target}: Permission denied")):
        compile_sim.build(target)
    assert refused_by_main([str(target)], capsys) == f"cannot make the folder {target}: Permission denied"
    assert not (tmp_path / "locked").exists()


def test_only_a_folder_with_this_scripts_mark_is_deleted(no_build: None, tmp_path: Path) -> None:
    stamped = tmp_path / "stamped"  # a learner's folder with a file merely named like the stamp
    stamped.mkdir()
    (stamped / "SOURCE_SHA256").write_text("the hash of my thesis\n")
    (stamped / "thesis.txt").write_text("a learner's work")
    marked = tmp_path / "marked"  # the mark's name, not its text
    marked.mkdir()
    (marked / "COMPILED_BY_SPOFKIT").write_text("my own marker\n")
    (marked / "keep.txt").write_text("a learner's work")
    for folder in (stamped, marked):
        with pytest.raises(RuntimeError, match="a folder with other files in it: give an empty or new folder"):
            compile_sim.build(folder, force=True)
    assert (stamped / "thesis.txt").read_text() == "a learner's work"
    assert (stamped / "SOURCE_SHA256").read_text() == "the hash of my thesis\n"
    assert (marked / "keep.txt").read_text() == "a learner's work"
    ours = tmp_path / "ours"  # an old copy this script made: deleted and rebuilt (stopped here by no_build)
    ours.mkdir()
    (ours / "COMPILED_BY_SPOFKIT").write_text(compile_sim._MARK_TEXT)
    (ours / "spofkit").mkdir()
    with pytest.raises(WouldBuild):
        compile_sim.build(ours, force=True)


def test_the_hint_names_the_console_script_and_an_absolute_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv = tmp_path / "venv" / "bin"
    venv.mkdir(parents=True)
    python = venv / "python"
    monkeypatch.chdir(tmp_path)
    copy = shlex.quote(str(tmp_path / "build" / "compiled"))
    warning = "(not python -m spofkit from the project folder: it imports the source there)"
    # No console script beside the interpreter: the one on PATH, by name.
    hint = compile_sim.usage_hint(Path("build/compiled"), str(python))
    assert hint.splitlines() == [f"use it with: PYTHONPATH={copy} spofkit run SCENARIO.toml", warning]
    (venv / "spofkit").write_text("#!/bin/sh\n")
    hint = compile_sim.usage_hint(Path("build/compiled"), str(python))
    script = shlex.quote(str(venv / "spofkit"))
    assert hint.splitlines() == [f"use it with: PYTHONPATH={copy} {script} run SCENARIO.toml", warning]


PROBE = """
import sys
import spofkit.sim.scheduler
print(spofkit.sim.scheduler.__file__)
"""


def test_the_printed_hint_runs_the_copy_from_the_project_folder(
    compiled: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert compile_sim.main([str(compiled)]) == 0  # fresh already (no build), but the hint all the same
    lines = capsys.readouterr().out.strip().splitlines()
    # (Rebuilt if the source changed since the fixture built it: the hint is the same.)
    assert lines[0] == f"{compiled} is up to date with the source" or lines[0].startswith("compiled "), lines
    assert lines[2] == "(not python -m spofkit from the project folder: it imports the source there)"
    setting, *command = shlex.split(lines[1].removeprefix("use it with: "))
    assert setting == f"PYTHONPATH={compiled}" and command[1:] == ["run", "SCENARIO.toml"], lines[1]
    console_script = Path(sys.executable).with_name("spofkit")
    assert command[0] == (str(console_script) if console_script.is_file() else "spofkit")
    environment = {**os.environ, "PYTHONPATH": str(compiled)}
    scenario = ROOT / "spofkit" / "sim" / "examples" / "crash.toml"
    done = subprocess.run(
        [command[0], "run", str(scenario), "--sim", "--json", "--seed", "3"],
        cwd=ROOT,  # where `python -m spofkit` would import the source
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout)
    assert len(figures["digest"]) == 64 and figures["compiled"] is True  # and it says which simulator ran
    # Why a script and not `python -m` or `-c`: a script's own folder goes first on the path, the current one
    # does not; from the project folder, `-c` (like `-m`) finds the source before PYTHONPATH.
    (tmp_path / "probe.py").write_text(PROBE)
    runs: list[tuple[list[str], Path]] = [
        ([sys.executable, str(tmp_path / "probe.py")], compiled),
        ([sys.executable, "-c", PROBE], ROOT),
    ]
    for argv, imported in runs:
        done = subprocess.run(argv, cwd=ROOT, env=environment, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        scheduler = Path(done.stdout.strip())
        assert scheduler.is_relative_to(imported), (argv[1], scheduler)
        assert scheduler.suffix == (".so" if imported == compiled else ".py"), scheduler
