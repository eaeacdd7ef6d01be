"""Replications on any concurrent.futures.Executor, and the statistics of their figures."""

from __future__ import annotations

import concurrent.futures
import math
import multiprocessing.resource_tracker
import statistics
from collections.abc import Callable
from typing import Any

import pytest

from spofkit.scenario import parse_scenario, run_scenario
from spofkit.sim.replicate import replicate, summarise, t_quantile

pytestmark = pytest.mark.usefixtures("no_child_processes")  # the process pool's workers are gone after

SCENARIO = parse_scenario(
    {
        "name": "two-with-failures",
        "lab": {"instances": 2, "work_ms": 2},
        "health": False,
        "ejection": False,
        "retries": {"max_attempts": 2},
        "load": {"rate": 10, "duration": 200},
        "failures": {"mtbf": 10, "mttr": 1},
        "faults": [{"at": 1.0, "instance": "a", "kind": "slow", "ms": 50}],
    }
)


class SubmitOnly(concurrent.futures.Executor):
    """An executor that, like dask.distributed's ClientExecutor, offers submit() and nothing more of its own."""

    def __init__(self) -> None:
        self.submitted = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        self.submitted += 1
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        future.set_result(fn(*args, **kwargs))
        return future


def test_replications_are_the_seeded_runs_whatever_runs_them() -> None:
    seeds = [1, 2, 3, 4]
    with concurrent.futures.ThreadPoolExecutor(2) as threads:
        by_threads = replicate(SCENARIO, seeds, threads)
    by_processes = replicate(SCENARIO, seeds)  # the default: a process pool
    submit_only = SubmitOnly()
    by_submit = replicate(SCENARIO, seeds, submit_only)
    assert submit_only.submitted == 4
    digests = [run["digest"] for run in by_threads.runs]
    assert digests == [run["digest"] for run in by_processes.runs] == [run["digest"] for run in by_submit.runs]
    assert digests[2] == run_scenario(SCENARIO, seed=3).digest  # in seed order
    assert len(set(digests)) == 4


def test_a_dask_distributed_clients_executor_works_unchanged() -> None:
    """The classroom case: a dask.distributed cluster (two worker processes, LocalCluster's default, on loopback)."""
    import distributed  # in the dev extras: a test that must run, not one skipped when it is missing

    seeds = [1, 2, 3]
    try:
        with (
            distributed.LocalCluster(
                n_workers=2, threads_per_worker=1, host="127.0.0.1", scheduler_port=0, dashboard_address=None
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            workers = set(client.scheduler_info()["workers"])
            with distributed.get_task_stream(client) as tasks:
                result = replicate(SCENARIO, seeds, client.get_executor())
            ran_on = {task["worker"] for task in tasks.data}
    finally:
        # The workers were spawned, which starts multiprocessing's resource tracker: a helper that outlives them
        # until this process exits. Stop it here (the next spawn starts another) so no child is left behind.
        multiprocessing.resource_tracker._resource_tracker._stop()
    assert len(tasks.data) == len(seeds)  # one task a seed, each run by the cluster, none here
    assert ran_on <= workers and ran_on
    assert [run["digest"] for run in result.runs] == [run_scenario(SCENARIO, seed=seed).digest for seed in seeds]
    assert result.figures["availability"].mean is not None


def test_each_figure_has_its_mean_and_a_student_t_interval() -> None:
    result = replicate(SCENARIO, range(6), SubmitOnly())
    availability = result["availability"]
    values = [run["availability"] for run in result.runs]
    assert availability.values == tuple(values)
    assert availability.mean == pytest.approx(statistics.fmean(values))
    half = 2.5706 * statistics.stdev(values) / math.sqrt(6)  # t(0.975, 5 degrees of freedom)
    assert availability.half_width == pytest.approx(half, rel=1e-4)
    assert availability.low is not None and availability.low < availability.mean < (availability.high or 0)
    # Two instances up 10/11 of the time each: both down (1/11)^2 = 0.83 % of it. Six short runs are a rough
    # estimate; the interval says how rough, and here it holds the exact value.
    assert availability.low <= 1 - (1 / 11) ** 2 <= (availability.high or 0)
    text = result.to_text()
    assert text.startswith("== ") and "6 replications ==" in text.splitlines()[0]
    line = next(line for line in text.splitlines() if line.startswith("availability: "))
    assert line == f"availability: {availability.mean * 100:.6g} % ± {half * 100:.4g} (95%, 6 runs)"
    # The wall time is how long this machine took, not a result with a confidence interval.
    assert "wall_s" not in text and text.splitlines()[-1].startswith("(each run took ")


def test_a_figure_some_runs_lack_is_counted_as_missing() -> None:
    distribution = summarise("detection_window", [0.3, None, 0.5, None])
    assert distribution.values == (0.3, 0.5) and distribution.missing == 2
    assert distribution.mean == pytest.approx(0.4)
    assert summarise("x", [None]).describe() == "x: no run produced it"
    assert summarise("x", [1.0]).low is None  # one value has no interval
    assert summarise("latency_p99", [0.0125]).describe() == "latency_p99: 12.5 ms (1 run: no interval from one run)"
    assert distribution.describe() == "detection_window: 0.4 s ± 1.271 (95%, 2 runs, missing in 2)"


def test_student_t_quantiles_match_the_tables() -> None:
    table = {(0.975, 1): 12.706, (0.975, 4): 2.776, (0.975, 19): 2.093, (0.995, 10): 3.169, (0.95, 60): 1.671}
    for (p, df), expected in table.items():
        assert t_quantile(p, df) == pytest.approx(expected, abs=5e-4)
    assert t_quantile(0.025, 4) == pytest.approx(-2.776, abs=5e-4)


def test_bad_seeds_are_refused_before_anything_runs() -> None:
    with pytest.raises(ValueError, match="seeds is empty"):
        replicate(SCENARIO, [])
    with pytest.raises(ValueError, match="seeds repeat"):
        replicate(SCENARIO, [1, 1], SubmitOnly())
    with pytest.raises(ValueError, match="whole numbers >= 0"):
        replicate(SCENARIO, [-1], SubmitOnly())
