"""A pair of real HAProxies with real keepalived in network namespaces, and spofkit's pair, through the same kill.

The experiment needs root, namespaces, keepalived and HAProxy (CI runs as root, and ``make test`` installs the
packages there); without them those tests are skipped with :func:`can_run_keepalived`'s reason, and the tests of
what such a user is told run instead. keepalived's own configuration check needs only the package.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from spofkit import export
from spofkit.keepalived_pair import (
    PairComparison,
    can_run_keepalived,
    check_keepalived_config,
    keepalived_config,
    run_keepalived_pair,
)
from spofkit.netns import our_namespaces

CAN_RUN, WHY_NOT = can_run_keepalived()
needs_keepalived = pytest.mark.skipif(not CAN_RUN, reason=f"the keepalived pair cannot run here: {WHY_NOT}")
HAS_KEEPALIVED = os.access(export.BINARIES["keepalived"], os.X_OK)
ROOT = Path(__file__).resolve().parent.parent


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def comparison() -> Iterator[PairComparison]:
    result = run_keepalived_pair(phase_seconds=2.0, keepalived_defaults=False)
    print(result.to_text())  # shown with -s, and in the log of a failing test
    yield result


@needs_keepalived
@pytest.mark.timeout(180)
def test_spofkit_s_pair_takes_over_after_a_kill_9(comparison: PairComparison) -> None:
    takeover = comparison.takeover("spofkit pair")
    assert takeover.address_moved is not None, "lb2 never had the virtual IP"
    assert takeover.first_answer is not None and takeover.sent > 0


@needs_keepalived
@pytest.mark.timeout(180)
def test_keepalived_sees_its_haproxy_die_and_steps_down(comparison: PairComparison) -> None:
    takeover = comparison.takeover("keepalived + HAProxy", "HAProxy")
    assert takeover.address_moved is not None and takeover.first_answer is not None
    said = [(host, role) for _at, host, role in takeover.roles]
    assert ("lb1", "fault") in said, f"keepalived on lb1 said {said}"  # its check found HAProxy gone
    assert ("lb2", "master") in said
    assert takeover.sent > 0


@needs_keepalived
@pytest.mark.timeout(180)
def test_a_lost_machine_is_taken_over_too(comparison: PairComparison) -> None:
    takeover = comparison.takeover("keepalived + HAProxy", "power")
    said = [(host, role) for _at, host, role in takeover.roles]
    assert ("lb2", "master") in said, said  # (lb1's keepalived may log FAULT as its link goes: nobody hears it)
    assert takeover.address_moved is not None and takeover.first_answer is not None


@needs_keepalived
@pytest.mark.timeout(180)
def test_the_table_shows_every_takeover_as_measured(comparison: PairComparison) -> None:
    table = comparison.table()
    assert len(table.splitlines()) == 2 + len(comparison.takeovers)
    for takeover in comparison.takeovers:
        assert takeover.front_door in table and f"{takeover.address_moved:.2f} s" in table


@needs_keepalived
@pytest.mark.timeout(180)
def test_nothing_of_the_pair_is_left(comparison: PairComparison) -> None:
    assert comparison.pids and not [pid for pid in comparison.pids if alive(pid)]
    assert not set(comparison.namespaces) & set(our_namespaces())


# --- without root, and the configuration --------------------------------------------------------------------


@pytest.mark.skipif(not HAS_KEEPALIVED, reason="keepalived is not installed (make test installs it as root)")
@pytest.mark.parametrize(("advert", "check"), [(0.2, 1), (1.0, 2)])
def test_keepalived_accepts_the_configuration_without_a_warning(advert: float, check: int) -> None:
    text = keepalived_config(
        "lb1", priority=200, address="192.0.2.11", peer="192.0.2.12", check="/usr/bin/true", advert_interval=advert
    )
    text = text.replace("interval 1\n", f"interval {check}\n")
    ok, said = check_keepalived_config(text)
    assert ok, said
    assert f"advert_int {advert:g}" in text and "vrrp_version 3" in text and "unicast_peer" in text


@pytest.mark.skipif(not HAS_KEEPALIVED, reason="keepalived is not installed (make test installs it as root)")
def test_a_configuration_keepalived_only_warns_about_is_not_taken_for_valid() -> None:
    text = keepalived_config("lb1", priority=200, address="192.0.2.11", peer="192.0.2.12", check="/usr/bin/true")
    ok, said = check_keepalived_config(text.replace("interval 1\n", "interval 0.2\n"))  # what it silently rounds up
    assert not ok and "0.2" in said


def test_a_check_faster_than_keepalived_can_run_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="check_interval must be a whole number"):
        keepalived_config(
            "lb1", priority=200, address="192.0.2.11", peer="192.0.2.12", check="true", check_interval=0.2
        )


def test_a_missing_keepalived_is_named_with_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(export, "BINARIES", {**export.BINARIES, "keepalived": "/nonexistent/keepalived"})
    able, why = can_run_keepalived()
    assert not able and "apt-get install -y keepalived" in why


def test_python_m_spofkit_keepalived_pair_names_a_bad_setting() -> None:
    command = [sys.executable, "-m", "spofkit.keepalived_pair", "--advert-interval", "9"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2
    assert "advert_interval" in done.stderr or "cannot run here" in done.stderr
