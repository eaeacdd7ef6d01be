"""Exercise checkers: right answers pass, wrong ones fail with useful feedback, seeds are reproducible."""

from __future__ import annotations

import html
import itertools
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
from spofkit.exercises.pair import _MASTER_SCENARIOS, _SPLIT_BRAIN_SCENARIOS, PairSimulation, Step, simulate
from spofkit.health import HealthSettings
from spofkit.strategies import Backend, RequestInfo, RoundRobin

ALL = [exercise for group in EXERCISES.values() for exercise in group]
SEEDS = range(8)


def right_answer(exercise: Exercise, problem: Problem) -> Any:
    solution = exercise.solution(problem)
    return "".join(sorted(solution)) if isinstance(exercise, ChoiceExercise) else solution


def test_every_lesson_has_an_exercise() -> None:
    assert sorted(EXERCISES) == ["00", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11"]
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


def wrong_answers(exercise: Exercise, problem: Problem) -> list[Any]:
    """Wrong answers of many shapes: off a little or a lot, both ways, in the wrong unit, the complement."""
    solution = exercise.solution(problem)
    if isinstance(exercise, ChoiceExercise):
        labels = [label for label, _option in exercise._options(problem)]
        return [set(solution) ^ {label} for label in labels] + [set(labels) - set(solution)]
    if isinstance(exercise, AvailabilityExercise):
        downtime = 1 - solution
        return [1 - downtime * factor for factor in (0.5, 0.8, 1.5, 3.0, 20.0)] + [downtime, solution - 0.05]
    answers = [solution * factor for factor in (0.5, 0.85, 1.2, 2.0, 60.0, 1 / 60, 1000.0)] + [solution * 1.5 + 1]
    if 0 < solution < 1:
        answers.append(1 - solution)
    return [answer for answer in answers if not exercise.check(problem, answer).ok]


def spellings(value: float, unit: str) -> dict[str, float]:
    """The ways a number may be printed, each with the answer it stands for: rounded, as a fraction, and in the
    other units it may be given in (a percentage, ms, seconds or hours)."""
    scales = {"%": (1, 100), "s": (1, 1000), "minutes": (1, 60, 1 / 60)}.get(unit, (1,))
    found = {}
    for scale in scales:
        number = value * scale
        texts = [f"{number:.{digits}g}" for digits in range(2, 8)] + [f"{number:.{d}f}" for d in range(0, 5)]
        for text in texts:
            found[text] = float(text) / scale
    for denominator in range(2, 27):
        numerator = value * denominator
        if 0 < value < 1 and math.isclose(numerator, round(numerator), abs_tol=1e-9):
            found[f"{round(numerator)}/{denominator}"] = value
    return found


LABEL_LIST = re.compile(r"(?<![\w'])[A-Z](?:(?:, | and )[A-Z])*(?![\w':])")


def readable_text(feedback: Feedback) -> str:
    """Everything a learner can read in the feedback (as text and as HTML), except their own answer echoed."""
    text = "\n".join([feedback.expected, feedback.hint, feedback.note, feedback.off, feedback.message])
    text += "\n" + feedback._repr_html_()
    text = re.sub(r"1 −|− 1\b", "", text)  # the formulas' constants ("fall − 1", "1 − availability")
    return text.replace(f"given:    {feedback.given}", "").replace(f">{html.escape(feedback.given)}<", "><")


def revealed_anywhere(exercise: Exercise, problem: Problem, feedback: Feedback) -> list[str]:
    """Spellings of the right answer found in what the learner can read.

    A number already printed in the question is not a leak: the learner has it on screen anyway. For a choice,
    a list of labels that is exactly the right set is a leak (a list of every label is not).
    """
    solution = exercise.solution(problem)
    readable = readable_text(feedback)
    if isinstance(exercise, ChoiceExercise):
        lists = {match.group() for match in LABEL_LIST.finditer(readable)}
        return sorted(found for found in lists if set(re.findall(r"[A-Z]", found)) == set(solution))
    assert isinstance(exercise, NumericExercise)
    fraction = isinstance(exercise, AvailabilityExercise) or "fraction" in exercise.answer_format
    candidates = spellings(solution, "%" if fraction else exercise.unit)

    def shows(candidate: str, where: str) -> bool:
        return re.search(rf"(?<![\w.]){re.escape(candidate)}(?![\w]|\.\d)", where) is not None

    # A spelling gives the answer away if the checker would accept the number it stands for.
    return sorted(
        text
        for text, stands_for in candidates.items()
        if exercise._close(solution, stands_for) and shows(text, readable) and not shows(text, problem.question)
    )


@pytest.mark.parametrize("exercise", ALL, ids=lambda e: e.id)
@pytest.mark.parametrize("seed", SEEDS)
def test_a_wrong_answer_says_how_far_off_and_hints_but_never_gives_the_answer(exercise: Exercise, seed: int) -> None:
    problem = exercise.new_problem(seed=seed)
    answers = wrong_answers(exercise, problem)
    assert answers
    for answer in answers:
        feedback = exercise.check(problem, answer)
        assert not feedback.ok and not bool(feedback)
        assert feedback.kind == "wrong"
        assert feedback.expected == "", f"the answer is in the feedback for {answer!r}: {feedback.expected}"
        assert feedback.given and feedback.hint and feedback.off
        assert str(feedback).startswith(f"Not quite: {feedback.off}.")
        assert "expected" not in str(feedback) and "expected" not in feedback._repr_html_()
        assert "#b71c1c" in feedback._repr_html_()  # a red box
        assert not revealed_anywhere(exercise, problem, feedback), (answer, str(feedback))


NUMERIC = [exercise for exercise in ALL if isinstance(exercise, NumericExercise)]
CHOICES = [exercise for exercise in ALL if isinstance(exercise, ChoiceExercise)]


@pytest.mark.parametrize("exercise", NUMERIC, ids=lambda e: e.id)
@pytest.mark.parametrize("seed", SEEDS)
def test_too_high_and_too_low_are_true(exercise: NumericExercise, seed: int) -> None:
    problem = exercise.new_problem(seed=seed)
    expected = exercise.solution(problem)
    for answer in wrong_answers(exercise, problem):
        feedback = exercise.check(problem, answer)
        given = exercise._normalise(float(answer))
        assert ("too high" in feedback.off) == (given > expected), (answer, feedback.off)
        assert ("too low" in feedback.off) == (given < expected), (answer, feedback.off)
        gap = abs(given - expected) / (abs(1 - expected) if isinstance(exercise, AvailabilityExercise) else expected)
        assert ("a little" in feedback.off) == (gap <= 0.1), (answer, feedback.off)
        assert ("far" in feedback.off) == (gap >= 1.0), (answer, feedback.off)


@pytest.mark.parametrize("exercise", CHOICES, ids=lambda e: e.id)
@pytest.mark.parametrize("seed", SEEDS)
def test_a_wrong_choice_says_how_many_options_are_wrong_but_not_which(exercise: ChoiceExercise, seed: int) -> None:
    """Naming the options to look at again would give the answer away: flip those, and it is right."""
    problem = exercise.new_problem(seed=seed)
    solution = exercise.solution(problem)
    labels = [label for label, _option in exercise._options(problem)]
    for answer in wrong_answers(exercise, problem):
        feedback = exercise.check(problem, answer)
        wrong = len(set(answer) ^ solution)
        if answer:
            assert feedback.off.startswith(f"you have {wrong} of the {len(labels)} options wrong"), feedback.off
        else:  # "none of them"
            assert feedback.off == "at least one of them applies"
        assert re.findall(r"\b([A-Z])\b", feedback.off) == [], feedback.off
        # The hint asks about every option, whichever are wrong; it does not say which way each goes.
        assert [part[0] for part in re.findall(r"\b[A-Z]: ", feedback.hint)] == labels
        assert not re.search(r"\b(not )?(retried|noticed|missed)\b", feedback.hint), feedback.hint


def test_two_wrong_picks_of_a_choice_read_the_same_whatever_they_are() -> None:
    """What a learner reads after a wrong pick depends on how many options are wrong, not on which."""
    problem = exercises.safe_to_retry.new_problem(seed=3)
    solution = exercises.safe_to_retry.solution(problem)
    labels = [label for label, _option in exercises.safe_to_retry._options(problem)]
    by_count: dict[int, set[str]] = {}
    for size in range(1, len(labels) + 1):
        for picked in itertools.combinations(labels, size):
            if set(picked) == solution:
                continue
            feedback = exercises.safe_to_retry.check(problem, "".join(picked))
            by_count.setdefault(len(set(picked) ^ solution), set()).add(feedback.off + "|" + feedback.hint)
    assert by_count and all(len(texts) == 1 for texts in by_count.values()), by_count


@pytest.mark.parametrize("exercise", ALL, ids=lambda e: e.id)
def test_no_answer_yet_is_a_neutral_prompt_without_the_answer(exercise: Exercise) -> None:
    problem = exercise.new_problem(seed=1)
    feedback = exercise.check(problem, None)
    assert not feedback.ok
    assert feedback.kind == "waiting"
    assert feedback.expected == ""
    assert "write your answer" in str(feedback).lower() and "my_answer" in str(feedback)
    html = feedback._repr_html_()
    assert "spofkit-feedback" in html and "#b71c1c" not in html  # a box, but not a red one
    assert "Not quite" not in str(feedback) and "Not quite" not in html
    assert not revealed_anywhere(exercise, problem, feedback)


@pytest.mark.parametrize("exercise", ALL, ids=lambda e: e.id)
@pytest.mark.parametrize("seed", SEEDS)
def test_reveal_shows_the_answer_and_says_it_is_revealing(exercise: Exercise, seed: int) -> None:
    problem = exercise.new_problem(seed=seed)
    answer = exercise._show(exercise.solution(problem))
    shown = exercises.reveal(problem)
    assert shown.kind == "revealed" and shown.revealed and not shown.ok
    assert str(shown).startswith("Revealing the answer")
    assert answer in str(shown) and answer in shown._repr_html_()
    assert "Revealing the answer" in shown._repr_html_()
    # check(..., show_answer=True): the verdict, and the answer, marked as revealed on request.
    for given in [right_answer(exercise, problem), wrong_answers(exercise, problem)[0], None]:
        feedback = exercise.check(problem, given, show_answer=True)
        assert answer in str(feedback), str(feedback)
        assert "revealed, as you asked" in str(feedback) or feedback.ok


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
@pytest.mark.parametrize("answer", ["not a number", object(), True, math.nan])
def test_an_answer_of_the_wrong_kind_fails_and_says_what_to_give(exercise: Exercise, answer: Any) -> None:
    problem = exercise.new_problem(seed=1)
    feedback = exercise.check(problem, answer)
    assert not feedback.ok
    assert feedback.kind == "unreadable"
    assert feedback.hint.startswith("answer with")
    assert feedback.expected == "" and not revealed_anywhere(exercise, problem, feedback)


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
    assert HealthSettings().recovery_window_bound() == pytest.approx(1.3)


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
    assert wrong.off.startswith("you have 1 of the 4 options wrong")
    assert "C: could this POST have reached a backend?" in wrong.hint
    assert "C: not retried" in exercises.reveal(problem).note and "POST" in exercises.reveal(problem).note


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
    wrong = Feedback(False, "", "5 s", "think again", off="too high")
    assert "Correct!" in right._repr_html_() and "#e8f5e9" in right._repr_html_()
    assert "Not quite: too high." in wrong._repr_html_() and "#ffebee" in wrong._repr_html_()
    assert "think again" in wrong._repr_html_()
    assert "<script>" not in Feedback(False, "<script>", "x", "y")._repr_html_()
    with pytest.raises(ValueError, match="status must be"):
        Feedback(False, "", "", status="maybe")


def test_a_prediction_still_shows_the_measurement_it_is_compared_with() -> None:
    # spofkit.widgets' predict(): the measured value is the point of the comparison, so it stays visible.
    feedback = Feedback(False, "33 %", "50 %", "your guess was high")
    assert "expected: 33 %" in str(feedback) and "33 %" in feedback._repr_html_()
    assert feedback.with_hint("the red bars are b's turns").hint == "the red bars are b's turns"


# --- hints name the mistake they describe, and only when it is that mistake ------------------------


def hint_for(exercise: NumericExercise, answer: float, **params: Any) -> str:
    problem = Problem(exercise.id, 0, "by hand", params)
    feedback = exercise.check(problem, answer)
    assert not feedback.ok
    return feedback.hint


def test_hints_recognise_the_common_mistakes() -> None:
    counts = {"requests": 600, "failed": 55}
    assert "share that failed" in hint_for(exercises.availability_from_counts, 55 / 600, **counts)
    assert "share that failed" not in hint_for(exercises.availability_from_counts, 0.8, **counts)

    budget = {"availability_percent": 99.9, "period": "30-day month"}
    assert "seconds" in hint_for(exercises.downtime_budget, 43.2 * 60, **budget)
    assert "hours" in hint_for(exercises.downtime_budget, 43.2 / 60, **budget)
    assert "*up*" in hint_for(exercises.downtime_budget, 0.999 * 43200, **budget)
    assert "43200 minutes" in hint_for(exercises.downtime_budget, 50, **budget)

    outage = {"rate": 100, "duration": 10, "crash_at": 2, "back_at": 5}
    assert "was down" in hint_for(exercises.outage_availability, 0.3, **outage)
    assert "t = 2 s to t = 5 s" in hint_for(exercises.outage_availability, 0.5, **outage)

    chain = {"parts": ["a", "b"], "availabilities": [0.99, 0.999]}
    assert "no lower than the weakest link (99%)" in hint_for(exercises.series_availability, 0.99, **chain)
    assert "weakest link" not in hint_for(exercises.series_availability, 0.95, **chain)

    crash = {"instances": 4, "crashed": 2}
    assert "still succeeds" in hint_for(exercises.crash_error_fraction, 0.5 + 0.2, **{"instances": 10, "crashed": 3})
    assert "one crashed instance; 2 of them" in hint_for(exercises.crash_error_fraction, 0.25, **crash)
    assert "one crashed instance" not in hint_for(exercises.crash_error_fraction, 0.1, **{"instances": 4, "crashed": 1})

    parallel = {"copies": 3, "each": 0.9, "balancer": 0.999}
    assert "copies alone" in hint_for(exercises.parallel_availability, 0.999, **parallel)
    assert "one copy behind" in hint_for(exercises.parallel_availability, 0.9 * 0.999, **parallel)
    assert "*un*availabilities" in hint_for(exercises.parallel_availability, 0.9**3 * 0.999, **parallel)

    fall = {"interval": 0.5, "consecutive_misses": 3}
    assert "a pause that fails 3 probes in a row" in hint_for(exercises.false_alarm_fall, 3, **fall)
    assert "slows the detection" in hint_for(exercises.false_alarm_fall, 6, **fall)
    assert "whole number" in hint_for(exercises.false_alarm_fall, 4.5, **fall)

    detection = {"interval": 0.5, "timeout": 0.3, "rise": 2, "fall": 3}
    assert "full timeout has run out" in hint_for(exercises.detection_window, 1.5, **detection)
    assert "max(interval, timeout)" in hint_for(exercises.detection_window, 3.0, **detection)
    assert "max(fastinter, timeout)" in hint_for(exercises.detection_window, 3.0, **detection, fastinter=0.1)

    retry = {"rate": 50, "ratio": 0.2, "min_per_second": 5.0, "window": 10.0}
    assert "left out the floor" in hint_for(exercises.retry_budget, 100, **retry)
    assert "one second's worth" in hint_for(exercises.retry_budget, 15, **retry)

    ejection = {"consecutive_failures": 3, "base_time": 2.0, "max_time": 10.0, "ejection_number": 7}
    assert "max_time" in hint_for(exercises.ejection_time, 14, **ejection)
    assert "stays out longer" in hint_for(exercises.ejection_time, 2, **ejection)

    little = {"rate": 50, "latency_ms": 200}
    assert "into seconds" in hint_for(exercises.littles_law, 10_000, **little)
    assert "multiplies" in hint_for(exercises.littles_law, 250, **little)


@pytest.mark.parametrize("seed", range(20))
def test_the_parallel_note_names_the_part_that_limits_the_service(seed: int) -> None:
    problem = exercises.parallel_availability.new_problem(seed=seed)
    params = problem.params
    balancer_limits = 1 - params["balancer"] > (1 - params["each"]) ** params["copies"]
    why = exercises.reveal(problem).note
    assert ("the one balancer is down more often" in why) == balancer_limits, (params, why)
    assert ("another copy would help" in why) == (not balancer_limits), (params, why)


def test_choice_hints_ask_about_the_option_they_name() -> None:
    options = [("crash", {}), ("gray", {"rate": 0.5}), ("slow", {"ms": 50.0})]
    problem = Problem(exercises.health_check_misses.id, 0, "by hand", {"timeout": 0.3, "options": options})
    feedback = exercises.health_check_misses.check(problem, "A")  # right: B and C; A is wrong, B and C missing
    assert feedback.off.startswith("you have 3 of the 3 options wrong")
    assert "A: what happens to the probe's connection?" in feedback.hint
    assert "B: does GET /health fail too" in feedback.hint
    assert "C: is the delay longer or shorter than the probe's 300 ms timeout?" in feedback.hint
    why = exercises.reveal(problem).note
    assert "C: missed: the 50 ms delay is shorter than the probe's 300 ms timeout." in why


# --- lessons 07 and 08: the pair of balancers, and deploys -----------------------------------------


def test_takeover_time_by_hand_and_its_hints() -> None:
    worst = numeric_problem(exercises.takeover_time, advert_interval=0.2, priority=100, case="worst")
    best = numeric_problem(exercises.takeover_time, advert_interval=0.2, priority=100, case="best")
    assert exercises.takeover_time.solution(worst) == pytest.approx(3 * 0.2 + 156 / 256 * 0.2)
    assert exercises.takeover_time.solution(best) == pytest.approx(2 * 0.2 + 156 / 256 * 0.2)
    params = {"advert_interval": 0.2, "priority": 100}
    assert "left out the skew" in hint_for(exercises.takeover_time, 0.6, **params, case="worst")
    assert "256 − priority" in hint_for(exercises.takeover_time, 0.6 + 100 / 256 * 0.2, **params, case="worst")
    assert "came before the kill" in hint_for(exercises.takeover_time, 0.721875, **params, case="best")
    assert "whole interval" in hint_for(exercises.takeover_time, 0.521875, **params, case="worst")


def test_the_pair_simulation_follows_the_pair_rules() -> None:
    settings = PairSimulation().members["lb2"].settings
    simulation = PairSimulation()
    simulation.run_until(2.0)
    assert simulation.holders == {"lb1"} and simulation.masters() == {"lb1"}
    simulation.crash("lb1")
    killed = simulation.now
    while simulation.holders != {"lb2"}:
        simulation.run_until(simulation.now + 0.001)
    # The backup's timer runs from the last advert it heard: up to one interval before the kill.
    took = simulation.now - killed
    assert settings.master_down_interval - settings.advert_interval <= took <= settings.master_down_interval + 0.002
    # A cut link: two masters; on one host the second is blocked; with fencing the second has no lease.
    assert simulate([Step("cut")]).holders == {"lb1", "lb2"}
    for blocked in ({"one_host": True}, {"fencing": True}):
        split = simulate([Step("cut")], **blocked)
        assert split.masters() == {"lb1", "lb2"} and split.holders == {"lb1"}, blocked
    assert simulate([Step("cut"), Step("heal")]).holders == {"lb1"}
    assert simulate([Step("crash", "lb1")], fencing=True).holders == {"lb2"}  # the supervisor saw it die
    assert simulate([Step("hang", "lb1")]).holders == {"lb1"}  # its adverts go on
    for preempt, holder in ((True, "lb1"), (False, "lb2")):
        returned = simulate([Step("crash", "lb1"), Step("restart", "lb1")], preempt=preempt)
        assert returned.holders == {holder} and returned.masters() == {holder}, preempt


def test_who_is_master_and_split_brain_by_hand() -> None:
    by_words = {(s.steps, s.preempt): index for index, s in enumerate(_MASTER_SCENARIOS)}
    options = [by_words[("crash lb1, restart lb1", True)], by_words[("crash lb1, restart lb1", False)]]
    problem = Problem(exercises.who_is_master.id, 0, "by hand", {"ask": "lb2", "options": options})
    assert exercises.who_is_master.solution(problem) == {"B"}
    wrong = exercises.who_is_master.check(problem, "AB")
    assert wrong.off.startswith("you have 1 of the 2 options wrong") and "preempt on" in wrong.hint
    assert "B: lb2 ends as master" in exercises.reveal(problem).note
    words = [scenario[0] for scenario in _SPLIT_BRAIN_SCENARIOS]
    cut = words.index("two machines; the link between the balancers breaks; no fencing")
    fenced = words.index(
        "two machines; the link between the balancers breaks; a supervisor grants the address by lease (fencing)"
    )
    loopback = words.index("one host, both on its loopback; the adverts between them are lost")
    problem = Problem(exercises.split_brain.id, 0, "by hand", {"options": [cut, fenced, loopback]})
    assert exercises.split_brain.solution(problem) == {"A"}
    assert "C: no split brain: master by the rules lb1 and lb2, holding the address lb1." in (
        exercises.reveal(problem).note
    )


def test_requests_lost_by_hand_and_its_hints() -> None:
    params = {"rate": 50, "takeover": 0.6, "work_ms": 200}
    problem = numeric_problem(exercises.requests_lost, **params)
    assert exercises.requests_lost.solution(problem) == pytest.approx(50 * 0.6 + 50 * 0.2)
    assert "in flight when the master died" in hint_for(exercises.requests_lost, 30, **params)
    assert "sent during the takeover" in hint_for(exercises.requests_lost, 10, **params)
    assert "into seconds" in hint_for(exercises.requests_lost, 50 * (0.6 + 200), **params)
    no_work = {"rate": 50, "takeover": 0.6, "work_ms": 0}
    assert "in flight when the master died" not in hint_for(exercises.requests_lost, 20, **no_work)


def test_deploy_duration_and_largest_batch_by_hand_and_their_hints() -> None:
    params = {"instances": 5, "batch": 3, "drain": 1.0, "restart": 2.0, "rise": 2, "interval": 2.0, "warm_up": 30.0}
    problem = numeric_problem(exercises.deploy_duration, **params)
    assert exercises.deploy_duration.solution(problem) == pytest.approx(2 * (1 + 2 + 4 + 30))
    assert exercises.rolling_deploy_seconds(5, 3, drain=1, restart=2, readiness=4, warm_up=30) == 74
    assert "count batches" in hint_for(exercises.deploy_duration, 5 * 37, **params)
    assert "round the number of batches up" in hint_for(exercises.deploy_duration, 5 / 3 * 37, **params)
    assert "warm-up too" in hint_for(exercises.deploy_duration, 2 * 7, **params)
    assert "readiness takes time" in hint_for(exercises.deploy_duration, 2 * 33, **params)
    with pytest.raises(ValueError, match="batch must be >= 1"):
        exercises.rolling_deploy_seconds(3, 0, drain=1, restart=1, readiness=1, warm_up=0)
    batch = {"instances": 7, "capacity": 80, "peak": 275}  # 275 needs 4 instances of 80
    assert exercises.largest_batch.solution(numeric_problem(exercises.largest_batch, **batch)) == 3
    assert "must keep serving" in hint_for(exercises.largest_batch, 4, **batch)
    assert "whole number" in hint_for(exercises.largest_batch, 3.5, **batch)
    assert "rounded up" in hint_for(exercises.largest_batch, 1, **batch)


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
    for lesson in ("00", "01", "02", "03", "07", "08", "09"):
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


# --- lesson 09: capacity and overload ------------------------------------------------------------------------


def test_lesson_09_helpers_by_hand() -> None:
    from spofkit.capacity import Capacity

    two_workers = Capacity(concurrency=2, work_ms=10)  # 200 req/s each
    assert exercises.utilisation_after_losing(3, 0, two_workers, 420) == pytest.approx(0.70)
    assert exercises.utilisation_after_losing(3, 1, two_workers, 420) == pytest.approx(1.05)  # 70 % of 3 is too much
    assert exercises.mm1_response_time(0.010, 0.7) == pytest.approx(0.010 / 0.3)
    # 450 req/s of 600: 150 spare; a floor of 5/s leaves 145, which is 32.2 % of 450.
    assert exercises.largest_budget_ratio(450, 600, 5.0) == pytest.approx(145 / 450)
    with pytest.raises(ValueError, match="utilisation must be 0 <= ρ < 1"):
        exercises.mm1_response_time(0.01, 1.0)
    with pytest.raises(ValueError, match="needs a capacity with workers and work"):
        exercises.utilisation_after_losing(3, 1, Capacity(), 100)
    with pytest.raises(ValueError, match=r"lost must be 0\.\.2"):
        exercises.utilisation_after_losing(3, 3, two_workers, 100)


def test_lesson_09_hints_recognise_the_common_mistakes() -> None:
    headroom = exercises.headroom.new_problem(seed=2)  # 3 x (8 workers x 50 ms) at 240 req/s: 50 % -> 75 %
    assert exercises.headroom.solution(headroom) == pytest.approx(75.0)
    assert "before the crash" in exercises.headroom.check(headroom, 50).hint

    delay = exercises.queueing_delay.new_problem(seed=1)  # 10 ms of work at 95 req/s: 200 ms
    assert exercises.queueing_delay.solution(delay) == pytest.approx(200.0)
    assert "the work alone" in exercises.queueing_delay.check(delay, 10).hint
    assert "the wait alone" in exercises.queueing_delay.check(delay, 190).hint

    amplification = exercises.retry_amplification.new_problem(seed=2)  # 3 tries x 3 attempts
    assert exercises.retry_amplification.solution(amplification) == 9
    assert "do not add up" in exercises.retry_amplification.check(amplification, 6).hint
    assert "do not add up" in exercises.retry_amplification.check(amplification, 5).hint

    budget = exercises.storm_budget.new_problem(seed=3)  # 450 of 600, floor 5/s
    assert exercises.storm_budget.solution(budget) == pytest.approx(100 * 145 / 450)
    assert "left out the floor" in exercises.storm_budget.check(budget, 100 * 150 / 450).hint
    assert "not of the capacity" in exercises.storm_budget.check(budget, 100 * 145 / 600).hint


def test_storm_budget_never_accepts_the_answer_that_leaves_the_floor_out() -> None:
    """The floor moves the answer by tenths of a point: a tolerance wider than that, or a problem where the floor
    barely matters, marked the no-floor answer correct (seed 9, the lesson's own: 42.86 % for 42.26 %)."""
    floors = 0
    for seed in range(300):
        problem = exercises.storm_budget.new_problem(seed=seed)
        params = problem.params
        answer = exercises.storm_budget.solution(problem)
        assert exercises.storm_budget.check(problem, round(answer, 1)).ok, (seed, answer)
        if params["min_per_second"] == 0:
            continue
        floors += 1
        no_floor = 100 * (params["capacity"] - params["rate"]) / params["rate"]
        feedback = exercises.storm_budget.check(problem, round(no_floor, 2))
        assert not feedback.ok, (seed, answer, no_floor)
        assert "left out the floor" in feedback.hint, (seed, feedback.hint)
    assert floors > 100


# --- lesson 10: availability at scale ----------------------------------------------------------------


def test_lesson_10_has_its_exercises_and_their_solutions() -> None:
    assert [exercise.id for exercise in EXERCISES["10"]] == [
        "10.mtbf_availability",
        "10.yearly_downtime",
        "10.spare_capacity",
        "10.zone_failure",
        "10.correlated_or_not",
    ]
    solved = {exercise_id for exercise_id, _seed, _answer in solved_exercises()}
    assert {exercise.id for exercise in EXERCISES["10"]} <= solved


def at_least_by_counting(needed: int, copies: int, each: float) -> float:
    """The share of the 2^N up/down patterns (weighted by their chance) with at least ``needed`` up."""
    total = 0.0
    for pattern in range(2**copies):
        up = bin(pattern).count("1")
        if up >= needed:
            total += each**up * (1 - each) ** (copies - up)
    return total


@pytest.mark.parametrize(("needed", "copies"), [(1, 1), (1, 3), (2, 3), (3, 4), (3, 6), (5, 5)])
def test_at_least_k_of_n_counts_every_pattern_of_copies_up(needed: int, copies: int) -> None:
    from spofkit.exercises import at_least_k_of_n, at_least_one_of_n

    for each in (0.5, 0.9, 0.99):
        assert at_least_k_of_n(needed, copies, each) == pytest.approx(at_least_by_counting(needed, copies, each))
    assert at_least_k_of_n(1, copies, 0.9) == pytest.approx(at_least_one_of_n(copies, 0.9))
    assert at_least_one_of_n(2, 0.99) == pytest.approx(0.9999)


def test_zoned_availability_is_what_a_simulated_decade_of_zone_failures_gives() -> None:
    """The formula against the simulator's failure processes: two zones of two copies, over ten simulated years."""
    from spofkit.exercises import zoned_availability
    from spofkit.sim import FailureGroup, FailureProcess, failure_plan
    from spofkit.sim.failures import up_time

    day = 86400.0
    own = FailureProcess(5 * day, 0.5 * day)
    zones = [FailureProcess(30 * day, 1 * day)] * 2
    groups = [FailureGroup("zone-1", ("a", "b"), zones[0]), FailureGroup("zone-2", ("c", "d"), zones[1])]
    horizon = 10 * 365 * day
    shares = [
        up_time(failure_plan(["a", "b", "c", "d"], own, groups, horizon=horizon, seed=seed), "abcd", horizon).service
        for seed in range(6)
    ]
    measured_down = 1 - sum(shares) / len(shares)
    formula_down = 1 - zoned_availability([2, 2], own.availability, zones[0].availability)
    independent_down = (1 - own.availability) ** 4
    assert measured_down == pytest.approx(formula_down, rel=0.25)
    assert measured_down > 3 * independent_down  # the zones, not the copies, set the downtime


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: exercises.at_least_k_of_n(4, 3, 0.9), "needed (4) cannot be more than copies (3)"),
        (lambda: exercises.at_least_k_of_n(0, 3, 0.9), "needed must be a whole number >= 1, got 0"),
        (lambda: exercises.at_least_one_of_n(2, 99.9), "each must be an availability between 0 and 1, got 99.9"),
        (lambda: exercises.zoned_availability([], 0.9, 0.99), "per_zone must list at least one zone"),
        (lambda: exercises.zoned_availability([2], 0.9, 1.5), "zone must be an availability between 0 and 1"),
    ],
)
def test_the_scale_formulas_refuse_bad_input_by_name(call: Any, words: str) -> None:
    with pytest.raises(ValueError, match=re.escape(words)):
        call()


