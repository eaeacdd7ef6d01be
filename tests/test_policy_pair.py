"""The pair's rules (VRRP), as plain calls: two PairMembers joined by a tiny virtual network, no sockets."""

from __future__ import annotations

import pytest

from spofkit.events import BalancerRoleChanged, Event
from spofkit.policy.pair import (
    BACKUP,
    MASTER,
    AddressLease,
    LeaseHolder,
    PairMember,
    PairSettings,
    ReleaseAddress,
    SendAdvert,
    TakeAddress,
)


class Wire:
    """Two members and the adverts between them; ``cut`` drops every advert (the pair's link is down)."""

    def __init__(self, *members: PairMember) -> None:
        self.members = {m.name: m for m in members}
        self.alive = set(self.members)
        self.cut = False
        self.holders: set[str] = set()

    def carry_out(self, member: PairMember, actions: list, now: float) -> None:  # type: ignore[type-arg]
        for action in actions:
            if isinstance(action, TakeAddress):
                self.holders.add(member.name)
            elif isinstance(action, ReleaseAddress):
                self.holders.discard(member.name)
            elif isinstance(action, SendAdvert) and not self.cut:
                for other in self.members.values():
                    if other is not member and other.name in self.alive:
                        self.carry_out(other, other.advert_received(now, member.name, action.priority), now)

    def run_until(self, end: float, step: float = 0.001, start: float = 0.0) -> float:
        now = start
        while now < end:
            now = round(now + step, 6)
            for member in self.members.values():
                if member.name in self.alive and member.timer_at is not None and now >= member.timer_at:
                    self.carry_out(member, member.tick(now), now)
        return now

    def start_all(self, now: float = 0.0) -> None:
        for member in self.members.values():
            self.carry_out(member, member.start(now), now)

    def kill(self, name: str) -> None:
        self.alive.discard(name)
        self.holders.discard(name)  # the kernel closes a dead process's sockets


def pair(primary: int = 200, secondary: int = 100, preempt: bool = True) -> tuple[Wire, list[Event]]:
    events: list[Event] = []
    lb1 = PairMember("lb1", PairSettings(priority=primary, preempt=preempt), events.append)
    lb2 = PairMember("lb2", PairSettings(priority=secondary, preempt=preempt), events.append)
    return Wire(lb1, lb2), events


def test_master_down_interval_follows_rfc_5798() -> None:
    settings = PairSettings(advert_interval=1.0, priority=100)
    assert settings.skew == pytest.approx(156 / 256)
    assert settings.master_down_interval == pytest.approx(3 + 156 / 256)  # keepalived's ~3.6 s
    assert PairSettings().master_down_interval < 0.8  # the teaching defaults


def test_the_higher_priority_becomes_master_and_the_other_stays_backup() -> None:
    wire, events = pair()
    wire.start_all()
    wire.run_until(2.0)
    assert (wire.members["lb1"].role, wire.members["lb2"].role) == (MASTER, BACKUP)
    assert wire.holders == {"lb1"}
    roles = [(e.balancer, e.role) for e in events if isinstance(e, BalancerRoleChanged)]
    assert roles[-1] == ("lb1", MASTER)


def test_a_crashed_master_is_replaced_after_the_master_down_interval() -> None:
    wire, events = pair()
    wire.start_all()
    now = wire.run_until(2.0)
    wire.kill("lb1")
    killed_at = now
    wire.run_until(4.0, start=now)
    assert wire.holders == {"lb2"}
    took = next(e for e in events if isinstance(e, BalancerRoleChanged) and e.balancer == "lb2" and e.role == MASTER)
    settings = wire.members["lb2"].settings
    waited = took.at - killed_at
    # The last advert came up to one interval before the kill; the backup waits master_down after it.
    assert settings.master_down_interval - settings.advert_interval <= waited <= settings.master_down_interval + 0.002


def test_preempt_on_the_recovered_primary_takes_the_address_back() -> None:
    wire, _ = pair(preempt=True)
    wire.start_all()
    now = wire.run_until(2.0)
    wire.kill("lb1")
    now = wire.run_until(4.0, start=now)
    wire.alive.add("lb1")  # restarted: it joins as backup...
    wire.carry_out(wire.members["lb1"], wire.members["lb1"].start(now), now)
    wire.run_until(6.0, start=now)
    assert wire.holders == {"lb1"}  # ...ignores lb2's lower-priority adverts, and takes over
    assert wire.members["lb2"].role == BACKUP


