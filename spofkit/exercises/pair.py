"""Exercises for lessons 07 and 08: the front door's pair of balancers, and zero-downtime deploys.

The right answers come from spofkit itself: a takeover time from
:attr:`PairSettings.master_down_interval <spofkit.policy.pair.PairSettings.master_down_interval>`; who is master
after a sequence of events, and whether two balancers hold the address at once, from :class:`PairSimulation` —
two real :class:`~spofkit.policy.pair.PairMember` objects on a virtual clock, with an
:class:`~spofkit.policy.pair.AddressLease` when there is fencing. :func:`rolling_deploy_seconds` adds up the
steps of :func:`spofkit.deploy.rolling_restart`.
"""

from __future__ import annotations

import math
import random
import string
from dataclasses import dataclass
from typing import Any

from spofkit.exercises.base import ChoiceExercise, NumericExercise, Problem, _pick
from spofkit.policy.pair import MASTER, AddressLease, PairAction, PairMember, PairSettings, ReleaseAddress, SendAdvert

# --- the pair on a virtual clock ---------------------------------------------------------------------------

BALANCERS = ("lb1", "lb2")
PRIMARY_PRIORITIES = {"lb1": 200, "lb2": 100}  # as in a lab: lb1 is the primary


class PairSimulation:
    """Two balancers' pair rules (:class:`PairMember`) on a virtual clock, joined by a link that can be cut.

    No sockets, no sleeps: :meth:`run_until` jumps from one member's timer to the next. What it models:

    - the **link** between the two carries their adverts at once, unless :meth:`cut_link` broke it;
    - a **crashed** balancer (:meth:`crash`) sends nothing and loses the address (its kernel closes its sockets);
      :meth:`restart` starts a fresh one, which joins as backup; :meth:`stop` leaves gracefully (it resigns);
    - a **hung** balancer (:meth:`hang`) changes nothing here: its adverts go on, which is the point;
    - ``one_host=True``: both listen on one machine's loopback, where the kernel lets only one of them have the
      address; a second master is *blocked* and tries again at each of its adverts;
    - ``fencing=True``: a master may hold the address only with a lease from a supervisor (an
      :class:`AddressLease`, reached over a channel the link cut does not touch), renewed with each advert.
    """

    def __init__(
        self,
        *,
        preempt: bool = True,
        priorities: dict[str, int] | None = None,
        advert_interval: float = 0.2,
        one_host: bool = False,
        fencing: bool = False,
        lease_term: float = 0.5,
    ) -> None:
        self.preempt = preempt
        self.priorities = dict(priorities or PRIMARY_PRIORITIES)
        self.advert_interval = advert_interval
        self.one_host = one_host
        self.lease = AddressLease(term=lease_term) if fencing else None
        self.now = 0.0
        self.link_cut = False
        self.alive: set[str] = set()
        self.holders: set[str] = set()  # who has the service address right now
        self.hung: set[str] = set()
        self.members: dict[str, PairMember] = {}
        for name in self.priorities:
            self.restart(name)

    # --- what happens to the balancers ------------------------------------------------------------------

    def crash(self, name: str) -> None:
        self.alive.discard(name)
        self.holders.discard(name)
        self.hung.discard(name)
        if self.lease is not None:
            self.lease.holder_died(name)  # the supervisor sees the process die

    def restart(self, name: str) -> None:
        """A fresh balancer in place of ``name`` (crashed or not), joining the pair as backup."""
        self.crash(name)
        settings = PairSettings(self.advert_interval, self.priorities[name], self.preempt)
        self.members[name] = PairMember(name, settings, lambda _event: None)
        self.alive.add(name)
        self._carry_out(name, self.members[name].start(self.now))

    def stop(self, name: str) -> None:
        """Leave gracefully: a master resigns with a priority-0 advert first."""
        self._carry_out(name, self.members[name].stop(self.now))
        self.crash(name)

    def hang(self, name: str) -> None:
        self.hung.add(name)  # it no longer answers requests; its pair driver goes on advertising

    def cut_link(self) -> None:
        self.link_cut = True

    def heal_link(self) -> None:
        self.link_cut = False

    # --- time ----------------------------------------------------------------------------------------------

    def run_until(self, end: float) -> None:
        """Let every timer due up to ``end`` fire, in order."""
        while True:
            due = [
                (member.timer_at, name)
                for name, member in self.members.items()
                if name in self.alive and member.timer_at is not None
            ]
            if not due or min(due)[0] > end:
                break
            self.now, name = min(due)
            self._carry_out(name, self.members[name].tick(self.now))
        self.now = max(self.now, end)

    def masters(self) -> set[str]:
        """The balancers that are master by the pair's rules (whether or not they could take the address)."""
        return {name for name in self.alive if self.members[name].role == MASTER}

    # --- the rules' actions -----------------------------------------------------------------------------------

    def _carry_out(self, name: str, actions: list[PairAction]) -> None:
        for action in actions:
            if isinstance(action, SendAdvert):
                self._advertise(name, action.priority)
            elif isinstance(action, ReleaseAddress):
                self.holders.discard(name)
                if self.lease is not None:
                    self.lease.release(name)
        if name in self.alive and self.members[name].role == MASTER:
            self._hold_the_address(name)  # on taking over, and again with every advert (a renewal, a retry)

    def _advertise(self, sender: str, priority: int) -> None:
        if self.link_cut:
            return
        for name in self.alive - {sender}:
            self._carry_out(name, self.members[name].advert_received(self.now, sender, priority))

    def _hold_the_address(self, name: str) -> None:
        if self.lease is not None and not self.lease.request(name, self.now):
            self.holders.discard(name)  # fenced: the supervisor gives the address to one balancer at a time
            return
        if self.one_host and self.holders - {name}:
            return  # blocked: the kernel refuses a second listener on the address
        self.holders.add(name)


