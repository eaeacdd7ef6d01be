"""A redundant pair of balancers: who holds the service address, by VRRP's rules (RFC 5798).

One balancer is a single point of failure too. Two balancers share one *service address*; at any moment one of
them — the **master** — holds it and serves, the other — the **backup** — waits to take over. They agree on who is
master by *advertisements*, small messages the master sends every ``advert_interval``:

1. **Start as backup** (a balancer with priority 255 "owns" the address and starts as master).
2. **The master advertises** every ``advert_interval``: "I am master, with priority P".
3. **A backup declares the master dead** when it has heard no advert for the *master-down interval*,
   ``3 * advert_interval + skew``, and then takes the address. ``skew = (256 - priority) / 256 * advert_interval``:
   the higher a backup's priority, the sooner it acts, so with several backups the best one wins the race.
4. **Hearing a better master**: a master that hears an advert with a higher priority (or the same priority from a
   peer whose name sorts higher — the tie-breaker) steps down to backup and releases the address.
5. **Preemption**: a backup with ``preempt`` on ignores adverts from a master of *lower* priority, so its
   master-down timer runs out and it takes over: a recovered primary returns to being master. With preempt off,
   a backup accepts any master, and the pair stays as it is until that master fails.
6. **Leaving gracefully**: a master that shuts down sends an advert with priority 0, and a backup hearing it
   takes over after ``skew`` only — a planned takeover takes a fraction of an unplanned one.

Split brain: if adverts stop flowing while both balancers live (the link between them cut), the backup's timer
runs out and *both* claim the address. Priorities cannot prevent that — each side hears nothing to compare. What
prevents it is **fencing**: a third party (here the supervisor) grants the address to one balancer at a time, so a
backup may only take it once the old master's lease has run out or it is known dead.

Teaching defaults are 5x faster than keepalived's ``advert_int 1``: ``advert_interval=0.2 s``, so a crashed
master is replaced after about 0.6–0.8 s instead of about 3.6 s.

:class:`PairMember` is one balancer's side of this, with no I/O: a driver tells it the time, the adverts it
received and its timer firing, and carries out the :class:`PairAction` it answers (send an advert, take or
release the address).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from spofkit.events import BalancerRoleChanged, Event
from spofkit.status import BACKUP, MASTER, STOPPED

__all__ = [  # the roles are spofkit.status's words, re-exported for the pair's users
    "BACKUP",
    "MASTER",
    "OWNER_PRIORITY",
    "RESIGN_PRIORITY",
    "STOPPED",
    "AddressLease",
    "LeaseHolder",
    "PairAction",
    "PairMember",
    "PairSettings",
    "ReleaseAddress",
    "SendAdvert",
    "TakeAddress",
]

OWNER_PRIORITY = 255  # the address owner: master from the start
RESIGN_PRIORITY = 0  # "I am leaving": the backup takes over after its skew only


@dataclass(frozen=True)
class PairSettings:
    """How the pair talks. ``priority`` 1..255 is per balancer; the rest must be the same on both."""

    advert_interval: float = 0.2
    priority: int = 100
    preempt: bool = True

    def __post_init__(self) -> None:
        if not 0.01 <= self.advert_interval <= 60:
            raise ValueError(f"advert_interval must be 0.01..60 seconds, got {self.advert_interval!r}")
        if isinstance(self.priority, bool) or not isinstance(self.priority, int) or not 1 <= self.priority <= 255:
            raise ValueError(f"priority must be a whole number 1..255, got {self.priority!r}")

    @property
    def skew(self) -> float:
        """Rule 3's head start for higher priorities."""
        return (256 - self.priority) / 256 * self.advert_interval

    @property
    def master_down_interval(self) -> float:
        """How long a backup waits without adverts before it takes over (rule 3)."""
        return 3 * self.advert_interval + self.skew


@dataclass(frozen=True)
class SendAdvert:
    priority: int


@dataclass(frozen=True)
class TakeAddress:
    reason: str


@dataclass(frozen=True)
class ReleaseAddress:
    reason: str


PairAction = SendAdvert | TakeAddress | ReleaseAddress


