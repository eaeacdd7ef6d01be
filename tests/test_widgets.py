"""Widgets without a browser: buttons are clicked with ``button.click()``, against a real lab on 127.0.0.1."""

from __future__ import annotations

import asyncio
import gc
import html
import itertools
import random
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import aiohttp
import pytest
from conftest import wait_for

from spofkit import status
from spofkit.commands import (
    BalancerFault,
    BalancerRecover,
    BalancerRestart,
    ChangeSettings,
    Command,
    Deploy,
    InjectFault,
    Recover,
    RemoveInstance,
    Restart,
    SetLoad,
    SetStrategy,
)
from spofkit.events import Event, HealthProbe, InstanceDown, InstanceUp
from spofkit.faults import PRESETS, FaultError
from spofkit.health import HealthSettings
from spofkit.lab import Lab
from spofkit.policy.health import HealthMonitor, HealthState
from spofkit.policy.pair import PairSettings
from spofkit.strategies import Backend, RequestInfo, Strategy
from spofkit.widgets import (
    STATE_COLORS,
    ClusterPanel,
    ExperimentRunner,
    HealthExplorer,
    ProgressBar,
    plot_instance_states,
    predict,
    simulate_false_alarms,
)
from spofkit.widgets.health_explorer import run_flaky_checks
from spofkit.widgets.instance_row import health_count

FAST_CHECKS = HealthSettings(interval=0.1, timeout=0.2, rise=1, fall=2)
# How long a backup waits without adverts before it takes over (lb2, priority 100), and room for a busy machine.
MASTER_DOWN = PairSettings(priority=100).master_down_interval
TAKEOVER_MARGIN = 2.0


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    lab = await Lab.start(instances=3, health=FAST_CHECKS)
    try:
        yield lab
    finally:
        await lab.stop()


class ViewOfLab:
    """A lab as a view may use it, and no more: it reads ``status()``, ``events`` and ``instance_names``, changes
    the lab only with ``apply(command)``, and measures with ``run_load``. Any other attribute is refused, so a
    widget reaching into the lab's internals (``lab.balancer``, ``lab.inject``...) fails the test. Every
    command is recorded in ``commands``; while ``gate`` is set to an unset asyncio.Event, commands wait for it
    before the lab applies them (a lab busy with an earlier command)."""

    VIEW_API = frozenset({"status", "events", "instance_names", "apply", "run_load"})

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.commands: list[Command] = []
        self.gate: asyncio.Event | None = None

    async def apply(self, command: Command) -> dict[str, Any]:
        self.commands.append(command)
        if self.gate is not None:
            await self.gate.wait()
        return await self.lab.apply(command)

    def __getattr__(self, name: str) -> Any:
        if name not in self.VIEW_API:
            raise AttributeError(f"a widget used lab.{name}: views read status and events and send commands")
        return getattr(self.lab, name)


@pytest.fixture
def view(lab: Lab) -> ViewOfLab:
    return ViewOfLab(lab)


def as_lab(view: ViewOfLab) -> Lab:
    return cast(Lab, view)


def shown_text(output: Any) -> list[str]:
    """What a widget's output area says, as plain text, one entry per record."""
    return [record["data"]["text/plain"] for record in output.outputs]


async def test_panel_shows_one_row_per_instance(lab: Lab) -> None:
    panel = ClusterPanel(lab)
    try:
        assert list(panel.rows) == ["a", "b", "c"]
        assert "UP" in panel.row("b").state.value
        assert panel.row("b").fault.value == "-"
        assert ("b", "crash") in panel.buttons and ("c", "restart") in panel.buttons
        assert "3/3 serving" in panel.header.value
    finally:
        panel.close()


async def test_crash_button_crashes_the_instance_and_the_row_follows(lab: Lab, view: ViewOfLab) -> None:
    panel = ClusterPanel(as_lab(view), refresh_interval=0.05)
    try:
        panel.buttons[("b", "crash")].click()  # what a browser click runs
        await wait_for(lambda: "crash" in panel.row("b").fault.value, timeout=5)
        await wait_for(lambda: "DOWN" in panel.row("b").state.value, timeout=10, message="b marked down")
        assert lab.status().instance("b").fault == "crash"
        assert "b marked DOWN" in panel.event_log.value
        await panel.click_fault("b", "recover")
        await wait_for(lambda: "UP" in panel.row("b").state.value, timeout=10, message="b back up")
        await panel.click_fault("c", "restart")
        assert view.commands == [InjectFault("b", "crash"), Recover("b"), Restart("c")]
        assert panel.errors == []
    finally:
        panel.close()


async def test_slow_button_uses_the_panel_parameters(lab: Lab) -> None:
    panel = ClusterPanel(lab, faults={"slow": {"ms": 50}})
    try:
        assert ("b", "crash") not in panel.buttons
        await panel.click_fault("b", "slow")
        assert lab.status().instance("b").fault == "slow"
        assert lab.instances["b"].stats()["fault_params"] == {"ms": 50.0, "jitter_ms": 0.0}
        with pytest.raises(ValueError, match="action must be one of"):
            panel.click_fault("b", "crash")
    finally:
        panel.close()