@dataclass(frozen=True)
class Step:
    """One thing that happens to the pair: ``action`` is crash, restart, stop, hang, cut or heal."""

    action: str
    balancer: str = ""

    def describe(self) -> str:
        return {
            "crash": f"{self.balancer} crashes (kill -9)",
            "restart": f"{self.balancer} is started again",
            "stop": f"{self.balancer} is stopped gracefully (it resigns)",
            "hang": f"{self.balancer} hangs (it accepts connections and never answers)",
            "cut": "the link between the two balancers breaks (adverts are lost both ways)",
            "heal": "the link between them is repaired",
        }[self.action]


STEP_SPACING = 3.0  # seconds between two steps: plenty for the pair to settle after each


def simulate(steps: list[Step], **settings: Any) -> PairSimulation:
    """Run ``steps`` on a :class:`PairSimulation` made with ``settings``, one every few seconds after the pair
    settled, and a few seconds more after the last one. Returns the simulation at the end."""
    simulation = PairSimulation(**settings)
    simulation.run_until(STEP_SPACING)
    for step in steps:
        if step.action in ("cut", "heal"):
            getattr(simulation, f"{step.action}_link")()
        else:
            getattr(simulation, step.action)(step.balancer)
        simulation.run_until(simulation.now + STEP_SPACING)
    return simulation


def _steps(text: str) -> list[Step]:
    """'crash lb1, restart lb1' -> steps (the scenario tables below are written this way)."""
    steps = []
    for part in text.split(","):
        words = part.split()
        steps.append(Step(words[0], words[1] if len(words) > 1 else ""))
    return steps


# --- lesson 07: the balancer is a single point of failure too ----------------------------------------------


