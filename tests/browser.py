"""Shared helpers for the browser tests: a private JupyterLab on 127.0.0.1 and headless Chromium.

* :class:`JupyterLab` starts ``jupyter lab`` on a free port with a random token, isolated from the user's
  settings and workspaces, its kernels run by the Python that runs the tests (so they import this checkout's
  spofkit, whatever kernel a copied virtualenv has installed), and :meth:`JupyterLab.stop` shuts it down
  through its API and then by PID.
* :func:`jupyterlab_serving` is the context manager the fixtures use: it prints JupyterLab's log when the test
  fails and checks that no process of the server or its kernels is left.
* :func:`open_notebook` opens a notebook in a Playwright page, accepts the kernel dialog and waits for the
  kernel to be idle; :func:`run_all_cells` runs every cell from the Run menu, as a learner does.

Chromium is Debian's ``/usr/bin/chromium``, driven by Playwright (Playwright's own browser download is not
available here).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
from conftest import wait_until
from playwright.sync_api import Locator, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


class JupyterLab:
    """A JupyterLab server of our own on 127.0.0.1, isolated from the user's settings and workspaces."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = root.parent / "jupyterlab.log"
        self.leftovers: list[int] = []
        private = root.parent / "jupyter"
        env = {
            **os.environ,
            "JUPYTER_RUNTIME_DIR": str(private / "runtime"),
            "JUPYTERLAB_SETTINGS_DIR": str(private / "settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(private / "workspaces"),
            "JUPYTER_CONFIG_DIR": str(private / "config"),
            "JUPYTER_PATH": str(private / "data"),  # searched first for kernels: the one written below
        }
        kernel = private / "data" / "kernels" / "python3"
        kernel.mkdir(parents=True, exist_ok=True)
        spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"], "language": "python"}
        (kernel / "kernel.json").write_text(json.dumps({**spec, "display_name": "Python 3 (ipykernel)"}))
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyter",
                "lab",
                "--no-browser",
                "--ip=127.0.0.1",
                f"--port={self.port}",
                "--port-retries=0",
                f"--IdentityProvider.token={self.token}",
                f"--ServerApp.root_dir={root}",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                "--LabApp.news_url=",
                "--LabApp.extension_manager=readonly",  # no look-ups on a package index
                # CI and the dev machines run as root; JupyterLab refuses that unless told.
                *(["--allow-root"] if os.geteuid() == 0 else []),
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=root,
        )

    def url(self, path: str) -> str:
        return f"{self.base}/{path}?token={self.token}"

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"jupyter lab exited early:\n{self.log_path.read_text()}")
            return server_answers(self.url("api/status"))

        wait_until(ready, timeout=90, what="JupyterLab to answer")

    def kernels(self) -> list[dict[str, object]]:
        with urllib.request.urlopen(self.url("api/kernels"), timeout=5) as response:
            return list(json.load(response))

    def stop(self) -> None:
        """Shut down through the API (kernels too), then make sure by PID: the server and its children."""
        family = [self.process.pid]
        with contextlib.suppress(psutil.NoSuchProcess):
            family += [child.pid for child in psutil.Process(self.process.pid).children(recursive=True)]
        try:
            request = urllib.request.Request(self.url("api/shutdown"), method="POST")
            urllib.request.urlopen(request, timeout=5).close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        for pid in family[1:]:  # kernels the server did not get to shut down
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()
        self.log.close()
        self.leftovers = [pid for pid in family if psutil.pid_exists(pid) and _alive(pid)]


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@contextlib.contextmanager
def jupyterlab_serving(root: Path) -> Iterator[JupyterLab]:
    """A ready JupyterLab on ``root``; its log is printed if the body fails; no process of it is left after."""
    server = JupyterLab(root)
    try:
        server.wait_ready()
        yield server
    except BaseException:
        print(server.log_path.read_text())
        raise
    finally:
        server.stop()
    assert not server.leftovers, f"JupyterLab processes still running: {server.leftovers}"


def open_notebook(page: Page, jupyterlab: JupyterLab, name: str) -> Any:
    """Open ``name`` (in the server's root) and wait for its kernel; return the notebook panel's locator."""
    page.set_default_timeout(60_000)
    page.goto(jupyterlab.url(f"lab/tree/{name}"))
    notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    expect(notebook.locator(".jp-Cell").first).to_be_visible(timeout=90_000)
    # JupyterLab may ask which kernel to start; the notebook's own (python3) is preselected: accept it.
    accept = page.locator(".jp-Dialog .jp-mod-accept")
    try:
        accept.wait_for(state="visible", timeout=10_000)
        accept.click()
    except PlaywrightTimeout:
        pass  # no dialog: the kernel was started without asking
    expect(page.locator(".jp-Dialog")).to_have_count(0)
    expect(page.get_by_text("Python 3 (ipykernel) | Idle").first).to_be_visible(timeout=90_000)
    return notebook