async def test_fault_buttons_inject_the_presets(lab: Lab) -> None:
    panel = ClusterPanel(lab)
    try:
        assert [action for (name, action) in panel.buttons if name == "a"] == [
            "crash",
            "hang",
            "slow",
            "gray",
            "recover",
            "restart",
        ]
        await panel.click_fault("b", "slow")
        assert lab.instances["b"].stats()["fault_params"] == PRESETS["slow"].params  # +200 ms: stays UP
        assert "+200 ms" in panel.buttons[("b", "slow")].tooltip
    finally:
        panel.close()
    panel = ClusterPanel(lab, faults=["crash", "too_slow"])
    try:
        assert panel.buttons[("c", "too_slow")].description == "too slow"
        await panel.click_fault("c", "too_slow")
        assert lab.status().instance("c").fault == "slow"
        assert lab.instances["c"].stats()["fault_params"] == PRESETS["too_slow"].params
    finally:
        panel.close()


# A panel refused half-way through __init__ is still closed by ipywidgets when collected: quietly.
@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
async def test_fault_buttons_that_cannot_work_are_refused_when_the_panel_is_made(lab: Lab) -> None:
    with pytest.raises(ValueError, match=r"faults names no preset: \['meteor'\]; the presets are \['crash'"):
        ClusterPanel(lab, faults=["crash", "meteor"])
    with pytest.raises(FaultError, match=r"slow\.ms must be <= 60000") as wrong:
        ClusterPanel(lab, faults={"slow": {"ms": 10**6}})
    assert wrong.value.field == "ms"
    with pytest.raises(TypeError, match=r"faults must list preset names, e.g. \['crash'\]"):
        ClusterPanel(lab, faults="crash")


async def test_a_failing_click_is_reported_in_the_panel_not_lost(lab: Lab) -> None:
    panel = ClusterPanel(lab)
    try:
        task = panel.click_fault("zz", "crash")
        with pytest.raises(KeyError):
            await task
        assert panel.errors == ["crash zz refused: no instance named 'zz'; known: ['a', 'b', 'c']"]
        assert shown_text(panel.output) == panel.errors
    finally:
        panel.close()


async def test_a_click_on_an_instance_removed_meanwhile_shows_the_labs_refusal(lab: Lab, view: ViewOfLab) -> None:
    """A learner clicks c's crash button just as someone else removes c: the click reaches the lab after the
    removal. The panel says what the lab said, in its own output; no traceback goes to the kernel's log."""
    panel = ClusterPanel(as_lab(view))
    unhandled: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, context: unhandled.append(context))
    try:
        crash_c = panel.buttons[("c", "crash")]  # the button on the learner's screen
        await lab.apply(RemoveInstance("c"))
        await wait_for(lambda: "c" not in panel.rows, timeout=5, message="c's row is gone")
        crash_c.click()  # the click that was already on its way
        await wait_for(lambda: panel.errors, timeout=5, message="the refusal is shown")
        assert view.commands == [InjectFault("c", "crash")]
        assert panel.errors == ["crash c refused: no instance named 'c'; known: ['a', 'b']"]
        assert shown_text(panel.output) == panel.errors  # the lab's words, no traceback
        markup = panel.output.outputs[0]["data"]["text/html"]
        assert "spofkit-problem" in markup and "no instance named &#x27;c&#x27;" in markup
        assert set(panel.rows) == {"a", "b"} and ("c", "crash") not in panel.buttons
    finally:
        panel.close()
    gc.collect()  # a task whose exception nobody looked at would be reported now
    assert unhandled == []


async def test_panel_rows_follow_added_instances_and_the_lab_stopping() -> None:
    lab = await Lab.start(instances=1, health=None)
    panel = ClusterPanel(lab, refresh_interval=0.05)
    try:
        name = await lab.add_instance()
        await wait_for(lambda: name in panel.rows, timeout=5)
        assert (name, "crash") in panel.buttons
    finally:
        await lab.stop()
    await wait_for(lambda: "stopped" in panel.header.value, timeout=5)
    await wait_for(lambda: panel._timer is None or panel._timer.done(), timeout=5, message="refresh timer ends")
    panel.close()


