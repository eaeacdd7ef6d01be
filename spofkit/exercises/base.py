"""The kinds of exercise: a seeded :class:`Problem`, a :class:`Feedback` box, and how answers are checked.

An :class:`Exercise` turns a seed into a :class:`Problem` (the same seed, the same numbers) and an answer
into :class:`Feedback`. :class:`NumericExercise` compares a number within a tolerance,
:class:`AvailabilityExercise` compares the downtime behind an availability, and :class:`ChoiceExercise`
compares a set of option labels. The lesson modules beside this one only say what to ask and what is right.
"""

from __future__ import annotations

import html
import math
import random
import re
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

# A drawn seed is kept small, so a learner can read it off and type it again.
MAX_DRAWN_SEED = 10_000


# --- what a learner sees -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One variant of an exercise: the question and the numbers in it. The same seed gives the same one."""

    exercise: str  # the exercise's id, e.g. "01.downtime_budget"
    seed: int
    question: str
    params: dict[str, Any] = field(default_factory=dict, hash=False)
    answer_format: str = ""  # what to hand to check(), e.g. "minutes" or "labels such as 'AC'"

    def __str__(self) -> str:
        wanted = f"\n(answer: {self.answer_format})" if self.answer_format else ""
        return f"[{self.exercise}, seed {self.seed}] {self.question}{wanted}"

    def _repr_html_(self) -> str:
        question = html.escape(self.question).replace("\n", "<br>")
        wanted = f"<br><i>Answer: {html.escape(self.answer_format)}</i>" if self.answer_format else ""
        return (
            "<div style='border:1px solid #888;border-radius:6px;padding:8px 12px;margin:4px 0'>"
            f"<b>Exercise {html.escape(self.exercise)}</b> "
            f"<span style='color:#888'>(seed {self.seed})</span><br>{question}{wanted}</div>"
        )


