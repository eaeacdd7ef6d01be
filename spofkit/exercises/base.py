"""The kinds of exercise: a seeded :class:`Problem`, a :class:`Feedback` box, and how answers are checked.

An :class:`Exercise` turns a seed into a :class:`Problem` (the same seed, the same numbers) and an answer
into :class:`Feedback`. :class:`NumericExercise` compares a number within a tolerance,
:class:`AvailabilityExercise` compares the downtime behind an availability, and :class:`ChoiceExercise`
compares a set of option labels. The lesson modules beside this one only say what to ask and what is right.
"""

from __future__ import annotations

import dataclasses
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


# Feedback boxes: (border and text colour, background, title) for each status.
_BOX_STYLES = {
    "right": ("#1b5e20", "#e8f5e9", "Correct!"),
    "wrong": ("#b71c1c", "#ffebee", "Not quite"),
    "waiting": ("#37474f", "#eceff1", "No answer yet"),
    "unreadable": ("#e65100", "#fff3e0", "Not an answer I can check"),
    "revealed": ("#0d47a1", "#e3f2fd", "Revealing the answer, as you asked"),
}


@dataclass(frozen=True)
class Feedback:
    """The verdict on one answer, in the words a learner reads.

    ``status`` says which box it is: a verdict (``""``: right or wrong, by ``ok``), ``"waiting"`` (no answer
    yet: a neutral prompt, not an error), ``"unreadable"`` (not the kind of answer asked for) or
    ``"revealed"`` (the answer, because it was asked for). An exercise fills ``expected`` only when the answer
    is right or when it was asked for (``revealed``); a wrong answer gets ``off`` (how far off, in words) and a
    ``hint``, never the answer. A prediction's comparison (``spofkit.widgets``) fills ``expected`` with the
    measurement: there the number is the point.
    """

    ok: bool
    expected: str  # "" while the learner should not see it
    given: str
    hint: str = ""
    note: str = ""  # why the answer is what it is: shown with a right answer or a revealed one
    off: str = ""  # how a wrong answer is off, in words: "too high", "you have 2 of the 4 options wrong"
    status: str = ""  # "" (a verdict), "waiting", "unreadable" or "revealed"
    revealed: bool = False  # the answer is shown because it was asked for (reveal(), show_answer=True)

    def __post_init__(self) -> None:
        if self.status not in ("", "waiting", "unreadable", "revealed"):
            raise ValueError(f"status must be '', 'waiting', 'unreadable' or 'revealed', got {self.status!r}")

    def __bool__(self) -> bool:
        return self.ok

    @property
    def kind(self) -> str:
        """Which box this is: right, wrong, waiting, unreadable or revealed."""
        return self.status or ("right" if self.ok else "wrong")

    @property
    def title(self) -> str:
        title = _BOX_STYLES[self.kind][2]
        return f"{title}: {self.off}." if self.kind == "wrong" and self.off else title

    def with_hint(self, hint: str) -> Feedback:
        """The same verdict with ``hint`` instead: for a lesson cell that knows what its run showed."""
        return dataclasses.replace(self, hint=hint)

    def _rows(self) -> list[tuple[str, str]]:
        """(label, text) lines under the title, in the order a learner reads them."""
        kind = self.kind
        rows: list[tuple[str, str]] = []
        if kind == "waiting":
            wanted = f" ({self.hint})" if self.hint else ""
            rows.append(("", f"Write your answer{wanted} in my_answer and run this cell again."))
        if kind == "revealed":
            rows.append(("answer", self.expected))
        elif kind == "right":
            rows.append(("given", self.given))
            if self.expected and self.expected != self.given:
                rows.append(("expected", self.expected))
        else:
            if self.expected and not self.revealed:
                rows.append(("expected", self.expected))  # a measurement a prediction is compared with
            if self.given:
                rows.append(("given", self.given))
        if self.hint and kind in ("wrong", "unreadable"):
            rows.append(("hint", self.hint))
        if self.revealed and kind != "revealed":
            rows.append(("answer", f"{self.expected} (revealed, as you asked)"))
        if self.note and (kind in ("right", "revealed") or self.revealed):
            rows.append(("why", self.note))
        return rows

    @property
    def message(self) -> str:
        lines = [self.title if self.title.endswith((".", "!")) else self.title + "."]
        for label, text in self._rows():
            lines.append(f"  {label + ':':<9} {text}" if label else f"  {text}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.message

    def _repr_html_(self) -> str:
        color, background, _title = _BOX_STYLES[self.kind]
        body = "".join(
            f"<tr><th style='text-align:left;padding-right:8px'>{html.escape(label)}</th>"
            f"<td style='text-align:left'>{html.escape(text)}</td></tr>"
            for label, text in self._rows()
        )
        return (
            f"<div class='spofkit-feedback spofkit-feedback-{self.kind}' style='border:2px solid {color};"
            f"background:{background};color:{color};border-radius:6px;padding:8px 12px;margin:4px 0'>"
            f"<b>{html.escape(self.title)}</b><table>{body}</table></div>"
        )


# --- the kinds of exercise ---------------------------------------------------------------------------


class Exercise:
    """Base class: draws problems from a seed and checks answers. Subclasses say how.

    ``check(problem, answer)`` never shows the answer unless asked: a wrong answer gets how far off it is, in
    words, and a hint for this problem; ``None`` (no answer yet) gets a neutral prompt. The answer is shown on
    purpose only: ``reveal(problem)``, or ``check(problem, answer, show_answer=True)``.
    """

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
        """The right answer to ``problem``, as a value (the solutions use it; so can you, on purpose)."""
        raise NotImplementedError

    def check(self, problem: Problem, answer: Any, *, show_answer: bool = False) -> Feedback:
        """Right or not, and a hint; the answer itself only with ``show_answer=True``."""
        raise NotImplementedError

    def reveal(self, problem: Problem) -> Feedback:
        """The answer to ``problem``, and why: shown because you asked, in a box that says so."""
        self._own(problem)
        return Feedback(
            False,
            self._show(self.solution(problem)),
            "",
            note=self._why_answer(problem),
            status="revealed",
            revealed=True,
        )

    def _show(self, value: Any) -> str:
        """The answer as the learner would write it."""
        return str(value)

    def _why_answer(self, problem: Problem) -> str:
        """Why the answer is what it is (shown with a right or a revealed answer)."""
        return ""

    def _waiting(self, shown: str) -> Feedback:
        return Feedback(False, shown, "", self.answer_format, status="waiting", revealed=bool(shown))

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

    def check(self, problem: Problem, answer: Any, *, show_answer: bool = False) -> Feedback:
        self._own(problem)
        expected = self.solution(problem)
        shown = self._format(expected) if show_answer else ""
        if answer is None:
            return self._waiting(shown)
        given = _as_number(answer)
        if given is None:
            return Feedback(
                False,
                shown,
                repr(answer),
                f"answer with a number ({self.answer_format})",
                status="unreadable",
                revealed=show_answer,
            )
        given = self._normalise(given)
        note = self._why_answer(problem)
        if self._close(expected, given):
            return Feedback(True, self._format(expected), self._format(given), note=note, revealed=show_answer)
        return Feedback(
            False,
            shown,
            self._format(given),
            self._hint(problem, given),
            note=note if show_answer else "",
            off=self._off(expected, given),
            revealed=show_answer,
        )

    def _show(self, value: Any) -> str:
        return self._format(value)

    def _normalise(self, given: float) -> float:
        return given

    def _close(self, expected: float, given: float) -> bool:
        return math.isclose(given, expected, rel_tol=self.relative_tolerance, abs_tol=self.absolute_tolerance)

    def _off(self, expected: float, given: float) -> str:
        """How far off ``given`` is, in words only: "a little too high", "too low", "far too high"."""
        return _how_far(given - expected, abs(expected))

    def _format(self, value: float) -> str:
        return f"{value:.6g} {self.unit}".rstrip()

    def _hint(self, problem: Problem, given: float) -> str:
        return "work it out step by step from the question; the lesson's formula cell shows how"

    def _is_near(self, given: float, value: float) -> bool:
        """Is ``given`` (close to) ``value``? For hints that name a common mistake.

        Close both as numbers and by the exercise's own measure (an availability: by its downtime).
        """
        as_numbers = math.isclose(given, value, rel_tol=self.relative_tolerance, abs_tol=self.absolute_tolerance)
        return as_numbers and self._close(value, given)


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

    def _off(self, expected: float, given: float) -> str:
        # Near 100 % the downtime is what differs: say how far off that is.
        words = _how_far(given - expected, abs(1 - expected))
        return f"{words} (that is {'less' if given > expected else 'more'} downtime than the right answer)"

    def _format(self, value: float) -> str:
        return f"{value * 100:.6g} %"


class ChoiceExercise(Exercise):
    """Pick the labels (``"A"``, ``"B"``...) of the options that are true; the answer is a set of labels.

    ``"AC"``, ``"A, C"``, ``["A", "C"]`` and ``{"a", "c"}`` are all the same answer. An empty answer
    (``""`` or ``set()``) says "none of them". A wrong answer is told how many options it has wrong (never
    which: that would give the answer away), with a question about each option; the verdict on each comes with
    the revealed answer.
    """

    answer_format = "the labels of every option that applies, e.g. 'AC' (or '' for none)"

    def solution(self, problem: Problem) -> frozenset[str]:
        return frozenset(label for label, option in self._options(problem) if self._is_true(problem, option))

    def _options(self, problem: Problem) -> list[tuple[str, Any]]:
        return list(zip(string.ascii_uppercase, problem.params["options"], strict=False))

    def _is_true(self, problem: Problem, option: Any) -> bool:
        raise NotImplementedError

    def _why(self, problem: Problem, option: Any) -> str:
        """One sentence on why ``option`` is (or is not) true: part of the revealed answer."""
        return ""

    def _question(self, problem: Problem, option: Any) -> str:
        """A question that leads to the verdict on ``option`` without giving it (the hint for a wrong pick)."""
        return ""

    def _show(self, value: Any) -> str:
        return _show_labels(value)

    def _why_answer(self, problem: Problem) -> str:
        whys = [f"{label}: {self._why(problem, option)}".rstrip(": ") for label, option in self._options(problem)]
        return " ".join(whys)

    def check(self, problem: Problem, answer: Any, *, show_answer: bool = False) -> Feedback:
        self._own(problem)
        expected = self.solution(problem)
        shown = _show_labels(expected) if show_answer else ""
        if answer is None:
            return self._waiting(shown)
        labels = {label for label, _ in self._options(problem)}
        given = _as_labels(answer)
        if given is None or not given <= labels:
            return Feedback(
                False,
                shown,
                repr(answer),
                f"answer with labels from {_show_labels(labels)}, e.g. 'AC', or '' for none",
                status="unreadable",
                revealed=show_answer,
            )
        note = self._why_answer(problem) if show_answer else ""
        if given == expected:
            return Feedback(True, _show_labels(expected), _show_labels(given), note=self._why_answer(problem))
        options = dict(self._options(problem))
        # How many verdicts are wrong, never which: naming the options to look again at would give the answer
        # away (flip those, and it is right). The hint asks the question of every option.
        wrong = len(given ^ expected)
        if not given:
            off = "at least one of them applies"
        else:
            off = f"you have {wrong} of the {len(options)} options wrong (picked but not true, or true but left out)"
        hint = " ".join(f"{label}: {self._question(problem, option)}".rstrip(": ") for label, option in options.items())
        return Feedback(False, shown, _show_labels(given), hint, note=note, off=off, revealed=show_answer)


def _how_far(difference: float, scale: float) -> str:
    """'too high' or 'too low', with 'a little' or 'far' when the gap is small or large compared with ``scale``."""
    direction = "too high" if difference > 0 else "too low"
    ratio = abs(difference) / scale if scale > 0 else math.inf
    if ratio <= 0.1:
        return f"a little {direction}"
    if ratio >= 1.0:
        return f"far {direction}"
    return direction


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
