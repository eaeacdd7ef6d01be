"""Split brain for real: two balancers in network namespaces, both claiming one virtual IP (spofkit.netns).

The experiment itself needs root (CI runs as root); without it those tests are skipped with can_run_netns()'s
reason, and the tests of what a user without root is told run instead. The rest needs no privileges.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest
from conftest import wait_for

from spofkit import netns
from spofkit._netns_node import AddressKeeper, classify, gratuitous_arp
from spofkit.netns import (
    VIP,
    NetnsUnavailable,
    SplitBrainReport,
    can_run_netns,
    our_namespaces,
    run_split_brain_experiment,
)

CAN_RUN, WHY_NOT = can_run_netns()
needs_netns = pytest.mark.skipif(not CAN_RUN, reason=f"the split-brain experiment cannot run here: {WHY_NOT}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# --- the experiment, as root -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def report() -> Iterator[SplitBrainReport]:
    report = run_split_brain_experiment(phase_seconds=2.5)
    print(report.to_text())  # shown with -s, and in the log of a failing test
    yield report


@needs_netns
@pytest.mark.timeout(120)
def test_a_normal_pair_serves_from_the_master_alone(report: SplitBrainReport) -> None:
    normal = report.phase("a")
    assert normal.sent > 0
    assert normal.answered == {"a1": normal.sent}, normal.describe()
    assert normal.masters == ("lb1",)
    assert normal.vip_holders == ("lb1",) and normal.holders_at_end == ("lb1",)
    assert normal.arp_flips == 0


@needs_netns
def test_cut_adverts_make_two_masters_and_the_clients_suffer(report: SplitBrainReport) -> None:
    split = report.phase("b")
    assert split.masters == ("lb1", "lb2"), "both balancers report master"
    assert split.vip_holders == ("lb1", "lb2") and split.holders_at_end == ("lb1", "lb2"), "both kernels hold the VIP"
    assert split.both_held_seconds > 0
    assert split.arp_flips > 0, "the client's neighbour entry for the VIP moved between the two"
    # What the client sees, measured: answers from the side that did not serve before, or broken connections.
    assert split.answered.get("a2", 0) > 0 or split.failed > 0, split.describe()
    assert split.sent == sum(split.answered.values()) + split.failed


@needs_netns
def test_fencing_leaves_one_holder_and_no_client_errors(report: SplitBrainReport) -> None:
    fenced = report.phase("c")
    assert fenced.masters == ("lb1", "lb2"), "the cut still makes lb2 master by VRRP's rules"
    assert fenced.vip_holders == ("lb1",) and fenced.holders_at_end == ("lb1",), "but only lb1 holds the address"
    assert fenced.lease_refusals.get("lb2", 0) > 0, "because the supervisor refused lb2 the lease"
    assert fenced.sent > 0 and fenced.failed == 0, fenced.describe()
    assert fenced.answered == {"a1": fenced.sent}


@needs_netns
def test_after_a_kill_the_backup_takes_over_with_the_lease(report: SplitBrainReport) -> None:
    killed = report.phase("d")
    assert report.takeover_seconds is not None and report.address_moved_seconds is not None
    # The client is served again only after lb2 has the address (and it may wait longer: requests in flight to the
    # dead side time out first).
    assert 0 < report.address_moved_seconds <= report.takeover_seconds < killed.seconds
    assert killed.answered.get("a2", 0) > 0
    assert killed.holders_at_end == ("lb2",), "the dead lb1 was fenced: its kernel no longer has the VIP"


@needs_netns
def test_the_summary_reads_the_measured_figures(report: SplitBrainReport) -> None:
    text = report.to_text()
    split = report.phase("b")
    assert f"(b) adverts cut, no fencing: split brain — {split.seconds:.1f} s" in text
    assert f"requests sent {split.sent}: answered by lb1 (a1) {split.answered.get('a1', 0)}" in text
    assert f"virtual IP on the interface of lb1 and lb2 (both at once for {split.both_held_seconds:.1f} s)" in text
    assert "Takeover after kill -9 of lb1" in text


@needs_netns
def test_nothing_of_the_experiment_is_left(report: SplitBrainReport) -> None:
    assert len(report.pids) == 3
    assert not [pid for pid in report.pids if _alive(pid)]
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert not [name for name in report.namespaces if name in listed.split()]


@needs_netns
@pytest.mark.usefixtures("no_child_processes")
async def test_a_failure_inside_the_testbed_still_tears_everything_down() -> None:
    with pytest.raises(RuntimeError, match="on purpose"):
        async with netns.Testbed() as bed:  # (not imported by name: pytest would take it for a test class)
            names = list(bed.namespaces.values())
            assert set(names) <= set(our_namespaces())
            child = await bed.start("client", ["client", "--vip", VIP, "--rate", "5"], lambda c, m: None, 30)
            # A process started behind the testbed's back in one of its namespaces goes too.
            stray = await asyncio.create_subprocess_exec("ip", "netns", "exec", bed.namespaces["lb1"], "sleep", "30")
            await wait_for(lambda: child.running and stray.returncode is None, 5)
            raise RuntimeError("on purpose")
    assert await asyncio.wait_for(stray.wait(), 5) == -9
    assert not _alive(child.pid)
    assert not set(names) & set(our_namespaces())


# --- what a learner without root is told --------------------------------------------------------------------


def _run_without_root(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` as a user who is not root: as ``nobody`` if we are root, else as ourselves."""
    command = [sys.executable, "-c", code]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        assert setpriv, "setpriv (util-linux) is needed to drop root for this test"
        command = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_without_root_the_experiment_says_what_would_happen_and_why_it_needs_root() -> None:
    done = _run_without_root(
        "from spofkit.netns import can_run_netns, run_split_brain_experiment\n"
        "print(can_run_netns())\n"
        "run_split_brain_experiment()\n"
    )
    assert "(False, 'it needs root" in done.stdout
    assert "NetnsUnavailable" in done.stderr
    message = done.stderr
    for taught in ("needs root", "both become master", "gratuitous ARP", "resets", "Fencing", "lease", "sudo"):
        assert taught in message, f"{taught!r} missing from: {message}"


