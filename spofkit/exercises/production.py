"""Exercises for lesson 11, from the lab to production: the real proxies' defaults and words.

The right answers come from spofkit itself: HAProxy's detection of a crash from running the lab's own rise/fall
machine (:class:`~spofkit.policy.health.HealthState`) on HAProxy's probe schedule, which settings a proxy has a
word for from what :mod:`spofkit.export` writes (a setting it lacks is a ``# not in ...:`` comment there), and a
keepalived takeover from the pair's rules (:class:`~spofkit.policy.pair.PairSettings`).
"""

from __future__ import annotations

import functools
import random
import string
from typing import Any

from spofkit.exercises.base import ChoiceExercise, NumericExercise, Problem, _pick
from spofkit.export import LabSettings, config_for
from spofkit.policy.health import HealthSettings, HealthState
from spofkit.policy.pair import PairSettings

# HAProxy's `check` with nothing else: inter 2s, fastinter and downinter = inter, rise 2, fall 3.
HAPROXY_DEFAULTS = {"inter": 2.0, "fastinter": None, "fall": 3}


def haproxy_crash_detection(inter: float, fall: int, fastinter: float | None = None) -> float:
    """Worst case, in seconds, from a crash to HAProxy marking the server DOWN, connections refused at once.

    The crash comes just after a check passed: the next check is a whole ``inter`` away; from the first failed
    one on, HAProxy checks every ``fastinter`` (its default: ``inter``) until ``fall`` checks failed in a row. A
    refused check fails at once, so no timeout is waited for. The lab's own rise/fall machine counts the checks.
    """
    settings = HealthSettings(interval=inter, fastinter=fastinter, fall=fall)
    state = HealthState(rise=settings.rise, fall=settings.fall)
    elapsed = settings.interval
    while state.record(False) is None:
        elapsed += state.next_interval(settings)
    return elapsed


