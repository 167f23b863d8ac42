"""Sans-IO HTTP/1.1 rules that h11 leaves to the server: checks on a parsed request head,
classification of h11's parse errors into precise statuses, and the response head.

Everything here is pure and testable without sockets.
"""

from __future__ import annotations

import math
import re
import time
from email.utils import formatdate
from http import HTTPStatus

import h11

from ..errors import HTTPError

SERVER_HEADER = (b"server", b"trio-router")
REASONS: dict[int, bytes] = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}

# RFC 9110 5.1 token, and a field value without control characters (HTAB allowed): what a
# response header must be before its bytes go out unchecked by h11.
_HEADER_NAME = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(rb"[^\x00-\x08\x0a-\x1f\x7f]*")

# obs-fold (RFC 9112 5.2): a header line continued on the next by leading whitespace. h11
# unfolds it, as the RFC allows; an edge server answers 400 instead, as hyper and nginx do, since
# a proxy in front may read the same bytes otherwise ("Transfer-Encoding:" continued by
# " chunked" on a second line is honoured by one and ignored by the other).
OBS_FOLD_DETAIL = "a header line continued on the next line (obs-fold) is not accepted"


def may_hold_obs_fold(data: bytes, after_newline: bool) -> bool:
    """Whether received bytes could continue a header line: two substring searches, so that
    only then are the buffered bytes copied and looked at (``head_has_obs_fold``)."""
    return b"\n " in data or b"\n\t" in data or (after_newline and data[:1] in (b" ", b"\t"))


def head_has_obs_fold(buffered: bytes) -> tuple[bool | None, bool]:
    """For the bytes h11 has not parsed yet: whether the head at their start folds a line (None
    while it is incomplete), and whether what follows the head could hold a fold too."""
    ends = [end for end in (buffered.find(b"\n\r\n"), buffered.find(b"\n\n")) if end >= 0]
    if not ends:
        return None, True
    end = min(ends)
    head, rest = buffered[:end], buffered[end + 1 :]
    return b"\n " in head or b"\n\t" in head, may_hold_obs_fold(rest, False)


# Headers a client may use to shorten its own deadline, in seconds (decimal).
CLIENT_TIMEOUT_HEADERS = (b"request-timeout", b"x-request-timeout")


def body_too_large(max_body_bytes: int, declared: int | None = None) -> HTTPError:
    """The 413 for a body over ``max_body_bytes``: its declared length known, or found reading it."""
    size = f" of {declared} bytes" if declared is not None else ""
    return HTTPError(413, f"request body{size} exceeds the {max_body_bytes}-byte limit", close=True)


def classify_parse_error(exc: h11.RemoteProtocolError, buffered: bytes, max_target_bytes: int) -> HTTPError:
    """Turn h11's error into the status a client should see.

    h11 reports an oversized head as 431 whatever made it large; when the request line
    itself has not ended within the target limit, the precise answer is 414.
    """
    status = exc.error_status_hint
    if status == 431:
        line_end = buffered.find(b"\n")
        request_line = buffered if line_end < 0 else buffered[:line_end]
        parts = request_line.split(b" ", 2)
        if len(parts) >= 2 and len(parts[1]) > max_target_bytes:
            return HTTPError(414, f"request target longer than {max_target_bytes} bytes", close=True)
        return HTTPError(431, "request head too large", close=True)
    return HTTPError(status, str(exc) or "malformed request", close=True)


def request_headers(request: h11.Request) -> list[tuple[bytes, bytes]]:
    """The head's (lowercase name, value) pairs as a plain list. h11's ``Headers`` is a
    ``Sequence`` ABC whose iteration goes through ``__getitem__`` per item (0.6 us a pass for one
    header, in Python); every later pass over the request's headers (checks, ``request.header``,
    the request id, tracing) then runs over a list instead. Reads h11's own triples: pinned h11."""
    return [(name, value) for _, name, value in request.headers._full_items]


def check_request_head(
    request: h11.Request,
    max_header_bytes: int,
    max_target_bytes: int,
    max_body_bytes: int,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> tuple[int | None, tuple[bytes, bytes] | None]:
    """Validate what h11 accepts but a server must refuse, in one pass over the headers.

    Returns the body length the head declares (0 without framing headers, None for a chunked
    body) and the client's deadline header, if any, for ``client_timeout`` to parse once the
    framing is settled (so a bad value is a 400 that keeps the connection).

    Raises ``HTTPError`` for: an oversized head (431: h11 enforces its limit only on a head
    that arrives in pieces), an oversized target (414), Content-Length together
    with Transfer-Encoding (400, RFC 9112 6.1: request smuggling), a declared body larger
    than allowed (413, answered before the body is read or 100-continue is sent).
    ``headers``: ``request_headers(request)``, if the caller has it already.
    """
    if len(request.target) > max_target_bytes:
        raise HTTPError(414, f"request target longer than {max_target_bytes} bytes", close=True)
    content_length: int | None = None
    chunked = False
    head_bytes = len(request.method) + len(request.target) + 12  # "M T HTTP/1.1\r\n" + final CRLF
    timeout_header = None
    for name, value in request_headers(request) if headers is None else headers:
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
        raise HTTPError(400, "request has both Content-Length and Transfer-Encoding", close=True)
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

    The server builds the response head with h11's validation turned off (``_parsed=True``):
    its own headers are constants and numbers, so only what the app supplied is checked, and
    with one pass instead of h11's two regexes over every header.
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


_FRAMING_HEADERS = frozenset({b"content-length", b"transfer-encoding", b"connection"})
END_OF_MESSAGE = h11.EndOfMessage()  # immutable: one instance spares h11 a header normalisation per response


def encode_complete_response(
    conn: h11.Connection, status: int, headers: list[tuple[bytes, bytes]], body: bytes, head_only: bool
) -> bytes:
    """The bytes of a response whose body is complete (``headers`` already carry its
    Content-Length), with h11's server state moved on exactly as ``conn.send`` would move it.

    The common case (a keep-alive HTTP/1.1 exchange, a GET's body, no framing header other than
    the server's own Content-Length) is written here and only h11's state machine is told:
    h11's three ``send`` calls (event checks, header clean-up, writers, none of which can change
    such a response) were a quarter of a small GET's instructions (608k -> 456k per request). Everything else (HTTP/1.0
    peers, closing, HEAD, an app's own framing headers) goes through h11. The state calls are
    h11 internals: the version is pinned in pyproject.toml, and the suite runs both paths.
    """
    fast = (
        conn.our_state is h11.SEND_RESPONSE
        and conn.their_http_version == b"1.1"
        and not head_only
        and status >= 200
        and conn._cstate.keep_alive
        and sum(name in _FRAMING_HEADERS for name, _ in headers) == 1  # the server's Content-Length
    )
    if not fast:
        data = conn.send(
            h11.Response(status_code=status, headers=headers, reason=REASONS.get(status, b""), _parsed=True)
        )
        if body and not head_only:
            data += conn.send(h11.Data(data=body))
        return data + conn.send(END_OF_MESSAGE)
    states = conn._cstate
    before = dict(states.states)
    states.process_event(h11.SERVER, h11.Response)
    states.process_event(h11.SERVER, h11.EndOfMessage)
    conn.client_is_waiting_for_100_continue = False
    conn._respond_to_state_changes(before)
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b""))]
    lines.extend(b"%s: %s\r\n" % pair for pair in headers)
    lines.append(b"\r\n")
    lines.append(body)
    return b"".join(lines)
