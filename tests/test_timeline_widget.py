"""The timeline widget, and what it records: a simulated run, scrubbed without a browser and then in one.

Without a browser the buttons are clicked with ``button.click()`` (what a browser click runs) and what the
widget shows is read from its HTML. With one (the last test), the widget is shown in JupyterLab in headless
Chromium and measured as a learner sees it (no cut text, the slider's track wider than 100 px), and its step
buttons are clicked with the mouse: the time shown moves.

Also here, because the timeline's runs use them: the simulated clients' own retries (``retry=`` of a run,
the rule that makes a retry storm) and the instances' own gauges (``SimLab.instance_loads``).
"""

from __future__ import annotations

import html
import itertools
import math
import re
from collections.abc import Iterator
from pathlib import Path

import matplotlib
import nbformat
import pytest

from spofkit.commands import AddInstance, Recover
from spofkit.events import ClientRequest, FaultCleared, FaultInjected, InstanceEjected
from spofkit.loadgen import RequestRecord
from spofkit.sim import Capacity, InstanceLoad, SimLab
from spofkit.widgets import Recording, RunRecorder, Timeline, plot_recording

matplotlib.use("Agg")

CAPACITY = Capacity(concurrency=2, queue=50, work_ms=10, distribution="exponential")


def overloaded_run(seed: int = 3, record: bool = True) -> tuple[SimLab, Recording | None]:
    """3 instances of 2 workers x 10 ms (600 req/s) at 480 req/s; ``b`` crashes at 1.0 s and is back at 2.0 s:
    for a second the two left get 240 req/s each, above their 200."""
    lab = SimLab(3, seed=seed, capacity=CAPACITY)
    recorder = RunRecorder(lab, every=0.02) if record else None
    if recorder:
        recorder.start()
    lab.run_load_sync(rate=480, duration=3.0, faults=[(1.0, "b", "crash", {})], commands=[(2.0, Recover("b"))])
    return lab, recorder.stop() if recorder else None


@pytest.fixture(scope="module")
def recorded() -> tuple[SimLab, Recording]:
    lab, recording = overloaded_run()
    assert recording is not None
    return lab, recording


