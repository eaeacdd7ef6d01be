"""A fingerprint of a whole run: one hash of every event, in order.

Two runs of the same scenario with the same seed publish the same events at the same virtual times, so their
digests are equal — on any machine, in any process (nothing in the simulator depends on the wall clock, on
threads or on the order of a ``set``). Change anything — the seed, one setting, one line of a policy — and the
digest changes: a regression test for a whole experiment in one string.
"""

from __future__ import annotations

import hashlib

from spofkit.events import Event

_BATCH = 4096  # events encoded, then hashed together (hashing one short string at a time costs more)


class EventDigest:
    """Subscribe it to a bus (``bus.subscribe(digest)``); :meth:`hexdigest` is the SHA-256 of the log so far.

    Each event is encoded as its class name and the ``repr`` of its fields in order: floats exactly (their
    shortest round-trip form), dictionaries in insertion order.
    """

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._pending: list[str] = []
        self.events = 0

    def __call__(self, event: Event) -> None:
        self._pending.append(f"{type(event).__name__}{tuple(vars(event).values())!r}\n")
        self.events += 1
        if len(self._pending) >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        self._hash.update("".join(self._pending).encode())
        self._pending.clear()

    def hexdigest(self) -> str:
        self._flush()
        return self._hash.hexdigest()
