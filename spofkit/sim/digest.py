"""A fingerprint of a whole run: one hash of every event, in order.

Two runs of the same scenario with the same seed publish the same events at the same virtual times, so their
digests are equal — on any machine, in any process (nothing in the simulator depends on the wall clock, on
threads or on the order of a ``set``). Change anything — the seed, one setting, one line of a policy — and the
digest changes: a regression test for a whole experiment in one string.
"""

from __future__ import annotations

import hashlib
import marshal
from typing import Any

from spofkit.events import Event

_BATCH = 40_000  # values gathered, then encoded and hashed together (one event at a time costs 3x more)
# marshal's version 2 has no back-references and writes floats as 8 little-endian bytes: the same bytes for the
# same values on every machine. (Newer versions share repeated objects, which would depend on object identity.)
_MARSHAL_VERSION = 2
_PLAIN = (str, int, float, bool, type(None))


class EventDigest:
    """Subscribe it to a bus (``bus.subscribe(digest)``); :meth:`hexdigest` is the SHA-256 of the log so far.

    Each event counts as its class name followed by its fields' values in order (floats exactly, dictionaries
    in insertion order; anything else by its ``repr``).
    """

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._pending: list[Any] = []
        self.events = 0

    def __call__(self, event: Event) -> None:
        pending = self._pending
        pending.append(type(event).__name__)
        pending.extend(vars(event).values())
        self.events += 1
        if len(pending) >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        self._hash.update(_encoded(self._pending))
        self._pending.clear()

    def hexdigest(self) -> str:
        """The digest of the log so far. Asking does not change what comes after: the values not yet hashed are
        hashed into a copy, and the log goes on in the same batches (a digest read in the middle of a run, by a
        widget or a test, once made the final one differ)."""
        final = self._hash.copy()
        if self._pending:
            final.update(_encoded(self._pending))
        return final.hexdigest()


def _encoded(values: list[Any]) -> bytes:
    try:
        return marshal.dumps(values, _MARSHAL_VERSION)
    except ValueError:  # a value marshal cannot write (a learner's object in an event): its repr stands in
        return marshal.dumps([_plain(value) for value in values], _MARSHAL_VERSION)


def _plain(value: Any) -> Any:
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, dict):
        return [(_plain(k), _plain(v)) for k, v in value.items()]
    return repr(value)
