"""A client that survives a front door's failover: several entry addresses, and retries that are safe.

A redundant pair helps only clients that cope with its takeover. While the backup takes the service address over
(0.6–0.8 s at spofkit's teaching defaults), new connections are refused; and a connection that was open to the
dead balancer is cut. What a careful client does about it:

1. **Retry only what is safe to repeat**: idempotent methods (GET, HEAD, PUT, DELETE, OPTIONS) — and any method
   whose connection was *refused* (it provably never reached anyone).
2. **Only on connection errors** (refused, reset, cut before an answer): a 5xx answer is the service's word,
   not a network problem, and retrying it is the balancer's job.
3. **On a fresh connection**, after a short backoff that grows (20 ms, 40 ms, … up to 200 ms), for at most
   ``retry_for`` seconds (2 s by default): long enough to ride out a takeover, short enough not to hide an outage.
4. **Several entry addresses** (like a name with several DNS records, or an active-active pair whose balancers
   each have their own address): each retry goes to the next address, so a client is not stuck on a dead one.

:class:`FailoverClient` does exactly that, on aiohttp, and reports what happened on each call (:class:`Answer`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp

SAFE_TO_REPEAT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
FIRST_BACKOFF = 0.02
MAX_BACKOFF = 0.2
# How a try failed: "connect" (refused: it never left), "reset" (cut before an answer), "timeout".
CONNECT, RESET, TIMEOUT = "connect", "reset", "timeout"


def should_retry(method: str, failure: str, *, time_left: float, backoff: float) -> bool:
    """Rules 1–3 in one place (the load generator's careful client asks the same): may a try that failed this way
    be sent again, after ``backoff`` seconds, with ``time_left`` of the client's ``retry_for``?"""
    if failure not in (CONNECT, RESET):
        return False  # an answer is the service's word, and a timeout is no network error to ride out (rule 2)
    if failure == RESET and method.upper() not in SAFE_TO_REPEAT:
        return False  # it may have reached a server: only an idempotent request may be sent again (rule 1)
    return backoff <= time_left


@dataclass(frozen=True)
class Answer:
    """What one call got: the status (None if every try failed), the body, and the story of the tries."""

    status: int | None
    body: bytes = b""
    url: str | None = None  # the entry address that answered
    tries: int = 1
    errors: tuple[str, ...] = field(default_factory=tuple)  # one per failed try, e.g. "127.0.0.1:8080 refused"

    @property
    def ok(self) -> bool:
        return self.status is not None and self.status < 500


class FailoverClient:
    """Calls a service through any of ``urls`` (entry addresses, loopback only), failing over between them."""

    def __init__(
        self,
        urls: Sequence[str] | str,
        *,
        retry_for: float = 2.0,
        timeout: float = 5.0,
        retries: bool = True,
    ) -> None:
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        if not self.urls:
            raise ValueError("a client needs at least one entry address")
        from spofkit.loadgen import is_loopback_host  # here: the load generator imports this module's rules

        for url in self.urls:
            host = url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
            if not url.startswith("http://") or not is_loopback_host(host):
                raise ValueError(f"entry addresses must be http:// on 127.0.0.1 or localhost, got {url!r}")
        if not 0 <= retry_for <= 60:
            raise ValueError(f"retry_for must be 0..60 seconds, got {retry_for!r}")
        self.retry_for = retry_for
        self.timeout = timeout
        self.retries = retries
        self._next = 0
        # A fresh connection for every try (rule 3): a pooled connection may be the one a dead balancer held.
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> FailoverClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(force_close=True, limit=0)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def get(self, path: str = "/") -> Answer:
        return await self.request("GET", path)

    async def request(self, method: str, path: str = "/", body: bytes | None = None) -> Answer:
        """One call, retried by rules 1–4 above."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + (self.retry_for if self.retries else 0.0)
        backoff = FIRST_BACKOFF
        errors: list[str] = []
        while True:
            url = self.urls[self._next % len(self.urls)]
            try:
                async with self._client().request(
                    method, url + path, data=body, timeout=aiohttp.ClientTimeout(total=self.timeout)
                ) as response:
                    data = await response.read()
                    return Answer(response.status, data, url, len(errors) + 1, tuple(errors))
            except aiohttp.ClientConnectorError:
                errors.append(f"{url} refused")
                failure = CONNECT
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError):
                errors.append(f"{url} cut the connection")
                failure = RESET
            except asyncio.TimeoutError:
                errors.append(f"{url} timed out")
                failure = TIMEOUT
            self._next += 1  # rule 4: the next try goes to the next address
            time_left = give_up - loop.time()
            if not (self.retries and should_retry(method, failure, time_left=time_left, backoff=backoff)):
                return Answer(None, b"", None, len(errors), tuple(errors))
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)