def run_all_cells(page: Page) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()


# --- measuring widgets as a learner sees them -------------------------------------------------------

MIN_TRACK_PX = 100

# Runs in the page on one widget's root element; returns a list of what a learner would see as wrong:
# 1. text cut short (a button's, a label's, a checkbox's, a radio option's, a readout's; a dropdown's options);
# 2. boxes side by side that overlap, a radio option's text spilling out of its box, a panel cell (an instance's
#    or a balancer's) that wraps, a log line broken inside a word;
# 3. a slider track of MIN_TRACK_PX or less;
# 4. anything past the right edge of the cell's output.
MEASURE = """
(root) => {
  const problems = [];
  const shown = (el) => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  const name = (el) => {
    const text = (el.innerText || el.textContent || '').trim().replace(/\\s+/g, ' ').slice(0, 50);
    return `<${el.tagName.toLowerCase()}.${[...el.classList].join('.')}> "${text}"`;
  };
  const box = (r) => `${Math.round(r.left)}..${Math.round(r.right)} x ${Math.round(r.top)}..${Math.round(r.bottom)}`;
  const overlap = (a, b) =>
    Math.min(a.right, b.right) - Math.max(a.left, b.left) > 1 &&
    Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top) > 1;

  // 1. Text cut short: the text is wider than the box that shows it (ipywidgets then draws an ellipsis).
  const texts = root.querySelectorAll(
    'button, .widget-label, .widget-label-basic, .widget-checkbox label, .widget-checkbox span, ' +
    '.widget-radio-box label, .widget-readout, .widget-html-content');
  for (const el of texts) {
    if (shown(el) && el.scrollWidth > el.clientWidth + 1) {
      problems.push(`text cut: ${name(el)} needs ${el.scrollWidth}px, shows ${el.clientWidth}px`);
    }
  }
  // A <select> shows its chosen option in its own box, left of the arrow: every option must fit there.
  const canvas = document.createElement('canvas').getContext('2d');
  for (const select of root.querySelectorAll('select')) {
    if (!shown(select)) continue;
    const style = getComputedStyle(select);
    canvas.font = `${style.fontStyle} ${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
    const room = select.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    for (const option of select.options) {
      const needed = canvas.measureText(option.text).width;
      if (needed > room + 1) {
        problems.push(`dropdown option cut: "${option.text}" needs ${Math.ceil(needed)}px, ` +
                      `the dropdown shows ${Math.floor(room)}px`);
      }
    }
  }
  // 2. Boxes laid side by side or stacked must not overlap: a click would land on the wrong one.
  const containers = [root, ...root.querySelectorAll('.widget-box, .widget-radio-box, .widget-inline-hbox')];
  for (const container of containers) {
    const children = [...container.children].filter(shown);
    for (let i = 0; i < children.length; i++) {
      for (let j = i + 1; j < children.length; j++) {
        const a = children[i].getBoundingClientRect(), b = children[j].getBoundingClientRect();
        if (overlap(a, b)) {
          problems.push(`overlap: ${name(children[i])} [${box(a)}] and ${name(children[j])} [${box(b)}]`);
        }
      }
    }
  }
  // A radio option's text must stay inside its own box (wrapped text spilling into the next one is what
  // makes a click on the second answer pick the third).
  for (const label of root.querySelectorAll('.widget-radio-box label')) {
    const range = document.createRange();
    range.selectNodeContents(label);
    const text = range.getBoundingClientRect(), own = label.getBoundingClientRect();
    if (text.bottom > own.bottom + 1 || text.top < own.top - 1 || text.right > own.right + 1) {
      problems.push(`radio text spills out of its box: ${name(label)} text [${box(text)}] box [${box(own)}]`);
    }
  }
  // The panel's figures are a table (an instance's row, a balancer's row): each cell on one line, under its heading.
  const cells = '[class*="spofkit-row-"] .widget-html-content, [class*="spofkit-balancer-row-"] .widget-html-content';
  for (const cell of root.querySelectorAll(cells)) {
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    const tops = [];
    for (let text = walker.nextNode(); text; text = walker.nextNode()) {
      const range = document.createRange();
      range.selectNodeContents(text);
      tops.push(...[...range.getClientRects()].map((rect) => rect.top));
    }
    if (tops.length && Math.max(...tops) - Math.min(...tops) > 8) {
      problems.push(`a table cell wraps onto a second line: ${name(cell)}`);
    }
  }
  // A log (the panel's events, a deploy's steps) wraps between words, never inside one that would fit a line.
  for (const pre of root.querySelectorAll('pre')) {
    if (!shown(pre)) continue;
    const room = pre.getBoundingClientRect().width;
    const walker = document.createTreeWalker(pre, NodeFilter.SHOW_TEXT);
    for (let text = walker.nextNode(); text; text = walker.nextNode()) {
      for (const word of text.data.matchAll(/\\S+/g)) {
        const range = document.createRange();
        range.setStart(text, word.index);
        range.setEnd(text, word.index + word[0].length);
        const pieces = [...range.getClientRects()];
        const lines = new Set(pieces.map((rect) => Math.round(rect.top)));
        // Its pieces side by side: a word that would fit on one line (a longer one must break somewhere).
        const wide = pieces.reduce((sum, rect) => sum + rect.width, 0);
        if (lines.size > 1 && wide < room) {
          problems.push(`a word is broken across lines: "${word[0]}" in ${name(pre)}`);
        }
      }
    }
  }
  // 3. A slider's track must be long enough to drag along.
  for (const track of root.querySelectorAll('.widget-slider .noUi-target')) {
    const width = track.getBoundingClientRect().width;
    if (shown(track.closest('.widget-slider')) && width <= %(min_track)d) {
      problems.push(`slider track too short: ${name(track.closest('.widget-slider'))} is ${Math.round(width)}px`);
    }
  }
  // 4. Nothing past the right edge of the cell's output, where it would be cut off or need a scroll bar.
  const output = root.closest('.jp-OutputArea-output') || root;
  const edge = output.getBoundingClientRect().right;
  for (const el of [root, ...root.querySelectorAll('.jupyter-widgets, button, img, table')]) {
    const right = el.getBoundingClientRect().right;
    if (shown(el) && right > edge + 1) {
      problems.push(`past the output's right edge (${Math.round(edge)}px): ${name(el)} ends at ${Math.round(right)}px`);
    }
  }
  return problems;
}
""".replace("%(min_track)d", str(MIN_TRACK_PX))

