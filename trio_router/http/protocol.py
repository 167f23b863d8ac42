"""Sans-IO HTTP/1.1 rules a server applies whichever parser framed the request (wire/): checks
on a parsed request head against the server's limits, the client's deadline header, and what an
app may put in a response head.

Everything here is pure and testable without sockets.
"""

from __future__ import annotations

import math
import re
import time
from email.utils import formatdate

from ..errors import HTTPError
from ..wire.interface import RequestHead
from ..wire.rules import BOTH_FRAMINGS_DETAIL, REASONS

SERVER_HEADER = (b"server", b"trio-router")
__all__ = ["REASONS", "SERVER_HEADER"]  # REASONS: re-exported for the response builders

# RFC 9110 5.1 token, and a field value without control characters (HTAB allowed): what a
# response header must be before its bytes go out unchecked by the parser.
_HEADER_NAME = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(rb"[^\x00-\x08\x0a-\x1f\x7f]*")

# Headers a client may use to shorten its own deadline, in seconds (decimal).
CLIENT_TIMEOUT_HEADERS = (b"request-timeout", b"x-request-timeout")


def body_too_large(max_body_bytes: int, declared: int | None = None) -> HTTPError:
    """The 413 for a body over ``max_body_bytes``: its declared length known, or found reading it."""
    size = f" of {declared} bytes" if declared is not None else ""
    return HTTPError(413, f"request body{size} exceeds the {max_body_bytes}-byte limit", close=True)


def check_request_head(
    request: RequestHead, max_header_bytes: int, max_target_bytes: int, max_body_bytes: int
) -> tuple[int | None, tuple[bytes, bytes] | None]:
    """Validate what a parser accepts but a server must refuse, in one pass over the headers.

    Returns the body length the head declares (0 without framing headers, None for a chunked
    body) and the client's deadline header, if any, for ``client_timeout`` to parse once the
    framing is settled (so a bad value is a 400 that keeps the connection).

    Raises ``HTTPError`` for: an oversized head (431: the parsers enforce the limit only on a
    head that arrives in pieces), an oversized target (414), Content-Length together
    with Transfer-Encoding (400, RFC 9112 6.1: request smuggling), a declared body larger
    than allowed (413, answered before the body is read or 100-continue is sent).
    """
    if len(request.target) > max_target_bytes:
        raise HTTPError(414, f"request target longer than {max_target_bytes} bytes", close=True)
    content_length: int | None = None
    chunked = False
    head_bytes = len(request.method) + len(request.target) + 12  # "M T HTTP/1.1\r\n" + final CRLF
    timeout_header = None
    for name, value in request.headers:
        head_bytes += len(name) + len(value) + 4
        if name == b"content-length":
            content_length = int(value)
        elif name == b"transfer-encoding":
            chunked = True
        elif name in CLIENT_TIMEOUT_HEADERS:
            timeout_header = (name, value)
    if head_bytes > max_header_bytes:
        raise HTTPError(431, "request head too large", close=True)
    if chunked and content_length is not None:
        raise HTTPError(400, BOTH_FRAMINGS_DETAIL, close=True)
    if content_length is not None and content_length > max_body_bytes:
        raise body_too_large(max_body_bytes, content_length)
    if chunked:
        return None, timeout_header
    return content_length or 0, timeout_header


def client_timeout(header: tuple[bytes, bytes] | None) -> float:
    """The deadline a client asked for (``Request-Timeout: 2.5``, in seconds), infinity if none.
    Malformed -> 400."""
    if header is None:
        return math.inf
    name, value = header
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (seconds > 0 and math.isfinite(seconds)):
        raise HTTPError(400, f"{name.decode()} must be a positive number of seconds", close=False)
    return seconds


def invalid_app_header(headers: list[tuple[bytes, bytes]]) -> tuple[bytes, bytes] | None:
    """The first header an app supplied that would corrupt the response (response splitting), or None.

    The parsers write the response head unchecked (h11's validation is turned off): the
    server's own headers are constants and numbers, so only what the app supplied is checked,
    and with one pass instead of h11's two regexes over every header.
    """
    for name, value in headers:
        if not (_HEADER_NAME.fullmatch(name) and _HEADER_VALUE.fullmatch(value)):
            return name, value
    return None


class DateHeader:
    """The ``Date`` header, formatted at most once per second."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = (b"date", b"")

    def get(self) -> tuple[bytes, bytes]:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = (b"date", formatdate(now, usegmt=True).encode("ascii"))
        return self._value
