"""What a reverse proxy changes in a message on its way through, and what it refuses to pass on at all.

The rules, applied to every request and every response:

1. **Hop-by-hop headers stay on their hop** (RFC 9110, 7.6.1): ``Connection``, ``Keep-Alive``, ``TE``,
   ``Transfer-Encoding``, ``Upgrade``, ``Proxy-*``, ``Trailer`` — and every header the ``Connection`` header
   names — describe one connection, so they are dropped both ways. The framing (``Content-Length`` or chunked)
   is set anew for each hop.
2. **The instance learns who asked**: ``X-Forwarded-For`` gets the client's address appended (after any the
   request already had), ``X-Forwarded-Proto`` says ``http``. ``Host`` is the instance's address. ``Expect`` is
   answered by the balancer itself (it sends ``100 Continue`` when it reads the body).
3. **The request target goes on byte for byte** (``//x?y`` stays ``//x?y``): a proxy that "cleans up" paths
   makes the instance see a request other than the one that was sent. A target in *absolute form* naming the
   balancer's own address (``GET http://127.0.0.1:8080/x``) becomes origin form (``/x``), as RFC 9112 3.2.2
   asks of a server. Any other absolute target, ``CONNECT``, and ``OPTIONS *`` are refused: this is a reverse
   proxy for its own instances, never an *open proxy* that fetches other hosts for strangers.
4. **The client learns who answered**: responses carry ``X-Served-By`` (the instance's own if it set one) and
   ``X-Spof-Attempts`` (how many instances were tried). When the balancer answers itself (502/503/504, or a
   refusal such as 400/408/413/431) the body is JSON saying why.

Headers are kept as the bytes that came in (``(name, value)`` pairs, names in their original case): nothing is
decoded that is only passed on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping

Headers = list[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# Set anew by the balancer on the way to the instance (rule 2), or by the framing of each hop (rule 1).
REPLACED_IN_REQUESTS = HOP_BY_HOP | {b"host", b"content-length", b"expect", b"x-forwarded-proto"}
REPLACED_IN_RESPONSES = HOP_BY_HOP | {b"content-length"}

REASONS = {
    100: "Continue",
    200: "OK",
    204: "No Content",
    304: "Not Modified",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
ERROR_KINDS = {
    400: "bad_request",
    405: "method_refused",
    408: "request_timeout",
    413: "body_too_large",
    431: "head_too_large",
    502: "bad_gateway",
    503: "unavailable",
    504: "timeout",
}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Refused(Exception):
    """A request the balancer answers itself with ``status`` and ``reason``, without asking any instance."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def origin_form(target: bytes, own_authorities: set[bytes]) -> bytes:
    """Rule 3: the target to send the instance, or :class:`Refused`. ``own_authorities``: ``b"host:port"``, lower."""
    if target[:1] == b"/":
        return target  # the usual origin form: passed on untouched
    lowered = target.lower()
    if lowered.startswith(b"http://"):
        authority, slash, rest = target[7:].partition(b"/")
        if authority.lower() in own_authorities:
            return slash + rest if slash else b"/"
        host = authority.decode("latin-1")
        raise Refused(400, f"absolute-URI request for {host!r} refused: not an open proxy")
    shown = target[:60].decode("latin-1")
    raise Refused(400, f"request target {shown!r} refused: only paths (/...) and this balancer's own URLs are served")


def request_head(headers: Headers, client: str, framing: bytes) -> bytes:
    """The head of the request as the instance gets it (rules 1–3), from the end of the ``Host`` line on (each
    attempt starts it with its own request line and ``Host``); ``framing`` is a ``Content-Length`` or
    ``Transfer-Encoding: chunked`` line (with CRLF), or empty."""
    tokens: set[bytes] = set()
    kept: list[tuple[bytes, bytes, bytes]] = []
    forwarded_for: list[bytes] = []
    for name, value in headers:
        lower = name.lower()
        if lower in REPLACED_IN_REQUESTS:
            if lower == b"connection":
                tokens.update(token.strip().lower() for token in value.split(b","))
        elif lower == b"x-forwarded-for":
            forwarded_for.append(value)
        else:
            kept.append((lower, name, value))
    if tokens - {b"close", b"keep-alive"}:  # rare: the Connection header names headers to drop
        kept = [header for header in kept if header[0] not in tokens]
        if b"x-forwarded-for" in tokens:
            forwarded_for = []
    lines = [b"\r\n"]
    for _lower, name, value in kept:
        lines += (name, b": ", value, b"\r\n")
    forwarded_for.append(client.encode("latin-1"))
    lines += (b"X-Forwarded-For: ", b", ".join(forwarded_for), b"\r\nX-Forwarded-Proto: http\r\n", framing, b"\r\n")
    return b"".join(lines)


