"""A real browser: JupyterLab on 127.0.0.1, lesson 00 run in headless Chromium, a widget button clicked.

This is the end-to-end path a learner takes with ``make lab``: the JupyterLab server, the widget manager in
the page, the kernel's comm channel, the lab's servers. The test

1. copies ``lessons/00_welcome.ipynb`` to a temporary folder, without its ``teardown`` cell (so the lab is still
   running when we click), and starts ``jupyter lab`` on a free port with a random token;
2. opens the notebook in Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright; Playwright's own
   browser download is not available here) and runs all cells from the Run menu;
3. waits for the ClusterPanel to render and for the last cell's output, clicks **crash** on ``b`` and waits for
   the panel's row for ``b`` to show the fault and then DOWN;
4. shuts JupyterLab down through its API and then by PID, and checks the server and its kernels are gone.

A screenshot of the page is saved as ``/tmp/spofkit-lab-browser.png``; JupyterLab's log is in pytest's output
when the test fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nbformat
import psutil
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect, sync_playwright

LESSON = Path(__file__).resolve().parent.parent / "lessons" / "00_welcome.ipynb"
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
SCREENSHOT = Path("/tmp/spofkit-lab-browser.png")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(condition, timeout: float, what: str, interval: float = 0.2) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


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
        private = root.parent / "jupyter"
        env = {
            **os.environ,
            "JUPYTER_RUNTIME_DIR": str(private / "runtime"),
            "JUPYTERLAB_SETTINGS_DIR": str(private / "settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(private / "workspaces"),
            "JUPYTER_CONFIG_DIR": str(private / "config"),
        }
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


@pytest.fixture
def jupyterlab(tmp_path: Path) -> Iterator[JupyterLab]:
    root = tmp_path / "lessons"
    root.mkdir()
    notebook = nbformat.read(LESSON, as_version=4)
    # Keep the lab running after "Run All", so there is something to click.
    notebook.cells = [cell for cell in notebook.cells if "teardown" not in cell.metadata.get("tags", [])]
    nbformat.write(notebook, root / LESSON.name)
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


def test_lesson_widgets_render_and_respond_in_chromium(jupyterlab: JupyterLab) -> None:
    assert Path(CHROMIUM).exists(), "install Debian's chromium package (apt-get install chromium)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            try:
                run_lesson_and_click_crash(page, jupyterlab)
            finally:
                page.screenshot(path=str(SCREENSHOT), full_page=False)
        finally:
            browser.close()
    assert jupyterlab.kernels(), "the notebook's kernel should be running until shutdown"


def run_lesson_and_click_crash(page, jupyterlab: JupyterLab) -> None:  # type: ignore[no-untyped-def]
    page.set_default_timeout(60_000)
    page.goto(jupyterlab.url(f"lab/tree/{LESSON.name}"))
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

    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()

    panel = notebook.locator(".spofkit-cluster-panel").first
    expect(panel).to_be_visible(timeout=90_000)
    row_b = panel.locator(".spofkit-row-b")
    expect(row_b).to_contain_text("UP", timeout=30_000)
    # The last cell checks an exercise: once its feedback shows, every experiment has finished.
    expect(notebook.locator(".spofkit-feedback").last).to_be_visible(timeout=120_000)
    expect(row_b).to_contain_text("UP", timeout=30_000)  # b was recovered after the experiment

    row_b.locator(".spofkit-crash-b").click()
    expect(row_b).to_contain_text("crash", timeout=15_000)
    expect(row_b).to_contain_text("DOWN", timeout=30_000)
    expect(panel).to_contain_text("InstanceDown b", timeout=15_000)
    page.locator(".spofkit-cluster-panel").first.scroll_into_view_if_needed()
