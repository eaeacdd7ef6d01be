"""What a reader of a matplotlib figure sees: the texts drawn in it, and whether any two run into each other.

Used by ``test_report.py`` on the timeline plot, and by ``test_notebooks.py`` inside each lesson's kernel, on
every figure a lesson shows (it is imported there by path, so it needs nothing but matplotlib).
"""

from __future__ import annotations

from typing import Any


def text_boxes(figure: Any) -> list[tuple[str, Any]]:
    """(what, window extent) of every piece of text drawn in ``figure``: titles, axis labels, tick labels, legends."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    boxes = []
    if figure._suptitle is not None and figure._suptitle.get_text():
        boxes.append(("the figure's title", figure._suptitle.get_window_extent(renderer)))
    for ax in figure.axes:
        name = repr(ax.get_title()) if ax.get_title() else f"axes {figure.axes.index(ax)}"
        for what, text in (("title", ax.title), ("x label", ax.xaxis.label), ("y label", ax.yaxis.label)):
            if text.get_visible() and text.get_text():
                boxes.append((f"{what} of {name}", text.get_window_extent(renderer)))
        for axis, (low, high) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            for location, label in zip(axis.get_majorticklocs(), axis.get_majorticklabels(), strict=False):
                # A tick outside the view limits has a label that is never drawn.
                if min(low, high) <= location <= max(low, high) and label.get_visible() and label.get_text():
                    boxes.append((f"tick {label.get_text()!r} of {name}", label.get_window_extent(renderer)))
        legend = ax.get_legend()
        if legend is not None:
            boxes.append((f"legend of {name}", legend.get_window_extent(renderer)))
    return boxes


def overlapping_texts(figure: Any) -> list[tuple[str, str]]:
    """Pairs of texts in ``figure`` whose boxes overlap (a reader would see one printed over the other)."""
    boxes = text_boxes(figure)
    return [
        (one, other)
        for index, (one, box) in enumerate(boxes)
        for other, other_box in boxes[index + 1 :]
        if box.width > 0 and other_box.width > 0 and box.overlaps(other_box)
    ]
