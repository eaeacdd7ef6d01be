"""The mypyc-compiled copy of the simulator (bench/compile_sim.py) is the same simulator, only faster.

One build (about a minute), then the same observations made twice, each in a fresh process: once importing
spofkit from the source, once from the compiled copy. Every example scenario must give the same digest (the hash
of its whole event log), a learner's own strategy (not a subclass of Strategy) must run and give the same digest,
replications through a process pool must give the same figures, and bad input must get the same messages.
"""

from __future__ import annotations

import json
import os
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
