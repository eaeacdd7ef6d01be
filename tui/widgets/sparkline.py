"""A sparkline as plain text: one block character per value, ``▁`` to ``█``.

Textual has a Sparkline widget; this tiny function is used instead so that several lines can share one
scale (successes and failures side by side must be comparable) and so that a zero shows as a blank, not a
low bar: a failure, however rare, always shows as at least ``▁``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

BLOCKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], width: int, top: float | None = None) -> str:
    """The last ``width`` values drawn on a scale whose full block is ``top`` (default: their maximum)."""
    if width <= 0:
        return ""
    shown = list(values)[-width:]
    shown = [0.0] * (width - len(shown)) + shown
    peak = top if top is not None else max(shown, default=0.0)
    if peak <= 0:
        return " " * width
    chars = []
    for value in shown:
        if value <= 0:
            chars.append(" ")
        else:
            level = min(len(BLOCKS) - 1, int(value / peak * (len(BLOCKS) - 1) + 0.5))
            chars.append(BLOCKS[level])
    return "".join(chars)


def stacked_columns(
    bottom: Sequence[float], total: Sequence[float], width: int, height: int
) -> list[list[tuple[str, int]]]:
    """A bar chart ``height`` rows tall, one column per value, the ``bottom`` part of each bar stacked under
    the rest (failures under successes, so that even one failure shows).

    Returns rows from top to bottom; each cell is ``(character, part)`` with part 0 = empty, 1 = the rest,
    2 = the bottom part, 3 = a cell where the bottom part ends and the rest continues above it.
    """
    bottoms = [0.0] * (width - len(bottom[-width:])) + list(bottom[-width:])
    totals = [0.0] * (width - len(total[-width:])) + list(total[-width:])
    top = max(totals, default=0.0)
    eighths = height * 8
    rows: list[list[tuple[str, int]]] = [[(" ", 0)] * width for _ in range(height)]
    if top <= 0:
        return rows
    for col, (low, whole) in enumerate(zip(bottoms, totals, strict=True)):
        low_e = max(1, math.ceil(low / top * eighths)) if low > 0 else 0
        whole_e = max(low_e, round(whole / top * eighths), 1 if whole > 0 else 0)
        for level in range(height):
            low_part = min(8, max(0, low_e - 8 * level))
            whole_part = min(8, max(0, whole_e - 8 * level))
            row = height - 1 - level
            if whole_part == 0:
                continue
            if low_part == 8:
                rows[row][col] = ("█", 2)
            elif low_part == 0:
                rows[row][col] = (BLOCKS[whole_part - 1], 1)
            elif whole_part == 8:
                rows[row][col] = (BLOCKS[low_part - 1], 3)
            else:
                rows[row][col] = (BLOCKS[low_part - 1], 2)
    return rows
