"""Exercise checkers: right answers pass, wrong ones fail with useful feedback, seeds are reproducible."""

from __future__ import annotations

import math
import re
import runpy
from pathlib import Path
from typing import Any

import pytest

from spofkit import exercises
from spofkit.exercises import (
    EXERCISES,
    AvailabilityExercise,
    ChoiceExercise,
    Exercise,
    Feedback,
    NumericExercise,
    Problem,
    check_strategy,
)
from spofkit.exercises.failover import _RETRY_SCENARIOS
from spofkit.health import HealthSettings
from spofkit.strategies import Backend, RequestInfo, RoundRobin

ALL = [exercise for group in EXERCISES.values() for exercise in group]
SEEDS = range(8)


def right_answer(exercise: Exercise, problem: Problem) -> Any:
    solution = exercise.solution(problem)
    return "".join(sorted(solution)) if isinstance(exercise, ChoiceExercise) else solution


def wrong_answer(exercise: Exercise, problem: Problem) -> Any:
    solution = exercise.solution(problem)
    if isinstance(exercise, ChoiceExercise):
        return set(solution) ^ {"A"}  # toggle one option
    if isinstance(exercise, AvailabilityExercise):
        return solution - 0.05
    return solution * 1.5 + 1


def test_every_lesson_has_an_exercise() -> None:
    assert sorted(EXERCISES) == ["00", "01", "02", "03", "04", "05", "06"]
    assert all(EXERCISES.values())
    ids = [exercise.id for exercise in ALL]
    assert len(ids) == len(set(ids)), "exercise ids must be unique"
    for lesson, group in EXERCISES.items():
        assert all(exercise.id.startswith(lesson + ".") and exercise.lesson == lesson for exercise in group)


@pytest.mark.parametrize("exercise", ALL, ids=lambda e: e.id)
@pytest.mark.parametrize("seed", SEEDS)
def test_right_answer_passes(exercise: Exercise, seed: int) -> None:
    problem = exercise.new_problem(seed=seed)
    feedback = exercise.check(problem, right_answer(exercise, problem))
    assert feedback.ok, feedback.message
    assert bool(feedback)
    assert "Correct" in str(feedback)


@pytest.mark.parametrize("exercise", ALL, ids=lambda e: e.id)
@pytest.mark.parametrize("seed", SEEDS)
def test_wrong_answer_fails_with_expected_given_and_hint(exercise: Exercise, seed: int) -> None:
    problem = exercise.new_problem(seed=seed)
    feedback = exercise.check(problem, wrong_answer(exercise, problem))
    assert not feedback.ok
    assert not bool(feedback)
    assert feedback.expected and feedback.given and feedback.hint
    assert feedback.expected != feedback.given
    text = str(feedback)
    assert "expected" in text and "given" in text and "hint" in text
    assert feedback.expected in text and feedback.given in text


@pytest.mark.parametrize("exercise", ALL, ids=lambda e: e.id)
def test_seeded_variants_are_reproducible_and_differ(exercise: Exercise) -> None:
    assert exercise.new_problem(seed=3) == exercise.new_problem(seed=3)
    questions = {exercise.new_problem(seed=seed).question for seed in range(20)}
    assert len(questions) > 1, "different seeds should give different problems"


@pytest.mark.parametrize("exercise", ALL, ids=lambda e: e.id)
def test_a_drawn_seed_is_shown_and_gives_the_same_problem_again(exercise: Exercise) -> None:
    problem = exercise.new_problem()
    assert 0 <= problem.seed < exercises.MAX_DRAWN_SEED
    assert exercise.new_problem(seed=problem.seed) == problem
    assert f"seed {problem.seed}" in str(problem)
    assert f"seed {problem.seed}" in problem._repr_html_()


@pytest.mark.parametrize("exercise", ALL, ids=lambda e: e.id)
@pytest.mark.parametrize("answer", [None, "not a number", object(), True, math.nan])
def test_an_answer_of_the_wrong_kind_fails_and_says_what_to_give(exercise: Exercise, answer: Any) -> None:
    problem = exercise.new_problem(seed=1)
    feedback = exercise.check(problem, answer)
    assert not feedback.ok
    assert feedback.hint.startswith("answer with")


@pytest.mark.parametrize("bad_seed", ["7", 1.5, True])
def test_a_bad_seed_is_refused_with_a_clear_message(bad_seed: Any) -> None:
    with pytest.raises(ValueError, match="seed must be a whole number"):
        exercises.downtime_budget.new_problem(seed=bad_seed)


def test_a_problem_from_another_exercise_is_refused() -> None:
    problem = exercises.downtime_budget.new_problem(seed=1)
    with pytest.raises(ValueError, match=r"'01\.downtime_budget', not '03\.detection_window'"):
        exercises.detection_window.check(problem, 1.0)