@dataclass(frozen=True)
class Feedback:
    """The verdict on one answer: right or not, what was expected, what was given, and a hint."""

    ok: bool
    expected: str
    given: str
    hint: str = ""
    note: str = ""  # why the answer is what it is (shown both when right and when wrong)

    def __bool__(self) -> bool:
        return self.ok

    @property
    def message(self) -> str:
        if self.ok:
            lines = [f"Correct! {self.given} (expected {self.expected})."]
        else:
            lines = ["Not quite.", f"  expected: {self.expected}", f"  given:    {self.given}"]
            if self.hint:
                lines.append(f"  hint:     {self.hint}")
        if self.note:
            lines.append(f"  why:      {self.note}" if not self.ok else f"Why: {self.note}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.message

    def _repr_html_(self) -> str:
        color, background, title = (
            ("#1b5e20", "#e8f5e9", "Correct!") if self.ok else ("#b71c1c", "#ffebee", "Not quite.")
        )
        rows = [("expected", self.expected), ("given", self.given)]
        if self.hint and not self.ok:
            rows.append(("hint", self.hint))
        if self.note:
            rows.append(("why", self.note))
        body = "".join(
            f"<tr><th style='text-align:left;padding-right:8px'>{name}</th>"
            f"<td style='text-align:left'>{html.escape(value)}</td></tr>"
            for name, value in rows
        )
        return (
            f"<div class='spofkit-feedback' style='border:2px solid {color};background:{background};"
            f"color:{color};border-radius:6px;padding:8px 12px;margin:4px 0'>"
            f"<b>{title}</b><table>{body}</table></div>"
        )


# --- the kinds of exercise ---------------------------------------------------------------------------


class Exercise:
    """Base class: draws problems from a seed and checks answers. Subclasses say how."""

    id: str = "exercise"
    lesson: str = "00"
    title: str = ""
    answer_format: str = ""  # what check() wants, in words

    def new_problem(self, seed: int | None = None) -> Problem:
        """A problem for ``seed`` (a whole number); ``None`` draws a fresh seed, shown with the problem."""
        if seed is None:
            seed = random.SystemRandom().randrange(MAX_DRAWN_SEED)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be a whole number or None, got {seed!r}")
        # Seeding with a string mixes in the exercise id: seed 7 of two exercises are unrelated draws.
        rng = random.Random(f"{self.id}:{seed}")
        question, params = self._make(rng)
        return Problem(self.id, seed, question, params, self.answer_format)

    def _make(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        raise NotImplementedError

    def solution(self, problem: Problem) -> Any:
        """The right answer to ``problem`` (the solutions notebooks print it; so can you, on purpose)."""
        raise NotImplementedError

    def check(self, problem: Problem, answer: Any) -> Feedback:
        raise NotImplementedError

    def _own(self, problem: Problem) -> None:
        if not isinstance(problem, Problem):
            raise TypeError(f"problem must be a Problem from new_problem(), got {problem!r}")
        if problem.exercise != self.id:
            raise ValueError(
                f"problem is for exercise {problem.exercise!r}, not {self.id!r}: "
                f"check it with the exercise that made it"
            )

    def __repr__(self) -> str:
        return f"<exercise {self.id}: {self.title}>"


class NumericExercise(Exercise):
    """An answer that is a number, right within ``relative_tolerance`` (or ``absolute_tolerance``)."""

    relative_tolerance = 0.01
    absolute_tolerance = 1e-9
    unit = ""  # printed after numbers, e.g. "s"

    def solution(self, problem: Problem) -> float:
        raise NotImplementedError

    def check(self, problem: Problem, answer: Any) -> Feedback:
        self._own(problem)
        expected = self.solution(problem)
        given = _as_number(answer)
        if given is None:
            return Feedback(
                False,
                self._format(expected),
                repr(answer),
                f"answer with a number ({self.answer_format})",
            )
        given = self._normalise(given)
        ok = self._close(expected, given)
        hint = "" if ok else self._hint(problem, given)
        return Feedback(ok, self._format(expected), self._format(given), hint, self._note(problem))

    def _normalise(self, given: float) -> float:
        return given

    def _close(self, expected: float, given: float) -> bool:
        return math.isclose(given, expected, rel_tol=self.relative_tolerance, abs_tol=self.absolute_tolerance)

    def _format(self, value: float) -> str:
        return f"{value:.6g} {self.unit}".rstrip()

    def _hint(self, problem: Problem, given: float) -> str:
        return "work it out step by step from the question; the lesson's formula cell shows how"

    def _note(self, problem: Problem) -> str:
        return ""


class AvailabilityExercise(NumericExercise):
    """An availability, accepted as a fraction (0.999) or a percentage (99.9).

    Near 100 % every answer looks alike, so it is the *unavailability* (1 − A) that must be within 3 %:
    99.9 % vs 99.8 % is twice the downtime, and counts as wrong.
    """

    answer_format = "a fraction such as 0.999, or a percentage such as 99.9"
    relative_tolerance = 0.03

    def _normalise(self, given: float) -> float:
        return given / 100 if 1 < given <= 100 else given

    def _close(self, expected: float, given: float) -> bool:
        return math.isclose(1 - given, 1 - expected, rel_tol=self.relative_tolerance, abs_tol=1e-12)

    def _format(self, value: float) -> str:
        return f"{value * 100:.6g} %"


class ChoiceExercise(Exercise):
    """Pick the labels (``"A"``, ``"B"``...) of the options that are true; the answer is a set of labels.

    ``"AC"``, ``"A, C"``, ``["A", "C"]`` and ``{"a", "c"}`` are all the same answer. An empty answer
    (``""`` or ``set()``) says "none of them".
    """

    answer_format = "the labels of every option that applies, e.g. 'AC' (or '' for none)"

    def solution(self, problem: Problem) -> frozenset[str]:
        return frozenset(label for label, option in self._options(problem) if self._is_true(problem, option))

    def _options(self, problem: Problem) -> list[tuple[str, Any]]:
        return list(zip(string.ascii_uppercase, problem.params["options"], strict=False))

    def _is_true(self, problem: Problem, option: Any) -> bool:
        raise NotImplementedError

    def _why(self, problem: Problem, option: Any) -> str:
        """One sentence on why ``option`` is (or is not) true."""
        return ""

    def check(self, problem: Problem, answer: Any) -> Feedback:
        self._own(problem)
        expected = self.solution(problem)
        labels = {label for label, _ in self._options(problem)}
        given = _as_labels(answer)
        if given is None or not given <= labels:
            return Feedback(
                False,
                _show_labels(expected),
                repr(answer),
                f"answer with labels from {_show_labels(labels)}, e.g. 'AC', or '' for none",
            )
        ok = given == expected
        hint = ""
        if not ok:
            options = dict(self._options(problem))
            wrong = sorted(given ^ expected)
            hint = " ".join(f"{label}: {self._why(problem, options[label])}".rstrip(": ") for label in wrong)
        return Feedback(ok, _show_labels(expected), _show_labels(given), hint)


def _as_number(answer: Any) -> float | None:
    if isinstance(answer, bool):
        return None
    if isinstance(answer, str):
        try:
            return float(answer.replace("%", "").strip())
        except ValueError:
            return None
    try:
        value = float(answer)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _as_labels(answer: Any) -> set[str] | None:
    if isinstance(answer, str):
        return {c.upper() for c in re.sub(r"[\s,;]", "", answer)}
    if isinstance(answer, Iterable):
        items = list(answer)
        if all(isinstance(item, str) for item in items):
            return {item.strip().upper() for item in items}
    return None


def _show_labels(labels: Iterable[str]) -> str:
    ordered = sorted(labels)
    return ", ".join(ordered) if ordered else "none"


def _pick(rng: random.Random, values: Sequence[Any]) -> Any:
    return values[rng.randrange(len(values))]