class AnswerHead:
    """An instance's answer head, sorted once: the header lines the client gets, and what the proxy must know.

    ``kept`` is the bytes of the headers passed on (rule 1 applied); ``content_length`` the raw value if one was
    given; ``chunked`` whether the body was chunked; ``tokens`` the ``Connection`` options (e.g. ``close``).
    """

    __slots__ = ("chunked", "content_length", "has_served_by", "kept", "tokens")

    def __init__(self, headers: Headers) -> None:
        tokens: set[bytes] = set()
        kept: list[tuple[bytes, bytes, bytes]] = []
        self.content_length: bytes | None = None
        self.chunked = False
        self.has_served_by = False
        for name, value in headers:
            lower = name.lower()
            if lower in REPLACED_IN_RESPONSES:
                if lower == b"connection":
                    tokens.update(token.strip().lower() for token in value.split(b","))
                elif lower == b"content-length":
                    self.content_length = value
                elif lower == b"transfer-encoding":
                    self.chunked = True
                continue
            if lower == b"x-spof-attempts":
                continue  # the balancer's own header: an instance cannot set it
            if lower == b"x-served-by":
                self.has_served_by = True
            kept.append((lower, name, value))
        self.tokens = tokens
        if tokens - {b"close", b"keep-alive"}:  # rare: the Connection header names headers to drop
            kept = [header for header in kept if header[0] not in tokens]
        lines: list[bytes] = []
        for _lower, name, value in kept:
            lines += (name, b": ", value, b"\r\n")
        self.kept = b"".join(lines)


def response_head(
    status: int, reason: bytes, answer: AnswerHead, served_by: str, attempts: str, framing: bytes
) -> bytes:
    """The head of the response as the client gets it (rules 1 and 4); ``framing`` as in :func:`request_head`."""
    served = b"" if answer.has_served_by else b"X-Served-By: " + served_by.encode() + b"\r\n"
    return b"".join(
        (
            b"HTTP/1.1 %d %b\r\n" % (status, reason),
            answer.kept,
            served,
            b"X-Spof-Attempts: ",
            attempts.encode(),
            b"\r\n",
            framing,
            b"\r\n",
        )
    )


def error_response(status: int, reason: str, attempts: int | str = 0, *, close: bool = False) -> bytes:
    """A whole response the balancer sends itself: JSON ``{"error", "reason", "attempts"}``."""
    count = attempts if isinstance(attempts, int) else int(attempts.split(";", 1)[0])
    body = json.dumps({"error": ERROR_KINDS.get(status, "error"), "reason": reason, "attempts": count}).encode()
    head = (
        f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
        f"Content-Type: application/json; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"X-Spof-Attempts: {attempts}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n"
    )
    return head.encode() + body


class HeaderView(Mapping[str, str]):
    """The request's headers as ``str -> str`` for a strategy that wants one (consistent hashing by a header).

    Decoded only when a strategy looks: most requests are placed without reading a single header.
    """

    def __init__(self, headers: Headers) -> None:
        self._raw = headers
        self._decoded: dict[str, str] | None = None

    def _mapping(self) -> dict[str, str]:
        if self._decoded is None:
            self._decoded = {}
            for name, value in self._raw:
                self._decoded.setdefault(name.decode("latin-1"), value.decode("latin-1"))
        return self._decoded

    def __getitem__(self, key: str) -> str:
        wanted = key.lower()
        for name, value in self._mapping().items():
            if name.lower() == wanted:
                return value
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._mapping())

    def __len__(self) -> int:
        return len(self._mapping())
