"""How the widgets look and what they put in a notebook's output: layouts, and output records.

ipywidgets gives every button, checkbox and slider a fixed width and lets a row squeeze them to fit: text then
ends in "..." and a slider's track can shrink to nothing. The layouts here size them to their text instead,
never shrink them, and let a row that is too wide for the notebook wrap onto the next line. The browser tests
(tests/test_widgets_browser.py) measure the result in JupyterLab at two widths.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import ipywidgets as widgets

ROW = {"flex_flow": "row wrap", "align_items": "center"}
FIXED = {"flex": "0 0 auto"}
SNUG = {"width": "auto", **FIXED}
# A row's figures keep their columns; only in a notebook narrower than all of them do they wrap.
FIGURES = {"flex": "0 1 auto", "flex_flow": "row wrap"}
# A log (events, a deploy's steps): pre-wrap, so a long line wraps in a narrow notebook instead of running off its
# edge, and between words (JupyterLab's <pre> breaks anywhere: "waiting for 2 passed ch|ecks").
LOG_STYLE = "margin:0;font-size:85%;white-space:pre-wrap;word-break:normal;overflow-wrap:break-word"

# What a notebook's Output widget holds: records in the notebook format, set as a whole (``output.outputs =``)
# so that a widget can write to its output area from a callback, outside any cell.
OutputRecord = dict[str, Any]


def html_output(markup: str, text: str = "") -> OutputRecord:
    """HTML, with ``text`` for viewers that show plain text only."""
    return {"output_type": "display_data", "data": {"text/html": markup, "text/plain": text or markup}, "metadata": {}}


def figure_output(figure: Any) -> OutputRecord:
    """A matplotlib figure, as the PNG a notebook shows."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    png = base64.b64encode(buffer.getvalue()).decode("ascii")
    return {"output_type": "display_data", "data": {"image/png": png, "text/plain": "<plot>"}, "metadata": {}}


def set_html(widget: widgets.HTML, value: str) -> None:
    """Show ``value`` in ``widget``; only a changed value travels to the browser."""
    if widget.value != value:
        widget.value = value
