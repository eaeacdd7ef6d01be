"""Exercises: check yourself, and ask for a fresh variant whenever you like.

Every lesson ends with a few exercises. Each exercise draws its numbers from a seed, so the same seed
gives the same problem (a class can share "seed 7"), and a new seed gives a new one::

    from spofkit.exercises import downtime_budget
    problem = downtime_budget.new_problem(seed=7)   # seed=None draws one (shown with the problem)
    problem                                         # the question, in a box
    downtime_budget.check(problem, 43.2)            # green if right; red with how far off and a hint
    reveal(problem)                                 # the answer, only when you ask for it

``check`` never shows the answer by itself: a wrong answer is told how far off it is, in words ("too high",
"you have 1 of the 4 options wrong", never which), with a hint that fits the problem; ``None`` (the notebooks'
``my_answer = None``) gets a neutral "write your answer in ``my_answer``". The answer comes only on purpose:
``reveal(problem)``, or ``check(problem, answer, show_answer=True)``, and the box says it is revealing it (as
OSTEP's homework scripts show answers only with ``-c``).

The right answers come from spofkit itself, never from a second copy of a formula: the detection window
from :meth:`HealthSettings.detection_window_bound`, which failures are retried from
:func:`spofkit.failover.retry_decision`, a retry budget from :class:`RetryBudget`, an ejection time from
:class:`OutlierDetector`. When the library changes, the exercises follow.

Lesson 06 checks code instead of a number: ``await check_strategy(MyStrategy)`` runs your strategy in a
real lab with one slow instance and tells you whether it spared the slow one.

**Writing a new exercise** (for lesson authors): subclass :class:`NumericExercise` (a number within a
tolerance; :class:`AvailabilityExercise` for an availability, given as 0.999 or 99.9) or
:class:`ChoiceExercise` (pick the right labels), give it ``id``, ``lesson`` and ``title``, implement
``_make(rng)`` (question text and parameters, drawn only from ``rng``) and ``solution(problem)``, and
optionally ``_hint(problem, given)`` (true for *this* problem and this answer, and never the answer itself;
``tests/test_exercises.py`` checks that) and ``_why_answer(problem)``. Put it in the module for its topic,
then create one instance below and list it in :data:`EXERCISES`.

Where things live: :mod:`~spofkit.exercises.base` (the kinds of exercise), :mod:`~spofkit.exercises.availability`
(lessons 00–02), :mod:`~spofkit.exercises.health` (03, and 05's health checks),
:mod:`~spofkit.exercises.failover` (04, and 05's ejection), :mod:`~spofkit.exercises.strategies` (06),
:mod:`~spofkit.exercises.pair` (07, the pair of balancers, and 08, deploys).
:mod:`~spofkit.exercises.capacity` (09: headroom, queueing delay, retry storms and budgets).
:mod:`~spofkit.exercises.production` (11: the real proxies' defaults and words).
:mod:`~spofkit.exercises.scale` (10: MTBF and MTTR, N+1 and 2N, zones that fail as a whole).
"""

from __future__ import annotations

from spofkit.exercises.availability import (
    MINUTES_PER,
    AvailabilityFromCounts,
    CrashErrorFraction,
    DowntimeBudget,
    OutageAvailability,
    ParallelAvailability,
    SeriesAvailability,
    allowed_downtime_minutes,
)
from spofkit.exercises.base import (
    MAX_DRAWN_SEED,
    AvailabilityExercise,
    ChoiceExercise,
    Exercise,
    Feedback,
    NumericExercise,
    Problem,
)
from spofkit.exercises.capacity import (
    BudgetThatStopsTheStorm,
    HeadroomAfterLoss,
    QueueingDelay,
    RetryAmplification,
    largest_budget_ratio,
    mm1_response_time,
    utilisation_after_losing,
)
from spofkit.exercises.failover import EjectionTime, RetryBudgetSize, SafeToRetry
from spofkit.exercises.health import (
    DetectionWindow,
    FalseAlarmFall,
    HealthCheckMisses,
    RecoveryWindow,
    health_check_notices,
)
from spofkit.exercises.pair import (
    DeployDuration,
    LargestBatch,
    PairSimulation,
    RequestsLost,
    SplitBrainOrNot,
    TakeoverTime,
    WhichStepPrevents,
    WhoIsMaster,
    rolling_deploy_seconds,
)
from spofkit.exercises.production import (
    HAProxyCrashDetection,
    KeepalivedTakeover,
    NginxFailedAttempts,
    ProxyEquivalents,
    haproxy_crash_detection,
)
from spofkit.exercises.scale import (
    CorrelatedOrNot,
    MtbfAvailability,
    SpareCapacity,
    YearlyDowntime,
    ZoneFailure,
    at_least_k_of_n,
    at_least_one_of_n,
    zoned_availability,
)
from spofkit.exercises.strategies import LittlesLaw, check_strategy

