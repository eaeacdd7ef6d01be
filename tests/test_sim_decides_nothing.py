"""The simulator drives spofkit.policy; it does not decide. A reviewer's check, as a test.

What the driver may use of the policy package is the drivers' interface: the balancer's policy object and its
attempt machine's actions, the health monitor's schedule, the pair's member and lease, settings and random streams.
The rules themselves — strategies, the retry decision, the budget, the outlier detector, rise/fall — must not be
imported by (and so not re-implemented next to) the simulator.
"""

from __future__ import annotations

import ast
from pathlib import Path

SIM = Path(__file__).resolve().parent.parent / "spofkit" / "sim"
DRIVERS_INTERFACE = {
    "spofkit.policy": {
        "CONNECT",
        "RESET",
        "TIMEOUT",
        "Action",
        "BalancerPolicy",
        "EjectionSettings",
        "HealthMonitor",
        "HealthSettings",
        "Relay",
        "RequestAttempts",
        "RequestInfo",
        "RetrySettings",
        "Strategy",
        "Try",
        "check_switch",  # refuses set_retries("off") as the live lab does
        "protection",  # reads a lab's health=/retries=/ejection= argument, as the live lab does
        "rng_for",
    },
    "spofkit.policy.balancer": {"rng_for"},
    "spofkit.policy._checks": {"MIN_INTERVAL", "seconds"},  # a lab argument's range check, as the settings' own
    # A deploy's plan and its rule for "ready": the driver carries the steps out.
    "spofkit.policy.deploy": {"DRAIN", "READY", "RESTART", "WARM_UP", "ReadyEverywhere", "Step", "deploy_plan"},
    "spofkit.policy.pair": {
        "MASTER",
        "AddressLease",
        "LeaseHolder",
        "PairAction",
        "PairMember",
        "PairSettings",
        "ReleaseAddress",
        "SendAdvert",
        "TakeAddress",
    },
}
RULES = (
    "pick(",
    "retry_decision",
    "RetryBudget",
    "OutlierDetector",
    "HealthState",
    ".record(",
    "choose(",
    ".expect",  # whether a health check's answer passes: HealthSettings.passes
)


def test_the_simulator_imports_only_the_drivers_interface_of_the_policies() -> None:
    imported: dict[str, set[str]] = {}
    for path in sorted(SIM.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("spofkit.policy"):
                imported.setdefault(node.module, set()).update(alias.name for alias in node.names)
    assert imported, "the simulator must drive spofkit.policy"
    for module, names in imported.items():
        assert module in DRIVERS_INTERFACE, f"spofkit/sim imports {module}"
        assert names <= DRIVERS_INTERFACE[module], f"spofkit/sim imports {sorted(names - DRIVERS_INTERFACE[module])}"


def test_no_rule_is_called_from_the_simulator() -> None:
    for path in sorted(SIM.glob("*.py")):
        code = path.read_text()
        for rule in RULES:
            assert rule not in code, f"{path.name} calls {rule!r}: decisions belong to spofkit.policy"
