"""A real browser: JupyterLab on 127.0.0.1, lesson 00 run in headless Chromium, a widget button clicked.

This is the end-to-end path a learner takes with ``make lab``: the JupyterLab server, the widget manager in
the page, the kernel's comm channel, the lab's servers. The test

1. copies ``lessons/00_welcome.ipynb`` to a temporary folder, without its ``teardown`` cell (so the lab is still
   running when we click), and starts ``jupyter lab`` on a free port with a random token;
2. opens the notebook in Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright; Playwright's own
   browser download is not available here) and runs all cells from the Run menu;
3. waits for the ClusterPanel to render and for the last cell's output, at 1280x800;
4. measures the lesson's panel and its ``predict`` as a learner sees them (``browser.MEASURE``: nothing cut,
   overlapping, squeezed or past the output's edge), clicks the third answer's circle and then the second's,
   checks each time that the one clicked is selected, locks it in and reads the kernel's echo of that answer;
5. clicks **crash** on ``b`` and waits for the panel's row for ``b`` to show the fault and then DOWN;
6. shuts JupyterLab down through its API and then by PID, and checks the server and its kernels are gone.

A screenshot of the page is saved as ``/tmp/spofkit-lab-browser.png`` (or in the folder ``SPOFKIT_SCREENSHOTS``
names, as ``lab-browser.png``); JupyterLab's log is in pytest's output when the test fails.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    JupyterLab,
    choose,
    jupyterlab_serving,
    measure,
    open_notebook,
    run_all_cells,
)
from playwright.sync_api import Page, expect, sync_playwright

LESSON = Path(__file__).resolve().parent.parent / "lessons" / "00_welcome.ipynb"
SCREENSHOT = (
    Path(os.environ["SPOFKIT_SCREENSHOTS"]) / "lab-browser.png"
    if "SPOFKIT_SCREENSHOTS" in os.environ
    else Path("/tmp/spofkit-lab-browser.png")
)
VIEWPORT = {"width": 1280, "height": 800}  # a laptop's JupyterLab, file browser open


@pytest.fixture
def jupyterlab(tmp_path: Path) -> Iterator[JupyterLab]:
    root = tmp_path / "lessons"
    root.mkdir()
    notebook = nbformat.read(LESSON, as_version=4)
    # Keep the lab running after "Run All", so there is something to click (harmless if no cell is tagged).
    notebook.cells = [cell for cell in notebook.cells if "teardown" not in cell.metadata.get("tags", [])]
    nbformat.write(notebook, root / LESSON.name)
    with jupyterlab_serving(root) as server:
        yield server


def test_lesson_widgets_render_and_respond_in_chromium(jupyterlab: JupyterLab) -> None:
    assert Path(CHROMIUM).exists(), "install Debian's chromium package (apt-get install chromium)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            try:
                run_lesson_and_click_crash(page, jupyterlab)
            finally:
                SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(SCREENSHOT), full_page=False)
        finally:
            browser.close()
    assert jupyterlab.kernels(), "the notebook's kernel should be running until shutdown"


def run_lesson_and_click_crash(page: Page, jupyterlab: JupyterLab) -> None:
    notebook = open_notebook(page, jupyterlab, LESSON.name)
    run_all_cells(page)

    panel = notebook.locator(".spofkit-cluster-panel").first
    expect(panel).to_be_visible(timeout=90_000)
    row_b = panel.locator(".spofkit-row-b")
    expect(row_b).to_contain_text("UP", timeout=30_000)
    # The last cell checks an exercise: once its feedback shows, every experiment has finished.
    expect(notebook.locator(".spofkit-feedback").last).to_be_visible(timeout=120_000)
    expect(row_b).to_contain_text("UP", timeout=30_000)  # b was recovered after the experiment

    # The lesson's own widgets, as a learner sees them: nothing cut, overlapping or squeezed.
    guess = notebook.locator(".spofkit-prediction").first
    problems = [f"panel: {problem}" for problem in measure(panel)]
    problems += [f"prediction: {problem}" for problem in measure(guess)]
    assert not problems, "what a learner would see wrong in lesson 00:\n" + "\n".join(problems)
    choose(page, guess, 2, "circle")  # the circle beside the third answer is the third answer's
    choose(page, guess, 1, "circle")
    second = guess.locator(".widget-radio-box label").nth(1).inner_text()
    guess.locator("button", has_text="Lock in").click()
    expect(guess).to_contain_text(f"Locked in: {second}", timeout=10_000)  # what the kernel received

    row_b.locator(".spofkit-crash-b").click()
    expect(row_b).to_contain_text("crash", timeout=15_000)
    expect(row_b).to_contain_text("DOWN", timeout=30_000)
    expect(panel).to_contain_text("b marked DOWN", timeout=15_000)
    panel.scroll_into_view_if_needed()