class TakeoverTime(NumericExercise):
    id = "07.takeover_time"
    lesson = "07"
    title = "How long until the backup balancer takes over?"
    answer_format = "seconds"
    unit = "s"
    relative_tolerance = 0.02

    def _make(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        params = {
            "advert_interval": _pick(rng, [0.1, 0.2, 0.5, 1.0, 2.0]),
            "priority": _pick(rng, [20, 50, 100, 150, 192, 240]),
            "case": _pick(rng, ["worst", "best"]),
        }
        moment = {
            "worst": "right after it sent an advert",
            "best": "right before it would have sent its next advert",
        }[params["case"]]
        question = (
            f"A pair of balancers: the master sends an advert every {params['advert_interval']:g} s, the backup "
            f"has priority {params['priority']} (VRRP's rules, as in spofkit.policy.pair). The master is killed "
            f"(kill -9) {moment}. How many seconds after the kill does the backup take over?"
        )
        return question, params

    def solution(self, problem: Problem) -> float:
        params = problem.params
        settings = PairSettings(advert_interval=params["advert_interval"], priority=params["priority"])
        # The backup's timer runs from the last advert it heard: in the best case that was one interval ago.
        heard_before_the_kill = params["advert_interval"] if params["case"] == "best" else 0.0
        return settings.master_down_interval - heard_before_the_kill

    def _hint(self, problem: Problem, given: float) -> str:
        params = problem.params
        interval, priority = params["advert_interval"], params["priority"]
        skew = (256 - priority) / 256 * interval
        best = params["case"] == "best"
        if self._is_near(given, 3 * interval - (interval if best else 0)):
            return "you left out the skew: a backup waits (256 − priority)/256 × advert_interval more"
        if self._is_near(given, 3 * interval + priority / 256 * interval - (interval if best else 0)):
            return "the skew uses 256 − priority: the higher a backup's priority, the sooner it acts"
        if best and self._is_near(given, 3 * interval + skew):
            return "the backup's timer started at the last advert it heard, which came before the kill"
        if not best and self._is_near(given, 2 * interval + skew):
            return "the last advert came just before the kill: the backup waits the whole interval from there"
        return (
            "master_down_interval = 3 × advert_interval + (256 − priority)/256 × advert_interval, counted from the "
            "last advert the backup heard"
        )

    def _why_answer(self, problem: Problem) -> str:
        return (
            "the backup declares the master dead when it has heard no advert for the master-down interval, "
            "counted from the last advert it did hear"
        )


@dataclass(frozen=True)
class _Scenario:
    """A sequence of steps for the pair, the words that explain its outcome, and a question that leads there."""

    steps: str
    preempt: bool
    why: str
    question: str
    settings: tuple[tuple[str, Any], ...] = ()

    def run(self) -> PairSimulation:
        return simulate(_steps(self.steps), preempt=self.preempt, **dict(self.settings))

    def describe(self) -> str:
        happened = "; then ".join(step.describe() for step in _steps(self.steps))
        return f"preempt {'on' if self.preempt else 'off'}: {happened}"


_MASTER_SCENARIOS = [
    _Scenario(
        "crash lb1",
        True,
        "lb2 heard no advert for its master-down interval and took over",
        "what does a backup do when the adverts stop?",
    ),
    _Scenario(
        "hang lb1, crash lb1",
        False,
        "the hang changed nothing (the adverts went on); the crash stopped them, and lb2 took over",
        "which of the two steps stops lb1's adverts?",
    ),
    _Scenario(
        "crash lb1, restart lb1",
        True,
        "the returning lb1 ignores the adverts of lower-priority lb2, times out and takes the address back",
        "with preempt on, what does a returning lb1 do with adverts of a lower priority?",
    ),
    _Scenario(
        "crash lb1, restart lb1",
        False,
        "with preempt off the returning lb1 accepts lb2's adverts and stays backup",
        "with preempt off, does the returning lb1 wait for lb2 to fail, or take over at once?",
    ),
    _Scenario(
        "crash lb1, restart lb1, crash lb2",
        False,
        "lb1 stayed backup until lb2 crashed, then took over after its master-down interval",
        "who is left to hold the address once lb2 has crashed?",
    ),
    _Scenario(
        "crash lb2",
        True,
        "losing the backup changes nothing for the master",
        "which balancer held the address before anything happened, and did it stop advertising?",
    ),
    _Scenario(
        "hang lb1",
        True,
        "a hung lb1 keeps advertising, so lb2 never hears that anything is wrong",
        "does a hung balancer stop sending its adverts?",
    ),
    _Scenario(
        "hang lb1",
        False,
        "a hung lb1 keeps advertising, so lb2 never hears that anything is wrong",
        "does a hung balancer stop sending its adverts?",
    ),
    _Scenario(
        "crash lb1, restart lb1, stop lb2",
        False,
        "lb2 resigned with a priority-0 advert, and the waiting lb1 took over after its skew",
        "what does the backup do when the master resigns?",
    ),
    _Scenario(
        "crash lb1, crash lb2, restart lb2",
        True,
        "lb2 came back alone: with nobody advertising it timed out and took the address",
        "who is alive at the end, and who advertises to it?",
    ),
    _Scenario(
        "crash lb1, crash lb2, restart lb1, restart lb2",
        False,
        "lb1 came back first and became master; lb2 joined later and accepted lb1's adverts",
        "which of the two was back first, and what does the later one hear when it joins?",
    ),
    _Scenario(
        "stop lb1, restart lb1",
        True,
        "lb2 took over when lb1 resigned; the returning lb1, with preempt on, took the address back",
        "with preempt on, what does a returning lb1 do with adverts of a lower priority?",
    ),
    _Scenario(
        "stop lb1, restart lb1",
        False,
        "lb2 took over when lb1 resigned, and with preempt off the returning lb1 stays backup",
        "with preempt off, does the returning lb1 wait for lb2 to fail, or take over at once?",
    ),
    _Scenario(
        "crash lb2, restart lb2",
        False,
        "lb1 was master all along; lb2 came back as backup and accepted its higher-priority adverts",
        "which balancer held the address before anything happened, and did it stop advertising?",
    ),
]


class WhoIsMaster(ChoiceExercise):
    id = "07.who_is_master"
    lesson = "07"
    title = "Which balancer is master after all that?"

    def _make(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        ask = _pick(rng, list(BALANCERS))
        while True:
            options = rng.sample(range(len(_MASTER_SCENARIOS)), 5)
            verdicts = {self._master(index) == {ask} for index in options}
            if verdicts == {True, False}:  # a mix, so "all" or "none" is never the answer
                break
        lines = [
            f"  {label}. {_MASTER_SCENARIOS[index].describe()}"
            for label, index in zip(string.ascii_uppercase, options, strict=False)
        ]
        question = (
            f"A pair of balancers: lb1 has priority {PRIMARY_PRIORITIES['lb1']}, lb2 priority "
            f"{PRIMARY_PRIORITIES['lb2']}; adverts every 0.2 s; lb1 is master to begin with. Each step below "
            f"comes a few seconds after the one before, once the pair has settled. In which scenarios is {ask} "
            f"the master a few seconds after the last step?\n" + "\n".join(lines)
        )
        return question, {"ask": ask, "options": options}

    @staticmethod
    def _master(index: int) -> set[str]:
        return _MASTER_SCENARIOS[index].run().masters()

    def _is_true(self, problem: Problem, option: Any) -> bool:
        return self._master(option) == {problem.params["ask"]}

    def _why(self, problem: Problem, option: Any) -> str:
        masters = self._master(option)
        who = " and ".join(sorted(masters)) or "nobody"
        return f"{who} ends as master: {_MASTER_SCENARIOS[int(option)].why}."

    def _question(self, problem: Problem, option: Any) -> str:
        return _MASTER_SCENARIOS[int(option)].question


class RequestsLost(NumericExercise):
    id = "07.requests_lost"
    lesson = "07"
    title = "What a client without retries loses in a takeover"
    answer_format = "requests"
    unit = "requests"
    relative_tolerance = 0.05  # "about": the requests in flight are an average

    def _make(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        params = {
            "rate": _pick(rng, [20, 50, 100, 200, 500]),
            "takeover": _pick(rng, [0.5, 0.6, 0.72, 1.2, 3.6]),
            "work_ms": _pick(rng, [0, 10, 50, 100, 200, 400]),
        }
        question = (
            f"A client sends {params['rate']} GET requests per second through a pair of balancers, and never "
            f"retries. Each request takes {params['work_ms']} ms from the moment it reaches the balancer. The "
            f"master is killed (kill -9); the backup serves {params['takeover']:g} s after the kill, and until "
            f"then every connection to the service address is refused. About how many requests fail?"
        )
        return question, params

    def solution(self, problem: Problem) -> float:
        params = problem.params
        in_flight = params["rate"] * params["work_ms"] / 1000  # Little's law: cut off with the master's connections
        refused = params["rate"] * params["takeover"]  # sent while nobody held the address
        return float(in_flight + refused)

    def _hint(self, problem: Problem, given: float) -> str:
        params = problem.params
        rate, takeover, work = params["rate"], params["takeover"], params["work_ms"]
        if work > 0 and self._is_near(given, rate * takeover):
            return "the requests in flight when the master died are lost too: how many are in flight at any moment?"
        if self._is_near(given, rate * work / 1000):
            return "add the requests sent during the takeover: every one of them is refused"
        if work > 0 and self._is_near(given, rate * (takeover + work)):
            return f"the time each request takes is {work} ms: turn it into seconds first"
        return "lost = sent during the takeover + in flight at the kill (Little's law: rate × time each takes)"

    def _why_answer(self, problem: Problem) -> str:
        return (
            "the requests in flight die with the master's connections, and every request sent before the backup "
            "holds the address is refused; a client that retries connection errors would have kept them all"
        )


_SPLIT_BRAIN_SCENARIOS: list[tuple[str, str, dict[str, Any], str]] = [
    # (what happens, steps, simulation settings, a question that leads to the verdict)
    (
        "two machines; the link between the balancers breaks; no fencing",
        "cut",
        {},
        "what does lb2 conclude when it hears no adverts, and can anything stop it taking the address?",
    ),
    (
        "two machines; the link between the balancers breaks; a supervisor grants the address by lease (fencing)",
        "cut",
        {"fencing": True},
        "who does the supervisor give the lease to while lb1 keeps renewing it?",
    ),
    (
        "one host, both on its loopback; the adverts between them are lost",
        "cut",
        {"one_host": True},
        "what does the kernel say to a second listener on an address:port that is taken?",
    ),
    (
        "two machines; lb1 crashes (kill -9)",
        "crash lb1",
        {},
        "how many balancers are alive to hold the address?",
    ),
    (
        "two machines; lb1 hangs (accepts connections, never answers)",
        "hang lb1",
        {},
        "does a hung balancer stop advertising, and would lb2 take over then?",
    ),
    (
        "two machines; both have priority 100; the link between them breaks",
        "cut",
        {"priorities": {"lb1": 100, "lb2": 100}},
        "can the tie-breaker compare anything when neither hears the other?",
    ),
    (
        "two machines; both have priority 100; nothing breaks",
        "",
        {"priorities": {"lb1": 100, "lb2": 100}},
        "when two masters of the same priority hear each other, what decides which one steps down?",
    ),
    (
        "two machines, preempt off; the link between them breaks",
        "cut",
        {"preempt": False},
        "does preempt change what a backup does when it hears nothing at all?",
    ),
    (
        "two machines; the link breaks, and is repaired a few seconds later",
        "cut, heal",
        {},
        "once adverts flow again, what does the master with the lower priority do?",
    ),
    (
        "two machines with fencing by lease; lb1 crashes (kill -9)",
        "crash lb1",
        {"fencing": True},
        "what does the supervisor do with a dead balancer's lease, and how many are alive?",
    ),
    (
        "two machines; lb1 is stopped gracefully for an upgrade",
        "stop lb1",
        {},
        "does a balancer that resigns keep the address?",
    ),
]


class SplitBrainOrNot(ChoiceExercise):
    id = "07.split_brain"
    lesson = "07"
    title = "Split brain, or not?"

    def _make(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        while True:
            options = rng.sample(range(len(_SPLIT_BRAIN_SCENARIOS)), 5)
            verdicts = {self._both_hold(index) for index in options}
            if verdicts == {True, False}:
                break
        lines = [
            f"  {label}. {_SPLIT_BRAIN_SCENARIOS[index][0]}"
            for label, index in zip(string.ascii_uppercase, options, strict=False)
        ]
        question = (
            f"A pair of balancers (lb1 priority {PRIMARY_PRIORITIES['lb1']}, lb2 priority "
            f"{PRIMARY_PRIORITIES['lb2']} unless said otherwise; preempt on unless said otherwise); lb1 is master "
            "to begin with. In which scenarios do BOTH balancers hold the service address at once, a few seconds "
            "after the last thing that happens (split brain)?\n" + "\n".join(lines)
        )
        return question, {"options": options}

    @staticmethod
    def _both_hold(index: int) -> bool:
        _words, steps, settings, _question = _SPLIT_BRAIN_SCENARIOS[index]
        simulation = simulate(_steps(steps) if steps else [], **settings)
        return len(simulation.holders) > 1

    def _is_true(self, problem: Problem, option: Any) -> bool:
        return self._both_hold(option)

    def _why(self, problem: Problem, option: Any) -> str:
        _words, steps, settings, _question = _SPLIT_BRAIN_SCENARIOS[int(option)]
        simulation = simulate(_steps(steps) if steps else [], **settings)
        holders = " and ".join(sorted(simulation.holders)) or "nobody"
        masters = " and ".join(sorted(simulation.masters())) or "nobody"
        verdict = "split brain" if len(simulation.holders) > 1 else "no split brain"
        return f"{verdict}: master by the rules {masters}, holding the address {holders}."

    def _question(self, problem: Problem, option: Any) -> str:
        return _SPLIT_BRAIN_SCENARIOS[int(option)][3]


# --- lesson 08: zero-downtime deploys ----------------------------------------------------------------------


def rolling_deploy_seconds(
    instances: int, batch: int, *, drain: float, restart: float, readiness: float, warm_up: float
) -> float:
    """How long :func:`spofkit.deploy.rolling_restart` takes: batch after batch, each drained, restarted, seen
    ready and warmed up before the next one starts. The last batch may be smaller; it takes as long."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch!r}")
    batches = math.ceil(instances / batch)
    return batches * (drain + restart + readiness + warm_up)


class DeployDuration(NumericExercise):
    id = "08.deploy_duration"
    lesson = "08"
    title = "How long does a rolling deploy take?"
    answer_format = "seconds"
    unit = "s"

    def _make(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        instances = rng.randrange(3, 13)
        params = {
            "instances": instances,
            "batch": _pick(rng, [b for b in (1, 2, 3, 4) if b < instances]),
            "drain": _pick(rng, [0.5, 1.0, 2.0, 5.0]),
            "restart": _pick(rng, [1.0, 2.0, 4.0, 10.0]),
            "rise": rng.randrange(2, 5),
            "interval": _pick(rng, [0.5, 1.0, 2.0]),
            "warm_up": _pick(rng, [0.0, 5.0, 10.0, 30.0]),
        }
        warm = f"slow start warms each one up for {params['warm_up']:g} s" if params["warm_up"] else "no slow start"
        question = (
            f"A rolling deploy replaces {instances} instances, {params['batch']} at a time. For each batch: "
            f"draining takes {params['drain']:g} s, the restart {params['restart']:g} s, then readiness: "
            f"{params['rise']} passed health checks, one every {params['interval']:g} s (count "
            f"rise × interval); {warm}. The next batch starts only when this one is done. How many seconds does "
            f"the whole deploy take?"
        )
        return question, params

    def _steps(self, params: dict[str, Any]) -> dict[str, float]:
        return {
            "drain": params["drain"],
            "restart": params["restart"],
            "readiness": params["rise"] * params["interval"],
            "warm_up": params["warm_up"],
        }

    def solution(self, problem: Problem) -> float:
        params = problem.params
        return rolling_deploy_seconds(params["instances"], params["batch"], **self._steps(params))

    def _hint(self, problem: Problem, given: float) -> str:
        params = problem.params
        steps = self._steps(params)
        per_batch = sum(steps.values())
        instances, batch = params["instances"], params["batch"]
        if batch > 1 and self._is_near(given, instances * per_batch):
            return "the instances of one batch restart together: count batches, not instances"
        if instances % batch and self._is_near(given, instances / batch * per_batch):
            return "the last batch is smaller but takes just as long: round the number of batches up"
        if steps["warm_up"] and self._is_near(given, math.ceil(instances / batch) * (per_batch - steps["warm_up"])):
            return "the next batch waits for this one's warm-up too"
        if self._is_near(given, math.ceil(instances / batch) * (per_batch - steps["readiness"])):
            return "readiness takes time too: rise passed checks, one interval apart"
        return "duration = number of batches (rounded up) × (drain + restart + readiness + warm-up)"

    def _why_answer(self, problem: Problem) -> str:
        return (
            "each batch is drained, restarted, seen ready and warmed up before the next one starts; a larger batch "
            "means fewer rounds, and less capacity while each one runs"
        )


class LargestBatch(NumericExercise):
    id = "08.largest_batch"
    lesson = "08"
    title = "How many instances can a deploy take out at once?"
    answer_format = "a whole number of instances"
    unit = "instances"
    relative_tolerance = 0.0

    def _make(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        instances = rng.randrange(3, 11)
        capacity = _pick(rng, [50, 80, 100, 200])
        spare = rng.randrange(1, instances)  # the answer: at least one, or no rolling deploy is possible
        needed = instances - spare
        # A peak that needs exactly `needed` instances: more than needed - 1 can carry, at most what needed can.
        peak = capacity * (needed - 1) + rng.randrange(1, capacity + 1)
        question = (
            f"{instances} instances each serve at most {capacity} requests/s, and the peak load is {peak} "
            f"requests/s. During a rolling deploy, the instances of the batch being replaced serve nothing. What "
            f"is the largest batch size that still carries the peak?"
        )
        return question, {"instances": instances, "capacity": capacity, "peak": peak}

    def solution(self, problem: Problem) -> float:
        params = problem.params
        needed = math.ceil(params["peak"] / params["capacity"])  # instances that must keep serving
        return float(params["instances"] - needed)

    def _hint(self, problem: Problem, given: float) -> str:
        params = problem.params
        instances, capacity, peak = params["instances"], params["capacity"], params["peak"]
        if given != int(given):
            return "a batch is a whole number of instances"
        if self._is_near(given, math.ceil(peak / capacity)) or self._is_near(given, peak // capacity):
            return "that is about how many must keep serving; the batch is the rest"
        if peak % capacity and self._is_near(given, instances - peak // capacity):
            return "round the instances needed for the peak up: a fraction of an instance serves nothing"
        return "instances that must keep serving = peak ÷ capacity of one, rounded up; the batch is the rest"

    def _why_answer(self, problem: Problem) -> str:
        return (
            "N+1 thinking: a service that must survive the loss of b instances (a crash, a deploy batch) needs b "
            "instances more than its peak requires"
        )


_DEPLOY_FAILURES: list[tuple[str, str, str]] = [
    # (what goes wrong, the step that prevents it, a question that leads there)
    (
        "requests in flight on an instance are cut off when its process stops",
        "drain",
        "what happens to requests an instance is still working on when it stops?",
    ),
    (
        "a long upload (a POST, never retried) to the old process breaks halfway",
        "drain",
        "what happens to requests an instance is still working on when it stops?",
    ),
    (
        "the new process gets requests before it listens on its port: connections refused",
        "readiness",
        "when does the balancer first send the new process requests?",
    ),
    (
        "the new version starts, but cannot reach its database: every request it serves fails",
        "readiness",
        "which step asks the new process whether it can serve before it gets traffic?",
    ),
    (
        "the next batch is taken down while this one is still starting, so two batches are out at once",
        "readiness",
        "what does the deploy wait for before it moves on to the next batch?",
    ),
    (
        "a new process with empty caches gets its full share at once, and its answers are slow",
        "warm-up",
        "how much traffic does an instance get right after it passed its checks?",
    ),
    (
        "a freshly started runtime compiles its hot code paths on the first requests: a latency spike",
        "warm-up",
        "how much traffic does an instance get right after it passed its checks?",
    ),
    (
        "the new version returns wrong data with 200 OK",
        "none",
        "can a health check or a slow start tell right data from wrong data?",
    ),
    (
        "every instance restarts at the same moment: an outage",
        "batches",
        "is this about a step for one instance, or about how many are replaced at once?",
    ),
]
DEPLOY_STEPS = ("drain", "readiness", "warm-up")
_STEP_WORDS = {
    "drain": "drain (no new requests; the ones in flight finish before the restart)",
    "readiness": "readiness (back in the pool only after rise passed health checks)",
    "warm-up": "warm-up (slow start: a share of traffic growing from zero)",
}


class WhichStepPrevents(ChoiceExercise):
    id = "08.which_step"
    lesson = "08"
    title = "Which step of a rolling deploy prevents which failure?"

    def _make(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        step = _pick(rng, list(DEPLOY_STEPS))
        while True:
            options = rng.sample(range(len(_DEPLOY_FAILURES)), 5)
            verdicts = {_DEPLOY_FAILURES[index][1] == step for index in options}
            if verdicts == {True, False}:
                break
        lines = [
            f"  {label}. {_DEPLOY_FAILURES[index][0]}"
            for label, index in zip(string.ascii_uppercase, options, strict=False)
        ]
        question = (
            f"A rolling deploy replaces instances one batch at a time: drain, restart, readiness, warm-up. Which of "
            f"these failures does the step {_STEP_WORDS[step]} prevent?\n" + "\n".join(lines)
        )
        return question, {"step": step, "options": options}

    def _is_true(self, problem: Problem, option: Any) -> bool:
        return bool(_DEPLOY_FAILURES[int(option)][1] == problem.params["step"])

    def _why(self, problem: Problem, option: Any) -> str:
        prevented_by = _DEPLOY_FAILURES[int(option)][1]
        if prevented_by == "none":
            return "no step of the deploy sees it: that takes a canary and checks of the answers themselves."
        if prevented_by == "batches":
            return "the batches do: a rolling deploy keeps the rest serving (restart-all is this failure)."
        return f"the {prevented_by} step prevents it."

    def _question(self, problem: Problem, option: Any) -> str:
        return _DEPLOY_FAILURES[int(option)][2]