def test_exercise_lookup_by_id() -> None:
    assert exercises.exercise("03.detection_window") is exercises.detection_window
    with pytest.raises(KeyError, match="no exercise 'nope'"):
        exercises.exercise("nope")


# --- the answers agree with hand calculations -------------------------------------------------------


def numeric_problem(exercise: NumericExercise, **params: Any) -> Problem:
    return Problem(exercise.id, 0, "by hand", params)


def test_downtime_budget_by_hand() -> None:
    problem = numeric_problem(exercises.downtime_budget, availability_percent=99.9, period="30-day month")
    assert exercises.downtime_budget.solution(problem) == pytest.approx(43.2)
    assert exercises.downtime_budget.check(problem, "43.2").ok
    seconds = exercises.downtime_budget.check(problem, 43.2 * 60)
    assert not seconds.ok and "seconds" in seconds.hint


def test_availability_accepts_fraction_or_percent_but_not_double_the_downtime() -> None:
    problem = numeric_problem(exercises.series_availability, parts=["a", "b"], availabilities=[0.999, 0.999])
    assert exercises.series_availability.solution(problem) == pytest.approx(0.998001)
    assert exercises.series_availability.check(problem, 0.998).ok
    assert exercises.series_availability.check(problem, 99.8).ok
    assert exercises.series_availability.check(problem, "99.8%").ok
    assert not exercises.series_availability.check(problem, 99.6).ok  # twice the downtime
    assert not exercises.series_availability.check(problem, 0.999).ok  # the weakest link is not the chain


def test_crash_error_fraction_and_parallel_availability_by_hand() -> None:
    crash = numeric_problem(exercises.crash_error_fraction, instances=3, crashed=1)
    assert exercises.crash_error_fraction.solution(crash) == pytest.approx(1 / 3)
    assert exercises.crash_error_fraction.check(crash, 0.333).ok
    parallel = numeric_problem(exercises.parallel_availability, copies=2, each=0.9, balancer=0.999)
    assert exercises.parallel_availability.solution(parallel) == pytest.approx(0.999 * 0.99)


def test_detection_and_recovery_windows_by_hand() -> None:
    params = {"interval": 0.5, "timeout": 0.3, "rise": 2, "fall": 3}
    detection = numeric_problem(exercises.detection_window, **params)
    assert exercises.detection_window.solution(detection) == pytest.approx(0.5 + 2 * 0.5 + 0.3)
    slow_probes = numeric_problem(exercises.detection_window, **{**params, "fastinter": 0.1})
    assert exercises.detection_window.solution(slow_probes) == pytest.approx(0.5 + 2 * 0.3 + 0.3)
    recovery = numeric_problem(exercises.recovery_window, **{**params, "downinter": 2.0})
    assert exercises.recovery_window.solution(recovery) == pytest.approx(2.0 + 1 * 0.5 + 0.3)
    assert exercises.recovery_window_bound(HealthSettings()) == pytest.approx(1.3)


def test_false_alarm_fall_is_one_more_than_the_misses() -> None:
    problem = numeric_problem(exercises.false_alarm_fall, interval=0.5, consecutive_misses=4)
    assert exercises.false_alarm_fall.solution(problem) == 5
    assert not exercises.false_alarm_fall.check(problem, 4).ok
    assert exercises.false_alarm_fall.check(problem, 5).ok


def test_retry_budget_and_ejection_time_by_hand() -> None:
    budget = numeric_problem(exercises.retry_budget, rate=50, ratio=0.5, min_per_second=5.0, window=10.0)
    assert exercises.retry_budget.solution(budget) == pytest.approx(5 * 10 + 0.5 * 500)
    ejection = numeric_problem(
        exercises.ejection_time, consecutive_failures=3, base_time=2.0, max_time=10.0, ejection_number=3
    )
    assert exercises.ejection_time.solution(ejection) == pytest.approx(6.0)
    capped = numeric_problem(
        exercises.ejection_time, consecutive_failures=3, base_time=2.0, max_time=10.0, ejection_number=9
    )
    assert exercises.ejection_time.solution(capped) == pytest.approx(10.0)


def test_safe_to_retry_follows_the_idempotency_rule() -> None:
    scenarios = _RETRY_SCENARIOS
    by_words = {
        (method, failure, attempts): index for index, (method, _p, failure, _r, attempts, _w) in enumerate(scenarios)
    }
    get_refused = by_words[("GET", "connect", 1)]
    post_refused = by_words[("POST", "connect", 1)]
    post_timeout = by_words[("POST", "timeout", 1)]
    get_500 = by_words[("GET", None, 1)]
    problem = Problem(
        exercises.safe_to_retry.id, 0, "by hand", {"options": [get_refused, post_refused, post_timeout, get_500]}
    )
    assert exercises.safe_to_retry.solution(problem) == {"A", "B"}
    assert exercises.safe_to_retry.check(problem, "a, b").ok
    assert exercises.safe_to_retry.check(problem, ["B", "A"]).ok
    wrong = exercises.safe_to_retry.check(problem, "ABC")
    assert not wrong.ok
    assert wrong.hint.startswith("C: not retried") and "POST" in wrong.hint


