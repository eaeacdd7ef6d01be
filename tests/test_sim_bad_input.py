"""Bad input to the simulator's settings, runs and replications: a clear error that names it, at once.

Each case here once did something worse: spun for ever (a check every nanosecond, failures that repeat at the
same instant, a billion requests), took nonsense as "on" (``set_retries("off")``), failed deep inside with an
AttributeError, or came back from a process pool as a BrokenProcessPool that said nothing of the cause.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import math
import pickle
from pathlib import Path
from typing import Any

import pytest

from spofkit.capacity import ModelError
from spofkit.commands import BalancerFault, BalancerRecover, CommandError, InjectFault, Recover, UnknownName
from spofkit.policy import EjectionSettings, HealthSettings, RetrySettings
from spofkit.scenario import ScenarioError, load_scenario, run_scenario_cli
from spofkit.sim import Capacity, FailureGroup, FailureProcess, SimLab
from spofkit.sim.client import MAX_CLIENT_TRIES
from spofkit.sim.replicate import replicate


@pytest.mark.parametrize(
    ("settings", "fields", "words"),
    [
        (HealthSettings, {"interval": 1e-9}, "health interval must be a number of seconds >= 0.001"),
        (HealthSettings, {"interval": math.inf}, "health interval must be a number of seconds"),
        (HealthSettings, {"timeout": "0.3"}, "health timeout must be a number of seconds"),
        (HealthSettings, {"fastinter": 0.0}, "health fastinter must be a number of seconds >= 0.001"),
        (HealthSettings, {"rise": True}, "health rise must be a whole number"),
        (HealthSettings, {"expect": ("200",)}, "health expect must be HTTP status codes 100..599, got '200'"),
        (HealthSettings, {"expect": (999,)}, "health expect must be HTTP status codes 100..599, got 999"),
        (HealthSettings, {"expect": 200}, "health expect must be a list of HTTP status codes, got 200"),
        (HealthSettings, {"path": 5}, "health path must be a string that starts with '/', got 5"),
        (HealthSettings, {"jitter": math.nan}, "health jitter must be a number in [0, 1)"),
        (RetrySettings, {"per_try_timeout": math.inf}, "per_try_timeout must be a number of seconds"),
        (RetrySettings, {"deadline": -1}, "deadline must be a number of seconds > 0"),
        (RetrySettings, {"max_attempts": True}, "max_attempts must be a whole number 1..100"),
        (RetrySettings, {"retry_statuses": 503}, "retry_statuses must be a list or set"),
        (RetrySettings, {"retry_statuses": {503, 200}}, "retry_statuses must be HTTP status codes 500..599, got 200"),
        (RetrySettings, {"retry_on": "timeout"}, "retry_on must be a list or set"),
        (RetrySettings, {"budget_min_per_second": math.nan}, "budget_min_per_second must be a number in 0..1e+06"),
        (EjectionSettings, {"consecutive_failures": True}, "consecutive_failures must be a whole number 1..1000"),
        (EjectionSettings, {"base_time": math.inf}, "base_time must be a number of seconds"),
    ],
)
def test_a_setting_out_of_its_range_is_named(settings: type, fields: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError) as error:
        settings(**fields)
    assert words in str(error.value)


def test_settings_in_range_are_kept_as_given() -> None:
    health = HealthSettings(interval=0.001, timeout=2, expect=[200, 204])
    assert (health.interval, health.timeout, health.expect) == (0.001, 2.0, (200, 204))
    retries = RetrySettings(retry_statuses=[503], retry_on=("timeout",))
    assert retries.retry_statuses == frozenset({503}) and retries.retry_on == frozenset({"timeout"})
    assert hash(retries) == hash(RetrySettings(retry_statuses={503}, retry_on={"timeout"}))  # still a value


def test_failures_too_frequent_to_mean_anything_are_refused() -> None:
    with pytest.raises(ModelError, match=r"^mtbf must be at least 0\.01 s") as error:
        FailureProcess(1e-12, 1.0)
    assert error.value.field == "mtbf"
    with pytest.raises(ModelError, match=r"^mttr must be at least 0\.01 s"):
        FailureProcess(60.0, 1e-6)


@pytest.mark.parametrize(
    ("rate", "duration", "words"),
    [
        (1e9, 5.0, "5 s of lab time at 1e+09 requests a second"),
        (10.0, 1e9, "1e+09 s of lab time at 10 requests a second and 6 health checks a second"),
    ],
)
def test_a_run_of_hours_is_refused_before_anything_runs(rate: float, duration: float, words: str) -> None:
    lab = SimLab(3)
    booted = lab.scheduler.processed  # the first checks, before lab time 0
    with pytest.raises(ValueError) as error:
        lab.run_load_sync(rate, duration)
    assert words in str(error.value) and "at most 200,000,000" in str(error.value)
    assert lab.now() == 0.0 and lab.scheduler.processed == booted  # nothing ran
    assert lab.run_load_sync(200, 1.0).requests == 200  # and the lab is fine


@pytest.mark.parametrize("seconds", [math.inf, math.nan, -1.0, "5"])
def test_advancing_by_nonsense_is_refused(seconds: Any) -> None:
    with pytest.raises(ValueError, match=r"seconds must be a finite number >= 0"):
        SimLab(3).advance_sync(seconds)


def test_a_run_of_more_requests_than_memory_holds_is_refused() -> None:
    with pytest.raises(ValueError, match=r"would send about 50,000,000 requests; one run sends at most 10,000,000"):
        SimLab(3).run_load_sync(1000, 50_000)
    # max_requests caps what is sent: within the limit.
    assert SimLab(3).run_load_sync(1000, 50_000, max_requests=50).requests == 50


def test_advancing_for_a_thousand_years_is_refused() -> None:
    with pytest.raises(ValueError, match=r"would be about .* model events"):
        SimLab(3).advance_sync(1000 * 365 * 86400.0)


@pytest.mark.parametrize(
    ("switch", "value"),
    [("set_retries", "off"), ("set_ejection", 0.5), ("set_retries", None), ("set_ejection", HealthSettings())],
)
def test_a_switch_takes_true_false_or_its_settings(switch: str, value: Any) -> None:
    lab = SimLab(3)
    with pytest.raises(TypeError, match=rf"^{switch} takes True \(on\), False \(off\) or a \w+Settings, got "):
        getattr(lab, switch)(value)
    assert lab.status().retries and lab.status().ejection  # unchanged


async def test_health_checks_switched_by_a_word_are_refused() -> None:
    lab = SimLab(3)
    with pytest.raises(TypeError, match=r"^set_health_checks takes True \(on\), False \(off\) or a HealthSettings"):
        await lab.set_health_checks("no")  # type: ignore[arg-type]
    assert lab.status().health_checks


@pytest.mark.parametrize(
    "error",
    [
        ScenarioError("lab.instances", "must be 1..1000"),
        CommandError("rate", "rate must be > 0", status=422),
        UnknownName("name", "no instance named 'zz'"),
        ModelError("mtbf", "mtbf must be at least 0.01 s"),
    ],
)
def test_errors_cross_a_process_boundary_whole(error: Exception) -> None:
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error) and str(again) == str(error) and vars(again) == vars(error)


SCENARIO = """
[lab]
instances = 3
[load]
rate = 50
duration = 2
"""


def test_replicate_refuses_what_it_cannot_run_before_it_starts(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(SCENARIO)
    with pytest.raises(ValueError, match=r"^driver must be one of sim, live, got 'bogus'"):
        replicate(path, [1, 2], driver="bogus")
    with pytest.raises(ValueError, match=r"^seeds: at most 10,000 replications"):
        replicate(path, itertools.count())
    with pytest.raises(TypeError, match=r"^seeds must be a list or range"):
        replicate(path, 5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^executor must be a concurrent\.futures\.Executor \(an instance\)"):
        replicate(path, [1, 2], concurrent.futures.ThreadPoolExecutor)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^scenario must be a Scenario or the path"):
        replicate({"lab": {}}, [1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^confidence must be a number between 0 and 1"):
        replicate(load_scenario(path), [1, 2], confidence="0.9")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (
            '[[faults]]\nat = 1\ninstance = "b"\nkind = ["crash"]\n',
            'faults[0].kind: must be the name of a fault, such as "crash"',
        ),
        ("[health]\npath = 5\n", "health.path: health path must be a string that starts with '/'"),
        ("[health]\nexpect = 200\n", "health.expect: health expect must be a list of HTTP status codes"),
        ("[health]\ninterval = 1e-12\n", "health.interval: health interval must be a number of seconds >= 0.001"),
    ],
)
def test_a_scenario_file_that_is_wrong_gets_one_line_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, words: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(SCENARIO + text)
    assert run_scenario_cli([str(path), "--sim", "--json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: ") and words in err and "Traceback" not in err


def test_a_scenario_that_fails_while_it_is_set_up_gets_one_line_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "pair.toml"
    path.write_text(
        SCENARIO.replace("instances = 3", 'instances = 3\nbalancers = 2\npair = "active-active"\nfencing = true')
    )
    assert run_scenario_cli([str(path), "--sim", "--json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: ") and "fencing" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("arguments", "error", "words"),
    [
        ({"capacity": "x"}, TypeError, "capacity must be a spofkit.capacity.Capacity"),
        ({"capacity": Capacity(work_ms=5.0), "work_time": 0.01}, ValueError, "give work_time"),
        ({"failures": (30, 3)}, TypeError, "failures must be a FailureProcess(mtbf, mttr) or None"),
        ({"groups": "abc"}, TypeError, "groups must be a list of FailureGroup, got 'abc'"),
        ({"groups": [None]}, TypeError, "groups must be a list of FailureGroup, got None in it"),
        ({"seed": "abc"}, ValueError, "seed must be a whole number >= 0, got 'abc'"),
        ({"seed": 1.5}, ValueError, "seed must be a whole number >= 0"),
        ({"balancers": True}, ValueError, "balancers must be 1 or 2 (a pair), got True"),
        ({"balancers": 2.0}, ValueError, "balancers must be 1 or 2 (a pair), got 2.0"),
        ({"advert_interval": "0.2"}, ValueError, "advert_interval must be a number of seconds"),
        ({"preempt": "no"}, TypeError, "preempt must be True or False, got 'no'"),
        ({"fencing": "yes"}, TypeError, "fencing must be True or False, got 'yes'"),
        ({"slow_start": math.inf}, ValueError, "slow_start must be a number of seconds"),
        ({"history_size": -1}, ValueError, "history_size must be a whole number 0..10000000"),
        ({"history_size": None}, ValueError, "history_size must be a whole number"),
        ({"backups": 10**9}, ValueError, "backups must be a whole number 0..9997"),
        ({"fencing": True}, ValueError, "fencing=True is a setting of a pair of balancers: give balancers=2"),
        ({"preempt": False}, ValueError, "preempt=False is a setting of a pair of balancers: give balancers=2"),
        ({"capacity": Capacity(work_ms=5.0), "balancers": 2, "preempt": False}, None, ""),
    ],
)
def test_a_lab_argument_that_is_wrong_is_named(arguments: dict[str, Any], error: type | None, words: str) -> None:
    if error is None:  # the same setting where it means something is taken
        assert SimLab(3, **arguments).status().instances
        return
    with pytest.raises(error) as raised:
        SimLab(3, **arguments)
    assert words in str(raised.value)


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"work_ms": 1e-300, "spread_ms": 6e4}, "work_ms", "work_ms must be 0 or at least 0.001 (a microsecond)"),
        ({"work_ms": 5.0, "spread_ms": 5001.0}, "spread_ms", "spread_ms must be at most 1000 times work_ms (5)"),
        ({"work_ms": 5.0, "distribution": ""}, "distribution", "must be one of fixed, lognormal, exponential, got ''"),
        ({"work_ms": 5.0, "distribution": 1}, "distribution", "distribution must be a name such as 'lognormal'"),
    ],
)
def test_a_work_time_whose_maths_cannot_work_is_refused(fields: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(ModelError) as raised:
        Capacity(**fields)
    assert raised.value.field == field and words in str(raised.value)


def test_the_widest_spread_allowed_still_draws_finite_times() -> None:
    lab = SimLab(1, capacity=Capacity(work_ms=0.001, spread_ms=1.0), health=False)
    report = lab.run_load_sync(100, 1.0)
    assert report.requests == 100 and report.failed == 0
    assert all(math.isfinite(record.latency) and record.latency >= 0 for record in lab.records)


async def test_adding_and_removing_an_instance_by_method_checks_like_the_commands() -> None:
    lab = SimLab(2)
    with pytest.raises(CommandError, match="weight must be a whole number") as raised:
        await lab.add_instance("c", weight=-1)
    assert raised.value.field == "weight"
    with pytest.raises(CommandError) as raised:
        await lab.add_instance("no spaces")
    assert raised.value.field == "name"
    with pytest.raises(TypeError, match="initially_up must be True or False, got 'yes'"):
        await lab.add_instance("c", initially_up="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"drain_timeout must be a number of seconds >= 0 .*got -1"):
        await lab.remove_instance("b", drain_timeout=-1)
    assert sorted(lab.instances) == ["a", "b"]  # nothing was added or removed
    assert await lab.add_instance("c", weight=2) == "c"
    await lab.remove_instance("c", drain_timeout=0)
    assert sorted(lab.instances) == ["a", "b"]


def test_two_failure_groups_of_one_name_are_refused() -> None:
    zone = FailureProcess(3600.0, 60.0)
    with pytest.raises(ValueError, match=r"^groups: two groups are named 'z'"):
        SimLab(3, groups=[FailureGroup("z", ("a",), zone), FailureGroup("z", ("b",), zone)])


@pytest.mark.parametrize(
    ("faults", "commands", "words"),
    [
        ([(1.0, "b", "crash")], (), "faults[0] must be (at, instance, kind, params), e.g. (1.0, 'b', 'crash', {})"),
        ((1.0, "b", "crash", {}), (), "faults[0] must be (at, instance, kind, params)"),
        ([(1.0, "b", "crash", None)], (), "faults[0] must be (at, instance, kind, params)"),
        ([("1", "b", "crash", {})], (), "fault time '1' must be a number within the run (0..2.0)"),
        ([], [Recover("b")], "commands[0] must be (at, command), e.g. (1.0, Recover('b'))"),
        ([], [(True, Recover("b"))], "command time True must be a number within the run"),
        ([], [(1.0, BalancerFault("lb1", "advert_loss"))], "advert_loss needs a pair of balancers"),
        ([], [(1.0, BalancerRecover("lb2"))], "no balancer named 'lb2'"),
    ],
)
def test_a_run_load_schedule_that_is_wrong_is_named(faults: Any, commands: Any, words: str) -> None:
    lab = SimLab(3)
    with pytest.raises(ValueError) as raised:
        lab.run_load_sync(100, 2.0, faults=faults, commands=commands)
    assert words in str(raised.value)
    assert lab.now() == 0.0


def test_a_client_rule_that_always_retries_at_once_stops_at_the_most_tries() -> None:
    lab = SimLab(2, health=False, ejection=False, retries=False)
    lab.apply_sync(InjectFault("a", "crash"))
    lab.apply_sync(InjectFault("b", "crash"))
    report = lab.run_load_sync(10, 1.0, retry=lambda record, tries: 0.0)  # everything is down: never helps
    assert report.requests == 10 and report.failed == 10
    assert all(record.attempts == MAX_CLIENT_TRIES for record in lab.records)


def test_advert_loss_in_an_active_active_pair_is_refused_before_the_run() -> None:
    lab = SimLab(2, balancers=2, pair="active-active")
    with pytest.raises(CommandError, match="advert_loss needs an active-passive pair") as raised:
        lab.run_load_sync(100, 2.0, commands=[(1.0, BalancerFault("lb2", "advert_loss"))])
    assert raised.value.field == "kind" and lab.now() == 0.0
    lab.apply_sync(BalancerFault("lb2", "hang"))  # a fault it can take, in place
    with pytest.raises(CommandError, match="advert_loss needs an active-passive pair"):
        lab.apply_sync(BalancerFault("lb2", "advert_loss"))
    assert {b.name: b.state for b in lab.status().balancers}["lb2"] == "hang"  # the refused one undid nothing


@pytest.mark.parametrize("method", ["FOO", "CONNECT", "", "G ET", 7])
def test_a_load_with_a_method_no_client_sends_is_refused_by_either_driver(method: Any) -> None:
    """A made-up method was an answer in the simulator and a 400 for every request live: refused by both."""
    from spofkit.events import Clock
    from spofkit.loadgen import LoadGenerator

    with pytest.raises(ValueError, match=r"^method must be one of GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS"):
        SimLab(2).run_load_sync(10, 1, method=method)
    with pytest.raises(ValueError, match=r"^method must be one of GET, HEAD"):
        LoadGenerator("http://127.0.0.1:1", clock=Clock(), method=method)


def test_a_method_in_small_letters_is_sent_in_capitals() -> None:
    report = SimLab(2).run_load_sync(10, 1, method="post")
    assert report.requests == 10 and report.availability == 1.0


@pytest.mark.parametrize(
    ("option", "words"),
    [
        ("body", "'body' is an option of the live lab's load generator"),
        ("client_retry_for", "'client_retry_for' is an option of the live lab's load generator"),
        ("rat", "no option 'rat' (a simulated load takes method, path, timeout, arrivals, retry, keep_last)"),
    ],
)
def test_a_load_option_the_simulator_does_not_take_is_named(option: str, words: str) -> None:
    """Not OpenLoop.__init__()'s TypeError about an unexpected keyword argument: what the learner passed, and why."""
    with pytest.raises(TypeError) as error:
        SimLab(2).run_load_sync(10, 1, **{option: b"{}"})
    assert str(error.value).startswith("run_load: ") and words in str(error.value)
