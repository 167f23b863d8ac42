"""The HTTP/1.1 request rules both parsers must apply alike, where one library enforces a rule
the other does not: whichever is stricter decides, and the other is brought up to it here.

- h11 accepts, llhttp refuses: bare LF line ends, control characters in header values,
  a repeated Content-Length (even with the same value), methods llhttp does not know,
  HTTP versions other than 1.0 and 1.1. The h11 parser screens each complete head with
  ``screen_head`` before h11 parses it.
- llhttp accepts, h11 refuses: a request without Host (or with two), a Transfer-Encoding
  other than ``chunked``. The httptools parser checks them on the parsed head.
- RFC 9112 2.2: empty lines before a request line are ignored (llhttp does; the h11 parser
  drops them before h11 sees them).

Every refusal is an ``HTTPError`` with ``close=True``: after it the bytes that follow cannot be
trusted to start a request.
"""

from __future__ import annotations

import re
from http import HTTPStatus

from ..errors import HTTPError

REASONS: dict[int, bytes] = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}

# The methods llhttp parses in HTTP mode (RTSP's are refused there, PRI is HTTP/2's preface).
KNOWN_METHODS = frozenset(
    b"DELETE GET HEAD POST PUT CONNECT OPTIONS TRACE COPY LOCK MKCOL MOVE PROPFIND PROPPATCH SEARCH UNLOCK BIND"
    b" REBIND UNBIND ACL REPORT MKACTIVITY CHECKOUT MERGE M-SEARCH NOTIFY SUBSCRIBE UNSUBSCRIBE PATCH PURGE"
    b" MKCALENDAR LINK UNLINK SOURCE QUERY".split()
)
SUPPORTED_VERSIONS = frozenset({b"1.0", b"1.1"})

OBS_FOLD_DETAIL = "a header line continued on the next line (obs-fold) is not accepted"
BARE_LF_DETAIL = "a line of the request head ends in LF without CR"
CONTROL_DETAIL = "a control character in the request head"
REPEATED_LENGTH_DETAIL = "more than one Content-Length"
BOTH_FRAMINGS_DETAIL = "request has both Content-Length and Transfer-Encoding"
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_REQUEST_LINE = re.compile(rb"[^ \r\n]+ [\x21-\x7e]+ HTTP/([0-9]\.[0-9])\r?\n")  # a target as h11 takes it
_TOKEN_SO_FAR = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]{0,64}")
_WELL_FORMED_LINE = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+ [\x21-\x7e]+ HTTP/[0-9]\.[0-9]\r?\n")
METHOD_TOKEN = re.compile(rb"([-!#$%&'*+.^_`|~0-9A-Za-z]+) ")  # RFC 9110 5.6.2 tchar, then the space


def refuse(status: int, detail: str) -> HTTPError:
    return HTTPError(status, detail, close=True)


def unknown_method(method: bytes) -> HTTPError:
    """RFC 9110 15.6.2: an unrecognised method is 501 (a method is case-sensitive: ``get`` is one)."""
    return refuse(501, f"method {method.decode('latin-1')!r} is not implemented")


def method_refusal(start: bytes) -> HTTPError | None:
    """For the first bytes of a request: an unknown method in an otherwise well-formed request
    line is 501; anything else where a request line belongs (``NOT AN HTTP REQUEST``) is 400;
    None when the method is known, or while the line has not ended (decided once it has)."""
    token = METHOD_TOKEN.match(start)
    if token is not None and token.group(1) in KNOWN_METHODS:
        return None
    line_end = start.find(b"\n")
    if line_end < 0:
        return None if _TOKEN_SO_FAR.fullmatch(start) or token is not None else refuse(400, "malformed request line")
    if token is not None and _WELL_FORMED_LINE.fullmatch(start[: line_end + 1]):
        return unknown_method(token.group(1))
    return refuse(400, "malformed request line")


def method_and_version_problem(method: bytes, http_version: bytes) -> HTTPError | None:
    if method not in KNOWN_METHODS:
        return unknown_method(method)
    if http_version not in SUPPORTED_VERSIONS:
        return refuse(505, f"HTTP/{http_version.decode('latin-1')} is not supported (HTTP/1.1 and 1.0 are)")
    return None


def head_end(buffered: bytes | bytearray) -> int:
    """The length of the complete head at the start of ``buffered`` (its blank line included),
    or -1 while it is incomplete. A bare-LF blank line counts, so that ``screen_head`` sees it."""
    ends = [end for end in (buffered.find(b"\n\r\n"), buffered.find(b"\n\n")) if end >= 0]
    if not ends:
        return -1
    end = min(ends)
    return end + (3 if buffered[end + 1 : end + 2] == b"\r" else 2)


def screen_head(head: bytes) -> HTTPError | None:
    """What llhttp refuses in a complete head and h11 would accept (see the module docstring),
    in llhttp's order: the request line's method and version before the header lines."""
    method = method_refusal(head)
    if method is not None:
        return method
    line = _REQUEST_LINE.match(head)
    if line is not None and line.group(1) not in SUPPORTED_VERSIONS:
        return method_and_version_problem(b"GET", line.group(1))
    if head.count(b"\n") != head.count(b"\r\n"):
        return refuse(400, BARE_LF_DETAIL)
    if b"\n " in head or b"\n\t" in head:
        return refuse(400, OBS_FOLD_DETAIL)
    if _CONTROL.search(head):
        return refuse(400, CONTROL_DETAIL)
    lowered = head.lower()
    lengths = lowered.count(b"\ncontent-length:")
    if lengths > 1:
        return refuse(400, REPEATED_LENGTH_DETAIL)
    if lengths:
        start = lowered.index(b"\ncontent-length:")
        end = head.find(b"\n", start + 1)
        if b"," in head[start : end if end >= 0 else len(head)]:
            return refuse(400, REPEATED_LENGTH_DETAIL)
    return None


def oversized_head(request_line: bytes, max_target_bytes: int) -> HTTPError:
    """The answer to a head that outgrew the limit before it ended: 414 when the request line
    itself has not ended within the target limit, else 431."""
    line_end = request_line.find(b"\n")
    line = request_line if line_end < 0 else request_line[:line_end]
    parts = line.split(b" ", 2)
    if len(parts) >= 2 and len(parts[1]) > max_target_bytes:
        return refuse(414, f"request target longer than {max_target_bytes} bytes")
    return refuse(431, "request head too large")


def comma_tokens(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    """A comma-separated header's tokens, lowercased, over all its lines (as h11 reads them)."""
    return [token.strip().lower() for header, value in headers if header == name for token in value.split(b",")]


def keeps_alive(headers: list[tuple[bytes, bytes]], http_version: bytes) -> bool:
    """h11's rule: HTTP/1.1 without ``Connection: close``. HTTP/1.0 keep-alive is not offered."""
    return http_version == b"1.1" and b"close" not in comma_tokens(headers, b"connection")