async def test_panel_switches_send_commands(lab: Lab, view: ViewOfLab) -> None:
    panel = ClusterPanel(as_lab(view))
    try:
        # What a browser does: it sets the control's value, and the panel sends the command.
        panel.retries.value = False
        panel.strategy.value = "least_connections"
        panel.health_checks.value = False
        panel.ejection.value = False
        panel.load.value = 20
        await wait_for(lambda: lab.status().load_rate == 20, timeout=5, message="the load runs")
        assert view.commands == [
            ChangeSettings(retries=False),
            SetStrategy("least_connections"),
            ChangeSettings(health_checks=False),
            ChangeSettings(ejection=False),
            SetLoad(rate=20.0),
        ]
        after = lab.status()
        assert (after.retries, after.strategy, after.health_checks, after.ejection) == (
            False,
            "least_connections",
            False,
            False,
        )
        # The controls still show what the learner set, now that the lab has it.
        assert (panel.retries.value, panel.strategy.value, panel.health_checks.value, panel.load.value) == (
            False,
            "least_connections",
            False,
            20,
        )
        assert panel.row("a").health.value == "off"  # checks are off: no count is running
        await panel.set_load(0)
        assert view.commands[-1] == SetLoad(rate=0.0)
        assert lab.status().load_rate is None and "load off" in panel.header.value
        await panel.switch("retries", True)
        assert view.commands[-1] == ChangeSettings(retries=True) and lab.status().retries is True
        with pytest.raises(ValueError, match=r"setting must be one of \['health_checks', 'retries', 'ejection'\]"):
            panel.switch("warp_drive", True)
        assert panel.errors == []
    finally:
        panel.close()


async def test_a_switch_shows_the_learners_choice_until_the_lab_has_applied_it(lab: Lab, view: ViewOfLab) -> None:
    panel = ClusterPanel(as_lab(view))
    view.gate = asyncio.Event()
    try:
        panel.retries.value = False
        await wait_for(lambda: view.commands == [ChangeSettings(retries=False)], timeout=5, message="sent")
        panel.refresh()  # the refresh timer ticks while the lab has not applied the command yet
        assert lab.status().retries is True
        assert panel.retries.value is False  # not flipped back under the learner's mouse
        view.gate.set()
        await wait_for(lambda: lab.status().retries is False, timeout=5, message="applied")
        panel.refresh()
        assert panel.retries.value is False
    finally:
        panel.close()


async def test_a_refused_choice_says_why_and_the_menu_shows_the_labs_strategy_again(lab: Lab) -> None:
    lab.set_strategy(CountingStrategy())  # a strategy object: the menu shows its name, which no command can send
    panel = ClusterPanel(lab)
    try:
        panel.strategy.value = "round_robin"
        await wait_for(lambda: lab.status().strategy == "round_robin", timeout=5)
        panel.strategy.value = "counting"  # the learner picks it back
        await wait_for(lambda: panel.errors, timeout=5, message="the refusal is shown")
        assert panel.errors == [
            "strategy counting refused: 'counting' is a strategy of your own: the menu can only pick spofkit's by "
            "name; set yours again from code, e.g. await lab.apply(SetStrategy(YourStrategy()))"
        ]
        assert lab.status().strategy == "round_robin"
        assert panel.strategy.value == "round_robin"  # the menu shows what the lab really does
    finally:
        panel.close()


async def test_experiment_runner_runs_shows_the_report_and_recovers(lab: Lab, view: ViewOfLab) -> None:
    runner = ExperimentRunner(as_lab(view), rate=50, duration=1.5, fault="crash", instance="c", fault_at=0.3)
    seen = []
    runner.on_report.append(seen.append)
    runner.run_button.click()
    await wait_for(lambda: runner.last_report is not None, timeout=20, message="run finished")
    report = runner.last_report
    assert report is not None and seen == [report]
    assert report.requests > 0 and report.fault_instance == "c"
    assert runner.progress.value == 1.0
    assert "availability" in runner.status.value
    kinds = [output["data"].keys() for output in runner.output.outputs]
    assert any("text/html" in k for k in kinds) and any("image/png" in k for k in kinds)
    assert lab.status().instance("c").fault is None  # recovered after the run
    assert view.commands == [Recover("c")]  # the fault itself is part of the measurement: run_load injects it
    assert runner.errors == []


async def test_experiment_runner_rejects_bad_settings(lab: Lab) -> None:
    with pytest.raises(ValueError, match="fault must be one of"):
        ExperimentRunner(lab, fault="meteor")
    with pytest.raises(ValueError, match="instance must be one of"):
        ExperimentRunner(lab, instance="zz")
    with pytest.raises(ValueError, match="fault_at must be within the run"):
        ExperimentRunner(lab, duration=2, fault_at=3)
    with pytest.raises(ValueError, match="fault_params names no fault of the menu: 'meteor'"):
        ExperimentRunner(lab, fault_params={"meteor": {}})
    with pytest.raises(FaultError, match="slow has no parameter 'rate'") as wrong:
        ExperimentRunner(lab, fault_params={"slow": {"rate": 0.5}})
    assert wrong.value.field == "rate"
    runner = ExperimentRunner(lab, fault="none")
    assert runner.faults() == []


