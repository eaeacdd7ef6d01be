"""Replications: one scenario, many seeds, and how sure we can be of each figure.

One seeded run is one sample: its availability or detection window is what *that* sequence of random draws gave.
:func:`replicate` runs the scenario once per seed — in parallel, on any :class:`concurrent.futures.Executor`
(a process pool by default; ``dask.distributed.Client(...).get_executor()`` works unchanged) — and returns, for
each figure, its values, mean, standard deviation and a Student-t confidence interval for the mean: "availability
99.62 % ± 0.05 (95 %, 20 runs)". The runs are independent (each seed its own streams), so the interval is the
textbook one; a figure that a run did not produce (a fault that was never detected has no detection window) is
left out of that figure and counted in ``missing``.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spofkit.scenario import DRIVERS, Scenario, load_scenario, run_scenario

# The most replications one call runs (each is a whole scenario run).
MAX_SEEDS = 10_000

FIGURES = (
    "requests",
    "failed",
    "availability",
    "retried",
    "detection_window",
    "client_visible_outage",
    "latency_p50",
    "latency_p99",
    "wall_s",
)
# How each figure reads (scale and unit); a figure not listed is a count. wall_s is this machine's time, not a
# result of the scenario: to_text shows it apart.
UNITS = {
    "availability": (100.0, " %"),
    "detection_window": (1.0, " s"),
    "client_visible_outage": (1.0, " s"),
    "latency_p50": (1000.0, " ms"),
    "latency_p99": (1000.0, " ms"),
    "wall_s": (1.0, " s"),
}


@dataclass(frozen=True)
class Distribution:
    """The values one figure took over the runs, and a confidence interval for its mean."""

    figure: str
    values: tuple[float, ...]
    mean: float | None
    stdev: float | None
    low: float | None  # the interval for the mean (None with fewer than two values)
    high: float | None
    confidence: float
    missing: int = 0  # runs that did not produce this figure

    @property
    def half_width(self) -> float | None:
        return None if self.low is None or self.high is None else (self.high - self.low) / 2

    def describe(self) -> str:
        """One line, in the figure's unit: ``availability: 99.62 % ± 0.05 (95%, 20 runs)``."""
        if self.mean is None:
            return f"{self.figure}: no run produced it"
        scale, unit = UNITS.get(self.figure, (1.0, ""))
        spread = "" if self.half_width is None else f" ± {self.half_width * scale:.4g}"
        runs = len(self.values)
        missing = f", missing in {self.missing}" if self.missing else ""
        if runs == 1:
            interval = f"1 run{missing}: no interval from one run"
        else:
            interval = f"{self.confidence:.0%}, {runs} runs{missing}"
        return f"{self.figure}: {self.mean * scale:.6g}{unit}{spread} ({interval})"


@dataclass(frozen=True)
class Replications:
    """Every run's figures (in the order of ``seeds``) and the distribution of each figure."""

    scenario: str
    seeds: tuple[int, ...]
    runs: tuple[Mapping[str, Any], ...]
    figures: Mapping[str, Distribution]

    def __getitem__(self, figure: str) -> Distribution:
        return self.figures[figure]

    def to_text(self) -> str:
        count = len(self.seeds)
        lines = [f"== {self.scenario}: {count} replication{'' if count == 1 else 's'} =="]
        lines += [d.describe() for name, d in self.figures.items() if name != "wall_s"]
        wall = self.figures.get("wall_s")
        if wall is not None and wall.mean is not None:  # how long a run took here: not a figure of the scenario
            lines.append(f"(each run took {wall.mean:.3g} s of wall time on average on this machine)")
        return "\n".join(lines)


def _run_one(scenario: Scenario, seed: int, driver: str) -> dict[str, Any]:
    """One replication (module-level, so a process pool can pickle it)."""
    return run_scenario(scenario, driver, seed=seed).figures()


