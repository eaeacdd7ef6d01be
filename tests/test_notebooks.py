"""Every lesson notebook runs top to bottom in a fresh kernel, cleanly, and leaves a working lab behind.

The notebooks are found by globbing ``lessons/*.ipynb``, so a new lesson is tested as soon as it exists. Each
runs in a real ``python3`` kernel (``make setup`` installs it into the venv) with nbclient, cell by cell, so the
test can look at the kernel process between the last cell and the kernel's shutdown:

- no cell raised (nbclient stops at the first error) and nothing was written to stderr that looks like trouble;
- after "Run All" the lesson's lab still serves: a request through its balancer is answered, the panel does not
  say "stopped", and a click in the panel works (a learner who runs everything and then experiments finds a
  live lab);
- the only servers and processes the kernel has left are that lab's (the lesson's other, short-lived labs are
  closed);
- once the kernel is shut down, the lab's ports are closed and its instance processes are gone, and this test has
  no child process left (the kernel itself is gone);
- every figure a lesson shows (``plt.show()``) has no text over another, and nothing printed is a raw repr such
  as ``EjectionSettings(consecutive_failures=3, ...)``.

The same files are also checked for what the lessons promise (issue 4): objectives, a prediction, a widget, a
plot, a seeded exercise, a recap, a last cell saying how to stop the lab by hand (not running it) — and that they
are committed without outputs; and that no seeded exercise is one of the lesson's own worked examples.
"""

from __future__ import annotations

import html
import json
import os
import re
import socket
from pathlib import Path
from typing import Any

import nbformat
import psutil
import pytest
from nbclient import NotebookClient

from spofkit import exercises
from spofkit.netns import WHAT_IT_SHOWS

LESSONS = Path(__file__).resolve().parent.parent / "lessons"
NOTEBOOKS = sorted(LESSONS.glob("*.ipynb"))
CELL_TIMEOUT = 120  # seconds; a lesson's experiments take a few seconds each
# stderr text that means something went wrong (a warning about, say, a font cache would not match).
TROUBLE = re.compile(r"Traceback|Error|Exception|never retrieved|was destroyed but it is pending|Unclosed")
# A dataclass's repr printed for a learner to read: "EjectionSettings(consecutive_failures=3, ...".
RAW_REPR = re.compile(r"\b[A-Z][A-Za-z]+\((?:[a-z_]+=)")
TESTS = Path(__file__).resolve().parent

# Run in the kernel before the lesson: every figure shown with plt.show() is checked for texts that overlap.
CHECK_FIGURES = f"""
import sys as _sys
_sys.path.insert(0, {str(TESTS)!r})
import matplotlib.pyplot as _plt
from figure_checks import overlapping_texts as _overlapping_texts

_spofkit_figure_problems = []
_spofkit_show = _plt.show


def _spofkit_checked_show(*args, **kwargs):
    for number in _plt.get_fignums():
        for one, other in _overlapping_texts(_plt.figure(number)):
            _spofkit_figure_problems.append(f"{{one}} overlaps {{other}}")
    return _spofkit_show(*args, **kwargs)


_plt.show = _spofkit_checked_show
"""

# Run in the kernel after the lesson: is its lab still there, and what does it hold?
PROBE_THE_LAB = """
import json as _json
import os as _os
from urllib.parse import urlsplit as _urlsplit

import aiohttp as _aiohttp

async with _aiohttp.ClientSession() as _session:
    async with _session.get(lab.balancer_url + "/after-run-all") as _response:
        _status = _response.status
_name = lab.instance_names[0]
await panel.click_fault(_name, "recover")  # what a click on "recover" does
_lab_status = lab.status()
print("SPOFKIT-PROBE " + _json.dumps({
    "status": _status,
    "header": panel.header.value,
    "click_errors": panel.errors,
    "ports": [_urlsplit(lab.balancer_url).port]
    + [_urlsplit(b.url).port for b in _lab_status.balancers]  # each balancer's own address
    + [_urlsplit(i.url).port for i in _lab_status.instances],
    "pids": [
        i.pid for i in [*_lab_status.instances, *_lab_status.balancers] if i.pid is not None and i.pid != _os.getpid()
    ],
    "figure_problems": _spofkit_figure_problems,
}))
"""


def listening_ports(process: psutil.Process) -> set[int]:
    return {
        connection.laddr.port
        for connection in process.net_connections(kind="inet")
        if connection.status == psutil.CONN_LISTEN
    }


