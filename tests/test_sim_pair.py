"""A pair of balancers in the simulator: VRRP's takeover, preemption and split brain, with the policy's own rules."""

from __future__ import annotations

import pytest

from spofkit.commands import BalancerFault, BalancerRecover, BalancerRestart
from spofkit.events import BalancerRoleChanged
from spofkit.policy.pair import PairSettings
from spofkit.sim import SimLab

MASTER_DOWN = PairSettings(priority=100).master_down_interval  # lb2's: 3 x 0.2 + (256 - 100) / 256 x 0.2 = 0.72 s


def roles(lab: SimLab) -> dict[str, tuple[str, str, bool]]:
    return {b.name: (b.role, b.state, b.address is not None) for b in lab.status().balancers}


def pair(**options: object) -> SimLab:
    lab = SimLab(2, balancers=2, pair="active-passive", seed=1, **options)  # type: ignore[arg-type]
    lab.advance_sync(1.0)  # lb1 (priority 200) wins the first election
    return lab


def test_the_primary_is_master_and_the_backup_takes_over_after_the_master_down_interval() -> None:
    lab = pair()
    assert roles(lab) == {"lb1": ("master", "running", True), "lb2": ("backup", "running", False)}
    report = lab.run_load_sync(rate=100, duration=3.0, commands=[(1.0, BalancerFault("lb1", "crash"))])
    took_over = [e for e in lab.events.history if isinstance(e, BalancerRoleChanged) and e.role == "master"][-1]
    crashed_at = report.run_start + 1.0  # type: ignore[operator]
    assert took_over.balancer == "lb2"
    # lb2 last heard an advert up to one advert interval before the crash; it waits master_down after that one.
    assert MASTER_DOWN - 0.2 <= took_over.at - crashed_at <= MASTER_DOWN + 0.01
    # Clients fail from the crash until lb2 announces the address, and only then.
    assert report.failed == pytest.approx(100 * (took_over.at - crashed_at), abs=2)
    assert report.last_failure_at is not None and report.last_failure_at < took_over.at
    assert roles(lab)["lb2"] == ("master", "running", True)


@pytest.mark.parametrize("preempt", [True, False])
def test_a_restarted_primary_takes_the_address_back_only_with_preempt(preempt: bool) -> None:
    lab = pair(preempt=preempt)
    lab.apply_sync(BalancerFault("lb1", "crash"))
    lab.advance_sync(2.0)
    assert roles(lab)["lb2"][0] == "master"
    lab.apply_sync(BalancerRestart("lb1"))
    lab.advance_sync(2.0)
    expected = "lb1" if preempt else "lb2"
    holders = [name for name, (_role, _state, holds) in roles(lab).items() if holds]
    assert holders == [expected]
    assert lab.status().balancers[0].role == ("master" if preempt else "backup")


def test_split_brain_flips_the_clients_between_two_masters_and_resets_their_connections() -> None:
    lab = pair()
    lab.apply_sync(BalancerFault("lb1", "advert_loss"))
    report = lab.run_load_sync(rate=40, duration=30.0)
    front = lab.front
    assert roles(lab) == {"lb1": ("master", "advert_loss", True), "lb2": ("master", "running", True)}
    flips = front.flips  # type: ignore[attr-defined]
    assert flips >= 20  # two masters' gratuitous ARPs, each about every second, over 30 s
    # After a flip, each of the client's 4 connections is reset when next used (at most 4 resets a flip); fewer when
    # the address flips back before a connection is used again (each is used every 0.1 s here).
    assert 0.6 * 4 * flips <= report.errors_by_kind["reset"] <= 4 * flips
    assert set(report.errors_by_kind) == {"reset"}
    served_by_both = {b.name: b.requests for b in lab.status().balancers}
    assert min(served_by_both.values()) > 100


def test_fencing_keeps_one_holder_through_split_brain_and_hands_over_after_a_crash() -> None:
    lab = pair(fencing=True)
    lab.apply_sync(BalancerFault("lb1", "advert_loss"))
    report = lab.run_load_sync(rate=40, duration=10.0)
    assert report.failed == 0, report.to_text()
    assert roles(lab) == {"lb1": ("master", "advert_loss", True), "lb2": ("master", "blocked", False)}
    assert lab.front.flips == 0  # type: ignore[attr-defined]
    lab.apply_sync(BalancerRecover("lb1"))
    lab.advance_sync(1.0)
    report = lab.run_load_sync(rate=40, duration=3.0, commands=[(0.5, BalancerFault("lb1", "crash"))])
    assert roles(lab)["lb2"] == ("master", "running", True)
    # The clients' connections to lb1 are reset; what they send until lb2 announces the address goes to a machine
    # that no longer has it, and waits until the client gives up.
    assert report.errors_by_kind["reset"] <= 4
    assert report.errors_by_kind["timeout"] > 0


def test_a_hung_master_keeps_advertising_so_nobody_takes_over() -> None:
    lab = pair()
    lab.apply_sync(BalancerFault("lb1", "hang"))
    report = lab.run_load_sync(rate=20, duration=3.0, timeout=1.0)
    assert roles(lab)["lb1"] == ("master", "hang", True)
    assert roles(lab)["lb2"][0] == "backup"
    assert report.errors_by_kind == {"timeout": 60}  # a gray failure of the front door


def test_active_active_loses_only_the_crashed_balancers_open_connections() -> None:
    lab = SimLab(2, balancers=2, pair="active-active", seed=1)
    report = lab.run_load_sync(rate=100, duration=3.0, commands=[(1.0, BalancerFault("lb2", "crash"))])
    assert {b.role for b in lab.status().balancers} == {"active"}
    assert report.errors_by_kind == {"reset": 2}  # the client's 2 connections (of 4) that were open with lb2
    with pytest.raises(Exception, match="advert_loss needs an active-passive pair"):
        lab.apply_sync(BalancerFault("lb1", "advert_loss"))


def test_split_brain_at_scale_in_front_of_a_hundred_instances() -> None:
    lab = SimLab(100, balancers=2, pair="active-passive", seed=2, history_size=100)
    lab.advance_sync(1.0)
    lab.apply_sync(BalancerFault("lb2", "advert_loss"))
    report = lab.run_load_sync(rate=500, duration=20.0)
    both = lab.status().balancers
    assert all(b.role == "master" for b in both)
    assert report.requests == 10_000
    assert 0 < report.failed < 0.02 * report.requests  # resets, at each flip
    assert len(report.per_instance) == 100
