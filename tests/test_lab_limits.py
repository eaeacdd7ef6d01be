"""The balancers' limits are a lab setting: ``Lab.start(limits=ProxyLimits(...))`` reaches every balancer of the
lab, in this process or in its own, and a restarted balancer gets them again."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlsplit

import pytest

from spofkit.commands import BalancerRestart
from spofkit.lab import Lab
from spofkit.proxy.limits import ProxyLimits

DEADLINE = 20.0


async def head_timeout_answer(url: str) -> tuple[int, dict[str, str]]:
    """Send half a request head to ``url`` and wait for the balancer to give up on it: (status, JSON body)."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: lab\r\n")  # ... and never the blank line that ends the head
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), DEADLINE)  # read to EOF: the balancer closes it
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


@pytest.mark.parametrize("isolation", ["inprocess", "process"])
async def test_the_labs_limits_reach_every_balancer_and_a_restarted_one(isolation: str) -> None:
    limits = ProxyLimits(head_timeout=0.4)
    async with await Lab.start(instances=1, balancers=2, isolation=isolation, limits=limits) as lab:
        for balancer in lab.status().balancers:
            status, reason = await head_timeout_answer(balancer.url)
            assert status == 408, balancer.name
            assert "0.4s" in reason["reason"], reason
        await lab.apply(BalancerRestart("lb2"))
        restarted = next(b for b in lab.status().balancers if b.name == "lb2")
        status, reason = await head_timeout_answer(restarted.url)
        assert status == 408 and "0.4s" in reason["reason"]


async def test_limits_are_refused_for_a_real_proxy_with_a_reason() -> None:
    with pytest.raises(ValueError, match="limits are spofkit's balancer's; haproxy has its own"):
        await Lab.start(instances=1, balancer="haproxy", limits=ProxyLimits(head_timeout=1.0))


async def test_limits_of_the_wrong_type_are_named() -> None:
    with pytest.raises(TypeError, match=r"limits must be a spofkit\.proxy\.limits\.ProxyLimits"):
        await Lab.start(instances=1, limits={"head_timeout": 1.0})  # type: ignore[arg-type]


@pytest.mark.parametrize("argument", ["retries", "health", "ejection"])
async def test_a_protection_of_the_wrong_type_is_named_before_anything_starts(argument: str) -> None:
    with pytest.raises(TypeError, match=rf"^{argument} must be a \w+Settings .* got \{{'max_attempts': 2\}}"):
        await Lab.start(instances=1, **{argument: {"max_attempts": 2}})  # type: ignore[arg-type]


async def test_a_protection_switched_off_by_false_is_off() -> None:
    lab = await Lab.start(instances=2, retries=False, health=False, ejection=False)
    try:
        status = lab.status()
        assert (status.retries, status.health_checks, status.ejection) == (False, False, False)
    finally:
        await lab.stop()