def test_lesson_10_hints_recognise_the_common_mistakes() -> None:
    mtbf = {"mtbf_days": 10, "mttr_hours": 12}
    assert "MTBF + MTTR" in hint_for(exercises.mtbf_availability, 1 - 12 / 240, **mtbf)
    assert "same unit" in hint_for(exercises.mtbf_availability, 10 / 22, **mtbf)
    assert "being repaired" in hint_for(exercises.mtbf_availability, 12 / 252, **mtbf)

    yearly = {"mtbf_days": 10, "mttr_hours": 24, "copies": 2}
    each = 10 / 11
    assert "one copy's downtime" in hint_for(exercises.yearly_downtime, (1 - each) * 8760, **yearly)
    assert "adds up" in hint_for(exercises.yearly_downtime, 2 * (1 - each) * 8760, **yearly)
    assert "minutes" in hint_for(exercises.yearly_downtime, (1 - each) ** 2 * 8760 * 60, **yearly)

    spare = {"needed": 3, "copies": 4, "each": 0.95, "plan": "N+1"}
    assert "at least one up" in hint_for(exercises.spare_capacity, 1 - 0.05**4, **spare)
    assert "'all 4 up'" in hint_for(exercises.spare_capacity, 0.95**4, **spare)
    assert "any 3 of the 4" in hint_for(exercises.spare_capacity, 0.95**3, **spare)

    one_zone = {"zones": 1, "per_zone": 3, "each": 0.95, "zone": 0.995}
    assert "independently" in hint_for(exercises.zone_failure, 1 - 0.05**3, **one_zone)
    two_zones = {"zones": 2, "per_zone": 2, "each": 0.95, "zone": 0.995}
    assert "every copy in one zone" in hint_for(exercises.zone_failure, 0.995 * (1 - 0.05**4), **two_zones)


def test_the_zone_note_says_whether_spreading_helped() -> None:
    one_zone = Problem("10.zone_failure", 0, "by hand", {"zones": 1, "per_zone": 3, "each": 0.95, "zone": 0.995})
    two_zones = Problem("10.zone_failure", 0, "by hand", {"zones": 2, "per_zone": 2, "each": 0.95, "zone": 0.995})
    assert "single point of failure again" in exercises.zone_failure.reveal(one_zone).note
    assert "spreading the copies" in exercises.zone_failure.reveal(two_zones).note
