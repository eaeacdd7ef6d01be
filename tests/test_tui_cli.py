"""``spofkit tui``'s options: what reaches the lab it starts, and the combinations refused with a clear error."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("textual")

import tui.app
from spofkit.cli import main


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every call of ``tui.app.run`` (the dashboard itself is not started): the options it was given."""
    calls: list[dict[str, Any]] = []

    def fake_run(connect: str | None = None, **options: Any) -> int:
        calls.append({"connect": connect, **options})
        return 0

    monkeypatch.setattr(tui.app, "run", fake_run)
    return calls


def test_no_options_start_the_default_lab(runs: list[dict[str, Any]]) -> None:
    assert main(["tui"]) == 0
    assert runs == [{"connect": None}]  # Lab.start's own defaults: one balancer, in process


def test_the_pair_options_go_to_the_lab(runs: list[dict[str, Any]]) -> None:
    argv = ["tui", "--balancers", "2", "--pair", "active-active", "--no-preempt", "--isolation", "process"]
    assert main(argv) == 0
    assert runs == [
        {"connect": None, "balancers": 2, "pair": "active-active", "preempt": False, "isolation": "process"}
    ]


def test_a_pair_needs_two_balancers(runs: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tui", "--pair", "active-passive"]) == 2
    assert "--pair and --no-preempt are for a pair: add --balancers 2" in capsys.readouterr().err
    assert main(["tui", "--balancers", "1", "--no-preempt"]) == 2
    assert runs == []


def test_lab_options_are_refused_with_connect(runs: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tui", "--connect", "http://127.0.0.1:8081", "--balancers", "2", "--isolation", "process"]) == 2
    error = capsys.readouterr().err
    assert "--balancers --isolation: for the lab tui starts; an attached lab has its own (--connect)" in error
    assert runs == []


@pytest.mark.parametrize(
    ("argv", "named"), [(["--balancers", "3"], "--balancers"), (["--isolation", "vm"], "--isolation")]
)
def test_bad_values_are_named(argv: list[str], named: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tui", *argv]) == 2
    assert f"argument {named}" in capsys.readouterr().err