def code_of(notebook: nbformat.NotebookNode) -> str:
    return "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")


def markdown_of(notebook: nbformat.NotebookNode) -> str:
    return "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")


def test_the_lessons_are_there() -> None:
    names = [path.name for path in NOTEBOOKS]
    for expected in (
        "00_welcome.ipynb",
        "01_single_point_of_failure.ipynb",
        "02_redundancy.ipynb",
        "03_health_checks.ipynb",
        "04_failover_and_retries.ipynb",
        "05_gray_failures.ipynb",
        "06_strategies.ipynb",
        "07_balancer_pair.ipynb",
        "08_zero_downtime_deploys.ipynb",
        "10_availability_at_scale.ipynb",
        "09_capacity_and_overload.ipynb",
        "11_lab_to_production.ipynb",
    ):
        assert expected in names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"cell {index} of {path.name} has outputs"
    assert notebook.metadata.kernelspec.name == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_has_what_every_lesson_promises(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    code, prose = code_of(notebook), markdown_of(notebook)
    assert "In this lesson you will" in prose, "learning objectives at the top"
    assert "Recap" in prose
    assert "predict(" in code, "a predict-first prompt"
    assert re.search(r"ClusterPanel\(|ExperimentRunner\(|HealthExplorer\(", code), "a widget"
    assert re.search(r"plot_timeline\(|plt\.", code), "a plot"
    assert re.search(r"new_problem\(seed=|check_strategy\(", code), "a seeded exercise"
    assert "progress_bar(" in code or "ExperimentRunner(" in code, "progress for long experiments"
    # "Run All" must leave the lab running: the last cell says how to stop it by hand, and does not run it.
    last = notebook.cells[-1]
    assert last.cell_type == "markdown" and "how-to-stop" in last.metadata.get("tags", [])
    assert "await lab.stop()" in last.source
    stops = [cell.source for cell in notebook.cells if cell.cell_type == "code" and MAIN_LAB_STOP.search(cell.source)]
    assert not stops, f"a cell stops the lesson's lab, so Run All leaves a dead one: {stops}"


MAIN_LAB_STOP = re.compile(r"^\s*await lab\.stop\(\)", re.MULTILINE)


# --- the exercises are not the worked examples ---------------------------------------------------------

# The worked examples each lesson computes for the learner, with the text that shows them in the notebook (so
# this table cannot silently go stale). A seeded exercise whose answer equals a worked example's would be
# answered on screen before the learner tries.
WORKED_EXAMPLES: dict[str, list[tuple[str, str, dict[str, Any]]]] = {
    "01_single_point_of_failure": [
        *[
            (
                "for percent in (99.0, 99.9, 99.99, 99.999)",
                "01.downtime_budget",
                {"availability_percent": percent, "period": period},
            )
            for percent in (99.0, 99.9, 99.99, 99.999)
            for period in ("30-day month", "year (365 days)")
        ],
        (
            'chain = {"DNS": 0.9999, "balancer": 0.9995, "server": 0.999, "database": 0.999}',
            "01.series_availability",
            {"parts": ["DNS", "balancer", "server", "database"], "availabilities": [0.9999, 0.9995, 0.999, 0.999]},
        ),
    ],
    "02_redundancy": [
        *[
            ('"1/N (round robin, one crashed)"', "02.crash_error_fraction", {"instances": n, "crashed": 1})
            for n in range(2, 9)
        ],
        *[
            ("for copies in (1, 2, 3, 4):", "02.parallel_availability", {"copies": n, "each": 0.99, "balancer": 0.9995})
            for n in (1, 2, 3, 4)
        ],
    ],
    "03_health_checks": [
        (
            "settings = HealthSettings(interval=0.5, timeout=0.3, rise=2, fall=3)",
            exercise_id,
            {"interval": 0.5, "timeout": 0.3, "rise": 2, "fall": 3},
        )
        for exercise_id in ("03.detection_window", "03.recovery_window")
    ],
    "04_failover_and_retries": [
        (
            "budget = RetryBudget(ratio=0.2, min_per_second=0.0, window=10.0)",
            "04.retry_budget",
            {"rate": 100, "ratio": 0.2, "min_per_second": 0.0, "window": 10.0},
        ),
    ],
    "11_lab_to_production": [
        # HAProxy's defaults, worked out on screen: a crash is marked DOWN after at most 6 s.
        (
            "haproxy_crash_detection(2.0, 3)",
            "11.haproxy_crash_detection",
            {"inter": 2.0, "fastinter": None, "fall": 3, "defaults": True},
        ),
    ],
    "10_availability_at_scale": [
        # The lesson's instances: MTBF 8 days, MTTR 1 day, 1 to 4 copies; a peak that takes 3 of 3..6 of them.
        (
            "own = FailureProcess(mtbf=8 * DAY, mttr=1 * DAY)",
            "10.mtbf_availability",
            {"mtbf_days": 8, "mttr_hours": 24},
        ),
        *[
            (
                "own = FailureProcess(mtbf=8 * DAY, mttr=1 * DAY)",
                "10.yearly_downtime",
                {"mtbf_days": 8, "mttr_hours": 24, "copies": copies},
            )
            for copies in (2, 3, 4)
        ],
        *[
            (
                "at_least_k_of_n(3, copies, own.availability)",
                "10.spare_capacity",
                {"needed": 3, "copies": copies, "each": 8 / 9, "plan": "N+1"},
            )
            for copies in (3, 4, 5, 6)
        ],
    ],
    "05_gray_failures": [
        # The live run's ejections: the defaults, ejected a first, second and third time.
        (
            "ejection = EjectionSettings()",
            "05.ejection_time",
            {"consecutive_failures": 3, "base_time": 2.0, "max_time": 30.0, "ejection_number": number},
        )
        for number in (1, 2, 3)
    ],
    "09_capacity_and_overload": [
        # Three instances of 2 workers x 10 ms at 60 % and 70 %, losing one; M/M/1 at 90 % with 10 ms of work.
        *[
            (
                'CAPACITY = Capacity(concurrency=2, queue=50, work_ms=10, distribution="exponential")',
                "09.headroom",
                {"instances": 3, "workers": 2, "work_ms": 10, "rate": rate},
            )
            for rate in (360, 420)
        ],
        ("mm1_response_time(0.010, 0.9)", "09.queueing_delay", {"work_ms": 10, "rate": 90.0}),
    ],
    "07_balancer_pair": [
        # lb2's master-down interval, and the band below it: the takeover after a kill right after an advert
        # ("worst") or right before the next one ("best").
        *[
            (
                "backup = PairSettings(advert_interval=0.2, priority=100)",
                "07.takeover_time",
                {"advert_interval": 0.2, "priority": 100, "case": case},
            )
            for case in ("worst", "best")
        ],
        # The live kill: 50 requests/s, 0.2 s of work, a takeover of about the master-down interval.
        *[
            ("expected: 50/s ×", "07.requests_lost", {"rate": 50, "takeover": takeover, "work_ms": 200})
            for takeover in (0.5, 0.6, 0.72)
        ],
    ],
}
SEEDED = re.compile(r"(\w+)\.new_problem\(seed=(\d+)\)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_seeded_exercises_are_not_the_worked_examples(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    code, text = code_of(notebook), code_of(notebook) + markdown_of(notebook)
    worked = WORKED_EXAMPLES.get(path.stem, [])
    for shown_by, _exercise_id, _params in worked:
        assert shown_by in text, f"{path.name} no longer shows this worked example; update WORKED_EXAMPLES"
    for name, seed in SEEDED.findall(code):
        exercise = getattr(exercises, name)
        problem = exercise.new_problem(seed=int(seed))
        answer = exercise.solution(problem)
        for _shown_by, exercise_id, params in worked:
            if exercise_id != exercise.id:
                continue
            example = exercise.solution(exercises.Problem(exercise_id, 0, "worked example", params))
            same = exercise._close(example, answer) if isinstance(exercise, exercises.NumericExercise) else False
            assert not same, (
                f"{path.name}: {name} seed {seed} ({problem.params}) has the answer of the worked example "
                f"{params} the lesson shows; pick another seed (and update lessons/solutions)"
            )


def probe_of(cell: nbformat.NotebookNode) -> dict[str, Any]:
    printed = "".join(output.get("text", "") for output in cell.get("outputs", []) if output.output_type == "stream")
    lines = [line for line in printed.splitlines() if line.startswith("SPOFKIT-PROBE ")]
    assert lines, f"the probe printed nothing: {printed!r}"
    return dict(json.loads(lines[-1].removeprefix("SPOFKIT-PROBE ")))


def accepts_connections(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1.0)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def raw_reprs(notebook: nbformat.NotebookNode) -> list[str]:
    """Printed text, or a value shown as text only, that is a raw repr a learner would have to decipher."""
    found = []
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            if output.output_type == "stream" and output.name == "stdout":
                texts = [output.text]
            elif output.output_type in ("execute_result", "display_data") and set(output.data) == {"text/plain"}:
                texts = [output.data["text/plain"]]
            else:
                texts = []
            found += [f"cell {index}: {line}" for text in texts for line in text.splitlines() if RAW_REPR.search(line)]
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs_clean_and_leaves_a_working_lab(path: Path, no_child_processes: None) -> None:
    notebook = nbformat.read(path, as_version=4)
    lesson_cells = len(notebook.cells)
    notebook.cells.insert(0, nbformat.v4.new_code_cell(CHECK_FIGURES))
    notebook.cells.append(nbformat.v4.new_code_cell(PROBE_THE_LAB))
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=CELL_TIMEOUT,
        allow_errors=False,
        resources={"metadata": {"path": str(LESSONS)}},
    )
    with client.setup_kernel():
        assert client.km is not None
        kernel = psutil.Process(client.km.provisioner.process.pid)  # type: ignore[union-attr]
        before = listening_ports(kernel)  # the kernel's own ZeroMQ ports
        for index, cell in enumerate(notebook.cells):
            client.execute_cell(cell, index)
        probe = probe_of(notebook.cells[-1])
        lab_ports, lab_pids = set(probe["ports"]), set(probe["pids"])
        leaked_ports = listening_ports(kernel) - before - lab_ports
        leaked_processes = [
            f"{child.pid} {child.name()}" for child in kernel.children(recursive=True) if child.pid not in lab_pids
        ]
        closed = [port for port in lab_ports if not accepts_connections(port)]
        assert not closed, f"after Run All the lab should serve on every port; closed: {closed} of {probe['ports']}"
        assert all(running(pid) for pid in lab_pids)

    lesson = notebook.cells[1 : 1 + lesson_cells]
    trouble = [
        f"cell {index}: {output.text}"
        for index, cell in enumerate(lesson)
        for output in cell.get("outputs", [])
        if output.output_type == "stream" and output.name == "stderr" and TROUBLE.search(output.text)
    ]
    errors = [
        f"cell {index}: {output.ename}"
        for index, cell in enumerate(notebook.cells)
        for output in cell.get("outputs", [])
        if output.output_type == "error"
    ]
    assert not errors, errors
    assert not trouble, "\n".join(trouble)
    # After Run All, the lesson's lab is alive: a learner can go on experimenting with it.
    assert probe["status"] == 200, f"a request through the lab's balancer after Run All got {probe['status']}"
    assert "stopped" not in probe["header"], f"the panel says {probe['header']!r}"
    assert probe["click_errors"] == [], probe["click_errors"]
    assert not leaked_ports, f"{path.name} left servers listening on ports {sorted(leaked_ports)} (not its lab's)"
    assert not leaked_processes, f"{path.name} left processes running: {leaked_processes}"
    # Shutting the kernel down stopped the lab: no port still accepts, no instance process still runs.
    assert not [port for port in lab_ports if accepts_connections(port)], "the lab's ports outlived the kernel"
    assert not [pid for pid in lab_pids if running(pid)], "the lab's processes outlived the kernel"
    assert probe["figure_problems"] == [], probe["figure_problems"]
    assert raw_reprs(notebook) == []


def test_lesson_00s_prediction_hint_says_what_the_run_showed(no_child_processes: None) -> None:
    """A learner who locked in a wrong guess gets a hint true for this run, not "where do the red bars come from?"
    when nothing failed. Runs lesson 00 up to its comparison, with "most" locked in as the guess."""
    notebook = nbformat.read(LESSONS / "00_welcome.ipynb", as_version=4)
    predict_at = next(i for i, cell in enumerate(notebook.cells) if "guess = predict(" in cell.source)
    compare_at = next(i for i, cell in enumerate(notebook.cells) if "guess.compare(measured)" in cell.source)
    cells = notebook.cells[: predict_at + 1]
    cells.append(nbformat.v4.new_code_cell("guess.guess(choices[2])  # what a learner clicks: 'most'"))
    cells += notebook.cells[predict_at + 1 : compare_at + 1]
    cells.append(
        nbformat.v4.new_code_cell(
            'import json\nprint("SPOFKIT-PROBE " + json.dumps({"failed": report.failed, "requests": report.requests}))'
        )
    )
    notebook.cells = cells
    client = NotebookClient(
        notebook, kernel_name="python3", timeout=CELL_TIMEOUT, resources={"metadata": {"path": str(LESSONS)}}
    )
    client.execute()
    run = probe_of(notebook.cells[-1])
    # What the learner sees: the comparison cell's feedback box.
    shown = [output.data["text/html"] for output in notebook.cells[-2].outputs if "text/html" in output.get("data", {})]
    assert len(shown) == 1
    box = html.unescape(shown[0])
    assert "Not quite" in box  # "most" of the requests never fail here
    assert "red bars" not in box
    if run["failed"] == 0:
        assert "not one request failed: section 7 below shows what the balancer did instead" in box
    else:
        assert f"{run['failed']} of {run['requests']} failed" in box


DOCS = LESSONS.parent / "docs"


def test_lesson_07_without_root_says_why_and_plots_the_recorded_figures(no_child_processes: None) -> None:
    """A learner who cannot create network namespaces gets, instead of the experiment, why not, what it would show,
    and the figures of docs/split_brain.md — the same figures the doc has. Runs lesson 07's split brain cells with
    ``can_run_netns`` saying no."""
    notebook = nbformat.read(LESSONS / "07_balancer_pair.ipynb", as_version=4)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    experiment = next(i for i, cell in enumerate(code_cells) if "can_run_netns()" in cell.source)
    refusal = "it needs root, and this test runs the lesson as if it had none"
    notebook.cells = [
        nbformat.v4.new_code_cell(CHECK_FIGURES),
        nbformat.v4.new_code_cell(
            f"import spofkit.netns\nspofkit.netns.can_run_netns = lambda ip='ip': (False, {refusal!r})"
        ),
        code_cells[0],  # the imports and helpers
        code_cells[experiment - 1],  # the prediction before it
        code_cells[experiment],
        code_cells[experiment + 1],  # the plot
        nbformat.v4.new_code_cell(
            "import json\nprint('SPOFKIT-PROBE ' + json.dumps("
            "{'phases': phases, 'source': source, 'figure_problems': _spofkit_figure_problems}))"
        ),
    ]
    client = NotebookClient(
        notebook, kernel_name="python3", timeout=CELL_TIMEOUT, resources={"metadata": {"path": str(LESSONS)}}
    )
    client.execute()
    probe = probe_of(notebook.cells[-1])
    printed = "".join(output.get("text", "") for output in notebook.cells[4].outputs if output.output_type == "stream")
    assert f"This machine cannot run the experiment: {refusal}." in printed
    assert WHAT_IT_SHOWS in printed
    assert "running the experiment" not in printed  # it did not try
    assert probe["source"] == "recorded in docs/split_brain.md"
    documented = (DOCS / "split_brain.md").read_text()
    assert sorted(probe["phases"]) == ["a", "b", "c", "d"]
    for name, (title, from_a1, from_a2, errors) in probe["phases"].items():
        failed = ", ".join(f"{kind} {count}" for kind, count in sorted(errors.items())) or "none"
        assert f"({name}) {title}" in documented
        assert f"answered by lb1 (a1) {from_a1}, lb2 (a2) {from_a2}; failed: {failed}" in documented, name
    assert probe["figure_problems"] == []
    assert raw_reprs(notebook) == []


def test_lesson_09_shows_the_storm_end_only_with_a_bound_and_the_live_run_confirms_the_edge(
    no_child_processes: None,
) -> None:
    """What lesson 09 tells the learner is what its runs showed: read back from the executed notebook."""
    notebook = nbformat.read(LESSONS / "09_capacity_and_overload.ipynb", as_version=4)
    client = NotebookClient(
        notebook, kernel_name="python3", timeout=CELL_TIMEOUT, resources={"metadata": {"path": str(LESSONS)}}
    )
    client.execute()
    printed = "\n".join(
        output.text for cell in notebook.cells for output in cell.get("outputs", []) if output.output_type == "stream"
    )
    assert "ended the storm by 6 s: retry budget 10 %, load shedding (queue 20), no retries\n" in printed, printed
    assert "after the crash 0" in printed and "without the crash 450" in printed, printed
    assert "the live run confirms the edge" in printed, printed
    failed_at_70 = re.search(r"client errors\s+0\s+(\d+)", printed)
    assert failed_at_70 is not None and int(failed_at_70[1]) > 0, printed
    # "Near the edge it is luck": none of ten seeds fails at 63 %, some at 67 %, more at 70 %.
    edge = re.search(r"runs that failed requests, of 10 seeds: at 63 % (\d+), at 67 % (\d+), at 70 % (\d+)", printed)
    assert edge is not None, printed
    assert int(edge[1]) == 0 < int(edge[2]) < int(edge[3]), edge[0]
    # "the median took about twice as long, p99 rose by about 40 %" while b was gone at 60 %.
    latency = re.search(r"without the crash: p50 (\d+) ms, p99 (\d+) ms; with it: p50 (\d+) ms, p99 (\d+) ms", printed)
    assert latency is not None, printed
    calm_p50, calm_p99, p50, p99 = (int(value) for value in latency.groups())
    assert 1.6 <= p50 / calm_p50 <= 2.4 and 1.25 <= p99 / calm_p99 <= 1.55, latency[0]
    widgets = [
        output.data["text/plain"]
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if output.output_type in ("display_data", "execute_result") and "text/plain" in output.get("data", {})
    ]
    assert sum(text.startswith("Timeline(") for text in widgets) == 2, "the two timelines are shown"


# Run after lesson 10, a cell each: the widget's controls changed as a learner changes them. A plot drawn in the
# widget reaches its `outputs` once the cell has ended (the front end sends it back), so each cell looks at what the
# cell before it drew; a redraw that failed would leave the last plot in place.
LESSON_10_WIDGET_STEPS = [
    """
def _last_image():
    images = [output["data"]["image/png"] for output in plot.outputs if "image/png" in output.get("data", {})]
    return images[-1] if images else None


_seen = []
""",
    *[
        f"_seen.append(_last_image())\ncopies_slider.value, needed_slider.value, zones_choice.value = {setting!r}"
        for setting in ((4, 2, "all in one zone"), (2, 1, "one zone each"), (1, 1, "no zones"))
    ],
]

# Run last: the numbers lesson 10's text makes claims about.
LESSON_10_PROBE = """
import json as _json

_seen.append(_last_image())
print("SPOFKIT-PROBE " + _json.dumps({
    "copies": {n: [formula, d.low, d.high] for n, (formula, d) in rows.items()},
    "zones": {layout: [formula, d.low, d.high] for layout, (formula, d) in zone_rows.items()},
    "independent_formula": independent_formula,
    "formulas": formulas,
    "replicated": {name: [d.low, d.high] for name, d in replicated.items()},
    "plan": expected, "simulated": simulated.availability, "live": live.availability, "live_requests": live.requests,
    "widget": {"images": len([image for image in _seen if image]), "different": len(set(_seen))},
    "figure_problems": _spofkit_figure_problems,
}))
"""


def test_lesson_10_shows_what_its_text_claims_and_its_widget_redraws(no_child_processes: None) -> None:
    """Lesson 10's prose says the formula is inside the simulated intervals for independent copies, outside for
    copies in one zone (for the failure plans and through the whole lab), and that the live run lands on the plan.
    The run checks each claim against the numbers the notebook printed from, and drives the widget's controls."""
    notebook = nbformat.read(LESSONS / "10_availability_at_scale.ipynb", as_version=4)
    notebook.cells.insert(0, nbformat.v4.new_code_cell(CHECK_FIGURES))
    notebook.cells += [nbformat.v4.new_code_cell(step) for step in LESSON_10_WIDGET_STEPS]
    notebook.cells.append(nbformat.v4.new_code_cell(LESSON_10_PROBE))
    client = NotebookClient(
        notebook, kernel_name="python3", timeout=CELL_TIMEOUT, resources={"metadata": {"path": str(LESSONS)}}
    )
    client.execute()
    probe = probe_of(notebook.cells[-1])
    for copies, (formula, low, high) in probe["copies"].items():
        assert max(low, 0) <= formula <= high, f"{copies} copies: {formula} h not in {low}..{high}"
    independent = probe["independent_formula"]
    formula, low, high = probe["zones"]["all 3 in one zone"]
    assert independent < low, "1 - (1 - A)^3 should be below what a zone costs"
    assert low <= formula <= high, "the zoned formula should be inside the simulated interval"
    for layout in ("independent (no zones)", "one in each of 3 zones"):
        formula, low, high = probe["zones"][layout]
        assert max(low, 0) <= formula <= high and max(low, 0) <= independent <= high, layout
    (plain_low, plain_high), (zone_low, zone_high) = probe["replicated"].values()
    plain, zoned = probe["formulas"]["1 − (1 − A)²"], probe["formulas"]["with the zone"]
    assert plain_low <= plain <= plain_high and not zone_low <= plain <= zone_high
    assert zone_low <= zoned <= zone_high
    assert probe["plan"] < 0.99, "the live plan should have both instances down for a while"
    assert probe["simulated"] == pytest.approx(probe["plan"], abs=0.02)
    assert probe["live"] == pytest.approx(probe["plan"], abs=0.05), "the live clients should see the plan"
    assert probe["live_requests"] >= 300
    assert probe["widget"] == {"images": 4, "different": 4}, "each change of the controls draws a new plot"
    assert probe["figure_problems"] == []


# --- lesson 10's widget, as a learner sees it ----------------------------------------------------------

LESSON_10_SCREENSHOTS = Path(os.environ.get("SPOFKIT_SCREENSHOTS", "/tmp/spofkit-widgets")) / "lesson10"


def lesson_10_widget_notebook(folder: Path) -> str:
    """The cells lesson 10's widget needs (imports, the instances, the year simulation, the widget), as a notebook."""
    lesson = nbformat.read(LESSONS / "10_availability_at_scale.ipynb", as_version=4)
    wanted = ("import ipywidgets", "own = FailureProcess(", "def simulated_years(", "def explore(")
    cells = [cell for cell in lesson.cells if cell.cell_type == "code" and any(w in cell.source for w in wanted)]
    assert len(cells) == len(wanted), "lesson 10's widget cells were not found"
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    notebook.cells = [nbformat.v4.new_code_cell(cell.source) for cell in cells]
    nbformat.write(notebook, folder / "lesson10_widget.ipynb")
    return "lesson10_widget.ipynb"


def redrawn(widget: Any, seen: set[str | None]) -> str:
    """Wait until the widget shows one plot, and not one of those ``seen`` before; return its image's address."""
    from conftest import wait_until

    images = widget.locator("img")

    def new_plot() -> str | None:
        if images.count() != 1:
            return None  # cleared, about to be drawn again
        source = images.first.get_attribute("src")
        return source if source and source not in seen else None

    return str(wait_until(new_plot, 30.0, "a new plot in lesson 10's widget"))


def test_lesson_10_widget_fits_and_redraws_in_chromium(tmp_path: Path) -> None:
    """In JupyterLab in headless Chromium, at 1280 and 900 px: no control of the widget is cut or overlaps, and
    dragging the copies slider or picking a zone layout draws a new plot (the image changes)."""
    from browser import CHROMIUM, CHROMIUM_ARGS, drag_slider, jupyterlab_serving, measure, open_notebook, run_all_cells
    from playwright.sync_api import expect, sync_playwright

    root = tmp_path / "lab"
    root.mkdir()
    name = lesson_10_widget_notebook(root)
    LESSON_10_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    with jupyterlab_serving(root) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            notebook = open_notebook(page, server, name)
            run_all_cells(page)
            widget = notebook.locator(".jp-CodeCell").last.locator(".jp-OutputArea .widget-vbox").first
            image = widget.locator("img").first
            expect(image).to_be_visible(timeout=90_000)
            for width in (1280, 900):
                page.set_viewport_size({"width": width, "height": 800})
                problems += [f"at {width} px: {problem}" for problem in measure(widget)]
                widget.screenshot(path=str(LESSON_10_SCREENSHOTS / f"{width}-explorer.png"))
            seen = {image.get_attribute("src")}
            copies = widget.locator(".widget-slider").filter(has_text="copies").first
            assert drag_slider(page, copies, 1.0) == "6"
            # A drag moves through 4 and 5 on its way to 6, each a plot of its own, with its settings printed above.
            expect(widget).to_contain_text("at least 1 of 6 up, no zones", timeout=30_000)
            seen.add(redrawn(widget, seen))
            widget.locator("select").first.select_option(label="all in one zone")
            expect(widget).to_contain_text("at least 1 of 6 up, all in one zone", timeout=30_000)
            redrawn(widget, seen)
            expect(image).to_be_visible(timeout=30_000)
            widget.screenshot(path=str(LESSON_10_SCREENSHOTS / "900-explorer-zone.png"))
        finally:
            browser.close()
    assert not problems, "what a learner would see wrong:\n" + "\n".join(problems)
