"""Scenario files: parsed and checked key by key, run on the simulator, or live (refused, naming the key, where the
live driver cannot do what the file asks)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from spofkit.policy import HealthSettings
from spofkit.scenario import (
    ScenarioError,
    check_live,
    load_scenario,
    parse_scenario,
    run_live,
    run_scenario,
    run_scenario_cli,
)
from spofkit.sim import Capacity, FailureProcess

FULL = """
seed = 4
name = "full"

[lab]
instances = 4
strategy = "least_connections"
work_ms = 5
spread_ms = 2
concurrency = 8
queue = 16

[health]
interval = 0.25
fall = 2

retries = false

[ejection]
consecutive_failures = 5

[load]
rate = 150
duration = 4
arrivals = "poisson"

[[faults]]
at = 1.0
instance = "b"
kind = "slow"
ms = 300
recover_at = 2.5

[[faults]]
at = 2.0
instance = "c"
kind = "crash"

[failures]
mtbf = 60
mttr = 5
distribution = "weibull"
shape = 1.5

[[groups]]
name = "rack-1"
instances = ["a", "b"]
mtbf = 600
mttr = 20
"""


def write(tmp_path: Path, text: str, name: str = "scenario.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_every_key_lands_where_it_should(tmp_path: Path) -> None:
    # "retries = false" inside [health] would be a health key: TOML puts top-level keys before the first table.
    text = "retries = false\n" + FULL.replace("\nretries = false\n", "\n")
    scenario = load_scenario(write(tmp_path, text))
    assert scenario.name == "full" and scenario.seed == 4
    assert scenario.instances == 4 and scenario.strategy == "least_connections"
    assert scenario.capacity == Capacity(concurrency=8, queue=16, work_ms=5.0, spread_ms=2.0)
    assert scenario.capacity.distribution == "lognormal"
    assert scenario.health == HealthSettings(interval=0.25, fall=2)
    assert scenario.retries is None
    assert scenario.ejection is not None and scenario.ejection.consecutive_failures == 5
    assert (scenario.rate, scenario.duration, scenario.arrivals) == (150.0, 4.0, "poisson")
    slow, crash = scenario.faults
    assert (slow.at, slow.instance, slow.kind, dict(slow.params), slow.recover_at) == (
        1.0,
        "b",
        "slow",
        {"ms": 300},
        2.5,
    )
    assert (crash.kind, crash.recover_at) == ("crash", None)
    assert scenario.failures == FailureProcess(60.0, 5.0, "weibull", 1.5)
    (group,) = scenario.groups
    assert (group.name, group.instances, group.process.mtbf) == ("rack-1", ("a", "b"), 600.0)


@pytest.mark.parametrize(
    ("change", "key", "words"),
    [
        ({"lab": {"instances": 0}}, "lab.instances", "1..10000"),
        ({"lab": {"concurrency": "eight"}}, "lab.concurrency", "whole number"),
        ({"lab": {"instances": 3, "backups": 9999}}, "lab.backups", "together at most 10000, got 3 + 9999"),
        ({"lab": {"distribution": "exponential", "work_ms": 5, "spread_ms": 1}}, "lab.spread_ms", "an exponential"),
        ({"load": {"rate": 1000, "duration": 50000}}, "load.rate", "50,000,000 requests; a run sends at most"),
        ({"load": {"method": "FOO"}}, "load.method", "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, got 'FOO'"),
        ({"load": {"method": "CONNECT"}}, "load.method", "got 'CONNECT'"),
        ({"lab": {"queue": 4}}, "lab.queue", "needs a concurrency"),
        ({"lab": {"strategy": "fastest"}}, "lab.strategy", "unknown strategy 'fastest'"),
        ({"lab": {"instance": 3}}, "lab.instance", "unknown key 'instance'"),
        ({"lab": {"work_ms": -1}}, "lab.work_ms", "0..60000"),
        ({"health": {"interval": 0}}, "health.interval", "must be a number of seconds >= 0.001"),
        ({"health": {"intervall": 1}}, "health.intervall", "unknown key"),
        ({"retries": "off"}, "retries", "a table of settings or false"),
        ({"retries": {"max_attempts": 0}}, "retries.max_attempts", "a whole number 1..100"),
        ({"load": {"rate": 0}}, "load.rate", "> 0"),
        ({"load": {"arrivals": "bursty"}}, "load.arrivals", "uniform, poisson"),
        ({"faults": [{"at": 1, "instance": "z", "kind": "crash"}]}, "faults[0].instance", "no instance named 'z'"),
        ({"faults": [{"at": 1, "instance": "a", "kind": "explode"}]}, "faults[0].kind", "unknown fault kind"),
        ({"faults": [{"at": 1, "instance": "a", "kind": "slow", "ms": -5}]}, "faults[0].ms", "slow.ms must be >= 0"),
        ({"faults": [{"at": 1, "instance": "a", "kind": "crash", "speed": 1}]}, "faults[0].speed", "no parameter"),
        ({"faults": [{"instance": "a", "kind": "crash"}]}, "faults[0].at", "is missing"),
        ({"faults": [{"at": 9, "instance": "a", "kind": "crash"}]}, "faults[0].at", "<= 5 (load.duration), got 9"),
        ({"faults": [{"at": 2, "instance": "a", "kind": "hang", "recover_at": 1}]}, "faults[0].recover_at", ">= 2"),
        ({"failures": {"mtbf": 10}}, "failures.mttr", "is missing"),
        ({"failures": {"mtbf": 10, "mttr": 1, "distribution": "normal"}}, "failures.distribution", "exponential"),
        ({"failures": {"mtbf": -1, "mttr": 1}}, "failures.mtbf", "at least 0.01 s"),
        ({"groups": [{"name": "z", "instances": ["q"], "mtbf": 1, "mttr": 1}]}, "groups[0].instances", "'q'"),
        ({"seed": -3}, "seed", "0.."),
        ({"colour": "red"}, "colour", "unknown key 'colour'"),
    ],
)
def test_a_bad_key_or_value_is_named(change: dict[str, object], key: str, words: str) -> None:
    with pytest.raises(ScenarioError) as error:
        parse_scenario(change)
    assert error.value.key == key
    assert words in str(error.value)
    assert str(error.value).startswith(f"{key}: ")


def test_a_models_message_does_not_repeat_the_key() -> None:
    with pytest.raises(ScenarioError) as error:
        parse_scenario({"lab": {"concurrency": "eight"}})
    assert str(error.value) == "lab.concurrency: must be a whole number, got 'eight'"  # as the module's doc says


def test_a_method_is_taken_in_either_case() -> None:
    assert parse_scenario({"load": {"method": "post"}}).method == "POST"


def test_a_file_that_is_not_utf8_or_not_toml_is_named_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    latin = tmp_path / "latin.toml"
    latin.write_bytes("# café\n[lab]\n".encode("latin-1"))
    with pytest.raises(ScenarioError, match=r"^file: latin.toml is not UTF-8 text \(byte 0xe9 at offset 5\)$"):
        load_scenario(latin)
    broken = write(tmp_path, "[lab\ninstances = 3", "broken.toml")
    for path, words in ((latin, "is not UTF-8 text"), (broken, "is not valid TOML")):
        assert run_scenario_cli([str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {path.name} {words}"), err
        assert err.count(path.name) == 1, err  # not "x.toml: file: x.toml ..."


def test_a_file_that_is_not_toml_is_named(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"^file: broken.toml is not valid TOML"):
        load_scenario(write(tmp_path, "[lab\ninstances = 3", "broken.toml"))
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.toml")


def test_the_json_output_has_the_figures_and_the_seed_decides_the_digest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, FULL.replace("retries = false\n", ""))
    outputs = []
    for seed in ("4", "4", "5"):
        assert run_scenario_cli([str(path), "--sim", "--seed", seed, "--json"]) == 0
        outputs.append(json.loads(capsys.readouterr().out))
    first, again, other = outputs
    for key in ("requests", "failed", "availability", "detection_window", "wall_s", "digest"):
        assert key in first, key
    assert first["driver"] == "sim" and first["seed"] == 4
    assert first["compiled"] is False  # this suite imports the source (test_compiled_sim runs the compiled copy)
    assert first["requests"] > 0 and 0 < first["availability"] <= 1
    assert first["detection_window"] is not None  # c crashed at 2.0 s and was marked down
    assert again["digest"] == first["digest"]
    assert other["digest"] != first["digest"]


def test_the_text_output_is_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "[load]\nrate = 50\nduration = 2\n[[faults]]\nat = 0.5\ninstance = 'a'\nkind = 'crash'\n")
    assert run_scenario_cli([str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("== scenario (sim, seed 0) ==")
    assert "requests      100" in out and "detected" in out and "digest" in out
    assert "(simulator from the source)" in out  # which build ran: a compiled copy can be passed over unseen


def test_the_text_output_lists_every_planned_fault_balancers_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The report measures its detection window from one instance fault; the rest, and a balancer's, are listed."""
    path = write(
        tmp_path,
        "[lab]\ninstances = 2\nbalancers = 2\n[load]\nrate = 20\nduration = 4\n"
        "[[faults]]\nat = 2.0\nbalancer = 'lb1'\nkind = 'advert_loss'\nrecover_at = 3.0\n"
        "[[faults]]\nat = 0.5\ninstance = 'b'\nkind = 'slow'\nms = 300\n"
        "[[groups]]\nname = 'rack-1'\ninstances = ['a', 'b']\nmtbf = 50\nmttr = 2\n",
    )
    assert run_scenario_cli([str(path)]) == 0
    out = capsys.readouterr().out
    planned = [line for line in out.splitlines() if line.startswith("planned")]
    assert planned == [
        "planned       b slow, ms = 300 at 0.50 s (not recovered)",
        "planned       lb1 advert_loss at 2.00 s -> 3.00 s",
        "planned       rack-1 (a, b) fails as a whole: MTBF 50 s, MTTR 2 s",
    ], out


