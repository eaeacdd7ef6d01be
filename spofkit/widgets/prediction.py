"""Predict first: the learner commits to a guess before the experiment, and compares it with the result after.

A guess made before seeing the answer is what makes a surprise stick. ``p = predict("What share of requests
fail?", unit="%")`` shows a prompt with a **Lock in** button; after the experiment ``p.compare(measured)``
returns :class:`~spofkit.exercises.Feedback` (green or red, with a hint) saying how close the guess was.

**Lock in takes the answer on the screen.** The browser sends a widget's changes to the kernel one at a time: while
the kernel has not yet handled the last one (it is busy, the machine is loaded), the next waits in the browser.
A button's click does not wait. So a learner who picks one answer, then another, then presses Lock in, can have
the click reach the kernel before the last answer does, and the guess recorded would be the one before. Here
the button carries the answer: the browser copies every change of the answer onto the button itself (a
``jsdlink``, which runs in the page), and pressing the button is a change of the same button, so the answer
and the press reach the kernel in the order they were made, in one message or the answer first.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import ipywidgets as widgets
import traitlets

from spofkit.exercises import Feedback
from spofkit.widgets._display import SNUG

# A radio option that is longer than the notebook is wide wraps onto a second line. ipywidgets gives every
# option a fixed height and floats its circle after the text, so a wrapped option spills over the next one and
# its circle lands beside the next option's text: a click picks the wrong answer. No layout setting reaches
# these, so a small style sheet does, scoped to spofkit's predictions: each option grows with its text and
# keeps its circle at the start of its first line.
PREDICTION_STYLE = """<style>
.spofkit-prediction .widget-radio-box label {
  display: flex; align-items: flex-start; height: auto; min-height: var(--jp-widgets-radio-item-height);
  line-height: 1.4; padding: 2px 0; white-space: normal; overflow-wrap: anywhere;
}
.spofkit-prediction .widget-radio-box input { order: -1; flex: none; height: 1.4em; margin-top: 0; }
</style>"""


class LockButton(widgets.ToggleButton):  # type: ignore[misc]  # ipywidgets is untyped
    """The **Lock in** button: pressed (``value`` True) to lock in ``answer``, the answer as the page shows it.

    ``answer`` is the input's own value in the page: a radio option's index (None: none picked), or a number.
    """

    answer = traitlets.Any(None, allow_none=True).tag(sync=True)


class Prediction(widgets.VBox):  # type: ignore[misc]  # ipywidgets is untyped
    """A "predict first" prompt. Lock in a guess before the experiment; ``compare`` it with the result after.

    With ``choices`` the guess is one of them; without, it is a number (in ``unit``).
    """

    def __init__(self, question: str, choices: Sequence[str] | None = None, *, unit: str = "") -> None:
        self.question = question
        self.choices = list(choices) if choices is not None else None
        self.unit = unit
        if self.choices is not None:
            if len(self.choices) < 2:
                raise ValueError(f"choices must list at least two answers, got {choices!r}")
            # As wide as the notebook (not ipywidgets' 300 px), so an answer wraps only when it has to.
            self.input: widgets.Widget = widgets.RadioButtons(
                options=self.choices, value=None, layout=widgets.Layout(width="auto", max_width="100%")
            )
        else:
            self.input = widgets.FloatText(value=0.0, description=unit or "guess")
        self.lock_button = LockButton(
            description="Lock in my prediction",
            button_style="info",
            answer=self._answer_shown(),
            layout=widgets.Layout(align_self="flex-start", **SNUG),  # as wide as its text, not the notebook
        )
        self.lock_button.add_class("spofkit-predict")
        # In the page, not in the kernel: a copy made by the kernel would come after the click it must precede.
        self._answer_link = widgets.jsdlink((self.input, self._answer_trait), (self.lock_button, "answer"))
        self.lock_button.observe(self._pressed, names="value")
        self.status = widgets.HTML("<i>Make a guess, then lock it in before running the experiment.</i>")
        self.value: str | float | None = None
        style_sheet = widgets.HTML(PREDICTION_STYLE, layout=widgets.Layout(display="none"))
        super().__init__(
            [
                style_sheet,
                widgets.HTML(f"<b>Predict first:</b> {html.escape(question)}"),
                self.input,
                self.lock_button,
                self.status,
            ]
        )
        self.add_class("spofkit-prediction")

    @property
    def _answer_trait(self) -> str:
        """The input's trait that holds the answer as the page has it: a radio option's index, a number."""
        return "index" if self.choices is not None else "value"

    def _answer_shown(self) -> int | float | None:
        return getattr(self.input, self._answer_trait)  # type: ignore[no-any-return]

    def lock(self) -> None:
        """Record what the input shows as the prediction (what pressing Lock in does, from code)."""
        self.lock_button.answer = self._answer_shown()
        if self.lock_button.value:  # pressed before (locked, or a guess in code again): take the new answer
            self._lock_in()
        else:
            self.lock_button.value = True

    def _pressed(self, change: dict[str, object]) -> None:
        if change["new"]:
            self._lock_in()

    def _lock_in(self) -> None:
        """Lock in the answer the button carries; without one, ask for it and let the button up again."""
        value = self._answer(self.lock_button.answer)
        if value is None:
            self.status.value = "<i>Pick an answer first.</i>"
            self.lock_button.value = False
            return
        self.value = value
        self.input.disabled = True
        self.lock_button.disabled = True
        self.status.value = f"Locked in: <b>{html.escape(self._show(self.value))}</b>. Now run the experiment."

    def _answer(self, shown: object) -> str | float | None:
        """The answer behind what the page shows: the choice at index ``shown``, or the number."""
        if shown is None:
            return None
        if self.choices is not None:
            if isinstance(shown, bool) or not isinstance(shown, int) or not 0 <= shown < len(self.choices):
                raise ValueError(f"the page sent answer {shown!r}, not an index of the {len(self.choices)} choices")
            return self.choices[shown]
        if isinstance(shown, bool) or not isinstance(shown, (int, float)):
            raise ValueError(f"the page sent answer {shown!r}, not a number")
        return float(shown)

    def guess(self, value: str | float) -> None:
        """Enter ``value`` and lock it in (what a learner does with the mouse)."""
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"guess must be one of {self.choices}, got {value!r}")
        self.input.value = value
        self.lock()

    def compare(self, measured: str | float | None, *, tolerance: float = 0.25) -> Feedback:
        """How the locked-in guess compares with ``measured`` (a number within ``tolerance``, relative).

        ``measured=None`` (the experiment did not produce the number, e.g. a fault never detected) says so.
        """
        if measured is None:
            given = "no prediction locked in" if self.value is None else self._show(self.value)
            return Feedback(
                False, "nothing was measured", given, "the experiment did not produce this number; run it again"
            )
        expected = self._show(measured)
        if self.value is None:
            return Feedback(
                False,
                expected,
                "no prediction locked in",
                "next time commit to a guess first: a surprise is what makes a result stick",
            )
        given = self._show(self.value)
        if self.choices is not None:
            ok = self.value == measured
            return Feedback(ok, expected, given, "" if ok else "look at the plot: where do the red bars come from?")
        number = float(measured)
        ok = abs(float(self.value) - number) <= tolerance * max(abs(number), 1e-9)
        if ok:
            return Feedback(True, expected, given, note=f"within {tolerance:.0%} of the measurement")
        direction = "high" if float(self.value) > number else "low"
        return Feedback(False, expected, given, f"your guess was {direction}; which step of the reasoning was off?")

    def _show(self, value: str | float) -> str:
        if isinstance(value, str):
            return value
        return f"{value:.4g} {self.unit}".rstrip()


def predict(question: str, choices: Sequence[str] | None = None, *, unit: str = "") -> Prediction:
    """A predict-first prompt: ``p = predict("What share of requests fail?", unit="%")`` then later
    ``p.compare(measured)``."""
    return Prediction(question, choices, unit=unit)