def test_preempt_off_the_recovered_primary_stays_backup() -> None:
    wire, _ = pair(preempt=False)
    wire.start_all()
    now = wire.run_until(2.0)
    wire.kill("lb1")
    now = wire.run_until(4.0, start=now)
    wire.alive.add("lb1")
    wire.carry_out(wire.members["lb1"], wire.members["lb1"].start(now), now)
    wire.run_until(6.0, start=now)
    assert wire.holders == {"lb2"}
    assert wire.members["lb1"].role == BACKUP


def test_a_graceful_stop_hands_over_after_the_skew_only() -> None:
    wire, events = pair()
    wire.start_all()
    now = wire.run_until(2.0)
    lb1 = wire.members["lb1"]
    wire.carry_out(lb1, lb1.stop(now), now)
    wire.alive.discard("lb1")
    wire.run_until(3.0, start=now)
    took = next(e for e in events if isinstance(e, BalancerRoleChanged) and e.balancer == "lb2" and e.role == MASTER)
    assert took.at - now == pytest.approx(wire.members["lb2"].settings.skew, abs=0.002)
    assert wire.holders == {"lb2"}


def test_two_masters_of_equal_priority_are_told_apart_by_name() -> None:
    wire, _ = pair(primary=100, secondary=100)
    wire.start_all()
    now = wire.run_until(2.0)
    assert len(wire.holders) == 1  # the first backup to time out won; the other heard it in time
    wire.cut = True
    now = wire.run_until(3.0, start=now)
    assert wire.holders == {"lb1", "lb2"}
    wire.cut = False
    wire.run_until(4.0, start=now)
    assert wire.holders == {"lb2"}  # "lb2" > "lb1": the tie-breaker, as the higher address wins in VRRP


def test_a_cut_link_makes_two_masters_split_brain() -> None:
    wire, _ = pair()
    wire.start_all()
    now = wire.run_until(2.0)
    wire.cut = True
    now = wire.run_until(3.0, start=now)
    assert wire.holders == {"lb1", "lb2"}  # priorities cannot help: each side hears nothing
    wire.cut = False
    wire.run_until(4.0, start=now)
    assert wire.holders == {"lb1"}  # once adverts flow again, the lower priority steps down


def test_fencing_grants_the_address_to_one_balancer_at_a_time() -> None:
    lease = AddressLease(term=0.5)
    assert lease.request("lb1", 0.0)
    assert not lease.request("lb2", 0.3)  # lb1's lease still runs: no second master
    assert lease.request("lb1", 0.4)  # renewed by its adverts
    assert not lease.request("lb2", 0.8)
    assert lease.request("lb2", 0.95)  # lb1 stopped renewing (dead, or cut off): now lb2 may
    lease.holder_died("lb2")
    assert lease.request("lb1", 1.0)


def test_a_lease_holder_holds_while_granted_drops_when_refused_and_fences_itself_when_unrenewed() -> None:
    holder = LeaseHolder()
    assert holder.answer(True, asked_at=1.0, term=0.5) is None  # granted, but the pair's rules do not want it
    holder.wants = True
    assert holder.answer(True, asked_at=2.0, term=0.5) == LeaseHolder.HOLD
    assert holder.until == 2.5  # counted from the asking: it runs out before the supervisor's own
    assert not holder.expired(2.49, holds=True)
    assert holder.expired(2.5, holds=True)  # no renewal came in time: drop it yourself
    assert not holder.expired(9.0, holds=False)  # nothing held, nothing to drop
    assert holder.answer(False, asked_at=3.0, term=0.5) == LeaseHolder.DROP  # another holds the lease: fenced off
    assert holder.refusals == 1
    holder.held_from_before()  # fencing switched on under a holder: it keeps the address until the first answer
    assert not holder.expired(1e9, holds=True)


def test_bad_settings_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="priority"):
        PairSettings(priority=0)
    with pytest.raises(ValueError, match="advert_interval"):
        PairSettings(advert_interval=0.0)
