"""bench/sim_bench.py refuses a bad option with argparse's one-line error naming it (exit status 2), not a traceback.

Every option is checked before anything runs: a bad ``--day-rate`` must not wait for minutes of parts 1 and 2 to
be reported. The runs here are small (a few thousand requests, SimPy and the day skipped): the benchmark itself
takes minutes and is not a test.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "sim_bench.py"
sys.path.insert(0, str(ROOT / "bench"))

import sim_bench  # noqa: E402

from spofkit.policy import strategy_names  # noqa: E402

# (the bad options, the option the error must name, a piece of the error that says what is wanted)
BAD = [
    (["--instances", "2"], "--instances", "5..10,000 (the four faults go to b, c, d, e"),
    (["--instances", "3"], "--instances", "5..10,000"),
    (["--instances", "4"], "--instances", "5..10,000"),
    (["--instances", "0"], "--instances", "5..10,000"),
    (["--instances", "100000"], "--instances", "5..10,000"),
    (["--instances", "many"], "--instances", "whole number"),
    (["--rate", "0"], "--rate", "> 0 and <= 10,000,000"),
    (["--rate", "-5"], "--rate", "> 0"),
    (["--rate", "nan"], "--rate", "> 0"),
    (["--rate", "inf"], "--rate", "> 0"),
    (["--rate", "1e9"], "--rate", "<= 10,000,000"),
    (["--rate", "fast"], "--rate", "number of requests a second"),
    (["--requests", "0"], "--requests", "whole number 1..10,000,000"),
    (["--requests", "-5"], "--requests", "whole number 1..10,000,000"),
    (["--requests", "2.5"], "--requests", "whole number"),
    (["--requests", "1e12"], "--requests", "1..10,000,000"),
    (["--requests", "lots"], "--requests", "whole number"),
    (["--small-requests", "0"], "--small-requests", "1..10,000,000"),
    (["--small-requests", "-1"], "--small-requests", "1..10,000,000"),
    (["--seed", "-1"], "--seed", "whole number 0.."),
    (["--seed", "x"], "--seed", "whole number 0.."),
    (["--rounds", "-1"], "--rounds", "0..50"),
    (["--rounds", "1000"], "--rounds", "0..50"),
    (["--rounds", "two"], "--rounds", "0..50"),
    (["--day-instances", "0"], "--day-instances", "1..10,000"),
    (["--day-instances", "-3"], "--day-instances", "1..10,000"),
    (["--day-rate", "0"], "--day-rate", "> 0"),
    (["--day-rate", "-1"], "--day-rate", "> 0"),
    (["--day-rate", "inf"], "--day-rate", "> 0"),
    (["--day-health-interval", "0"], "--day-health-interval", "> 0"),
    (["--day-health-interval", "-1"], "--day-health-interval", "> 0"),
    (["--day-health-interval", "0.0001"], "--day-health-interval", ">= 0.001"),
    (["--day-health-interval", "1e6"], "--day-health-interval", "<= 86,400"),
    (["--day-health-interval", "nan"], "--day-health-interval", "> 0"),
    # Each fine alone, together more model events than one simulator run takes.
    (["--requests", "1000000", "--rate", "1"], "--rate", "--requests 1,000,000 at --rate 1"),
    (["--day-instances", "10000", "--day-health-interval", "0.01"], "--day-health-interval", "model events"),
    (["--day-rate", "10000"], "--day-rate", "model events in the day"),
]


def error_line(stderr: str) -> str:
    """The one line of argparse's error (the usage above it may wrap over several)."""
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, stderr
    assert stderr.rstrip().splitlines()[-1] == errors[0], "the error is one line, the last"
    return errors[0]