def test_bad_input_exits_2_with_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "[lab]\nconcurrency = 0\n")
    assert run_scenario_cli([str(path)]) == 2
    err = capsys.readouterr().err
    assert "lab.concurrency" in err and "1..100000" in err


def test_bad_arguments_exit_2_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_scenario_cli(["x.toml", "--sim", "--live"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err
    assert run_scenario_cli(["x.toml", "--seed", "minus one"]) == 2
    assert "--seed: must be a whole number" in capsys.readouterr().err
    # A seed the file could not hold is refused on the command line too (it ran before).
    assert run_scenario_cli(["x.toml", "--seed", str(2**63)]) == 2
    assert "--seed: must be 0..9223372036854775807" in capsys.readouterr().err


def test_a_bound_in_an_error_reads_as_written() -> None:
    with pytest.raises(ScenarioError) as error:
        parse_scenario({"load": {"duration": 1e9}})
    assert str(error.value) == "load.duration: must be > 0 and <= 31622400, got 1000000000"


def test_the_live_driver_refuses_what_only_the_simulator_can_do() -> None:
    for change, key in [
        ({"lab": {"fencing": True, "balancers": 2}}, "lab.fencing"),
        ({"lab": {"instances": 40}}, "lab.instances"),
        ({"load": {"duration": 3600}}, "load.duration"),
        ({"load": {"arrivals": "poisson"}}, "load.arrivals"),
    ]:
        with pytest.raises(ScenarioError) as error:
            check_live(parse_scenario(change))
        assert error.value.key == key
        assert "--sim" in str(error.value)


def test_the_live_driver_takes_the_capacity_keys() -> None:
    """Live instances have workers, a queue and drawn work times now: the file's capacity is run, not refused."""
    capacity = {"concurrency": 2, "queue": 4, "work_ms": 20, "spread_ms": 5}
    check_live(parse_scenario({"lab": capacity}))
    check_live(parse_scenario({"lab": {"concurrency": 1, "work_ms": 10, "distribution": "exponential"}}))


async def test_a_live_run_gives_its_instances_the_files_capacity() -> None:
    """One worker of 400 ms and no queue can serve 2.5 req/s: at 10 req/s a live lab sheds most of the load. (Before,
    the live driver took only work_ms, and every request was served.)"""
    scenario = parse_scenario(
        {"lab": {"instances": 1, "concurrency": 1, "queue": 0, "work_ms": 400}, "load": {"rate": 10, "duration": 1}}
    )
    report = (await run_live(scenario, 0)).report
    assert report.requests == 10 and 5 <= report.failed <= 9, report.to_text()
    assert set(report.errors_by_kind) <= {"http_502", "http_503"}, report.to_text()


def test_a_fault_with_recover_at_is_undone_on_time() -> None:
    scenario = parse_scenario(
        {
            "lab": {"instances": 1},
            "health": False,
            "load": {"rate": 100, "duration": 2},
            "faults": [{"at": 0.5, "instance": "a", "kind": "crash", "recover_at": 1.0}],
        }
    )
    result = run_scenario(scenario)
    assert result.report.failed == 50  # refused from 0.5 s to 1.0 s, at 100 req/s
    assert result.report.outage_periods[0][1] - result.report.outage_periods[0][0] == pytest.approx(0.5, abs=0.11)


def test_python_dash_m_runs_it(tmp_path: Path) -> None:
    path = write(tmp_path, "[load]\nrate = 20\nduration = 1\n")
    done = subprocess.run(
        [sys.executable, "-m", "spofkit.scenario", str(path), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(done.stdout)["requests"] == 20


EXAMPLES = Path(__file__).resolve().parent.parent / "spofkit" / "sim" / "examples"


def test_the_example_scenarios_run_and_show_what_their_comments_say() -> None:
    results = {path.stem: run_scenario(load_scenario(path)).report for path in sorted(EXAMPLES.glob("*.toml"))}
    assert sorted(results) == ["crash", "overload", "split_brain", "zones"]
    assert results["crash"].failed == 0 and results["crash"].detection_window is not None
    overload = results["overload"]
    assert overload.errors_by_kind.get("http_503", 0) > 0 and overload.first_failure_at is not None
    assert overload.first_failure_at >= 2.0  # only once the crash has left too little capacity
    assert "reset" in results["split_brain"].errors_by_kind  # the clients flip between two masters
    assert 0.99 < results["zones"].availability < 1.0  # the zone left carries the load; detection costs a little


def test_a_fault_can_break_a_balancer() -> None:
    scenario = parse_scenario(
        {
            "lab": {"instances": 2, "balancers": 2},
            "load": {"rate": 20, "duration": 4},
            "faults": [{"at": 1.0, "balancer": "lb1", "kind": "crash", "recover_at": 3.0}],
        }
    )
    (fault,) = scenario.faults
    assert (fault.balancer, fault.instance, fault.kind, fault.recover_at) == ("lb1", None, "crash", 3.0)
    report = run_scenario(scenario).report
    assert 0 < report.failed < 20  # until lb2 took over the address
    for change, key, words in [
        ({"balancer": "lb3", "kind": "crash"}, "faults[0].balancer", "no balancer named 'lb3'"),
        ({"balancer": "lb1", "kind": "slow"}, "faults[0].kind", "crash, hang, advert_loss"),
        ({"balancer": "lb1", "kind": "hang", "ms": 3}, "faults[0].ms", "no parameters"),
        ({"balancer": "lb1", "instance": "a", "kind": "hang"}, "faults[0].balancer", "not both"),
        ({"kind": "hang"}, "faults[0].instance", "is missing"),
    ]:
        with pytest.raises(ScenarioError) as error:
            parse_scenario({"lab": {"balancers": 2}, "faults": [{"at": 1.0, **change}]})
        assert error.value.key == key and words in str(error.value), (key, str(error.value))


def test_faults_a_crashed_balancer_cannot_take_are_named_before_the_run() -> None:
    """Both drivers would meet these in the middle of the run (the simulator stopped there with "lb1 has crashed");
    the scenario names them first, with the key to change."""
    pair = {"instances": 2, "balancers": 2}
    crash = {"at": 1.0, "balancer": "lb1", "kind": "crash"}
    for later, recover_at in [("hang", None), ("advert_loss", 3.0), ("crash", None), ("hang", 2.0)]:
        first = {**crash, **({"recover_at": recover_at} if recover_at is not None else {})}
        with pytest.raises(ScenarioError) as error:
            parse_scenario({"lab": pair, "faults": [{"at": 2.0, "balancer": "lb1", "kind": later}, first]})
        assert error.value.key == "faults[0].at", str(error.value)
        assert "lb1 crashed at 1 s (faults[1]) and is not back at 2 s" in str(error.value)
        assert "give faults[1] a recover_at before 2" in str(error.value)
    # Back in time, or the other balancer: fine, and the run goes through.
    back = parse_scenario(
        {
            "lab": pair,
            "load": {"rate": 20, "duration": 4},
            "faults": [
                {**crash, "recover_at": 1.5},
                {"at": 2.0, "balancer": "lb1", "kind": "hang", "recover_at": 3.0},
                {"at": 1.2, "balancer": "lb2", "kind": "advert_loss", "recover_at": 1.4},
            ],
        }
    )
    assert run_scenario(back).report.requests == 80
    with pytest.raises(ScenarioError) as error:
        parse_scenario(
            {
                "lab": {**pair, "pair": "active-active"},
                "faults": [{"at": 1.0, "balancer": "lb2", "kind": "advert_loss"}],
            }
        )
    assert error.value.key == "faults[0].kind" and "active-active balancers send no adverts" in str(error.value)


@pytest.mark.parametrize(
    ("data", "key", "words"),
    [
        ({"lab": {"preempt": False}}, "lab.preempt", "preempt is a setting of a pair: it needs balancers = 2"),
        ({"lab": {"fencing": True}}, "lab.fencing", "fencing is a setting of a pair: it needs balancers = 2"),
        (
            {"faults": [{"at": 1.0, "balancer": "lb1", "kind": "advert_loss"}]},
            "faults[0].kind",
            "advert_loss cuts the link between a pair: it needs balancers = 2",
        ),
    ],
)
def test_a_pair_setting_for_one_balancer_is_named(data: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(ScenarioError) as error:
        parse_scenario(data)
    assert error.value.key == key and words in str(error.value)
    parse_scenario({**data, "lab": {**data.get("lab", {}), "balancers": 2}})  # the same with a pair is fine


def test_a_big_run_says_first_that_it_takes_a_while_and_shows_progress_on_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run of millions of requests printed nothing for minutes (a learner thinks it hangs): a note first, and on
    a terminal how far it got. Made small here by lowering the threshold."""
    import spofkit.scenario

    monkeypatch.setattr(spofkit.scenario, "BIG_RUN_REQUESTS", 200)
    path = write(tmp_path, "[load]\nrate = 100\nduration = 2\n")
    assert run_scenario_cli([str(path), "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err == (
        "note: about 200 requests to simulate: this takes a while (10-40 s per million here) and about 8e-05 GB of"
        " memory\n"
    )
    quiet = json.loads(captured.out)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert run_scenario_cli([str(path), "--json"]) == 0
    captured = capsys.readouterr()
    assert "\r  simulated   0% of the run" in captured.err and captured.err.endswith("simulated 100% of the run\n")
    assert json.loads(captured.out)["digest"] == quiet["digest"]  # watching it does not change the run
    monkeypatch.setattr(spofkit.scenario, "BIG_RUN_REQUESTS", 201)
    assert run_scenario_cli([str(path), "--json"]) == 0
    assert capsys.readouterr().err == ""  # a run below the threshold says nothing


def test_a_live_run_the_machine_could_not_send_says_so() -> None:
    """At 900 req/s on a busy machine the live load generator falls behind: its unsent requests (client_overload)
    count as failures, which is the machine's limit, not the lab's. The text output says so; without them, nothing."""
    from spofkit.loadgen import RequestRecord
    from spofkit.report import build_report
    from spofkit.scenario import live_notes

    sent = [RequestRecord(i, "GET", "/", i / 10, i / 10 + 0.01, 200, "a", 1, None) for i in range(8)]
    unsent = [RequestRecord(8 + i, "GET", "/", 1.0, 1.0, None, None, 1, "client_overload") for i in range(3)]
    (note,) = live_notes(build_report(sent + unsent))
    assert note.startswith("note          3 requests were never sent (client_overload)") and "--sim" in note
    assert live_notes(build_report(sent)) == []
