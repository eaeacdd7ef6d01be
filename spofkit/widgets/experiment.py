"""Running an experiment from a notebook: sliders and a Run button, and a progress bar for any run.

:class:`ExperimentRunner` is a small form around ``lab.run_load(...)``: the rate, the duration, a fault (the same
presets the panel's buttons and the TUI's keys inject), the instance it hits and when. **Run** sends the load,
injects the fault on schedule, and shows the :class:`~spofkit.report.Report` with its timeline plot. Afterwards
it sends ``Recover`` for the faulted instance, so the next run starts from a healthy lab.

:func:`progress_bar` is for the cells that call ``run_load`` themselves: the bar is the ``on_progress`` callback.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from spofkit.commands import Recover
from spofkit.faults import PRESETS, make_fault
from spofkit.widgets._display import FIXED, ROW, SNUG, figure_output, html_output
from spofkit.widgets._scheduling import ClickScheduler, Scheduled

if TYPE_CHECKING:
    from spofkit.lab import Lab, ScheduledFault
    from spofkit.report import Report

# The runner's fault menu: the presets (the same faults, with the same parameters, as the panel's buttons and
# the TUI's keys), then reset, which has no preset and runs with its defaults (every answer cut off).
FAULT_MENU = ("none", *PRESETS, "reset")


def fault_kind(entry: str) -> str:
    """The fault kind a menu entry injects: a preset's kind (``too_slow`` is a ``slow``), else the entry."""
    return PRESETS[entry].kind if entry in PRESETS else entry