# Which radio option is checked, as the browser shows it (-1: none).
CHECKED_OPTION = """
(root) => [...root.querySelectorAll('.widget-radio-box input[type=radio]')].findIndex((input) => input.checked)
"""
# Where a person clicks to choose option ``index``: on its text (the middle of its first line), or on the
# radio circle drawn beside that line (the circle nearest to it, whichever option's it really is).
CLICK_POINT = """
([root, index, where]) => {
  const label = root.querySelectorAll('.widget-radio-box label')[index];
  const range = document.createRange();
  range.selectNodeContents(label);
  const line = range.getClientRects()[0];
  const middle = line.top + line.height / 2;
  if (where === 'text') return {x: line.left + line.width / 2, y: middle};
  const circles = [...root.querySelectorAll('.widget-radio-box input[type=radio]')].map((input) => {
    const r = input.getBoundingClientRect();
    return {x: r.left + r.width / 2, y: r.top + r.height / 2};
  });
  const distance = (c) => Math.hypot(c.y - middle, Math.max(0, c.x - line.left));
  return circles.reduce((best, c) => (distance(c) < distance(best) ? c : best));
}
"""


def measure(widget: Locator) -> list[str]:
    """What a learner would see wrong in ``widget`` (scrolled into view first), one sentence each."""
    widget.scroll_into_view_if_needed()
    return list(widget.evaluate(MEASURE))


def choose(page: Page, prediction: Locator, index: int, where: str) -> None:
    """Click option ``index`` of a ``predict`` on its ``"circle"`` or its ``"text"``, with the mouse, and check
    that it is the option the browser selects."""
    label = prediction.locator(".widget-radio-box label").nth(index)
    label.scroll_into_view_if_needed()
    point = prediction.evaluate(f"(root) => ({CLICK_POINT})([root, {index}, {where!r}])")
    page.mouse.click(point["x"], point["y"])
    checked = prediction.evaluate(CHECKED_OPTION)
    assert checked == index, (
        f"clicked the {where} of option {index + 1} ({label.inner_text()!r}), option {checked + 1} is selected"
    )


def drag_slider(page: Page, slider: Locator, fraction: float) -> str:
    """Drag the slider's handle to ``fraction`` of its track, with the mouse; return the readout's text."""
    slider.scroll_into_view_if_needed()
    track = slider.locator(".noUi-target").bounding_box()
    handle = slider.locator(".noUi-handle").bounding_box()
    assert track is not None and handle is not None, "the slider has no track or handle on screen"
    start_x, y = handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2
    page.mouse.move(start_x, y)
    page.mouse.down()
    page.mouse.move(track["x"] + fraction * track["width"], y, steps=10)
    page.mouse.up()
    return slider.locator(".widget-readout").inner_text().strip()