# --- the registry ------------------------------------------------------------------------------------

availability_from_counts = AvailabilityFromCounts()
downtime_budget = DowntimeBudget()
outage_availability = OutageAvailability()
series_availability = SeriesAvailability()
crash_error_fraction = CrashErrorFraction()
parallel_availability = ParallelAvailability()
detection_window = DetectionWindow()
recovery_window = RecoveryWindow()
false_alarm_fall = FalseAlarmFall()
safe_to_retry = SafeToRetry()
retry_budget = RetryBudgetSize()
health_check_misses = HealthCheckMisses()
ejection_time = EjectionTime()
littles_law = LittlesLaw()
takeover_time = TakeoverTime()
who_is_master = WhoIsMaster()
requests_lost = RequestsLost()
split_brain = SplitBrainOrNot()
deploy_duration = DeployDuration()
largest_batch = LargestBatch()
which_step = WhichStepPrevents()
haproxy_detection = HAProxyCrashDetection()
nginx_failed_attempts = NginxFailedAttempts()
proxy_equivalents = ProxyEquivalents()
keepalived_takeover = KeepalivedTakeover()
headroom = HeadroomAfterLoss()
queueing_delay = QueueingDelay()
retry_amplification = RetryAmplification()
storm_budget = BudgetThatStopsTheStorm()
mtbf_availability = MtbfAvailability()
yearly_downtime = YearlyDowntime()
spare_capacity = SpareCapacity()
zone_failure = ZoneFailure()
correlated_or_not = CorrelatedOrNot()

EXERCISES: dict[str, list[Exercise]] = {
    "00": [availability_from_counts],
    "01": [downtime_budget, outage_availability, series_availability],
    "02": [crash_error_fraction, parallel_availability],
    "03": [detection_window, recovery_window, false_alarm_fall],
    "04": [safe_to_retry, retry_budget],
    "05": [health_check_misses, ejection_time],
    "06": [littles_law],  # and check_strategy(), which runs code instead of checking a number
    "07": [takeover_time, who_is_master, requests_lost, split_brain],
    "08": [deploy_duration, largest_batch, which_step],
    "09": [headroom, queueing_delay, retry_amplification, storm_budget],
    "10": [mtbf_availability, yearly_downtime, spare_capacity, zone_failure, correlated_or_not],
    "11": [haproxy_detection, nginx_failed_attempts, proxy_equivalents, keepalived_takeover],
}


def reveal(problem: Problem) -> Feedback:
    """The answer to ``problem`` (from any exercise), and why: for when you have tried, or want to check a peer."""
    if not isinstance(problem, Problem):
        raise TypeError(f"reveal() needs a Problem from new_problem(), got {problem!r}")
    return exercise(problem.exercise).reveal(problem)


def exercise(exercise_id: str) -> Exercise:
    """Look an exercise up by id, e.g. ``exercise("03.detection_window")``."""
    for exercises in EXERCISES.values():
        for candidate in exercises:
            if candidate.id == exercise_id:
                return candidate
    known = ", ".join(e.id for group in EXERCISES.values() for e in group)
    raise KeyError(f"no exercise {exercise_id!r}; known: {known}")


__all__ = [
    "EXERCISES",
    "MAX_DRAWN_SEED",
    "MINUTES_PER",
    "AvailabilityExercise",
    "AvailabilityFromCounts",
    "BudgetThatStopsTheStorm",
    "ChoiceExercise",
    "CorrelatedOrNot",
    "CrashErrorFraction",
    "DeployDuration",
    "DetectionWindow",
    "DowntimeBudget",
    "EjectionTime",
    "Exercise",
    "FalseAlarmFall",
    "Feedback",
    "HAProxyCrashDetection",
    "HeadroomAfterLoss",
    "HealthCheckMisses",
    "KeepalivedTakeover",
    "LargestBatch",
    "LittlesLaw",
    "MtbfAvailability",
    "NginxFailedAttempts",
    "NumericExercise",
    "OutageAvailability",
    "PairSimulation",
    "ParallelAvailability",
    "Problem",
    "ProxyEquivalents",
    "QueueingDelay",
    "RecoveryWindow",
    "RequestsLost",
    "RetryAmplification",
    "RetryBudgetSize",
    "SafeToRetry",
    "SeriesAvailability",
    "SpareCapacity",
    "SplitBrainOrNot",
    "TakeoverTime",
    "WhichStepPrevents",
    "WhoIsMaster",
    "YearlyDowntime",
    "ZoneFailure",
    "allowed_downtime_minutes",
    "at_least_k_of_n",
    "at_least_one_of_n",
    "check_strategy",
    "exercise",
    "haproxy_crash_detection",
    "health_check_notices",
    "largest_budget_ratio",
    "mm1_response_time",
    "reveal",
    "rolling_deploy_seconds",
    "utilisation_after_losing",
    "zoned_availability",
]
