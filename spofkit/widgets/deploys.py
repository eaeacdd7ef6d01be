"""Deploy buttons in the cluster panel: a rolling restart beside the naive restart-all, and the steps as they go.

Every new version of a service means restarting every process. **rolling restart** sends ``Deploy(batch=1)``:
one instance at a time is drained (no new requests, the ones in flight finish), restarted, put back once its
health checks pass (readiness) and warmed up (slow start), and only then the next. **restart all** sends
``Deploy(how="all-at-once")``: every instance restarted at once, nothing drained — the outage a rolling restart
avoids, to compare. With a pair, **upgrade balancers** sends ``Deploy(target="balancers")``: the backup first,
then the master after it has handed the address over.

While a deploy the panel started runs, the buttons are disabled; each target's latest step (the
:class:`~spofkit.events.DeployStep` events, whoever started the deploy) is shown under them, and at the end how
long it took and how many requests the balancers failed meanwhile. A deploy started elsewhere (the TUI, the
admin API) is not known to the panel until its steps arrive: a click then is refused by the lab (HTTP 409),
and the panel shows the lab's words.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets

from spofkit.commands import Deploy
from spofkit.events import DeployStep
from spofkit.status import LabStatus
from spofkit.widgets._display import LOG_STYLE, ROW, SNUG, set_html
from spofkit.widgets.instance_row import BUTTON_PADDING


@dataclass(frozen=True)
class DeployButton:
    """One deploy button: its label, the command it sends, what it does (its tooltip), and whether it needs
    a pair of balancers."""

    label: str
    command: Deploy
    tooltip: str
    pair_only: bool = False


DEPLOYS = {
    "rolling": DeployButton(
        "rolling restart",
        Deploy(batch=1),
        "one instance at a time: drain it, restart it, wait until its checks pass and it has warmed up, then the next",
    ),
    "all-at-once": DeployButton(
        "restart all",
        Deploy(how="all-at-once"),
        "every instance at once, nothing drained, nobody waited for: the naive way, to compare",
    ),
    "balancers": DeployButton(
        "upgrade balancers",
        Deploy(target="balancers"),
        "a planned takeover: restart the backup, then the master once it has handed the address over",
        pair_only=True,
    ),
}
DONE_STEP = "done"


def failed_requests(status: LabStatus) -> int:
    """Requests the balancers answered with a failure so far (every balancer's count)."""
    return sum(balancer.failed for balancer in status.balancers)


class DeployControls:
    """The deploy buttons (``buttons``, by the keys of :data:`DEPLOYS`), a line saying what the last deploy did
    (``summary``) and each target's latest step (``steps``). ``on_click(key)`` is called when one is clicked."""

    def __init__(self, on_click: Callable[[str], Any]) -> None:
        self.buttons: dict[str, widgets.Button] = {}
        for key, deploy in DEPLOYS.items():
            button = widgets.Button(
                description=deploy.label,
                tooltip=f"{deploy.label}: {deploy.tooltip}",
                button_style="warning",
                layout=widgets.Layout(padding=BUTTON_PADDING, **SNUG),
            )
            button.add_class(f"spofkit-deploy-{key}")
            button.on_click(lambda _button, key=key: on_click(key))
            self.buttons[key] = button
        # Beside the buttons while it fits; in a narrow notebook it wraps between words instead of running off.
        self.summary = widgets.HTML(layout=widgets.Layout(margin="0 0 0 8px", flex="1 1 auto"))
        self.steps = widgets.HTML(layout=widgets.Layout(display="none"))
        # Each target's latest step, in the order the deploy reached them: a deploy of three is three lines.
        self._latest: dict[str, DeployStep] = {}
        self._running: str | None = None
        self._started_at = 0.0
        self._failed_before = 0
        self.box = widgets.VBox(
            [widgets.HBox([*self.buttons.values(), self.summary], layout=widgets.Layout(**ROW)), self.steps]
        )
        self.box.add_class("spofkit-deploys")

    @property
    def running(self) -> str | None:
        """The key of the deploy this panel started and that has not finished, or None."""
        return self._running

    def show(self, status: LabStatus) -> None:
        """Offer the balancer upgrade only to a lab with a pair to upgrade."""
        pair = len(status.balancers) > 1
        for key, deploy in DEPLOYS.items():
            self.buttons[key].layout.display = "none" if deploy.pair_only and not pair else None

    def started(self, key: str, status: LabStatus) -> None:
        """A deploy button was clicked: no other until it has finished; the steps shown are this deploy's."""
        self._running = key
        self._started_at = status.at
        self._failed_before = failed_requests(status)
        self._latest.clear()
        self._show_steps()
        for button in self.buttons.values():
            button.disabled = True
        set_html(self.summary, f"<i>{html.escape(DEPLOYS[key].label)} running…</i>")

    def finished(self, key: str, result: Mapping[str, Any] | None, status: LabStatus) -> None:
        """The deploy ended: ``result`` is what the lab returned (None: refused or failed, shown in the panel's
        output by the scheduler)."""
        self._running = None
        for button in self.buttons.values():
            button.disabled = False
        label = html.escape(DEPLOYS[key].label)
        if result is None:
            set_html(self.summary, f"{label} did not run to the end (see below)")
            return
        deployed = ", ".join(html.escape(str(name)) for name in result.get("deployed", []))
        seconds = result.get("seconds", status.at - self._started_at)
        line = f"{label} done in {seconds:.1f} s: {deployed}"
        if DEPLOYS[key].command.target == "instances":
            # A restarted balancer starts counting afresh: the count only holds while the balancers stay.
            failed = failed_requests(status) - self._failed_before
            color = "#2e7d32" if failed == 0 else "#c62828"
            line += f" — <b style='color:{color}'>{failed} requests failed</b> at the balancer meanwhile"
        set_html(self.summary, line)

    def heard(self, step: DeployStep) -> None:
        """A deploy (this panel's, or one sent from elsewhere) moved on for ``step.instance``."""
        self._latest[step.instance] = step
        self._show_steps()

    def _show_steps(self) -> None:
        lines = []
        for step in self._latest.values():
            color = "#2e7d32" if step.step == DONE_STEP else "#37474f"
            detail = f" <span style='color:#757575'>({html.escape(step.detail)})</span>" if step.detail else ""
            lines.append(
                f"<span style='color:{color}'>{step.at:7.2f}s  <b>{html.escape(step.instance)}</b>: "
                f"{html.escape(step.step)}</span>{detail}"
            )
        set_html(self.steps, f"<pre class='spofkit-deploy-steps' style='{LOG_STYLE}'>" + "\n".join(lines) + "</pre>")
        self.steps.layout.display = None if lines else "none"
