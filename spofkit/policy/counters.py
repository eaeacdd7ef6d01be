"""Failover's counters: the retry budget and the outlier detector (:mod:`spofkit.policy.failover` re-exports them).

A module of their own so that ``bench/compile_sim.py`` can compile them: they count every request and every
attempt, while their settings in :mod:`spofkit.policy.failover` (dataclasses with their checks) stay Python.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spofkit.policy.failover import EjectionSettings


class RetryBudget:
    """Allow retries up to ``ratio`` × requests (+ a floor) over the last ``window`` seconds.

    Call ``record_request(now)`` for every client request and ``try_spend(now)`` before every retry.
    """

    def __init__(self, ratio: float = 0.2, min_per_second: float = 5.0, window: float = 10.0) -> None:
        self.ratio = ratio
        self.min_per_second = min_per_second
        self.window = window
        self._requests: collections.deque[float] = collections.deque()
        self._retries: collections.deque[float] = collections.deque()

    def _forget_before(self, now: float) -> None:
        horizon = now - self.window
        for times in (self._requests, self._retries):
            while times and times[0] < horizon:
                times.popleft()

    def record_request(self, now: float) -> None:
        self._forget_before(now)  # keep memory bounded by the window even when no retry is ever asked for
        self._requests.append(now)

    def allowance(self, now: float) -> float:
        """How many retries the window allows in total right now."""
        self._forget_before(now)
        return self.min_per_second * self.window + self.ratio * len(self._requests)

    def can_retry(self, now: float) -> bool:
        return len(self._retries) < self.allowance(now)

    def spend(self, now: float) -> None:
        """Count one retry made at ``now`` (after ``can_retry`` said yes)."""
        self._retries.append(now)

    def try_spend(self, now: float) -> bool:
        """Take one retry from the budget if there is one; return whether it was granted."""
        if not self.can_retry(now):
            return False
        self.spend(now)
        return True

    @property
    def retries_in_window(self) -> int:
        return len(self._retries)


class _Record:
    """One instance's failures and ejections, as the detector keeps them."""

    def __init__(self) -> None:
        self.consecutive_failures = 0
        self.times_ejected = 0
        self.ejected_until: float | None = None


class OutlierDetector:
    """Counts consecutive failures per instance and decides ejections. Pure: every call takes ``now``."""

    def __init__(self, settings: EjectionSettings | None = None) -> None:
        if settings is None:
            from spofkit.policy.failover import EjectionSettings  # (it imports this module)

            settings = EjectionSettings()
        self.settings = settings
        self._records: dict[str, _Record] = {}

    def _record(self, name: str) -> _Record:
        return self._records.setdefault(name, _Record())

    def record(self, name: str, ok: bool, now: float, pool_size: int) -> float | None:
        """Feed one attempt's result. Returns the ejection duration if this failure ejects ``name``."""
        if ok:  # (a member that never failed needs no record)
            known = self._records.get(name)
            if known is not None:
                known.consecutive_failures = 0
            return None
        record = self._record(name)
        record.consecutive_failures += 1
        if record.consecutive_failures < self.settings.consecutive_failures:
            return None
        if self.is_ejected(name, now):
            return None
        if not self._room_to_eject(now, pool_size):
            return None
        record.times_ejected += 1
        duration = min(self.settings.base_time * record.times_ejected, self.settings.max_time)
        record.ejected_until = now + duration
        record.consecutive_failures = 0
        return duration

    def _room_to_eject(self, now: float, pool_size: int) -> bool:
        ejected = sum(1 for n in self._records if self.is_ejected(n, now))
        return pool_size > 0 and (ejected + 1) * 100 <= self.settings.max_ejected_percent * pool_size

    def ejected_at(self, now: float) -> set[str]:
        """The names ejected at ``now`` (usually none: one pass over the few with an ejection on record)."""
        return {name for name, r in self._records.items() if r.ejected_until is not None and now < r.ejected_until}

    def is_ejected(self, name: str, now: float) -> bool:
        record = self._records.get(name)
        return bool(record and record.ejected_until is not None and now < record.ejected_until)

    def ejected_until(self, name: str) -> float | None:
        record = self._records.get(name)
        return record.ejected_until if record else None

    def earliest_end(self) -> float | None:
        """When the first ejection on record runs out, or None if none is."""
        ends = [r.ejected_until for r in self._records.values() if r.ejected_until is not None]
        return min(ends) if ends else None

    def returned(self, now: float) -> list[str]:
        """Instances whose ejection has run out since the last call (each reported once)."""
        back = []
        for name, record in self._records.items():
            if record.ejected_until is not None and now >= record.ejected_until:
                record.ejected_until = None
                back.append(name)
        return back

    def forget(self, name: str) -> None:
        self._records.pop(name, None)
