"""A spofkit balancer alone in its own process, for tests that need its own memory figures or its own limits.

    python tests/balancer_child.py --member a=http://127.0.0.1:PORT [...]
                                   [--limits JSON] [--per-try-timeout S] [--no-health]

Prints ``ready PORT`` once it listens; runs until SIGTERM or until its stdin closes (the test is gone).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from spofkit.balancer import Balancer
from spofkit.events import EventBus
from spofkit.policy import HealthSettings, RetrySettings
from spofkit.proxy.limits import ProxyLimits


async def serve(members: list[str], limits: ProxyLimits, per_try_timeout: float, health: bool) -> None:
    retries = RetrySettings(per_try_timeout=per_try_timeout, deadline=max(5.0, per_try_timeout))
    checks = HealthSettings() if health else None
    balancer = Balancer(EventBus(), health=checks, retries=retries, limits=limits)
    await balancer.start()
    for spec in members:
        name, _, url = spec.partition("=")
        balancer.add_member(name, url)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    stdin_closed = asyncio.ensure_future(reader.read())
    print(f"ready {balancer.port}", flush=True)
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait([stopped, stdin_closed], return_when=asyncio.FIRST_COMPLETED)
    stdin_closed.cancel()
    stopped.cancel()
    await balancer.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--member", action="append", default=[], help="name=url")
    parser.add_argument("--limits", default="{}", help="ProxyLimits fields as JSON")
    parser.add_argument("--per-try-timeout", type=float, default=1.0, help="seconds (RetrySettings)")
    parser.add_argument("--no-health", dest="health", action="store_false", help="no active health checks")
    args = parser.parse_args()
    asyncio.run(serve(args.member, ProxyLimits(**json.loads(args.limits)), args.per_try_timeout, args.health))


if __name__ == "__main__":
    main()