def text_of(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", fragment))


# --- the recorder ------------------------------------------------------------------------------------------


def test_recording_a_run_does_not_change_it() -> None:
    watched, _ = overloaded_run(record=True)
    unwatched, _ = overloaded_run(record=False)
    assert watched.digest.hexdigest() == unwatched.digest.hexdigest()
    assert watched.digest.hexdigest() != overloaded_run(seed=4, record=False)[0].digest.hexdigest()


def test_the_recorder_takes_a_moment_every_tick_with_every_instance(recorded: tuple[SimLab, Recording]) -> None:
    _, recording = recorded
    times = [moment.at for moment in recording.moments]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert recording.start == 0.0 and recording.end >= 3.0
    # Under load events come every few ms, so a moment falls in every 20 ms tick (after the load, only the
    # probes' events are left to take one, every few tenths of a second).
    under_load = [at for at in times if at < 3.0]
    gaps = [later - earlier for earlier, later in itertools.pairwise(under_load)]
    assert max(gaps) < 2 * 0.02, max(gaps)  # the first event at or after each tick takes that tick's moment
    assert len(times) >= 3.0 / 0.02
    assert all([i.name for i in moment.instances] == ["a", "b", "c"] for moment in recording.moments)
    assert recording.instance_names == ["a", "b", "c"]


def test_the_moments_show_the_crash_and_the_queues_it_caused(recorded: tuple[SimLab, Recording]) -> None:
    _, recording = recorded
    before, during, after = recording.moment_at(0.9), recording.moment_at(1.9), recording.moment_at(2.9)
    assert before.instance("b").fault is None and before.instance("b").state == "up"
    assert during.instance("b").fault == "crash" and during.instance("b").state == "ejected"  # 3 failures in a row
    assert after.instance("b").fault is None
    # The moment of the crash shows what happened at it: the ejection of b (3 requests reset at once).
    assert recording.moment_at(1.0).instance("b").state == "ejected"
    assert recording.has_gauges
    # Before the crash the queues are short; with b gone, a and c get more than their workers can do.
    _, queued = recording.series("queued")
    times = [moment.at for moment in recording.moments]
    deepest_before = max(q for t, q in zip(times, queued["a"], strict=True) if t < 1.0)
    deepest_during = max(q for t, q in zip(times, queued["a"], strict=True) if 1.0 < t < 2.0)
    assert deepest_during > 20 > deepest_before, (deepest_before, deepest_during)
    assert during.instance("a").busy == during.instance("a").workers == 2


def test_notable_events_are_kept_apart_and_the_log_around_a_moment_has_them(
    recorded: tuple[SimLab, Recording],
) -> None:
    _, recording = recorded
    assert not any(isinstance(event, ClientRequest) for event in recording.notable)
    assert sum(isinstance(event, ClientRequest) for event in recording.events) == 1440
    fault = next(event for event in recording.notable if isinstance(event, FaultInjected))
    assert fault.at == pytest.approx(1.0)
    assert recording.next_event(0.5) is fault
    assert recording.previous_event(fault.at) is not fault
    before, after = recording.events_around(fault.at)
    assert fault in before and fault not in after
    # Passive ejection happens at the same moment (the crash resets 3 requests at once); the repair comes later.
    assert any(isinstance(event, InstanceEjected) and event.instance == "b" for event in before)
    assert any(isinstance(event, FaultCleared) and event.instance == "b" for event in after)


def test_a_long_run_keeps_its_notable_events_when_request_events_are_cut() -> None:
    lab = SimLab(3, seed=1)
    with RunRecorder(lab, every=0.05, max_request_events=100) as recorder:
        lab.run_load_sync(rate=200, duration=2.0, faults=[(1.0, "a", "crash", {})])
    recording = recorder.recording
    assert recording.truncated
    assert len(recording.events) - len(recording.notable) == 100
    assert any(isinstance(event, FaultInjected) for event in recording.notable)


def test_bad_recorder_settings_are_named() -> None:
    lab = SimLab(1)
    with pytest.raises(ValueError, match="every must be a number of seconds > 0, got 0"):
        RunRecorder(lab, every=0)
    with pytest.raises(ValueError, match="max_request_events must be a whole number >= 0, got -1"):
        RunRecorder(lab, max_request_events=-1)
    recorder = RunRecorder(lab).start()
    with pytest.raises(RuntimeError, match="already recording"):
        recorder.start()
    recorder.stop()


# --- the widget ----------------------------------------------------------------------------------------------


def test_stepping_and_seeking_move_the_moment_and_what_it_shows(recorded: tuple[SimLab, Recording]) -> None:
    _, recording = recorded
    timeline = Timeline(recording, step=0.1)
    assert timeline.at == recording.start and timeline.slider.value == recording.start
    timeline.buttons["forward"].click()
    assert timeline.at == pytest.approx(0.1) and timeline.slider.value == pytest.approx(0.1)
    timeline.buttons["back"].click()
    timeline.buttons["back"].click()  # not before the start
    assert timeline.at == recording.start

    timeline.buttons["next"].click()  # the first notable event after the start: the crash
    assert timeline.at == pytest.approx(1.0)
    shown = text_of(timeline.event_log.value)
    assert "fault on b: crash" in shown and "(this moment)" in shown
    assert shown.index("fault on b: crash") < shown.index("(this moment)")
    timeline.buttons["next"].click()
    assert timeline.at > 1.0
    timeline.buttons["previous"].click()
    assert timeline.at == pytest.approx(1.0)

    timeline.slider.value = 1.9  # what a drag of the slider does
    assert timeline.at == pytest.approx(1.9)
    table = text_of(timeline.table.value)
    assert "crash" in table and "EJECTED" in table
    assert "1.900 s" in text_of(timeline.moment_line.value)
    timeline.seek(99)
    assert timeline.at == recording.end


def test_the_table_shows_each_instances_gauges_at_the_moment(recorded: tuple[SimLab, Recording]) -> None:
    _, recording = recorded
    timeline = Timeline(recording, at=1.9)
    moment = recording.moment_at(1.9)
    rows = re.findall(r"<tr>(.*?)</tr>", timeline.table.value)
    assert len(rows) == 1 + 3  # the headings, then a, b, c
    row_a = [text_of(cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", rows[1])]
    a = moment.instance("a")
    assert row_a[0] == "a" and row_a[3] == str(a.in_flight)
    assert row_a[4] == str(a.busy) and row_a[5] == str(a.queued)


def test_the_plots_have_a_panel_per_view_and_a_cursor_that_follows(recorded: tuple[SimLab, Recording]) -> None:
    _, recording = recorded
    figure = plot_recording(recording)
    assert len(figure.axes) == 3
    assert not any(cursor.get_visible() for cursor in figure.cursors)
    # The crash (1.0 s) and its repair (2.0 s) are grey dashed lines on every panel.
    dashed = {
        line.get_xdata()[0]
        for line in figure.axes[0].lines
        if line.get_linestyle() == "--" and line.get_color() == "grey"
    }
    assert dashed == {1.0, 2.0}, dashed
    timeline = Timeline(recording, at=1.5)
    shown = timeline.figure()
    assert all(cursor.get_visible() and list(cursor.get_xdata()) == [1.5, 1.5] for cursor in shown.cursors)
    timeline.step(0.25)
    assert all(list(cursor.get_xdata()) == [1.75, 1.75] for cursor in timeline.figure().cursors)
    assert timeline.plot.outputs and "image/png" in timeline.plot.outputs[0]["data"]


def test_the_plotted_answers_add_up_to_the_run(recorded: tuple[SimLab, Recording]) -> None:
    lab, recording = recorded
    from spofkit.widgets.timeline import PLOT_BIN, _binned

    _, counts = _binned(recording.events, recording.start, recording.end)
    answered = sum(counts["ok"]) * PLOT_BIN + sum(counts["failed"]) * PLOT_BIN
    assert answered == pytest.approx(len(lab.records))
    assert sum(counts["failed"]) * PLOT_BIN == pytest.approx(sum(1 for r in lab.records if r.error))


def test_bad_timeline_input_is_named(recorded: tuple[SimLab, Recording]) -> None:
    _, recording = recorded
    with pytest.raises(TypeError, match="Timeline shows a Recording"):
        Timeline("run")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="the recording is empty"):
        Timeline(Recording(0.02))
    with pytest.raises(ValueError, match="step must be a number of seconds > 0, got 0"):
        Timeline(recording, step=0)
    with pytest.raises(ValueError, match="at must be a lab time in seconds"):
        Timeline(recording).seek("soon")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="gauge must be"):
        recording.series("depth")


# --- what the runs need: the instances' gauges, and clients that retry ------------------------------------


def test_instance_loads_are_the_instances_own_gauges() -> None:
    lab = SimLab(2, capacity=Capacity(concurrency=1, queue=5, work_ms=100), health=None)
    lab.run_load_sync(rate=50, duration=0.05)  # three requests, sent 20 ms apart, 100 ms each: a queue
    loads = lab.instance_loads()
    assert [load.name for load in loads] == ["a", "b"]
    assert all(isinstance(load, InstanceLoad) and load.workers == 1 for load in loads)
    assert all(load.busy == 0 and load.queued == 0 for load in loads)  # the run waits for its answers


def test_a_client_retry_rule_is_asked_after_each_failed_try_and_its_waits_are_kept() -> None:
    asked: list[tuple[str | None, int, float]] = []

    def three_tries(record: RequestRecord, tries: int) -> float | None:
        asked.append((record.error, tries, record.end))
        return 0.05 if tries < 3 else None

    # One instance that refuses everything, and no balancer retries: each try fails fast.
    lab = SimLab(1, retries=None, health=None)
    lab.run_load_sync(rate=10, duration=0.1, faults=[(0.0, "a", "error", {"status": 503})], retry=three_tries)
    assert len(lab.records) == 1
    record = lab.records[0]
    assert [tries for _error, tries, _end in asked] == [1, 2, 3]
    assert record.error is not None and record.attempts == 3  # the balancer's attempts over the 3 tries
    ends = [end for _error, _tries, end in asked]
    assert ends[1] - ends[0] == pytest.approx(0.05, abs=1e-3) and ends[2] - ends[1] == pytest.approx(0.05, abs=1e-3)
    assert record.start == pytest.approx(0.0) and record.end == pytest.approx(ends[-1])


def test_a_retry_that_succeeds_is_one_ok_request_and_no_rule_means_no_retry() -> None:
    lab = SimLab(1, retries=None, health=None)
    lab.run_load_sync(
        rate=10,
        duration=0.1,
        faults=[(0.0, "a", "error", {"status": 503})],
        commands=[(0.05, Recover("a"))],
        retry=lambda _record, tries: 0.1 if tries < 5 else None,
    )
    assert [record.error for record in lab.records] == [None]
    lab.run_load_sync(rate=10, duration=0.1, faults=[(0.0, "a", "error", {"status": 503})])
    assert [record.error for record in lab.records] == ["http_503"]


def test_a_bad_retry_rule_or_answer_is_named() -> None:
    lab = SimLab(1, retries=None, health=None)
    with pytest.raises(ValueError, match="retry must be a function"):
        lab.run_load_sync(rate=10, duration=0.1, retry=0.1)
    with pytest.raises(ValueError, match=r"retry rule must answer seconds >= 0 or None, got -1"):
        lab.run_load_sync(rate=10, duration=0.1, faults=[(0.0, "a", "error", {"status": 503})], retry=lambda _r, _t: -1)


# --- in a real browser -----------------------------------------------------------------------------------------

NOTEBOOK = "timeline.ipynb"
SETUP = """\
from spofkit.commands import Recover
from spofkit.sim import Capacity, SimLab
from spofkit.widgets import RunRecorder, Timeline

lab = SimLab(3, seed=3, capacity=Capacity(concurrency=2, queue=50, work_ms=10, distribution="exponential"))
with RunRecorder(lab, every=0.02) as recorder:
    lab.run_load_sync(rate=480, duration=3.0, faults=[(1.0, "b", "crash", {})], commands=[(2.0, Recover("b"))])
Timeline(recorder.recording, step=0.1, title="b crashes at 1.0 s, is back at 2.0 s")"""


@pytest.fixture
def jupyterlab(tmp_path: Path) -> Iterator[object]:
    from browser import jupyterlab_serving

    root = tmp_path / "lab"
    root.mkdir()
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    notebook.cells = [nbformat.v4.new_code_cell(SETUP)]
    nbformat.write(notebook, root / NOTEBOOK)
    with jupyterlab_serving(root) as server:
        yield server


@pytest.mark.parametrize("width", [1280, 900])
def test_the_timeline_fits_and_its_buttons_move_time_in_chromium(jupyterlab: object, width: int) -> None:
    from browser import CHROMIUM, CHROMIUM_ARGS, measure, open_notebook, run_all_cells
    from playwright.sync_api import expect, sync_playwright

    screenshots = Path("/tmp/spofkit-timeline")
    screenshots.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            notebook = open_notebook(page, jupyterlab, NOTEBOOK)
            run_all_cells(page)
            timeline = notebook.locator(".spofkit-timeline").first
            expect(timeline.locator("img")).to_be_visible(timeout=90_000)
            moment = timeline.locator(".widget-html").nth(1)
            expect(moment).to_contain_text("0.000 s")
            problems = measure(timeline)
            track = timeline.locator(".widget-slider .slider-container").first.bounding_box()
            assert track is not None and track["width"] > 100, track

            # The text of a moment comes before its plot (drawn after it, in the same handler): each step waits for
            # the plot to change from the last one drawn, so a plot still on its way is never taken for the new one.
            plot = timeline.locator("img").first
            drawn = plot.get_attribute("src") or ""  # at 0.000 s, the only plot drawn so far
            timeline.locator("button", has_text="next event").click()
            expect(moment).to_contain_text("1.000 s", timeout=10_000)
            expect(timeline).to_contain_text("fault on b: crash")
            expect(plot).not_to_have_attribute("src", drawn, timeout=10_000)  # the cursor moved to 1.000 s
            drawn = plot.get_attribute("src") or ""
            timeline.locator("button", has_text="+ 0.1 s").click()
            expect(moment).to_contain_text("1.100 s", timeout=10_000)
            expect(timeline.locator(".widget-readout")).to_contain_text("1.100", timeout=10_000)
            expect(plot).not_to_have_attribute("src", drawn, timeout=10_000)  # and on to 1.100 s
            drawn = plot.get_attribute("src") or ""
            timeline.locator("button", has_text="previous event").click()
            expect(moment).to_contain_text("1.000 s", timeout=10_000)
            expect(plot).not_to_have_attribute("src", drawn, timeout=10_000)  # and back
            problems += measure(timeline)  # again, with the crash's long lines in the log
            timeline.screenshot(path=str(screenshots / f"{width}-timeline.png"))
        finally:
            browser.close()
    assert not problems, f"what a learner would see wrong at {width} px:\n" + "\n".join(problems)


def test_an_instance_added_during_the_run_has_no_gauge_before_it_was_there() -> None:
    lab = SimLab(2, seed=1)
    with RunRecorder(lab, every=0.05) as recorder:
        lab.run_load_sync(rate=50, duration=1.0, commands=[(0.5, AddInstance("c"))])
    times, in_flight = recorder.recording.series("in_flight")
    assert list(in_flight) == ["a", "b", "c"] and len(times) == len(in_flight["c"])
    early = [value for at, value in zip(times, in_flight["c"], strict=True) if at < 0.5]
    late = [value for at, value in zip(times, in_flight["c"], strict=True) if at > 0.6]
    assert early and all(math.isnan(value) for value in early)
    assert late and not any(math.isnan(value) for value in late)
    assert not any(math.isnan(value) for value in in_flight["a"])


async def test_a_live_run_is_recorded_the_same_way_without_the_instances_gauges() -> None:
    from spofkit.lab import Lab

    async with await Lab.start(3) as lab:
        recorder = RunRecorder(lab, every=0.05).start()
        try:
            await lab.run_load(rate=50, duration=1.0, faults=[(0.3, "b", "crash", {})])
        finally:
            recording = recorder.stop()
    assert not recording.has_gauges and recording.instance_names == ["a", "b", "c"]
    assert len(recording.moments) >= 10
    assert any(moment.instance("b").fault == "crash" for moment in recording.moments)
    assert sum(isinstance(event, ClientRequest) for event in recording.events) == 50
    timeline = Timeline(recording)
    crash = timeline.next_event()
    assert isinstance(crash, FaultInjected) and crash.instance == "b" and timeline.at == crash.at
    assert "busy" not in timeline.table.value  # no columns for gauges the live lab does not report
    assert len(plot_recording(recording).axes) == 2
