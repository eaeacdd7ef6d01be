"""Widgets: fail a node with a click and watch the lab react, in a notebook or on a classroom projector.

Every widget here is a *view* of a :class:`~spofkit.lab.Lab`. It reads ``lab.status()`` and the event stream
(``lab.events``), and every control it offers sends a :mod:`command <spofkit.commands>` through
``lab.apply(command)``, the one way anything changes a lab (the TUI and the admin API send the same commands).
So what a widget shows is what the TUI and the reports show, and what it does, they could do too.

Where things live, one idea a module:

- :mod:`~spofkit.widgets.cluster_panel` — :class:`ClusterPanel`: one row per instance
  (:mod:`~spofkit.widgets.instance_row`: its state, fault and counters, buttons to crash, hang, slow, gray,
  recover or restart it), switches for health checks, retries and ejection, a strategy menu, a background load
  slider, the front door (:mod:`~spofkit.widgets.front_door`: one line for a single balancer; a row per balancer
  of a pair, its role and buttons to crash, hang or cut the adverts of it), deploy buttons
  (:mod:`~spofkit.widgets.deploys`: a rolling restart beside the naive restart-all, and the steps as they go),
  the last events.
- :mod:`~spofkit.widgets.experiment` — :class:`ExperimentRunner`: sliders for rate, duration and fault time, a
  fault menu and a **Run** button around ``lab.run_load(...)``, showing the report and its timeline plot; and
  :func:`progress_bar`, a bar that is ``run_load``'s ``on_progress`` callback.
- :mod:`~spofkit.widgets.prediction` — :func:`predict`: the learner locks in a guess (a number or a choice)
  before the experiment; ``prediction.compare(measured)`` afterwards says how close it was.
- :mod:`~spofkit.widgets.health_explorer` — :class:`HealthExplorer`: sliders for interval / timeout / rise /
  fall and a flaky node's probe failure rate; the detection window bound against the false alarms per hour,
  from the real health monitor on a virtual clock (no servers needed).
- :mod:`~spofkit.widgets.plots` — :func:`plot_instance_states`: UP/DOWN over time, from the events.
- :mod:`~spofkit.widgets.timeline` — :class:`Timeline`: a recorded run (:class:`RunRecorder`: the events, and
  each instance's state, queue and in-flight every few milliseconds of lab time) to scrub with a slider and step
  through event by event, with the run's plots (:func:`plot_recording`). It views a recording, not a lab, so it
  sends no commands.
- :mod:`~spofkit.widgets._scheduling` — how a click (a synchronous callback) runs a lab coroutine, and where
  a refused command or a failure is shown: in the widget's output area, in the lab's words, never in a lost
  traceback. :mod:`~spofkit.widgets._display` holds the layouts that keep every label whole in JupyterLab.

**Testing without a browser.** Every button is an attribute (``panel.buttons[("b", "crash")]``,
``panel.balancer_buttons[("lb1", "crash")]``, ``panel.deploy_buttons["rolling"]``, ``runner.run_button``);
``button.click()`` runs the same callback a browser click does. The methods behind them (``click_fault``,
``click_balancer``, ``click_deploy``, ``switch``, ``run``, ``guess``) can be awaited directly.
"""

from spofkit.widgets.cluster_panel import ClusterPanel, fault_buttons
from spofkit.widgets.experiment import ExperimentRunner, ProgressBar, progress_bar
from spofkit.widgets.health_explorer import HealthExplorer, simulate_false_alarms
from spofkit.widgets.instance_row import STATE_COLORS
from spofkit.widgets.plots import plot_instance_states
from spofkit.widgets.prediction import Prediction, predict
from spofkit.widgets.timeline import Recording, RunRecorder, Timeline, plot_recording

__all__ = [
    "STATE_COLORS",
    "ClusterPanel",
    "ExperimentRunner",
    "HealthExplorer",
    "Prediction",
    "ProgressBar",
    "Recording",
    "RunRecorder",
    "Timeline",
    "fault_buttons",
    "plot_instance_states",
    "plot_recording",
    "predict",
    "progress_bar",
    "simulate_false_alarms",
]