async def test_experiment_runner_injects_the_presets_the_buttons_and_keys_use(lab: Lab) -> None:
    runner = ExperimentRunner(lab, fault="slow")
    assert runner.faults() == [(1.0, "b", "slow", {"ms": 200.0, "jitter_ms": 30.0})]
    assert runner.faults()[0][3] == PRESETS["slow"].params
    runner.fault.value = "too_slow"  # a preset whose name is not a fault kind: it injects a slow fault
    assert runner.faults() == [(1.0, "b", "slow", PRESETS["too_slow"].params)]
    runner.fault.value = "reset"  # no preset: the fault's own defaults
    assert runner.faults() == [(1.0, "b", "reset", {})]
    assert set(PRESETS) <= set(runner.fault.options)
    mine = ExperimentRunner(lab, fault="slow", fault_params={"slow": {"ms": 50}})
    assert mine.faults() == [(1.0, "b", "slow", {"ms": 50})]


async def test_panel_switches_follow_changes_made_in_code(lab: Lab, view: ViewOfLab) -> None:
    panel = ClusterPanel(as_lab(view))
    try:
        lab.set_retries(False)
        lab.set_ejection(False)
        lab.set_strategy(CountingStrategy())
        await lab.apply(SetLoad(rate=30))
        panel.refresh()
        assert panel.retries.value is False
        assert panel.ejection.value is False
        assert panel.load.value == 30
        assert panel.strategy.value == "counting" and "counting" in panel.strategy.options
        # showing the changes did not call the lab back: picks went to the custom strategy, not a new one
        assert lab.status().strategy == "counting"
        assert view.commands == []
    finally:
        panel.close()


class CountingStrategy(Strategy):
    """A custom strategy the menu does not know."""

    name = "counting"

    def pick(self, backends: Sequence[Backend], request: RequestInfo, now: float, rng: random.Random) -> Backend:
        return backends[0]


def test_state_plot_keeps_labels_inside_when_nothing_changes() -> None:
    import matplotlib

    matplotlib.use("Agg")
    ax = plot_instance_states([], ["a", "b", "c"])
    low, high = ax.get_ylim()
    assert low < 0.5 and high > 1.5 * 2 + 0.5  # every name label (at row * 1.5 + 0.5) is in view


def test_prediction_compares_a_number() -> None:
    prediction = predict("share failing?", unit="%")
    assert not prediction.compare(33.0).ok  # nothing locked in yet
    assert prediction.compare(33.0).given == "no prediction locked in"
    prediction.guess(30)
    assert prediction.value == 30.0 and prediction.lock_button.disabled
    assert prediction.compare(33.3).ok
    prediction.guess(40)  # a second guess in code replaces the first
    assert prediction.value == 40.0 and prediction.lock_button.answer == 40.0
    prediction.guess(30)
    far = prediction.compare(90)
    assert not far.ok and "low" in far.hint
    assert not prediction.compare(None).ok


def test_prediction_with_choices_via_the_button() -> None:
    prediction = predict("which?", ["none", "some", "all"])
    prediction.lock_button.set_state({"value": True})  # pressed in the page with no answer picked
    assert prediction.value is None and "Pick an answer first" in prediction.status.value
    assert not prediction.lock_button.value and not prediction.lock_button.disabled  # up again, to press later
    prediction.input.set_state({"index": 0})  # "none", then "some": the page sends the button the answer it
    # shows with the press, while the input's own change is still on its way (a busy kernel): "some" counts.
    prediction.lock_button.set_state({"answer": 1, "value": True})
    assert prediction.value == "some" and prediction.input.value == "none"
    assert prediction.lock_button.disabled and prediction.input.disabled
    assert "Locked in: <b>some</b>" in prediction.status.value
    assert prediction.compare("some").ok
    assert not prediction.compare("all").ok
    with pytest.raises(ValueError, match="guess must be one of"):
        predict("which?", ["x", "y"]).guess("z")
    with pytest.raises(ValueError, match="at least two"):
        predict("which?", ["only"])


def test_progress_bar_is_an_on_progress_callback() -> None:
    bar = ProgressBar(min=0.0, max=1.0)
    bar(0.5)
    assert bar.value == 0.5
    bar(1.7)
    assert bar.value == 1.0 and bar.bar_style == "success"


def test_every_state_has_its_colour() -> None:
    assert set(STATE_COLORS) == set(status.STATES)


def row_status(state: str, *, successes: int = 0, failures: int = 0) -> status.InstanceStatus:
    facts = status.InstanceFacts("b", "http://127.0.0.1:1")
    view = status.MemberView("b", state, health_successes=successes, health_failures=failures, rise=2, fall=3)
    return status.InstanceStatus.of(facts, view)


