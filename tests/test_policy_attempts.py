"""The per-request attempt machine, rule by rule: feed an outcome, assert the next action. No sockets, no sleeps."""

from __future__ import annotations

import pytest

from spofkit.events import Event, InstanceEjected, RequestCompleted, RequestRetried
from spofkit.policy import (
    CONNECT,
    RESET,
    TIMEOUT,
    BalancerPolicy,
    EjectionSettings,
    Fail,
    Relay,
    RequestInfo,
    RetrySettings,
    Try,
)


def make_policy(
    names: str = "abc",
    *,
    retries: RetrySettings | None = RetrySettings(),  # noqa: B008
    ejection: EjectionSettings | None = None,
    strategy: str = "round_robin",
) -> tuple[BalancerPolicy, list[Event]]:
    events: list[Event] = []
    policy = BalancerPolicy(events.append, strategy=strategy, retries=retries, ejection=ejection, health=None)
    for name in names:
        policy.add_member(name, f"http://127.0.0.1:{9000 + ord(name)}", 0.0)
    return policy, events


GET = RequestInfo("GET", "/")
POST = RequestInfo("POST", "/orders")


def of_kind(events: list[Event], kind: type[Event]) -> list[Event]:
    return [e for e in events if isinstance(e, kind)]


def test_first_attempt_goes_to_the_strategys_pick_with_the_per_try_timeout() -> None:
    policy, _ = make_policy()
    action = policy.new_request(GET, 1.0).begin(1.0)
    assert action == Try("a", 1.0, 1)


def test_refused_connection_is_redispatched_to_another_instance() -> None:
    policy, events = make_policy()
    attempts = policy.new_request(GET, 0.0)
    assert attempts.begin(0.0) == Try("a", 1.0, 1)
    action = attempts.failed(0.01, CONNECT, "connect failed (refused)", reached_backend=False)
    assert action == Try("b", 1.0, 2)
    assert attempts.answered(0.02, 200) == Relay("b", 200)
    done = attempts.finish(0.03, 200)
    assert (done.outcome, done.instance, done.attempts) == ("retried", "b", 2)
    retried = of_kind(events, RequestRetried)
    assert [(e.instance, e.attempt) for e in retried] == [("a", 1)]  # type: ignore[attr-defined]


def test_per_try_timeout_is_cut_short_by_the_deadline() -> None:
    policy, _ = make_policy(retries=RetrySettings(per_try_timeout=1.0, deadline=1.5))
    attempts = policy.new_request(GET, 0.0)
    attempts.begin(0.0)
    action = attempts.failed(1.0, TIMEOUT, "no answer within 1.00s")
    assert isinstance(action, Try)
    assert action.timeout == pytest.approx(0.5)


def test_deadline_passed_gives_504_naming_the_rule() -> None:
    policy, _ = make_policy(retries=RetrySettings(per_try_timeout=1.0, deadline=1.0))
    attempts = policy.new_request(GET, 0.0)
    attempts.begin(0.0)
    action = attempts.failed(1.0, TIMEOUT, "no answer within 1.00s")
    assert isinstance(action, Fail)
    assert action.status == 504
    assert "a: no answer within 1.00s" in action.reason and "deadline (1.0s) passed" in action.reason


def test_post_that_reached_a_backend_is_never_replayed() -> None:
    policy, _ = make_policy()
    attempts = policy.new_request(POST, 0.0)
    attempts.begin(0.0)
    action = attempts.failed(0.1, RESET, "connection lost")
    assert isinstance(action, Fail)
    assert action.status == 502
    assert "POST is not idempotent and may have reached the backend" in action.reason
    assert attempts.finish(0.1, 502).outcome == "failed"


def test_post_whose_connection_was_refused_is_retried() -> None:
    policy, _ = make_policy()
    attempts = policy.new_request(POST, 0.0)
    attempts.begin(0.0)
    assert attempts.failed(0.0, CONNECT, "refused", reached_backend=False) == Try("b", 1.0, 2)


def test_a_streamed_body_cannot_be_sent_twice_unless_it_never_left() -> None:
    policy, _ = make_policy()
    attempts = policy.new_request(GET, 0.0, body_replayable=False)
    attempts.begin(0.0)
    action = attempts.failed(0.1, RESET, "connection lost")
    assert isinstance(action, Fail) and "streamed and cannot be sent again" in action.reason
    attempts = policy.new_request(GET, 1.0, body_replayable=False)
    attempts.begin(1.0)
    assert isinstance(attempts.failed(1.0, CONNECT, "refused", reached_backend=False), Try)


