"""Every spofkit widget, measured as a learner sees it: JupyterLab in headless Chromium, at two widths.

A small notebook made in a temporary folder shows each kind of widget on a real lab (three live instances on
127.0.0.1): the ClusterPanel (and a second one, of a lab with a pair of balancers and instances with a capacity,
whose rows say how full each is), a ``predict`` with choices
(lesson 00's answers after one that wraps) and one with a number, an ExperimentRunner, a HealthExplorer and a
``progress_bar``. The test runs it from JupyterLab's Run menu and then, at 1280x800 and again at 900x800 (the
file browser left open, as a learner has it):

- **measures** each widget in the page (``browser.MEASURE``): no text of a button, label, checkbox, radio
  option, readout or dropdown option is cut (``scrollWidth <= clientWidth``; a dropdown's options against its
  box), no two boxes side by side overlap, no radio option's text spills out of its own box, no cell of the
  panel's tables (instances, balancers) wraps, no log line breaks inside a word, every slider's track is wider
  than 100 px, nothing sticks out past the cell's output;
- **uses** them with the mouse: clicks the second radio option's circle at 1280 px, and at 900 px the fourth's
  text, the third's circle and the second's circle, each time checking that the one clicked is the one
  selected; locks the guess in and reads what the kernel echoes; types a number guess; crashes and recovers
  ``b`` with the panel's buttons; drags the panel's load slider to 30 % and checks the value lands there (and
  that the lab's header shows that load), later back to 0 (load off); picks ``least_connections`` in the
  strategy menu (the header shows the lab took it), then the learner's own strategy ``mine``, which no command
  can carry by name: the panel shows the refusal in its output and the menu shows the lab's strategy again;
  presses Run on the ExperimentRunner and waits for its report and plot;
- on a second panel, of a lab with a pair of balancers: crashes ``lb1`` from its row and waits for the page
  to show ``lb2`` MASTER holding the service address (and ``lb1`` crashed, STOPPED), recovers ``lb1``; at
  900 px presses **rolling restart**, sees every deploy button disabled, each instance's steps reach ``done``
  and the buttons enabled again; then cuts ``lb1``'s adverts and measures the panel in that split brain
  (``lb2`` blocked, the summary and the note saying why), and heals it.

Every control of a widget sends a command to ``lab.apply``: what the header shows is the lab's answer.

A second, small notebook (``busy_kernel.ipynb``) makes the race a loaded machine causes on purpose: the kernel
takes its time over the learner's first answer while the learner picks another and presses **Lock in**. The
browser sends a widget's changes one at a time (the next waits until the kernel has handled the last), but a
button's click at once, so the click reaches the kernel before the last answer does: the prediction must still
be the answer the learner saw when pressing Lock in, for a choice and for a number.

Screenshots of each widget at each width are saved in ``/tmp/spofkit-widgets/`` (``<width>-<widget>.png``), or
in the folder ``SPOFKIT_SCREENSHOTS`` names (two checkouts testing at once on one machine would mix theirs).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    JupyterLab,
    choose,
    drag_slider,
    jupyterlab_serving,
    measure,
    open_notebook,
    run_all_cells,
)
from playwright.sync_api import Locator, Page, expect, sync_playwright

from spofkit.widgets.cluster_panel import LOAD_SLIDER_MAX
from spofkit.widgets.deploys import DEPLOYS

SCREENSHOTS = Path(os.environ.get("SPOFKIT_SCREENSHOTS", "/tmp/spofkit-widgets"))
NOTEBOOK = "widgets.ipynb"
WIDTHS = (1280, 900)
HEIGHT = 800
# Lesson 00's answers, after one long enough to wrap onto a second line at both widths: a wrapped answer is
# what used to spill over the next one.
CHOICES = [
    "all of them, and more: every request fails while b is down, because the balancer keeps sending requests "
    "to b until its health checks fail three times in a row and the checker marks it down",
    "none: the balancer hides the crash",
    "some: about a third of them, for a second or two",
    "most: every request b was given, until b is back",
]

CELLS = {
    "setup": (
        "from spofkit.lab import Lab\n"
        "from spofkit.strategies import RoundRobin\n"
        "from spofkit.widgets import ClusterPanel, ExperimentRunner, HealthExplorer, predict, progress_bar\n\n\n"
        "class Mine(RoundRobin):\n"
        "    name = 'mine'  # a learner's own strategy, as in lesson 06: the panel's menu lists it\n\n\n"
        "lab = await Lab.start(instances=3, strategy=Mine())"
    ),
    "panel": "panel = ClusterPanel(lab)\npanel",
    "pair": (
        "from spofkit.capacity import Capacity\n"
        "from spofkit.health import HealthSettings\n\n"
        "quick = HealthSettings(interval=0.2, timeout=0.15, rise=2, fall=2)\n"
        "workers = Capacity(concurrency=4, queue=2, work_ms=5)\n"
        "pair_lab = await Lab.start(3, balancers=2, health=quick, capacity=workers)\n"
        "pair_panel = ClusterPanel(pair_lab)\npair_panel"
    ),
    "choices": f"guess = predict('How many requests will the client see fail?', {CHOICES!r})\nguess",
    "number": "number = predict('How many seconds after b crashes will it be marked DOWN?', unit='s')\nnumber",
    "runner": (
        "runner = ExperimentRunner(lab, rate=50, duration=2, fault='crash', instance='c', fault_at=0.5,\n"
        "                          title='c crashes under load')\nrunner"
    ),
    "explorer": "HealthExplorer(interval=0.5, timeout=0.3, rise=2, fall=3, probe_failure_probability=0.05)",
    "progress": "bar = progress_bar('with health checks')\nbar(0.5)",
}
CAPACITY_SHOWN = re.compile(r"busy [0-4]/4 · queue [0-2] · shed \d+")
# Each widget's element, found in its own cell's output (the widgets add these classes; the progress bar is
# ipywidgets' own).
WIDGETS = {
    "panel": ".spofkit-cluster-panel",
    "pair": ".spofkit-cluster-panel",
    "choices": ".spofkit-prediction",
    "number": ".spofkit-prediction",
    "runner": ".spofkit-experiment",
    "explorer": ".spofkit-health-explorer",
    "progress": ".widget-hprogress",
}


# The busy kernel: it handles each predict's first change of answer only once the test has made a file (or after
# a deadline, should the test die first), and the test makes it once the learner has clicked on: the slow kernel
# of a loaded machine, made certain. (The kernel still handles other widgets' messages meanwhile.)
BUSY_NOTEBOOK = "busy_kernel.ipynb"
BUSY_CELLS = {
    "setup": (
        "import pathlib\n"
        "import time\n\n"
        "from spofkit.widgets import predict\n\n\n"
        "def busy_until(release):\n"
        "    def handle(change):\n"
        "        deadline = time.monotonic() + 60\n"
        "        while not pathlib.Path(release).exists() and time.monotonic() < deadline:\n"
        "            time.sleep(0.05)\n"
        "    return handle"
    ),
    "choices": (
        "guess = predict('Which?', ['none', 'some', 'most', 'all'])\n"
        "guess.input.observe(busy_until('release-choices'), 'value')\nguess"
    ),
    "number": (
        "number = predict('How many seconds?', unit='s')\n"
        "number.input.observe(busy_until('release-number'), 'value')\nnumber"
    ),
}


def make_notebook(folder: Path, name: str = NOTEBOOK, cells: dict[str, str] = CELLS) -> Path:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in cells.values()]
    path = folder / name
    nbformat.write(notebook, path)
    return path


@pytest.fixture
def jupyterlab(tmp_path: Path) -> Iterator[JupyterLab]:
    root = tmp_path / "lab"
    root.mkdir()
    make_notebook(root)
    make_notebook(root, BUSY_NOTEBOOK, BUSY_CELLS)
    with jupyterlab_serving(root) as server:
        yield server


def test_every_widget_fits_and_responds_in_chromium(jupyterlab: JupyterLab) -> None:
    assert Path(CHROMIUM).exists(), "install Debian's chromium package (apt-get install chromium)"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS.glob("*.png"):
        old.unlink()
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": WIDTHS[0], "height": HEIGHT})
            try:
                notebook = open_notebook(page, jupyterlab, NOTEBOOK)
                run_all_cells(page)
                cells = notebook.locator(".jp-CodeCell")
                cell_of = {name: cells.nth(index) for index, name in enumerate(CELLS)}
                widgets = {name: cell_of[name].locator(selector).first for name, selector in WIDGETS.items()}
                for widget in widgets.values():
                    expect(widget).to_be_visible(timeout=90_000)
                expect(widgets["panel"].locator(".spofkit-row-c")).to_contain_text("UP", timeout=30_000)
                expect(widgets["pair"].locator(".spofkit-balancer-row-lb1")).to_contain_text("holds it", timeout=30_000)
                # The pair's instances have four workers and a queue of two: their rows say how full they are.
                for name in "abc":
                    expect(widgets["pair"].locator(f".spofkit-row-{name}")).to_contain_text(CAPACITY_SHOWN)
                expect(widgets["pair"].get_by_text("capacity", exact=True)).to_be_visible()  # its heading
                # No limit, nothing shown (innerText: what is on the screen, not a hidden heading's text).
                expect(widgets["panel"]).not_to_contain_text(re.compile(r"busy \d|capacity"), use_inner_text=True)

                problems += measure_all(widgets, WIDTHS[0])
                use_widgets_wide(page, widgets)
                page.set_viewport_size({"width": WIDTHS[1], "height": HEIGHT})
                problems += measure_all(widgets, WIDTHS[1])
                use_widgets_narrow(page, widgets)
                problems += measure_split_brain(widgets["pair"], WIDTHS[1])
            except BaseException:
                print("measured so far:", *problems, sep="\n")
                raise
            finally:
                page.screenshot(path=str(SCREENSHOTS / "page.png"))
        finally:
            browser.close()
    assert not problems, "what a learner would see wrong:\n" + "\n".join(problems)


def test_lock_in_takes_the_answer_on_screen_while_the_kernel_is_busy(jupyterlab: JupyterLab) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": WIDTHS[0], "height": HEIGHT})
            try:
                notebook = open_notebook(page, jupyterlab, BUSY_NOTEBOOK)
                run_all_cells(page)
                cells = notebook.locator(".jp-CodeCell")
                choices, number = (cells.nth(index).locator(".spofkit-prediction").first for index in (1, 2))
                expect(choices).to_be_visible(timeout=90_000)
                expect(number).to_be_visible(timeout=90_000)
                expect(page.get_by_text("Python 3 (ipykernel) | Idle").first).to_be_visible(timeout=60_000)

                choose(page, choices, 1, "text")  # "some": the kernel is busy with it until released
                choose(page, choices, 2, "circle")  # "most": the browser holds it back meanwhile
                choices.locator("button").click()
                (jupyterlab.root / "release-choices").touch()
                expect(choices).to_contain_text("Locked in: most", timeout=30_000)

                field = number.locator("input")
                field.fill("1.5")
                field.press("Enter")  # the kernel is busy with 1.5 until released
                field.fill("2.5")  # sent when the field loses the focus, to the click on Lock in
                number.locator("button").click()
                (jupyterlab.root / "release-number").touch()
                expect(number).to_contain_text("Locked in: 2.5 s", timeout=30_000)
            finally:
                page.screenshot(path=str(SCREENSHOTS / "busy-kernel.png"))
        finally:
            browser.close()


def use_widgets_wide(page: Page, widgets: dict[str, Locator]) -> None:
    choices = widgets["choices"]
    choose(page, choices, 1, "circle")

    panel = widgets["panel"]
    row_b = panel.locator(".spofkit-row-b")
    row_b.locator(".spofkit-crash-b").click()  # fills the event log with long lines, shows DOWN
    expect(row_b).to_contain_text("DOWN", timeout=30_000)
    row_b.locator(".spofkit-recover-b").click()
    expect(row_b).to_contain_text("UP", timeout=30_000)
    expect(panel).to_contain_text("b marked UP", timeout=15_000)
    expect(panel.locator(".spofkit-front-door")).to_contain_text("a single point of failure")
    crash_lb1_and_watch_lb2_take_over(widgets["pair"])

    load = panel.locator(".widget-slider")
    header = panel.locator(".widget-html").first
    shown = drag_slider(page, load, 0.3)
    assert shown.isdigit() and abs(int(shown) - 0.3 * LOAD_SLIDER_MAX) <= 20, (
        f"dragged the load slider to 30% of its track ({0.3 * LOAD_SLIDER_MAX:g} req/s), it shows {shown!r}"
    )
    expect(header).to_contain_text(f"load {shown} req/s", timeout=10_000)  # the lab itself took it

    # The strategy menu sends SetStrategy; the learner's own strategy cannot travel by name, and the panel
    # says so in its output and shows the strategy the lab really uses.
    strategy = panel.locator("select").first
    strategy.select_option(label="least_connections")
    expect(header).to_contain_text("strategy least_connections", timeout=10_000)
    strategy.select_option(label="mine")
    expect(panel).to_contain_text("strategy mine refused: 'mine' is a strategy of your own", timeout=10_000)
    expect(strategy.locator("option:checked")).to_have_text("least_connections", timeout=10_000)
    expect(header).to_contain_text("strategy least_connections")

    number = widgets["number"]
    field = number.locator("input")
    field.fill("1.5")
    field.press("Enter")
    number.locator("button").click()
    expect(number).to_contain_text("Locked in: 1.5 s", timeout=10_000)

    runner = widgets["runner"]
    runner.locator("button", has_text="Run").click()
    expect(runner).to_contain_text("done: availability", timeout=60_000)
    expect(runner.locator("img")).to_be_visible(timeout=10_000)


def crash_lb1_and_watch_lb2_take_over(pair: Locator) -> None:
    """Crash the master from its row: the backup's row shows it MASTER and holding the address, the dead one
    STOPPED; then recover lb1, which (preempt on) takes the address back."""
    lb1, lb2 = pair.locator(".spofkit-balancer-row-lb1"), pair.locator(".spofkit-balancer-row-lb2")
    expect(lb2).to_contain_text("BACKUP")
    lb1.locator(".spofkit-balancer-crash-lb1").click()
    expect(lb1).to_contain_text("crashed", timeout=10_000)
    # The master-down interval (0.76 s) and a refresh (0.5 s), with room for a busy machine.
    expect(lb2).to_contain_text("MASTER", timeout=10_000)
    expect(lb2).to_contain_text("holds it", timeout=10_000)
    expect(lb1).to_contain_text("STOPPED")
    expect(pair.locator(".spofkit-front-door")).to_contain_text("front door: lb2 holds 127.0.0.1:")
    expect(pair).to_contain_text("lb2 is now MASTER: no advert from lb1")
    lb1.locator(".spofkit-balancer-recover-lb1").click()
    expect(lb1).to_contain_text("holds it", timeout=15_000)
    expect(lb2).to_contain_text("BACKUP", timeout=10_000)


def rolling_restart_from_the_page(pair: Locator) -> None:
    """Press **rolling restart**: every deploy button is disabled while it runs, the steps show, then they are
    enabled again and the summary says what it cost."""
    buttons = pair.locator(".spofkit-deploys button")
    expect(buttons).to_have_count(len(DEPLOYS))
    pair.locator(".spofkit-deploy-rolling").click()
    for index in range(len(DEPLOYS)):
        expect(buttons.nth(index)).to_be_disabled(timeout=5_000)
    steps = pair.locator(".spofkit-deploy-steps")
    for name in "abc":
        expect(steps).to_contain_text(f"{name}: done", timeout=30_000)
    expect(pair.locator(".spofkit-deploys")).to_contain_text("0 requests failed at the balancer meanwhile")
    for index in range(len(DEPLOYS)):
        expect(buttons.nth(index)).to_be_enabled(timeout=5_000)


def measure_split_brain(pair: Locator, width: int) -> list[str]:
    """Cut lb1's adverts: lb2 becomes master too and is blocked; the summary and the note say so. Measure the
    panel in that state (its longest lines), then heal it."""
    lb1, lb2 = pair.locator(".spofkit-balancer-row-lb1"), pair.locator(".spofkit-balancer-row-lb2")
    lb1.locator(".spofkit-balancer-advert_loss-lb1").click()
    expect(lb2).to_contain_text("blocked", timeout=10_000)
    front_door = pair.locator(".spofkit-front-door")
    expect(front_door).to_contain_text("split brain: lb1 and lb2 both think they are master")
    expect(front_door).to_contain_text("lb2: cannot take 127.0.0.1:")
    found = measure(pair)
    pair.screenshot(path=str(SCREENSHOTS / f"{width}-pair-split-brain.png"))
    front_door.screenshot(path=str(SCREENSHOTS / f"{width}-front-door-split-brain.png"))  # the top, unhidden
    lb1.locator(".spofkit-balancer-recover-lb1").click()
    expect(lb2).to_contain_text("BACKUP", timeout=10_000)
    return [f"{width}px pair, split brain: {problem}" for problem in found]


def use_widgets_narrow(page: Page, widgets: dict[str, Locator]) -> None:
    choices = widgets["choices"]
    choose(page, choices, 3, "text")
    choose(page, choices, 2, "circle")
    choose(page, choices, 1, "circle")
    choices.locator("button").click()
    expect(choices).to_contain_text(f"Locked in: {CHOICES[1]}", timeout=10_000)  # what the kernel received

    load = widgets["panel"].locator(".widget-slider")
    header = widgets["panel"].locator(".widget-html").first
    shown = drag_slider(page, load, 0.0)
    assert shown == "0", f"dragged the load slider to its left end, it shows {shown!r}"
    expect(header).to_contain_text("load off", timeout=10_000)

    rolling_restart_from_the_page(widgets["pair"])


def measure_all(widgets: dict[str, Locator], width: int) -> list[str]:
    """Measure every widget at this width (and take its screenshot); return what is wrong, naming where."""
    problems = []
    for name, widget in widgets.items():
        found = measure(widget)
        widget.screenshot(path=str(SCREENSHOTS / f"{width}-{name}.png"))
        problems += [f"{width}px {name}: {problem}" for problem in found]
    return problems