@pytest.mark.parametrize(("argv", "option", "wanted"), BAD, ids=[" ".join(case[0]) for case in BAD])
def test_a_bad_option_is_refused_by_name_before_anything_runs(
    argv: list[str], option: str, wanted: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        sim_bench.main([*argv, "--skip-simpy"])
    assert exited.value.code == 2
    out, err = capsys.readouterr()
    assert out == "", "nothing ran"
    line = error_line(err)
    assert option in line
    assert wanted in line
    assert repr(argv[-1]) in line or argv[-1] in line  # the value given is quoted back


def test_an_unknown_strategy_lists_spofkits_strategies(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        sim_bench.main(["--strategy", "bogus"])
    assert exited.value.code == 2
    line = error_line(capsys.readouterr().err)
    assert "--strategy" in line and "'bogus'" in line
    for name in strategy_names():  # the list comes from spofkit, so a new strategy shows up here by itself
        assert name in line


@pytest.mark.parametrize(
    "argv",
    [["--instances", "2"], ["--rate", "0"], ["--requests", "-5"], ["--strategy", "bogus"], ["--day-rate", "0"]],
    ids=lambda argv: " ".join(argv),
)
def test_the_script_itself_exits_2_with_no_traceback(argv: list[str]) -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), *argv], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stdout == ""
    assert argv[0] in error_line(done.stderr)


def test_the_option_types_take_what_a_learner_writes() -> None:
    requests = sim_bench.whole_number(1, sim_bench.MAX_REQUESTS)
    assert requests("1e6") == requests("1_000_000") == requests("1000000") == 1_000_000
    assert sim_bench.positive_number(10.0, "seconds")("0.5") == 0.5
    assert sim_bench.strategy_name("Power-Of-Two") == "power_of_two"  # spelt as spofkit forgives, named as it names
    assert sim_bench.MIN_INSTANCES == 5  # a is left alone, b to e get the faults


def test_printed_seconds_are_rounded_to_the_millisecond() -> None:
    assert sim_bench.seconds_text(1.3041388463520527) == "1.304 s"
    assert sim_bench.seconds_text(None) == "never"
    assert sim_bench.seconds_text(None, "no time") == "no time"


def test_a_small_run_of_the_fewest_instances_prints_rounded_figures() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            *("--requests", "2000", "--instances", "5", "--strategy", "Power-Of-Two", "--skip-simpy", "--skip-day"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    out = done.stdout
    assert "(power_of_two;" in out
    assert "crash b at 0.020 s, hang c at 0.040 s, slow d at 0.060 s, gray e at 0.080 s" in out
    assert re.search(r"^ +detection +(never|\d+\.\d{3} s) \(fault b at 0\.020 s\)$", out, re.MULTILINE), out
    assert not re.search(r"\d\.\d{4,}", out), "a figure printed unrounded"


def test_the_goal_line_says_met_or_by_how_much_it_is_missed() -> None:
    assert sim_bench.goal_line(1_000_000, 9.3, "compiled") == (
        "goal           1,000,000 requests in <= 10 s on one core, compiled: 9.30 s, met"
    )
    assert sim_bench.goal_line(1_000_000, 15.0, "source").endswith("source: 15.00 s, not met (1.50x too slow)")
    assert sim_bench.goal_line(2_000, 0.03, "source").endswith(
        "<= 0.02 s on one core, source: 0.03 s, not met (1.50x too slow)"
    )


def test_the_simpy_model_simulates_the_same_scenario() -> None:
    """The 1.92x is a comparison of like with like only if the SimPy model runs the same scenario: the same requests
    reach the same instances, fail and are retried alike, and the crash is detected within the checks' bound (the
    two schedule their probes' timers differently, so the windows need not be equal). A small run of part 2b's."""
    from spofkit.policy import HealthSettings
    from spofkit.sim import Capacity

    setup = sim_bench.Setup(
        5, 20_000, 2000.0, "power_of_two", Capacity(concurrency=16, queue=64, work_ms=5.0, spread_ms=2.0), 1
    )
    ours = sim_bench.run_spofkit(setup)
    bound = HealthSettings().detection_window_bound()
    for theirs in (sim_bench.run_simpy(setup), sim_bench.run_simpy(setup, shortcut=False)):
        mine, other = ours.report, theirs.report
        assert other.requests == mine.requests == 20_000, theirs.name
        assert abs(other.failed - mine.failed) <= 5 and abs(other.retried - mine.retried) <= 5, theirs.name
        assert set(other.per_instance) == set(mine.per_instance), theirs.name
        for name, served in mine.per_instance.items():  # b crashed, c hung, d slow, e gray: each serves its share
            assert abs(other.per_instance[name] - served) <= 0.01 * served + 10, (theirs.name, name)
        assert mine.detection_window is not None and other.detection_window is not None
        assert mine.detection_window <= bound and other.detection_window <= bound, theirs.name
        assert abs(theirs.published - ours.published) <= 0.005 * ours.published, theirs.name