def test_retryable_status_is_retried_and_a_non_retryable_one_relayed() -> None:
    policy, _ = make_policy()
    attempts = policy.new_request(GET, 0.0)
    attempts.begin(0.0)
    assert attempts.answered(0.1, 503) == Try("b", 1.0, 2)
    assert attempts.answered(0.2, 500) == Relay("b", 500)  # 500 is the application's own bug: not retried


def test_last_retryable_answer_is_relayed_when_retries_run_out() -> None:
    policy, _ = make_policy(retries=RetrySettings(max_attempts=2))
    attempts = policy.new_request(GET, 0.0)
    attempts.begin(0.0)
    assert isinstance(attempts.answered(0.1, 503), Try)
    assert attempts.answered(0.2, 503) == Relay("b", 503)  # the instance's own answer is the honest reply


def test_every_instance_failed_names_each_one() -> None:
    policy, _ = make_policy("ab")
    attempts = policy.new_request(GET, 0.0)
    attempts.begin(0.0)
    attempts.failed(0.0, CONNECT, "connect failed (refused)", reached_backend=False)
    action = attempts.failed(0.0, CONNECT, "connect failed (refused)", reached_backend=False)
    assert isinstance(action, Fail)
    assert action.status == 502
    assert action.reason == "a: connect failed (refused); b: connect failed (refused); no other instance left to try"


def test_no_instance_at_all_is_503_before_any_attempt() -> None:
    policy, _ = make_policy("")
    attempts = policy.new_request(GET, 0.0)
    assert attempts.begin(0.0) == Fail(503, "no instance is available (all down, ejected or draining)")
    event = attempts.finish(0.0, 503)
    assert (event.outcome, event.attempts, event.last_tried) == ("failed", 0, None)


def test_retries_off_means_one_attempt_with_a_long_timeout() -> None:
    policy, _ = make_policy(retries=None)
    attempts = policy.new_request(GET, 0.0)
    assert attempts.begin(0.0) == Try("a", 30.0, 1)
    action = attempts.failed(0.1, CONNECT, "refused", reached_backend=False)
    assert isinstance(action, Fail) and "max_attempts (1) used" in action.reason
    assert attempts.answered is not None  # the machine is done: a further report is a driver bug
    with pytest.raises(RuntimeError):
        attempts.answered(0.2, 200)


def test_budget_refusal_names_the_budget() -> None:
    # No floor, 10% ratio: 10 requests allow exactly one retry of a request that reached an instance.
    settings = RetrySettings(budget_ratio=0.1, budget_min_per_second=0.0)
    policy, _ = make_policy(retries=settings)
    machines = [policy.new_request(GET, 0.0) for _ in range(10)]
    for machine in machines:
        machine.begin(0.0)
    assert isinstance(machines[0].failed(0.1, RESET, "connection lost"), Try)
    refused = machines[1].failed(0.1, RESET, "connection lost")
    assert isinstance(refused, Fail)
    assert refused.reason.endswith("(not retried: retry budget exhausted)")


def test_retrying_a_refused_connection_does_not_spend_the_budget() -> None:
    settings = RetrySettings(budget_ratio=0.0, budget_min_per_second=0.0)  # a budget that allows nothing
    policy, _ = make_policy(retries=settings)
    attempts = policy.new_request(GET, 0.0)
    attempts.begin(0.0)
    assert isinstance(attempts.failed(0.0, CONNECT, "refused", reached_backend=False), Try)
    assert policy.budget.retries_in_window == 0
    # ... while a retry of an attempt that reached an instance is refused by the same budget.
    other = policy.new_request(GET, 0.0)
    other.begin(0.0)
    assert isinstance(other.failed(0.0, RESET, "connection lost"), Fail)