class ExperimentRunner(widgets.VBox):  # type: ignore[misc]  # ipywidgets is untyped
    """Sliders and a Run button around ``lab.run_load``; shows the report and its timeline plot.

    After a run the faulted instance is recovered (``recover_after=True``), so the next run starts from a
    healthy lab. ``reports`` keeps every report; ``on_report`` callbacks get each new one.
    ``runner.run_button.click()`` does what a click does; ``await runner.run()`` runs and waits.
    """

    def __init__(
        self,
        lab: Lab,
        *,
        rate: int = 100,
        duration: float = 5.0,
        fault: str = "crash",
        instance: str | None = None,
        fault_at: float = 1.0,
        fault_params: dict[str, dict[str, Any]] | None = None,
        max_rate: int = 500,
        max_duration: float = 20.0,
        recover_after: bool = True,
        title: str = "",
    ) -> None:
        if fault not in FAULT_MENU:
            raise ValueError(f"fault must be one of {FAULT_MENU}, got {fault!r}")
        if not 0 < duration <= max_duration:
            raise ValueError(f"duration must be in (0, {max_duration}], got {duration!r}")
        if not 0 <= fault_at <= duration:
            raise ValueError(f"fault_at must be within the run (0..{duration}), got {fault_at!r}")
        if not 1 <= rate <= max_rate:
            raise ValueError(f"rate must be 1..{max_rate} req/s, got {rate!r}")
        names = lab.instance_names
        instance = instance if instance is not None else (names[1] if len(names) > 1 else names[0])
        if instance not in names:
            raise ValueError(f"instance must be one of {names}, got {instance!r}")
        self.lab = lab
        self.title = title
        # The parameters of each menu entry: the preset's, unless ``fault_params`` gives others.
        self.fault_params: dict[str, dict[str, Any]] = {name: dict(p.params) for name, p in PRESETS.items()}
        for entry, params in (fault_params or {}).items():
            if entry not in FAULT_MENU[1:]:
                raise ValueError(f"fault_params names no fault of the menu: {entry!r}; the menu has {FAULT_MENU[1:]}")
            make_fault(fault_kind(entry), **params)  # a wrong parameter fails here, naming it
            self.fault_params[entry] = dict(params)
        self.recover_after = recover_after
        self.reports: list[Report] = []
        self.on_report: list[Callable[[Report], None]] = []
        style = {"description_width": "110px"}
        wide = widgets.Layout(width="420px")
        self.rate = widgets.IntSlider(rate, min=1, max=max_rate, description="rate (req/s)", style=style, layout=wide)
        self.duration = widgets.FloatSlider(
            duration, min=1.0, max=max_duration, step=0.5, description="duration (s)", style=style, layout=wide
        )
        self.fault_at = widgets.FloatSlider(
            fault_at, min=0.0, max=max_duration, step=0.25, description="fault at (s)", style=style, layout=wide
        )
        menu = widgets.Layout(width="240px", **FIXED)
        self.fault = widgets.Dropdown(options=FAULT_MENU, value=fault, description="fault", style=style, layout=menu)
        self.instance = widgets.Dropdown(
            options=names, value=instance, description="instance", style=style, layout=menu
        )
        self.run_button = widgets.Button(
            description="Run", button_style="primary", icon="play", layout=widgets.Layout(**SNUG)
        )
        self.run_button.add_class("spofkit-run")
        self.progress = widgets.FloatProgress(
            value=0.0,
            min=0.0,
            max=1.0,
            description="progress",
            style=style,
            layout=widgets.Layout(width="300px", **FIXED),
        )
        self.status = widgets.HTML("ready")
        self.output = widgets.Output()
        self._scheduler = ClickScheduler(self.output)
        self.run_button.on_click(lambda _button: self.click_run())
        header = [widgets.HTML(f"<b>{html.escape(title)}</b>")] if title else []
        super().__init__(
            [
                *header,
                self.rate,
                self.duration,
                widgets.HBox([self.fault, self.instance], layout=widgets.Layout(**ROW)),
                self.fault_at,
                widgets.HBox([self.run_button, self.progress, self.status], layout=widgets.Layout(**ROW)),
                self.output,
            ]
        )
        self.add_class("spofkit-experiment")

    @property
    def errors(self) -> list[str]:
        """What went wrong in runs so far (also shown below the form)."""
        return self._scheduler.errors

    @property
    def last_report(self) -> Report | None:
        return self.reports[-1] if self.reports else None

    def click_run(self) -> Scheduled:
        """What the Run button does: schedule :meth:`run` and return its task."""
        return self._scheduler.schedule(self.run(), "run")

    def faults(self) -> list[ScheduledFault]:
        """The fault schedule the sliders describe: ``[(at, instance, kind, params)]``, or ``[]`` for none."""
        if self.fault.value == "none":
            return []
        at = min(float(self.fault_at.value), float(self.duration.value))
        entry = str(self.fault.value)
        return [(at, str(self.instance.value), fault_kind(entry), dict(self.fault_params.get(entry, {})))]

    async def run(self) -> Report:
        """Run one experiment with the sliders' values; show and return its report."""
        self.run_button.disabled = True
        self.progress.value = 0.0
        self.status.value = "running..."
        faults = self.faults()
        try:
            report = await self.lab.run_load(
                rate=float(self.rate.value),
                duration=float(self.duration.value),
                faults=faults,
                on_progress=self._progress,
            )
            if self.recover_after:
                for _at, name, _kind, _params in faults:
                    await self.lab.apply(Recover(name))
        except BaseException:
            self.status.value = "failed (see below)"
            raise
        finally:
            self.run_button.disabled = False
        self.progress.value = 1.0
        self.reports.append(report)
        self.status.value = f"done: availability {report.availability:.2%}, {report.failed} of {report.requests} failed"
        self._show(report)
        for callback in self.on_report:
            callback(report)
        return report

    def _progress(self, fraction: float) -> None:
        self.progress.value = max(0.0, min(1.0, fraction))

    def _show(self, report: Report) -> None:
        from matplotlib.figure import Figure  # here, so importing the widgets needs no matplotlib

        from spofkit.report import plot_timeline

        figure = Figure(figsize=(8, 3))
        plot_timeline(report, ax=figure.subplots(), title=self.title or "what the client saw")
        self.output.outputs = (html_output(report._repr_html_(), report.to_text()), figure_output(figure))


class ProgressBar(widgets.FloatProgress):  # type: ignore[misc]  # ipywidgets is untyped
    """A progress bar that is also the ``on_progress`` callback: ``await lab.run_load(..., on_progress=bar)``."""

    def __call__(self, fraction: float) -> None:
        self.value = max(0.0, min(1.0, fraction))
        self.bar_style = "success" if self.value >= 1.0 else ""


def progress_bar(description: str = "running") -> ProgressBar:
    """Show a progress bar in the notebook and return it, to hand to ``run_load(on_progress=...)``."""
    from IPython.display import display

    # "initial": the label is as wide as its text ("with health checks"), not cut at ipywidgets' 80 px.
    bar = ProgressBar(
        value=0.0,
        min=0.0,
        max=1.0,
        description=description,
        style={"description_width": "initial"},
        layout=widgets.Layout(width="420px", max_width="100%"),
    )
    display(bar)  # type: ignore[no-untyped-call]
    return bar
