"""Checks of a setting's value, shared by the policy's settings: each names the setting it refuses.

Numbers must be real numbers (not ``True``, not ``"0.5"``), finite, and within a range that makes sense for a lab:
a health check every nanosecond, or a timeout of infinity, is refused with the range, rather than taken and then
spinning for ever or waiting for ever.
"""

from __future__ import annotations

import math
from typing import Any

# The shortest interval between two checks or timer-driven steps: 1 ms (below that a lab spins, live or simulated).
MIN_INTERVAL = 0.001
# The longest time a setting may give: a day (a timeout or an interval beyond it is a mistake, not a lab).
MAX_SECONDS = 86_400.0


def seconds(
    name: str, value: Any, *, minimum: float = 0.0, inclusive: bool = False, maximum: float = MAX_SECONDS
) -> float:
    """``value`` as seconds: a finite number > ``minimum`` (>= with ``inclusive``) and <= ``maximum``."""
    low = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number of seconds {low} and <= {maximum:g}, got {value!r}")
    if not (value >= minimum if inclusive else value > minimum) or value > maximum:
        raise ValueError(f"{name} must be a number of seconds {low} and <= {maximum:g}, got {value!r}")
    return float(value)


def whole(name: str, value: Any, *, minimum: int, maximum: int = 1_000_000) -> int:
    """``value`` as a whole number in ``minimum..maximum`` (not a bool, not a float)."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ValueError(f"{name} must be a whole number {minimum}..{maximum}, got {value!r}")
    return value


def number(name: str, value: Any, *, low: float, high: float, high_open: bool = False) -> float:
    """``value`` as a finite number in ``[low, high]`` (``[low, high)`` with ``high_open``)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not (low <= value < high if high_open else low <= value <= high)
    ):
        interval = f"[{low:g}, {high:g})" if high_open else f"{low:g}..{high:g}"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")
    return float(value)


def statuses(name: str, value: Any, *, low: int = 100, high: int = 599) -> tuple[int, ...]:
    """``value`` as HTTP status codes ``low..high``: a list, tuple or set of whole numbers, at least one."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, set, frozenset)):
        raise ValueError(f"{name} must be a list of HTTP status codes, got {value!r}")
    for status in value:
        if isinstance(status, bool) or not isinstance(status, int) or not low <= status <= high:
            raise ValueError(f"{name} must be HTTP status codes {low}..{high}, got {status!r} in {value!r}")
    return tuple(value)