def test_failures_eject_an_instance_and_the_next_request_avoids_it() -> None:
    policy, events = make_policy(ejection=EjectionSettings(consecutive_failures=2, base_time=5.0))
    for now in (0.0, 0.1, 0.2, 0.3):  # round robin: a takes the 1st and the 4th
        attempts = policy.new_request(GET, now)
        action = attempts.begin(now)
        while isinstance(action, Try):
            action = attempts.answered(now, 500 if action.instance == "a" else 200)
    ejected = of_kind(events, InstanceEjected)
    assert [(e.instance, e.duration) for e in ejected] == [("a", 5.0)]  # type: ignore[attr-defined]
    assert policy.state_of("a", 1.0) == "ejected"
    assert policy.next_wakeup() == pytest.approx(ejected[0].at + 5.0)
    picks = []
    for now in (1.0, 1.1, 1.2, 1.3):
        attempts = policy.new_request(GET, now)
        action = attempts.begin(now)
        assert isinstance(action, Try)
        picks.append(action.instance)
        attempts.answered(now, 200)
    assert "a" not in picks


def test_ejection_runs_out_at_its_wakeup() -> None:
    policy, events = make_policy(ejection=EjectionSettings(consecutive_failures=1, base_time=2.0))
    attempts = policy.new_request(GET, 0.0)
    attempts.begin(0.0)
    attempts.failed(0.0, RESET, "connection lost")
    wakeup = policy.next_wakeup()
    assert wakeup == pytest.approx(2.0)
    policy.wake(wakeup)
    assert policy.state_of("a", wakeup) == "up"
    assert [e.kind for e in events if e.kind == "InstanceReturned"] == ["InstanceReturned"]


def test_in_flight_counts_follow_the_attempts_and_max_conns_gives_503() -> None:
    events: list[Event] = []
    policy = BalancerPolicy(events.append, health=None, ejection=None)
    policy.add_member("a", "http://127.0.0.1:1", 0.0, max_conns=1)
    first = policy.new_request(GET, 0.0)
    assert first.begin(0.0) == Try("a", 1.0, 1)
    assert policy.pool.member("a").in_flight == 1
    second = policy.new_request(GET, 0.0)
    assert second.begin(0.0) == Fail(503, "every available instance is at its max_conns limit")
    first.answered(0.1, 200)
    assert policy.pool.member("a").in_flight == 0


def test_completed_event_carries_what_the_client_got_and_names_the_balancer() -> None:
    policy, events = make_policy()
    attempts = policy.new_request(RequestInfo("GET", "/x?y=1"), 2.0)
    attempts.begin(2.0)
    attempts.answered(2.25, 200)
    attempts.finish(2.25, 200)
    (done,) = of_kind(events, RequestCompleted)
    assert isinstance(done, RequestCompleted)
    assert (done.path, done.status, done.instance, done.latency, done.outcome, done.balancer) == (
        "/x",
        200,
        "a",
        0.25,
        "served",
        "lb1",
    )


def test_an_answer_cut_off_on_the_way_is_a_failed_request() -> None:
    policy, _ = make_policy()
    attempts = policy.new_request(GET, 0.0)
    attempts.begin(0.0)
    attempts.answered(0.1, 200)
    done = attempts.finish(0.2, 200, delivered=False)
    assert (done.outcome, done.instance, done.last_tried) == ("failed", None, "a")
    assert "cut off" in done.reason
    assert policy.failed == 1


def test_refused_connections_do_not_use_up_max_attempts() -> None:
    # Four of five instances crashed, nothing noticed yet: the GET must still reach the fifth (rule 5).
    policy, _ = make_policy("abcde")
    attempts = policy.new_request(GET, 0.0)
    attempts.begin(0.0)
    for expected in "bcd":
        action = attempts.failed(0.0, CONNECT, "connect failed (refused)", reached_backend=False)
        assert isinstance(action, Try) and action.instance == expected
    action = attempts.failed(0.0, CONNECT, "connect failed (refused)", reached_backend=False)
    assert action == Try("e", 1.0, 5)
    # ... while attempts that reached an instance still count: the third reset ends it.
    assert attempts.answered(0.1, 200) == Relay("e", 200)
    sent = policy.new_request(GET, 0.0)
    sent.begin(0.0)
    assert isinstance(sent.failed(0.0, RESET, "connection lost"), Try)
    assert isinstance(sent.failed(0.0, RESET, "connection lost"), Try)
    stopped = sent.failed(0.0, RESET, "connection lost")
    assert isinstance(stopped, Fail) and "max_attempts (3) used" in stopped.reason
