"""``spofkit export``: the lab's settings as HAProxy and nginx configurations, validated by the real binaries.

Every configuration written here is handed to ``haproxy -c -f`` or ``nginx -t``: the test passes only if the
Debian-packaged binary accepts it. What the configuration *says* is checked setting by setting: each lab setting is
either a directive (and changing the setting changes it) or a comment starting "not in HAProxy:"/"not in nginx:".
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from spofkit.cli import main
from spofkit.export import (
    TARGETS,
    ExportError,
    ExportMember,
    LabSettings,
    RuntimeOptions,
    config_for,
    find_binary,
    haproxy_config,
    nginx_config,
    settings_from_scenario,
    validate,
)
from spofkit.policy import EjectionSettings, HealthSettings, RetrySettings, strategy_names

ROOT = Path(__file__).resolve().parent.parent


def mixed_pool(**settings: object) -> LabSettings:
    """Three instances, one heavier with a connection limit, and a backup."""
    base = LabSettings.for_instances(2, backups=1, **settings)  # type: ignore[arg-type]
    return base.with_members([*base.members, ExportMember("w", "127.0.0.1:9100", weight=3, max_conns=10)])


def assert_valid(target: str, text: str) -> None:
    checked = validate(target, text)
    assert checked.ok, f"{' '.join(checked.command)} refused the configuration:\n{checked.output}\n---\n{text}"


# --- the real binaries accept every configuration --------------------------------------------------------------


@pytest.mark.parametrize("strategy", strategy_names())
@pytest.mark.parametrize("target", TARGETS)
def test_every_strategy_is_valid_for_the_real_binary(target: str, strategy: str, tmp_path: Path) -> None:
    settings = mixed_pool(strategy=strategy, slow_start=5.0, health=HealthSettings(jitter=0.2, expect=(200, 204)))
    assert_valid(target, config_for(target, settings))
    # And the lab's own variant, with its runtime block (own address, runtime API / control socket, logs).
    runtime = RuntimeOptions(tmp_path, own_listen="127.0.0.1:9200")
    assert_valid(target, config_for(target, settings, runtime))


@pytest.mark.parametrize(
    "switches",
    [{"health": None}, {"retries": None}, {"ejection": None}, {"health": None, "ejection": None}],
    ids=["no-health", "no-retries", "no-ejection", "nothing-but-retries"],
)
@pytest.mark.parametrize("target", TARGETS)
def test_protections_off_are_valid_too(target: str, switches: dict[str, None]) -> None:
    assert_valid(target, config_for(target, LabSettings.for_instances(3, **switches)))  # type: ignore[arg-type]


@pytest.mark.parametrize("target", TARGETS)
def test_an_empty_pool_is_valid(target: str) -> None:
    text = config_for(target, LabSettings())
    assert "no instances yet" in text
    assert_valid(target, text)


def test_a_broken_configuration_is_refused_by_the_binary() -> None:
    """The check can fail: the binaries are really asked (a typo is caught)."""
    for target in TARGETS:
        text = config_for(target, LabSettings.for_instances(2))
        broken = text.replace("proxy_pass", "proxy_passs") if target == "nginx" else text.replace("balance", "balanse")
        checked = validate(target, broken)
        assert not checked.ok
        assert ("proxy_passs" if target == "nginx" else "balanse") in checked.output


# --- what HAProxy's configuration says ----------------------------------------------------------------------


def test_haproxy_says_every_health_setting_in_its_own_words() -> None:
    health = HealthSettings(interval=2.0, timeout=0.25, rise=4, fall=5, fastinter=0.5, downinter=3.0, path="/ping")
    text = haproxy_config(LabSettings.for_instances(3, health=health))
    assert "default-server check inter 2s fastinter 500ms downinter 3s rise 4 fall 5" in text
    assert "option httpchk GET /ping" in text
    assert "http-check expect status 200" in text
    assert re.search(r"^\s+timeout check 250ms\b", text, re.MULTILINE)
    several = haproxy_config(LabSettings.for_instances(3, health=HealthSettings(expect=(200, 204))))
    assert "http-check expect rstatus ^(200|204)$" in several


def test_haproxy_says_the_retries_and_what_it_lacks() -> None:
    retries = RetrySettings(max_attempts=4, per_try_timeout=0.4, deadline=2.0)
    text = haproxy_config(LabSettings.for_instances(3, retries=retries))
    assert re.search(r"^\s+retries 3\b", text, re.MULTILINE)  # 4 attempts = the first + 3 retries
    assert "option redispatch 1" in text
    assert "retry-on conn-failure empty-response response-timeout 502 503 504" in text
    assert re.search(r"^\s+timeout connect 400ms\b", text, re.MULTILINE)
    assert re.search(r"^\s+timeout server 400ms\b", text, re.MULTILINE)
    assert "http-request disable-l7-retry if !{ method GET HEAD OPTIONS TRACE PUT DELETE }" in text
    assert "# not in HAProxy: the deadline (2 s" in text
    assert "# not in HAProxy: the retry budget" in text
    off = haproxy_config(LabSettings.for_instances(3, retries=None))
    assert re.search(r"^\s+retries 0\b", off, re.MULTILINE) and "retry-on none" in off
    assert "redispatch" not in off


def test_haproxy_pool_strategy_ejection_and_slow_start() -> None:
    text = haproxy_config(mixed_pool(strategy="least_connections", slow_start=8.0))
    assert "balance leastconn" in text
    assert "server w 127.0.0.1:9100 weight 3 maxconn 10" in text
    assert "server c 127.0.0.1:9003 backup" in text
    assert "observe layer7 error-limit 3 on-error mark-down" in text
    assert "slowstart 8s" in text
    assert "# not in HAProxy: an ejection time (2 s" in text
    assert "balance random(2)" in haproxy_config(mixed_pool(strategy="power_of_two"))
    ewma = haproxy_config(mixed_pool(strategy="peak_ewma"))
    assert "# not in HAProxy: peak_ewma" in ewma and "balance leastconn" in ewma
    hashed = haproxy_config(mixed_pool(strategy="consistent_hash"))
    assert "balance hash var(txn.hash_key)" in hashed and "hash-type consistent" in hashed
    ejection = haproxy_config(LabSettings.for_instances(3, ejection=EjectionSettings(consecutive_failures=7)))
    assert "error-limit 7" in ejection


def test_haproxy_without_checks_writes_no_check_and_says_why_ejection_is_missing() -> None:
    text = haproxy_config(LabSettings.for_instances(3, health=None))
    assert " check " not in text and "option httpchk" not in text
    assert "# not in HAProxy: passive ejection (3 failures) without health checks" in text


# --- what nginx's configuration says ---------------------------------------------------------------------


def test_nginx_says_there_are_no_active_checks_and_uses_the_nearest() -> None:
    text = nginx_config(LabSettings.for_instances(3, health=HealthSettings(interval=1.5, fall=4)))
    assert "# not in nginx: active health checks (GET /health every 1.5 s" in text
    assert "max_fails=3 fail_timeout=2s" in text  # from passive ejection, the lab's nearest setting
    no_ejection = nginx_config(LabSettings.for_instances(3, health=HealthSettings(interval=1.5, fall=4), ejection=None))
    assert "max_fails=4 fail_timeout=3s" in no_ejection  # fall=4; out for rise x downinter = 2 x 1.5 s
    nothing = nginx_config(LabSettings.for_instances(3, health=None, ejection=None))
    assert "max_fails=0" in nothing


def test_nginx_says_the_retries_timeouts_and_what_it_lacks() -> None:
    retries = RetrySettings(max_attempts=2, per_try_timeout=0.75, deadline=3.0)
    text = nginx_config(LabSettings.for_instances(3, retries=retries))
    assert "proxy_next_upstream error timeout http_502 http_503 http_504;" in text
    assert "proxy_next_upstream_tries 2;" in text
    assert "proxy_next_upstream_timeout 3s;" in text
    assert "proxy_connect_timeout 750ms;" in text and "proxy_read_timeout 750ms;" in text
    assert "# not in nginx: the retry budget" in text
    assert "non_idempotent" not in text.split("#")[0]  # never switched on: a sent POST is not replayed
    assert "proxy_next_upstream off;" in nginx_config(LabSettings.for_instances(3, retries=None))


def test_nginx_pool_strategy_and_slow_start() -> None:
    text = nginx_config(mixed_pool(strategy="least_connections", slow_start=8.0))
    assert "least_conn;" in text
    assert re.search(r"server 127\.0\.0\.1:9100 weight=3 max_conns=10 .*;", text)
    assert re.search(r"server 127\.0\.0\.1:9003 .*backup;", text)
    assert "# not in nginx: slow_start 8 s" in text
    assert "random two least_conn;" in nginx_config(mixed_pool(strategy="power_of_two"))
    hashed = nginx_config(mixed_pool(strategy="consistent_hash"))
    assert "hash $spof_hash_key consistent;" in hashed
    assert "# not in nginx: c as a backup with consistent_hash" in hashed  # nginx refuses backup with hash
    assert_valid("nginx", hashed)


def test_every_setting_has_a_line_in_both() -> None:
    """Each lab setting is either written as a directive or named in a "not in ..." comment: nothing is dropped."""
    settings = mixed_pool(slow_start=3.0, health=HealthSettings(jitter=0.1))
    for target in TARGETS:
        text = config_for(target, settings)
        mark = "not in HAProxy" if target == "haproxy" else "not in nginx"
        assert mark in text
        for needle in ("deadline", "retry budget", "max_ejected_percent" if target == "haproxy" else "max_ejected"):
            assert needle in text, f"{target}: {needle} is neither written nor said to be missing"
        assert "slow" in text.lower()


# --- where the settings come from ----------------------------------------------------------------------------


def test_a_scenario_file_gives_the_settings(tmp_path: Path) -> None:
    scenario = tmp_path / "crash.toml"
    scenario.write_text(
        "seed = 7\nretries = false\n"
        "[lab]\ninstances = 4\nstrategy = 'least_connections'\nwork_ms = 5\n"
        "[health]\ninterval = 1.0\nfall = 5\n"
        "[load]\nrate = 200\nduration = 5\n"
        "[[faults]]\nat = 1.0\ninstance = 'b'\nkind = 'crash'\n"
    )
    settings = settings_from_scenario(scenario)
    assert [m.name for m in settings.members] == ["a", "b", "c", "d"]
    assert settings.strategy == "least_connections"
    assert settings.health == HealthSettings(interval=1.0, fall=5)
    assert settings.retries is None
    text = haproxy_config(settings)
    assert "inter 1s" in text and "fall 5" in text and "retries 0" in text and "crash.toml" in text
    assert_valid("haproxy", text)


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ("[health]\nintervall = 1.0\n", "health.intervall"),
        ("[lab]\ninstancez = 3\n", "lab.instancez"),
        ("[health]\ninterval = -1\n", "health"),
        ("[lab]\ninstances = 'three'\n", "lab.instances"),
        ("[lab]\nstrategy = 'fastest'\n", "strategy"),
        ("[lab\n", "scenario"),
    ],
)
def test_a_bad_scenario_names_what_is_wrong(tmp_path: Path, content: str, field: str) -> None:
    scenario = tmp_path / "bad.toml"
    scenario.write_text(content)
    with pytest.raises(ExportError) as raised:
        settings_from_scenario(scenario)
    assert raised.value.field == field


def test_bad_members_are_named() -> None:
    with pytest.raises(ExportError, match="address must be host:port"):
        ExportMember("a", "127.0.0.1")
    with pytest.raises(ExportError, match="names must be unique"):
        LabSettings(members=(ExportMember("a", "127.0.0.1:1"), ExportMember("a", "127.0.0.1:2")))
    with pytest.raises(ExportError, match="instance name must be"):
        ExportMember("a b", "127.0.0.1:1")


# --- spofkit export, from a shell --------------------------------------------------------------------------


def test_cli_export_writes_a_valid_configuration_and_checks_it(tmp_path: Path) -> None:
    output = tmp_path / "haproxy.cfg"
    done = subprocess.run(
        [
            *(sys.executable, "-m", "spofkit", "export", "haproxy", "--instances", "2", "--backups", "1"),
            *("--strategy", "least-connections", "--no-retries", "--check", "-o", str(output)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "the configuration is valid" in done.stderr
    text = output.read_text()
    assert "balance leastconn" in text and "retries 0" in text and "server c 127.0.0.1:9003 backup" in text


def test_cli_export_members_and_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    members = ["--member", "x=127.0.0.1:7001,weight=3,max_conns=5", "--member", "y=127.0.0.1:7002,backup"]
    assert main(["export", "nginx", *members, "--port", "81"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"server 127\.0\.0\.1:7001 weight=3 max_conns=5 .*; +# x", out)
    assert re.search(r"server 127\.0\.0\.1:7002 .*backup; +# y", out) and "listen 127.0.0.1:81;" in out
    assert main(["export", "haproxy", "--member", "x=127.0.0.1:7001,heavy"]) == 2
    assert "unknown member option 'heavy'" in capsys.readouterr().err
    assert main(["export", "nginx", "--member", "x=nowhere"]) == 2
    assert "--member" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[retries]\nmax_attempt = 2\n")
    assert main(["export", "haproxy", "--scenario", str(bad)]) == 2
    assert "retries.max_attempt" in capsys.readouterr().err


def test_find_binary_says_which_package_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr("spofkit.export.BINARIES", {"haproxy": "/nonexistent/haproxy"})
    with pytest.raises(RuntimeError, match="apt-get install -y haproxy"):
        find_binary("haproxy")


# --- lesson 11's exercises read their answers off spofkit ----------------------------------------------------


def test_haproxy_s_defaults_take_six_seconds_to_notice_a_crash() -> None:
    from spofkit.exercises.production import haproxy_crash_detection

    assert haproxy_crash_detection(2.0, 3) == pytest.approx(6.0)  # inter 2s, then 2 more checks inter apart
    assert haproxy_crash_detection(2.0, 3, fastinter=0.5) == pytest.approx(3.0)  # the 2 more come fastinter apart
    assert haproxy_crash_detection(1.0, 5, fastinter=0.25) == pytest.approx(2.0)


def test_which_proxy_has_which_setting_is_read_off_the_export() -> None:
    from spofkit.exercises.production import _FEATURES, proxy_has

    names = [words for words, _needles in _FEATURES]
    has = {target: {names[i] for i in range(len(names)) if proxy_has(target, i)} for target in TARGETS}
    assert has["haproxy"] == {
        "active health checks (interval, timeout, rise, fall)",
        "retrying a failed attempt on another instance",
        "passive ejection after failures of real requests",
        "slow start for an instance coming back",
    }
    assert has["nginx"] == {
        "retrying a failed attempt on another instance",
        "a deadline for all of a request's attempts together",
        "passive ejection after failures of real requests",
    }


def test_the_nginx_and_keepalived_exercises_by_hand() -> None:
    from spofkit.exercises import keepalived_takeover, nginx_failed_attempts
    from spofkit.exercises.base import Problem

    nginx = Problem("11.nginx_failed_attempts", 0, "", {"max_fails": 3, "workers": 4})
    assert nginx_failed_attempts.solution(nginx) == 12  # each of the 4 workers counts its own 3 failures
    assert "one worker's count" in nginx_failed_attempts.check(nginx, 3).hint
    takeover = Problem("11.keepalived_takeover", 0, "", {"advert_int": 1.0, "priority": 100})
    assert keepalived_takeover.solution(takeover) == pytest.approx(3 + 156 / 256)