@pytest.mark.parametrize(
    ("state", "successes", "failures", "shown"),
    [
        (status.UP, 0, 0, "fail 0/3"),
        (status.FALLING, 0, 2, "fail 2/3"),
        (status.DOWN, 0, 0, "pass 0/2"),
        (status.RISING, 1, 0, "pass 1/2"),
        (status.EJECTED, 0, 0, "fail 0/3"),  # ejected by real requests while its checks pass (a gray failure)
        (status.EJECTED, 1, 0, "pass 1/2"),  # ejected, and coming back from DOWN
        (status.DRAINING, 0, 1, "fail 1/3"),
    ],
)
def test_the_health_column_shows_the_count_the_checker_is_running(
    state: str, successes: int, failures: int, shown: str
) -> None:
    assert health_count(row_status(state, successes=successes, failures=failures)) == shown
    assert health_count(row_status(state), checks_on=False) == "off"


def test_false_alarms_are_the_health_monitors_verdicts() -> None:
    """The count is what the real HealthMonitor decides, driven directly with the same seed."""
    settings = HealthSettings(interval=0.5, timeout=0.3, rise=2, fall=2, jitter=0.2)
    flaky, duration, seed = 0.15, 600.0, 7
    rng = random.Random(seed)
    verdicts: list[Event] = []
    monitor = HealthMonitor(settings, rng, verdicts.append)
    monitor.add("x", now=0.0)
    while (due := monitor.next_probe_at("x")) is not None and due < duration:
        monitor.probe_started("x", due)
        ok = rng.random() >= flaky
        monitor.probe_finished("x", ok, "200" if ok else "timeout", due if ok else due + settings.timeout)
    downs = sum(isinstance(event, InstanceDown) for event in verdicts)
    assert downs > 10
    assert simulate_false_alarms(settings, flaky, duration, random.Random(seed)) == downs


def test_false_alarm_probes_keep_the_health_checks_schedule() -> None:
    """A probe every ``interval`` while UP, ``fastinter`` while a count runs, ``downinter`` while DOWN (rule 2 of
    spofkit.policy.health), measured from the start of the previous probe; a lost probe runs into its timeout."""
    settings = HealthSettings(interval=1.0, timeout=0.3, rise=2, fall=3, fastinter=0.5, downinter=2.0)
    events: list[Event] = []
    run_flaky_checks(settings, 0.3, 300.0, random.Random(3), events.append)
    probes = [event for event in events if isinstance(event, HealthProbe)]
    assert {round(probe.duration, 9) for probe in probes if not probe.ok} == {settings.timeout}
    assert {probe.duration for probe in probes if probe.ok} == {0.0}
    assert any(isinstance(event, InstanceDown) for event in events)
    assert any(isinstance(event, InstanceUp) for event in events)
    # The pause each probe's result calls for, from the rise/fall machine fed the same results.
    rise_fall = HealthState(settings.rise, settings.fall)
    pauses = []
    for previous, probe in itertools.pairwise(probes):
        rise_fall.record(previous.ok)
        started, next_started = previous.at - previous.duration, probe.at - probe.duration
        pauses.append((rise_fall.next_interval(settings), round(next_started - started, 9)))
    assert all(wanted == taken for wanted, taken in pauses), [p for p in pauses if p[0] != p[1]][:5]
    assert {wanted for wanted, _taken in pauses} == {1.0, 0.5, 2.0}  # every phase came up


def test_false_alarms_fall_with_hysteresis() -> None:
    flaky = 0.1
    hour = 3600.0
    twitchy = simulate_false_alarms(HealthSettings(interval=0.5, fall=1), flaky, hour, random.Random(1))
    calm = simulate_false_alarms(HealthSettings(interval=0.5, fall=4), flaky, hour, random.Random(1))
    assert twitchy > 100 > calm
    assert simulate_false_alarms(HealthSettings(fall=1), 0.0, hour, random.Random(1)) == 0
    with pytest.raises(ValueError, match="probe_failure_probability"):
        simulate_false_alarms(HealthSettings(), 1.5, hour, random.Random(1))


def test_health_explorer_updates_with_the_sliders() -> None:
    explorer = HealthExplorer(interval=0.5, timeout=0.3, fall=3, probe_failure_probability=0.1)
    assert "1.80 s" in explorer.summary.value
    explorer.fall.value = 1
    assert "0.80 s" in explorer.summary.value
    assert explorer.plot.outputs and "image/png" in explorer.plot.outputs[0]["data"]


async def test_a_click_from_another_thread_runs_on_the_labs_loop(lab: Lab) -> None:
    panel = ClusterPanel(lab)
    try:
        scheduled = await asyncio.to_thread(panel.click_fault, "c", "slow")
        await asyncio.wrap_future(scheduled)  # type: ignore[arg-type]
        assert lab.status().instance("c").fault == "slow"
        failing = await asyncio.to_thread(panel.click_fault, "zz", "crash")
        with pytest.raises(KeyError):
            await asyncio.wrap_future(failing)  # type: ignore[arg-type]
        assert panel.errors == ["crash zz refused: no instance named 'zz'; known: ['a', 'b', 'c']"]
    finally:
        panel.close()


# --- the front door: a pair of balancers, and deploys -------------------------------------------------------