def test_python_m_spofkit_netns_without_root_explains_and_exits_2() -> None:
    done = _run_without_root(
        "import sys, runpy; sys.argv = ['x']; runpy.run_module('spofkit.netns', run_name='__main__')"
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("The split-brain experiment cannot run here: it needs root")
    assert "Traceback" not in done.stderr


def test_a_missing_ip_command_is_named_with_how_to_install_it() -> None:
    able, why = can_run_netns(ip="/nonexistent/ip")
    assert not able
    assert "iproute2" in why and "apt-get install iproute2" in why
    with pytest.raises(NetnsUnavailable, match="iproute2 is not installed"):
        run_split_brain_experiment(ip="/nonexistent/ip")


@pytest.mark.parametrize(
    ("setting", "value", "named"),
    [
        ("phase_seconds", 0, "phase_seconds must be a number from 0.5 to 30"),
        ("rate", "fast", "rate must be a number"),
        ("connections", 100, "connections must be a number from 1 to 16"),
        ("lease_term", 0.3, "lease_term .* must be more than twice advert_interval"),
    ],
)
def test_bad_settings_are_refused_by_name(setting: str, value: object, named: str) -> None:
    from spofkit.netns import split_brain_experiment

    with pytest.raises(ValueError, match=named):
        asyncio.run(split_brain_experiment(**{setting: value}))  # type: ignore[arg-type]


# --- the parts, by plain calls --------------------------------------------------------------------------------


def test_a_gratuitous_arp_says_the_vip_is_at_our_mac_to_everyone() -> None:
    mac = bytes.fromhex("020000000011")
    frame = gratuitous_arp(mac, VIP)
    vip = bytes([192, 0, 2, 100])
    assert len(frame) == 42
    assert frame[0:6] == b"\xff" * 6 and frame[6:12] == mac and frame[12:14] == b"\x08\x06"  # broadcast, ARP
    assert frame[14:22] == bytes.fromhex("0001 0800 06 04 0001")  # Ethernet/IPv4, request
    assert frame[22:28] == mac and frame[28:32] == vip  # sender: the VIP is at our MAC
    assert frame[38:42] == vip  # target: the VIP itself, which is what makes it gratuitous
    with pytest.raises(ValueError, match="mac must be 6 bytes"):
        gratuitous_arp(b"\x02", VIP)


def test_the_client_names_what_it_felt() -> None:
    assert classify(asyncio.TimeoutError()) == "timeout"
    assert classify(ConnectionRefusedError()) == "refused"
    assert classify(OSError(errno.EHOSTUNREACH, "No route to host")) == "unreachable"
    assert classify(ConnectionResetError()) == "reset"
    assert classify(asyncio.IncompleteReadError(b"", None)) == "reset"
    assert classify(ValueError("bad status line")) == "other"


class RecordedAddress:
    """Stands in for the interface: says what the keeper did to it."""

    def __init__(self) -> None:
        self.moves: list[str] = []

    def add(self) -> None:
        self.moves.append("add")

    def remove(self) -> None:
        self.moves.append("remove")

    def announce(self) -> None:
        self.moves.append("garp")


def _keeper() -> tuple[AddressKeeper, RecordedAddress, list[dict[str, object]], list[float]]:
    address, told, now = RecordedAddress(), [], [100.0]
    keeper = AddressKeeper("lb2", address, garp_refresh=0, tell=told.append, clock=lambda: now[0])
    return keeper, address, told, now


def test_without_fencing_the_address_is_taken_and_announced_at_once() -> None:
    keeper, address, _, _ = _keeper()
    keeper.take("no advert from lb1")
    assert address.moves == ["add", "garp"]
    keeper.release("lb1 is master")
    assert address.moves == ["add", "garp", "remove"]


def test_with_fencing_the_address_waits_for_the_lease() -> None:
    keeper, address, told, _ = _keeper()
    keeper.set_fencing(True)
    keeper.take("no advert from lb1")
    assert address.moves == [] and told[-1] == {"type": "lease_request", "node": "lb2", "asked_at": 100.0}
    keeper.lease_answer(False, asked_at=100.0, term=1.0)
    assert address.moves == [] and keeper.lease.refusals == 1
    keeper.lease_answer(True, asked_at=100.0, term=1.0)
    assert address.moves == ["add", "garp"]


def test_a_holder_whose_lease_runs_out_unrenewed_drops_the_address_itself() -> None:
    keeper, address, told, now = _keeper()
    keeper.set_fencing(True)
    keeper.take("no advert from lb1")
    keeper.lease_answer(True, asked_at=100.0, term=1.0)
    now[0] = 100.5
    keeper.tick()  # renews: asks again, still holds
    assert keeper.holds and told[-1]["asked_at"] == 100.5
    now[0] = 101.0  # no answer came (the supervisor is unreachable): the lease counted from 100.0 is over
    keeper.tick()
    assert not keeper.holds and address.moves == ["add", "garp", "remove"]
    assert told[-2]["reason"] == "lease ran out unrenewed: fencing myself"


def test_switching_fencing_on_keeps_a_held_address_until_the_supervisor_answers() -> None:
    keeper, address, _, now = _keeper()
    keeper.take("owner")
    now[0] = 200.0
    keeper.set_fencing(True)
    keeper.tick()
    assert keeper.holds, "no answer yet: not a lease that ran out"
    keeper.lease_answer(False, asked_at=200.0, term=1.0)
    assert not keeper.holds and address.moves == ["add", "garp", "remove"]