class PairMember:
    """One balancer of the pair (rules 1–6). Every call takes ``now`` and returns what the driver must do."""

    def __init__(self, name: str, settings: PairSettings, emit: Callable[[Event], None]) -> None:
        self.name = name
        self.settings = settings
        self.emit = emit
        self.role = STOPPED
        self.master: str | None = None  # who this member believes holds the address
        self.timer_at: float | None = None  # when tick() is next due: the next advert, or the master-down time
        self.adverts_sent = 0
        self._resigned: str | None = None  # the master that resigned, while we wait our skew to take over

    # --- what the driver tells it ------------------------------------------------------------------------------

    def start(self, now: float) -> list[PairAction]:
        """Rule 1: join the pair as backup (or as master, for the address owner)."""
        if self.settings.priority == OWNER_PRIORITY:
            return self._become_master(now, "owner of the address (priority 255)")
        self._become_backup(now, "joined the pair", None)
        return []

    def tick(self, now: float) -> list[PairAction]:
        """The timer at ``timer_at`` fired: a master advertises (rule 2), a backup takes over (rule 3)."""
        if self.timer_at is None or now < self.timer_at:
            return []
        if self.role == MASTER:
            self.timer_at = now + self.settings.advert_interval
            return [self._advert(self.settings.priority)]
        if self.role == BACKUP:
            if self._resigned is not None:
                reason = f"{self._resigned} resigned; took over after a skew of {self.settings.skew:.2f}s"
            else:
                silent = self.settings.master_down_interval
                reason = f"no advert from {self.master or 'a master'} for {silent:.2f}s"
            return self._become_master(now, reason)
        return []

    def advert_received(self, now: float, sender: str, priority: int) -> list[PairAction]:
        """An advert from ``sender`` (rules 4–6). Adverts from oneself are ignored."""
        if sender == self.name or self.role == STOPPED:
            return []
        if self.role == BACKUP:
            if priority == RESIGN_PRIORITY:  # rule 6
                self.timer_at = now + self.settings.skew
                self._resigned = sender
                return []
            if self.settings.preempt and priority < self.settings.priority:  # rule 5: let the timer run out
                return []
            self.master = sender
            self._resigned = None
            self.timer_at = now + self.settings.master_down_interval
            return []
        # master
        if priority == RESIGN_PRIORITY:
            return [self._advert(self.settings.priority)]
        if self._outranked_by(sender, priority):  # rule 4
            self._become_backup(now, f"{sender} advertises priority {priority} > {self.settings.priority}", sender)
            return [ReleaseAddress(f"{sender} is master")]
        return []

    def stop(self, now: float) -> list[PairAction]:
        """Leave the pair gracefully (rule 6): a master resigns with a priority-0 advert."""
        actions: list[PairAction] = []
        if self.role == MASTER:
            actions = [self._advert(RESIGN_PRIORITY), ReleaseAddress("leaving the pair")]
        self._set_role(now, STOPPED, "stopped", None)
        self.timer_at = None
        return actions

    # --- the rules' helpers ---------------------------------------------------------------------------------

    def _outranked_by(self, sender: str, priority: int) -> bool:
        mine = self.settings.priority
        return priority > mine or (priority == mine and sender > self.name)  # names break ties, as addresses do

    def _become_master(self, now: float, reason: str) -> list[PairAction]:
        self._resigned = None
        self._set_role(now, MASTER, reason, self.name)
        self.timer_at = now + self.settings.advert_interval
        return [TakeAddress(reason), self._advert(self.settings.priority)]

    def _become_backup(self, now: float, reason: str, master: str | None) -> None:
        self._resigned = None
        self._set_role(now, BACKUP, reason, master)
        self.timer_at = now + self.settings.master_down_interval

    def _set_role(self, now: float, role: str, reason: str, master: str | None) -> None:
        changed = role != self.role
        self.role, self.master = role, master
        if changed:
            self.emit(BalancerRoleChanged(now, self.name, role, reason))

    def _advert(self, priority: int) -> SendAdvert:
        self.adverts_sent += 1
        return SendAdvert(priority)


@dataclass
class AddressLease:
    """Fencing: the supervisor grants the service address to one balancer at a time.

    A balancer that wants to take the address asks first. The holder keeps it while it renews within ``term``
    seconds (its adverts renew it); another may have it only once the lease has run out, or once the holder is
    known to be dead. With fencing, a cut between the two balancers cannot make two masters: the one that can no
    longer reach the supervisor cannot renew, and the other gets the address only after the lease ran out.
    """

    term: float = 0.5
    holder: str | None = None
    expires: float = 0.0

    def request(self, name: str, now: float) -> bool:
        """May ``name`` hold the address now? Grants or renews the lease if so."""
        if self.holder in (None, name) or now >= self.expires:
            self.holder, self.expires = name, now + self.term
            return True
        return False

    def release(self, name: str) -> None:
        if self.holder == name:
            self.holder = None

    def holder_died(self, name: str) -> None:
        """The supervisor saw ``name``'s process die: its lease ends at once."""
        self.release(name)


class LeaseHolder:
    """A balancer's side of fencing, with no I/O: it holds the address only while its lease lasts.

    The driver says what the pair's rules want (:attr:`wants`, set on TakeAddress, cleared on ReleaseAddress),
    asks the supervisor while it wants the address (at the take, then once per advert interval: a renewal), and
    passes each answer to :meth:`answer`, which says whether the address goes on or comes off:

    - **granted**: hold it (if still wanted), until ``asked_at + term``: counted from the asking, not the answer,
      so the holder's lease runs out before the supervisor's and it lets go before anyone else may take it;
    - **refused**: another balancer holds the lease, so *drop* the address, even one held until now (fenced off);
    - **unrenewed**: a holder that has not been granted a renewal in time drops it itself (:meth:`expired`): one
      that cannot reach the supervisor must stop serving before the supervisor gives the address away.
    """

    HOLD = "hold"
    DROP = "drop"

    def __init__(self) -> None:
        self.wants = False  # the pair's rules say this balancer should hold the address
        self.until = 0.0  # when the lease runs out, on the driver's clock
        self.refusals = 0

    def answer(self, granted: bool, asked_at: float, term: float) -> str | None:
        """The supervisor's answer to a request made at ``asked_at``: HOLD, DROP, or None (nothing to do)."""
        if not granted:
            self.refusals += 1
            return self.DROP
        self.until = asked_at + term
        return self.HOLD if self.wants else None

    def expired(self, now: float, holds: bool) -> bool:
        """Must a holder drop the address now, its lease run out unrenewed?"""
        return holds and now >= self.until

    def held_from_before(self) -> None:
        """Fencing switched on while the address is held: it keeps it until the supervisor's first answer."""
        self.until = math.inf