@pytest.fixture
async def pair_lab() -> AsyncIterator[Lab]:
    lab = await Lab.start(3, balancers=2, health=FAST_CHECKS)
    try:
        yield lab
    finally:
        await lab.stop()


@pytest.fixture
def pair_view(pair_lab: Lab) -> ViewOfLab:
    return ViewOfLab(pair_lab)


def text(widget: Any) -> str:
    """What an HTML widget says, without its markup."""
    return html.unescape(re.sub(r"<[^>]+>", "", widget.value))


def balancer_line(panel: ClusterPanel, name: str) -> list[str]:
    """A balancer's row as a learner reads it: name, role, state, pid, address, requests."""
    row = panel.balancer_row(name)
    return [text(cell) for cell in (row.label, row.role, row.state, row.pid, row.address, row.requests)]


def shown(widget: Any) -> bool:
    return widget.layout.display != "none"


async def test_a_pair_gets_a_row_per_balancer_with_its_role_and_buttons(pair_lab: Lab) -> None:
    panel = ClusterPanel(pair_lab, refresh_interval=0.05)
    try:
        address = pair_lab.balancer_url.removeprefix("http://")
        assert text(panel.front_door.summary) == f"front door: lb1 holds {address}"
        assert balancer_line(panel, "lb1") == ["lb1", "MASTER", "running", "-", "holds it", "0"]
        assert balancer_line(panel, "lb2") == ["lb2", "BACKUP", "running", "-", "-", "0"]
        labels = [button.description for (name, _), button in panel.balancer_buttons.items() if name == "lb2"]
        assert labels == ["crash", "hang", "cut adverts", "recover", "restart"]
        assert "split brain" in panel.balancer_buttons[("lb1", "advert_loss")].tooltip
        assert shown(panel.front_door.headings) and not shown(panel.front_door.notes)
        assert all(shown(button) for button in panel.deploy_buttons.values())  # a pair can be upgraded too
        async with aiohttp.ClientSession() as session:
            for _ in range(5):
                async with session.get(pair_lab.balancer_url + "/") as response:
                    assert response.status == 200
        # The master took them; the backup, which does not hold the address, none.
        await wait_for(lambda: balancer_line(panel, "lb1")[5] == "5", timeout=5, message="lb1 counted 5")
        assert balancer_line(panel, "lb2")[5] == "0"
    finally:
        panel.close()


async def test_crashing_lb1_from_the_panel_shows_lb2_take_over(pair_lab: Lab, pair_view: ViewOfLab) -> None:
    view = pair_view
    panel = ClusterPanel(as_lab(view), refresh_interval=0.05)
    try:
        panel.balancer_buttons[("lb1", "crash")].click()  # what a browser click runs
        await wait_for(
            lambda: (
                balancer_line(panel, "lb2")[1:3] == ["MASTER", "running"]
                and balancer_line(panel, "lb2")[4] == "holds it"
            ),
            timeout=MASTER_DOWN + TAKEOVER_MARGIN,
            message="lb2 shown as the master holding the address",
        )
        # The dead one plays no part: not a second MASTER beside lb2 (that would read as a split brain).
        assert balancer_line(panel, "lb1")[1:5] == ["STOPPED", "crashed", "-", "-"]
        address = pair_lab.balancer_url.removeprefix("http://")
        assert text(panel.front_door.summary) == f"front door: lb2 holds {address}"
        assert "lb2 is now MASTER: no advert from lb1" in text(panel.event_log)
        assert view.commands == [BalancerFault("lb1", "crash")]
        assert panel.errors == []
    finally:
        panel.close()


async def test_hang_cut_adverts_recover_and_restart_send_their_commands(pair_lab: Lab, pair_view: ViewOfLab) -> None:
    view = pair_view
    panel = ClusterPanel(as_lab(view), refresh_interval=0.05)
    try:
        panel.balancer_buttons[("lb1", "hang")].click()
        await wait_for(lambda: balancer_line(panel, "lb1")[2] == "hang", timeout=5, message="lb1 shown hung")
        assert "but it hangs: connections are accepted, never answered" in text(panel.front_door.summary)
        assert balancer_line(panel, "lb2")[1] == "BACKUP"  # its adverts go on: nobody takes over
        await panel.click_balancer("lb1", "recover")
        await wait_for(lambda: balancer_line(panel, "lb1")[2] == "running", timeout=5, message="lb1 recovered")

        panel.balancer_buttons[("lb1", "advert_loss")].click()
        await wait_for(
            lambda: balancer_line(panel, "lb2")[1:3] == ["MASTER", "blocked"],
            timeout=MASTER_DOWN + TAKEOVER_MARGIN,
            message="lb2 master too, blocked",
        )
        assert balancer_line(panel, "lb1")[1:3] == ["MASTER", "advert loss"]
        assert "split brain: lb1 and lb2 both think they are master; lb1 holds" in text(panel.front_door.summary)
        assert shown(panel.front_door.notes) and "lb2: cannot take 127.0.0.1:" in text(panel.front_door.notes)
        panel.balancer_buttons[("lb1", "recover")].click()
        await wait_for(lambda: balancer_line(panel, "lb2")[1] == "BACKUP", timeout=5, message="healed")
        await wait_for(lambda: not shown(panel.front_door.notes), timeout=5, message="nothing left to explain")

        panel.balancer_buttons[("lb2", "restart")].click()
        await wait_for(lambda: len(view.commands) == 5, timeout=5, message="restart sent")
        await wait_for(lambda: balancer_line(panel, "lb2")[1:3] == ["BACKUP", "running"], timeout=5)
        assert view.commands == [
            BalancerFault("lb1", "hang"),
            BalancerRecover("lb1"),
            BalancerFault("lb1", "advert_loss"),
            BalancerRecover("lb1"),
            BalancerRestart("lb2"),
        ]
        assert panel.errors == []
        with pytest.raises(ValueError, match=r"action must be one of \['crash', 'hang', 'advert_loss'"):
            panel.click_balancer("lb1", "melt")
    finally:
        panel.close()