def test_health_check_misses_gray_reset_and_short_delays() -> None:
    options = [
        ("crash", {}),
        ("gray", {"rate": 0.5}),
        ("slow", {"ms": 50.0}),
        ("slow", {"ms": 900.0}),
        ("reset", {"rate": 0.5}),
    ]
    problem = Problem(exercises.health_check_misses.id, 0, "by hand", {"timeout": 0.3, "options": options})
    assert exercises.health_check_misses.solution(problem) == {"B", "C", "E"}
    assert exercises.health_check_misses.check(problem, "").ok is False
    none_problem = Problem(exercises.health_check_misses.id, 0, "by hand", {"timeout": 0.3, "options": [("crash", {})]})
    assert exercises.health_check_misses.check(none_problem, "").ok  # "none of them"


def test_feedback_renders_green_or_red() -> None:
    right = Feedback(True, "3 s", "3 s", note="because")
    wrong = Feedback(False, "3 s", "5 s", "think again")
    assert "Correct!" in right._repr_html_() and "#e8f5e9" in right._repr_html_()
    assert "Not quite." in wrong._repr_html_() and "#ffebee" in wrong._repr_html_()
    assert "think again" in wrong._repr_html_()
    assert "<script>" not in Feedback(False, "<script>", "x", "y")._repr_html_()


# --- lesson 06: a strategy checked against a real lab ----------------------------------------------


class FewestInFlight:
    """A learner-style strategy: no base class, just pick()."""

    name = "fewest_in_flight"

    def pick(self, backends: list[Backend], request: RequestInfo, now: float, rng: Any) -> Backend:
        fewest = min(backend.in_flight for backend in backends)
        return rng.choice([backend for backend in backends if backend.in_flight == fewest])


class Broken:
    def pick(self, backends: list[Backend], request: RequestInfo, now: float, rng: Any) -> Backend:
        raise RuntimeError("oops")


async def test_check_strategy_passes_a_strategy_that_spares_the_slow_instance() -> None:
    feedback = await check_strategy(FewestInFlight)
    assert feedback.ok, feedback.message
    assert "fewest_in_flight" in feedback.given


async def test_check_strategy_fails_round_robin_and_says_why() -> None:
    feedback = await check_strategy(RoundRobin)
    assert not feedback.ok
    assert "at most 25%" in feedback.expected and "round robin: 33%" in feedback.expected
    assert "b got 3" in feedback.given  # 33 % or so
    assert "in_flight" in feedback.hint


async def test_check_strategy_reports_a_pick_that_raises_without_starting_a_lab() -> None:
    feedback = await check_strategy(Broken)
    assert not feedback.ok
    assert "pick() raised RuntimeError: oops" in feedback.given


async def test_check_strategy_reports_something_that_is_not_a_strategy() -> None:
    feedback = await check_strategy(42)
    assert not feedback.ok
    assert "could not be created" in feedback.given


# --- the worked solutions agree with the checkers ---------------------------------------------------

SOLUTIONS = Path(__file__).resolve().parent.parent / "lessons" / "solutions"
SOLVED = re.compile(r"^### (?P<id>\d\d\.\w+), seed (?P<seed>\d+) — answer `(?P<answer>[^`]*)`", re.MULTILINE)


def solved_exercises() -> list[tuple[str, int, str]]:
    found = []
    for path in sorted(SOLUTIONS.glob("*.md")):
        for match in SOLVED.finditer(path.read_text()):
            found.append((match["id"], int(match["seed"]), match["answer"]))
    return found


def test_solutions_are_written_down() -> None:
    solved = {exercise_id for exercise_id, _seed, _answer in solved_exercises()}
    for lesson in ("00", "01", "02", "03"):
        assert {exercise.id for exercise in EXERCISES[lesson]} <= solved


@pytest.mark.parametrize(("exercise_id", "seed", "answer"), solved_exercises())
def test_a_written_solution_passes_its_checker(exercise_id: str, seed: int, answer: str) -> None:
    exercise = exercises.exercise(exercise_id)
    feedback = exercise.check(exercise.new_problem(seed=seed), answer)
    assert feedback.ok, f"lessons/solutions says {answer!r} for {exercise_id} seed {seed}: {feedback.message}"


SOLUTIONS = Path(__file__).resolve().parent.parent / "lessons" / "solutions"


@pytest.mark.parametrize("name", ["FewestInFlight", "LatencyAware"])
async def test_lesson_06_solutions_pass_check_strategy(name: str) -> None:
    strategy = runpy.run_path(str(SOLUTIONS / "06_strategies.py"))[name]
    feedback = await check_strategy(strategy)
    assert feedback.ok, feedback.message
