"""Views written for a live Lab work on a SimLab: the panel, the experiment form, the report and its plot."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

from spofkit import widgets
from spofkit.lab import Lab
from spofkit.policy import HealthSettings
from spofkit.report import plot_timeline
from spofkit.sim import SimLab

HEALTH = HealthSettings(interval=0.2, timeout=0.15, rise=2, fall=2)


async def test_the_cluster_panel_drives_a_simulated_lab_with_the_same_commands() -> None:
    lab = SimLab(3, health=HEALTH, seed=0)
    panel = widgets.ClusterPanel(cast(Lab, lab), refresh_interval=0.05)
    try:
        assert list(panel.rows) == ["a", "b", "c"]
        await panel.click_fault("b", "crash")
        lab.advance_sync(1.0)  # virtual time passes only when asked: the checks notice the crash
        panel.refresh()
        assert "crash" in panel.row("b").fault.value
        assert "DOWN" in panel.row("b").state.value
        assert "b marked DOWN" in panel.event_log.value
        await panel.click_fault("b", "recover")
        lab.advance_sync(1.0)
        panel.refresh()
        assert "UP" in panel.row("b").state.value
        assert panel.errors == []
    finally:
        panel.close()


async def test_the_experiment_form_runs_on_a_simulated_lab_and_its_plot_shows_the_fault(tmp_path: Path) -> None:
    lab = SimLab(3, health=HEALTH, retries=None, seed=0)
    runner = widgets.ExperimentRunner(cast(Lab, lab), rate=200, duration=4.0, fault="crash", fault_at=1.0)
    report = await runner.run()
    assert report.requests == 800 and report.fault_instance == "b"
    assert report.detection_window is not None and report.detection_window <= HEALTH.detection_window_bound()
    assert lab.status().instance("b").fault is None  # recovered after the run, as live
    import matplotlib

    matplotlib.use("Agg")
    ax: Any = plot_timeline(report, title="simulated: b crashes at 1 s, retries off")
    path = Path(os.environ.get("SPOFKIT_SCREENSHOTS", tmp_path)) / "sim_timeline.png"
    ax.figure.savefig(path, dpi=80)
    assert path.stat().st_size > 5000
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert "fault (b)" in labels and "detected" in labels