async def test_a_single_balancer_is_one_line_saying_it_is_a_single_point_of_failure(lab: Lab) -> None:
    panel = ClusterPanel(lab)
    try:
        address = lab.balancer_url.removeprefix("http://")
        assert text(panel.front_door.summary) == (
            f"front door: one balancer, lb1 (running, 0 requests) on {address} — a single point of failure"
        )
        assert panel.front_door.rows == {} and panel.balancer_buttons == {}
        assert not shown(panel.front_door.headings) and not shown(panel.front_door.notes)
        assert [key for key, button in panel.deploy_buttons.items() if shown(button)] == ["rolling", "all-at-once"]
        task = panel.click_balancer("lb2", "crash")  # a stale click, or a lesson's code calling it
        with pytest.raises(KeyError):
            await task
        assert panel.errors == ["crash lb2 refused: no balancer named 'lb2'; known: ['lb1']"]
    finally:
        panel.close()
    hidden = ClusterPanel(lab, show_front_door=False, show_deploys=False)
    try:
        assert not shown(hidden.front_door.box) and not shown(hidden.deploys.box)
    finally:
        hidden.close()


async def test_rolling_restart_button_runs_a_deploy_shows_its_steps_and_fails_nothing() -> None:
    lab = await Lab.start(3, health=FAST_CHECKS, slow_start=0.3)  # warm-up: a deploy that takes a while
    view = ViewOfLab(lab)
    panel = ClusterPanel(as_lab(view), refresh_interval=0.05)
    try:
        await lab.apply(SetLoad(rate=40))
        await wait_for(lambda: lab.status().balancers[0].requests >= 10, timeout=5, message="load flows")
        requests_before = lab.status().balancers[0].requests
        panel.deploy_buttons["rolling"].click()
        assert all(button.disabled for button in panel.deploy_buttons.values())  # at once, in the click
        assert text(panel.deploys.summary) == "rolling restart running…"
        await wait_for(lambda: "a: warm-up" in text(panel.deploys.steps), timeout=10, message="a warming up")
        assert all(button.disabled for button in panel.deploy_buttons.values())  # still running
        await wait_for(lambda: "done in" in text(panel.deploys.summary), timeout=30, message="deploy done")
        assert not any(button.disabled for button in panel.deploy_buttons.values())
        steps = text(panel.deploys.steps).splitlines()
        assert [line.split()[1:3] for line in steps] == [["a:", "done"], ["b:", "done"], ["c:", "done"]]
        summary = text(panel.deploys.summary)
        assert re.fullmatch(
            r"rolling restart done in \d+\.\d s: a, b, c — 0 requests failed at the balancer meanwhile", summary
        )
        assert lab.status().balancers[0].requests - requests_before >= 20  # it was under load all along
        assert view.commands == [Deploy(batch=1)]
        assert "deploy c: done" in text(panel.event_log)
        assert panel.errors == []
    finally:
        panel.close()
        await lab.stop()


async def test_restart_all_button_restarts_every_instance_at_once(lab: Lab, view: ViewOfLab) -> None:
    panel = ClusterPanel(as_lab(view))
    view.gate = asyncio.Event()  # the lab busy with an earlier command: the deploy is waiting to run
    try:
        panel.deploy_buttons["all-at-once"].click()
        await wait_for(lambda: view.commands == [Deploy(how="all-at-once")], timeout=5, message="sent")
        assert all(button.disabled for button in panel.deploy_buttons.values())
        view.gate.set()
        await wait_for(lambda: "done in" in text(panel.deploys.summary), timeout=10, message="deploy done")
        assert not any(button.disabled for button in panel.deploy_buttons.values())
        steps = [line.split(None, 1)[1] for line in text(panel.deploys.steps).splitlines()]
        assert steps == [f"{name}: restart (all at once, without draining)" for name in "abc"]
        assert text(panel.deploys.summary).startswith("restart all done in ")
    finally:
        panel.close()