class HAProxyCrashDetection(NumericExercise):
    id = "11.haproxy_crash_detection"
    lesson = "11"
    title = "How long does HAProxy take to mark a crashed server DOWN?"
    answer_format = "seconds"
    unit = "s"

    def _make(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        if rng.random() < 0.25:  # now and then, HAProxy as it comes: `check` alone
            params: dict[str, Any] = {**HAPROXY_DEFAULTS, "defaults": True}
            line = "server b 10.0.0.2:8080 check"
            words = ", HAProxy's defaults for everything else"
        else:
            inter = _pick(rng, [1.0, 2.0, 3.0, 5.0])
            params = {
                "inter": inter,
                "fastinter": _pick(rng, [None, inter / 2, inter / 4]),
                "fall": rng.randrange(2, 6),
                "defaults": False,
            }
            extra = f" fastinter {params['fastinter'] * 1000:g}ms" if params["fastinter"] is not None else ""
            line = f"server b 10.0.0.2:8080 check inter {inter:g}s{extra} fall {params['fall']}"
            words = ""
        question = (
            f"A backend server is written `{line}`{words}. The server crashes right after passing a check: "
            "from then on every check is refused at once (no timeout to wait for). In the worst case, how many "
            "seconds pass until HAProxy marks it DOWN?"
        )
        return question, params

    def solution(self, problem: Problem) -> float:
        params = problem.params
        return haproxy_crash_detection(params["inter"], params["fall"], params["fastinter"])

    def _hint(self, problem: Problem, given: float) -> str:
        params = problem.params
        defaults = " (HAProxy's defaults: inter 2s, rise 2, fall 3; fastinter is inter)" if params["defaults"] else ""
        if self._is_near(given, params["inter"] * params["fall"]) and params["fastinter"] is not None:
            return "nearly: once a check has failed, HAProxy checks every fastinter, not every inter"
        return (
            f"the first failing check comes up to one inter after the crash; then fall − 1 = {params['fall'] - 1} more "
            f"checks, each fastinter after the last (fastinter defaults to inter){defaults}"
        )


class NginxFailedAttempts(NumericExercise):
    id = "11.nginx_failed_attempts"
    lesson = "11"
    title = "How many real requests does nginx spend on a dead server?"
    answer_format = "a whole number of attempts"
    relative_tolerance = 0.0

    def _make(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        params = {"max_fails": _pick(rng, [1, 1, 2, 3, 5]), "workers": _pick(rng, [1, 2, 4, 8])}
        question = (
            f"nginx (open source) runs worker_processes {params['workers']}, in front of an upstream without a "
            f"`zone` (so each worker keeps its own failure counts), with `server b:8080 "
            f"max_fails={params['max_fails']} fail_timeout=10s`. b crashes under heavy load. At most, how many "
            "requests do the workers send to b (each one refused, and passed on to the next server) before every "
            "worker has stopped sending to it for fail_timeout?"
        )
        return question, params

    def solution(self, problem: Problem) -> float:
        return float(problem.params["max_fails"] * problem.params["workers"])

    def _hint(self, problem: Problem, given: float) -> str:
        if self._is_near(given, float(problem.params["max_fails"])):
            return "nearly: that is one worker's count; who else keeps a count of its own?"
        return "nginx has no active checks: each worker learns only from the real requests it sends itself"


# The features asked about, each with the words its "# not in ...:" comment would have in an exported
# configuration that lacks it (spofkit.export writes one for every lab setting a proxy has no word for).
_FEATURES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("active health checks (interval, timeout, rise, fall)", ("active health checks",)),
    ("retrying a failed attempt on another instance", ("retrying a failed attempt",)),
    ("a deadline for all of a request's attempts together", ("deadline",)),
    ("a retry budget (retries at most 20 % of the load)", ("retry budget",)),
    ("passive ejection after failures of real requests", ("passive ejection (",)),
    ("an ejection time that grows each time an instance is ejected again", ("ejection time", "ejection growing")),
    ("slow start for an instance coming back", ("slow_start",)),
    ("a per-try timeout for the whole answer", ("per-try timeout for the whole answer",)),
    ("latency-aware balancing (peak EWMA)", ("peak_ewma",)),
)
_TARGET_NAMES = {"haproxy": "HAProxy 2.6", "nginx": "nginx 1.22 (open source)"}


@functools.cache
def proxy_has(target: str, feature: int) -> bool:
    """Does ``target`` have a word for lab feature ``feature`` (an index of the options)? Read off the export."""
    settings = LabSettings.for_instances(3, strategy="peak_ewma", slow_start=5.0)
    text = config_for(target, settings)
    mark = "not in HAProxy:" if target == "haproxy" else "not in nginx:"
    missing = [line for line in text.splitlines() if mark in line]
    return not any(needle in line for line in missing for needle in _FEATURES[feature][1])


class ProxyEquivalents(ChoiceExercise):
    id = "11.proxy_equivalents"
    lesson = "11"
    title = "Which lab settings does the real proxy have a word for?"

    def _make(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        target = _pick(rng, ["haproxy", "nginx"])
        while True:
            options = rng.sample(range(len(_FEATURES)), 5)
            if {proxy_has(target, index) for index in options} == {True, False}:  # never "all" or "none"
                break
        labels = string.ascii_uppercase[: len(options)]
        lines = [f"  {label}. {_FEATURES[index][0]}" for label, index in zip(labels, options, strict=True)]
        question = (
            f"You export a lab to {_TARGET_NAMES[target]}. Which of these does {_TARGET_NAMES[target]} have a "
            "setting for (not merely something near it)?\n" + "\n".join(lines)
        )
        return question, {"options": options, "target": target}

    def _is_true(self, problem: Problem, option: Any) -> bool:
        return proxy_has(problem.params["target"], option)

    def _why(self, problem: Problem, option: Any) -> str:
        name = _TARGET_NAMES[problem.params["target"]]
        if proxy_has(problem.params["target"], option):
            return f"{name} has it (the export writes it as a setting)."
        return f"{name} has none (the export writes a comment naming the nearest)."

    def _question(self, problem: Problem, option: Any) -> str:
        target = problem.params["target"]
        return f"export a lab to {target}: is this a setting there, or a '# not in ...' comment?"


class KeepalivedTakeover(NumericExercise):
    id = "11.keepalived_takeover"
    lesson = "11"
    title = "How long until keepalived's backup takes over from a lost master?"
    answer_format = "seconds"
    unit = "s"

    def _make(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        params = {"advert_int": _pick(rng, [0.5, 1.0, 2.0, 3.0]), "priority": _pick(rng, [50, 100, 150, 200])}
        question = (
            f"Two HAProxies with keepalived share a virtual IP. The backup has priority {params['priority']}, "
            f"and both send adverts every advert_int {params['advert_int']:g} s. The master machine loses power "
            "(no last advert: it is simply gone). At most, how many seconds after the last advert it heard does "
            "the backup take the address over? (VRRP: three adverts missed, plus a skew that shrinks with the "
            "priority.)"
        )
        return question, params

    def solution(self, problem: Problem) -> float:
        params = problem.params
        return PairSettings(advert_interval=params["advert_int"], priority=params["priority"]).master_down_interval

    def _hint(self, problem: Problem, given: float) -> str:
        advert = problem.params["advert_int"]
        if self._is_near(given, 3 * advert):
            return "nearly: the backup waits a skew on top, (256 − priority) / 256 × advert_int"
        return "master-down interval = 3 × advert_int + (256 − priority) / 256 × advert_int (RFC 5798)"
