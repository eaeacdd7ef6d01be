"""Every lesson notebook runs top to bottom in a fresh kernel, cleanly, and leaves nothing running.

The notebooks are found by globbing ``lessons/*.ipynb``, so a new lesson is tested as soon as it exists. Each
runs in a real ``python3`` kernel (``make setup`` installs it into the venv) with nbclient, cell by cell, so the
test can look at the kernel process between the last cell and the kernel's shutdown:

- no cell raised (nbclient stops at the first error) and nothing was written to stderr that looks like trouble;
- the kernel listens on no port it did not listen on before the first cell (the lab's servers are closed);
- the kernel has no child processes left (instances run with ``isolation="process"`` are gone);
- after shutdown, this test has no child process left (the kernel itself is gone).

The same files are also checked for what the lessons promise (issue 4): objectives, a prediction, a widget, a
plot, a seeded exercise, a recap, a teardown cell — and that they are committed without outputs.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import psutil
import pytest
from nbclient import NotebookClient

LESSONS = Path(__file__).resolve().parent.parent / "lessons"
NOTEBOOKS = sorted(LESSONS.glob("*.ipynb"))
CELL_TIMEOUT = 120  # seconds; a lesson's experiments take a few seconds each
# stderr text that means something went wrong (a warning about, say, a font cache would not match).
TROUBLE = re.compile(r"Traceback|Error|Exception|never retrieved|was destroyed but it is pending|Unclosed")


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
    last = notebook.cells[-1]
    assert last.cell_type == "code" and "teardown" in last.metadata.get("tags", [])
    assert "await lab.stop()" in last.source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs_clean_and_leaves_nothing_running(path: Path, no_child_processes: None) -> None:
    notebook = nbformat.read(path, as_version=4)
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
        leaked_ports = listening_ports(kernel) - before
        leaked_processes = [f"{child.pid} {child.name()}" for child in kernel.children(recursive=True)]

    trouble = [
        f"cell {index}: {output.text}"
        for index, cell in enumerate(notebook.cells)
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
    assert not leaked_ports, f"{path.name} left servers listening on ports {sorted(leaked_ports)}"
    assert not leaked_processes, f"{path.name} left processes running: {leaked_processes}"