def replicate(
    scenario: Scenario | str | Path,
    seeds: Iterable[int],
    executor: concurrent.futures.Executor | None = None,
    *,
    driver: str = "sim",
    confidence: float = 0.95,
) -> Replications:
    """Run ``scenario`` once per seed on ``executor`` (default: a process pool of this machine's cores).

    Returns each run's figures and each figure's :class:`Distribution`. An executor you pass stays yours: it is
    not shut down.
    """
    if driver not in DRIVERS:
        raise ValueError(f"driver must be one of {', '.join(DRIVERS)}, got {driver!r}")
    if isinstance(scenario, (str, Path)):
        scenario = load_scenario(scenario)
    elif not isinstance(scenario, Scenario):
        raise TypeError(f"scenario must be a Scenario or the path of a scenario file, got {scenario!r}")
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Iterable):
        raise TypeError(f"seeds must be a list or range of whole numbers, e.g. range(20), got {seeds!r}")
    seeds = tuple(itertools.islice(seeds, MAX_SEEDS + 1))  # an endless iterator stops here
    if len(seeds) > MAX_SEEDS:
        raise ValueError(f"seeds: at most {MAX_SEEDS:,} replications in one call")
    if not seeds:
        raise ValueError("seeds is empty: give at least one seed (two for a confidence interval)")
    if any(isinstance(seed, bool) or not isinstance(seed, int) or seed < 0 for seed in seeds):
        raise ValueError(f"seeds must be whole numbers >= 0, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError("seeds repeat: the same seed gives the same run, which is not another sample")
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise ValueError(f"confidence must be a number between 0 and 1, got {confidence!r}")
    if executor is not None and not isinstance(executor, concurrent.futures.Executor):
        raise TypeError(f"executor must be a concurrent.futures.Executor (an instance), got {executor!r}")
    own = executor is None
    pool = executor or concurrent.futures.ProcessPoolExecutor()
    try:
        futures = [pool.submit(_run_one, scenario, seed, driver) for seed in seeds]
        runs = tuple(future.result() for future in futures)
    finally:
        if own:
            pool.shutdown()
    figures = {name: summarise(name, [run.get(name) for run in runs], confidence) for name in FIGURES}
    return Replications(scenario.name, seeds, runs, figures)


def summarise(figure: str, values: Sequence[float | None], confidence: float = 0.95) -> Distribution:
    """Mean, standard deviation and the Student-t interval of the mean, of the values that are there."""
    present = tuple(float(v) for v in values if v is not None)
    missing = len(values) - len(present)
    if not present:
        return Distribution(figure, (), None, None, None, None, confidence, missing)
    mean = statistics.fmean(present)
    if len(present) < 2:
        return Distribution(figure, present, mean, None, None, None, confidence, missing)
    stdev = statistics.stdev(present)
    half = t_quantile(0.5 + confidence / 2, len(present) - 1) * stdev / math.sqrt(len(present))
    return Distribution(figure, present, mean, stdev, mean - half, mean + half, confidence, missing)


# --- Student's t, without scipy ----------------------------------------------------------------------------


def t_quantile(p: float, df: int) -> float:
    """The ``p``-quantile of Student's t with ``df`` degrees of freedom (``t_quantile(0.975, 9) = 2.262``)."""
    if not 0 < p < 1:
        raise ValueError(f"p must be between 0 and 1, got {p!r}")
    if df < 1:
        raise ValueError(f"df must be >= 1, got {df!r}")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        high *= 2
    for _ in range(200):  # bisection: the cdf is monotone, and 200 halvings reach the float's precision
        middle = (low + high) / 2
        if t_cdf(middle, df) < p:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def t_cdf(t: float, df: int) -> float:
    x = df / (df + t * t)
    tail = 0.5 * _incomplete_beta(df / 2, 0.5, x)
    return 1 - tail if t >= 0 else tail


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b), by its continued fraction (Numerical Recipes 6.4)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _beta_fraction(a, b, x) / a
    return 1 - front * _beta_fraction(b, a, 1 - x) / b


def _beta_fraction(a: float, b: float, x: float) -> float:
    tiny = 1e-300
    c, d = 1.0, 1 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 300):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1) < 1e-15:
            break
    return result