async def test_a_second_deploy_is_refused_and_the_panel_says_why() -> None:
    lab = await Lab.start(2, health=FAST_CHECKS, slow_start=1.0)
    panel = ClusterPanel(lab)
    try:
        elsewhere = asyncio.create_task(lab.apply(Deploy()))  # the TUI, the admin API, a notebook cell
        await wait_for(lambda: "a: warm-up" in text(panel.deploys.steps), timeout=10, message="its steps shown")
        panel.deploy_buttons["rolling"].click()
        await wait_for(lambda: panel.errors, timeout=5, message="the refusal is shown")
        assert panel.errors == ["rolling restart refused: a deploy is already running; wait for it to finish"]
        assert shown_text(panel.output) == panel.errors
        assert text(panel.deploys.summary) == "rolling restart did not run to the end (see below)"
        assert not any(button.disabled for button in panel.deploy_buttons.values())
        await elsewhere
        await wait_for(lambda: "b: done" in text(panel.deploys.steps), timeout=5, message="the other's steps go on")
        with pytest.raises(ValueError, match=r"deploy must be one of \['rolling', 'all-at-once', 'balancers'\]"):
            panel.click_deploy("blue-green")
    finally:
        panel.close()
        await lab.stop()


async def test_upgrade_balancers_button_is_a_planned_takeover(pair_lab: Lab, pair_view: ViewOfLab) -> None:
    view = pair_view
    panel = ClusterPanel(as_lab(view), refresh_interval=0.05)
    try:
        await panel.click_deploy("balancers")
        assert view.commands == [Deploy(target="balancers")]
        steps = [line.split(None, 1)[1] for line in text(panel.deploys.steps).splitlines()]
        assert steps == [
            "lb2: restart (the new version, rejoining the pair)",
            "lb1: resign (hands the address over before it stops)",
        ]
        assert text(panel.deploys.summary).startswith("upgrade balancers done in ")
        assert "requests failed" not in text(panel.deploys.summary)  # restarted balancers count afresh
        await wait_for(lambda: "holds" in text(panel.front_door.summary), timeout=5, message="one holds it")
        assert panel.errors == []
    finally:
        panel.close()


async def test_in_a_pair_the_log_says_which_balancer_saw_it(pair_lab: Lab) -> None:
    panel = ClusterPanel(pair_lab)
    try:
        await pair_lab.apply(InjectFault("c", "crash"))
        # Each balancer has its own health checks: both mark c down, and the log says whose verdict each is.
        await wait_for(lambda: "lb1: c marked DOWN" in text(panel.event_log), timeout=10, message="lb1's verdict")
        await wait_for(lambda: "lb2: c marked DOWN" in text(panel.event_log), timeout=10, message="lb2's verdict")
        await pair_lab.apply(BalancerFault("lb1", "crash"))
        # A role change names its balancer already: not "lb2: lb2 is now MASTER".
        await wait_for(lambda: "lb2 is now MASTER" in text(panel.event_log), timeout=MASTER_DOWN + TAKEOVER_MARGIN)
        assert "lb2: lb2" not in text(panel.event_log)
    finally:
        panel.close()


async def test_with_one_balancer_the_log_is_as_it_was(lab: Lab) -> None:
    panel = ClusterPanel(lab)
    try:
        await lab.apply(InjectFault("c", "crash"))
        await wait_for(lambda: "c marked DOWN" in text(panel.event_log), timeout=10, message="c marked down")
        assert "lb1:" not in text(panel.event_log)
    finally:
        panel.close()


@pytest.mark.usefixtures("no_child_processes")
async def test_a_pair_in_process_isolation_shows_each_balancers_process() -> None:
    lab = await Lab.start(2, balancers=2, isolation="process", health=FAST_CHECKS)
    panel = ClusterPanel(lab, refresh_interval=0.05)
    try:
        pids = {b.name: b.pid for b in lab.status().balancers}
        assert all(pids.values()) and pids["lb1"] != pids["lb2"]
        assert [balancer_line(panel, name)[3] for name in ("lb1", "lb2")] == [str(pids["lb1"]), str(pids["lb2"])]
        await panel.click_balancer("lb1", "crash")  # a real kill -9 of its process
        await wait_for(lambda: balancer_line(panel, "lb2")[4] == "holds it", timeout=MASTER_DOWN + TAKEOVER_MARGIN)
        assert balancer_line(panel, "lb1")[2:4] == ["crashed", "-"]
        await panel.click_balancer("lb1", "recover")  # a new process
        await wait_for(lambda: balancer_line(panel, "lb1")[4] == "holds it", timeout=10, message="lb1 back, preempting")
        new_pid = balancer_line(panel, "lb1")[3]
        assert new_pid.isdigit() and int(new_pid) not in pids.values()
        assert panel.errors == []
    finally:
        panel.close()
        await lab.stop()
