"""The client side of HTTP/1.1 for the lean upstream client, sans-IO: requests encoded, responses
parsed from whatever bytes arrive.

Why not h11 here: a proxied request went through h11 twice on the client side (the request's
events out, the response's back in), ~70 us of a gateway request's ~600 us, most of it in h11's
generic event and state machinery. A client that sends its own well-formed requests and reads one
response at a time needs much less: this parser does one pass over the head and then counts body
bytes. It is as strict as h11 where strictness protects a proxy (framing: conflicting or invalid
Content-Length, Transfer-Encoding other than chunked, obsolete line folding, malformed chunks,
oversized heads; header injection in requests) and is tested against h11's encodings.
"""

from __future__ import annotations

import re
from typing import Final

from ..wire.interface import NEED_DATA, Marker

MAX_HEAD = 64 * 1024
_MAX_CHUNK_LINE = 1024

_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?")
_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_STR_TOKEN = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_BAD_STR_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_BAD_TARGET = re.compile(r"[\x00-\x20\x7f]")
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?\r?")


class ProtocolError(Exception):
    """The peer broke HTTP/1.1 (or a request to send would have): the connection is unusable."""


class Head:
    """A response's status line and headers (names lowercased, in order received)."""

    __slots__ = ("headers", "reason", "status")

    def __init__(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers


END: Final = Marker("END")  # the response is complete

# Parser states
_HEAD, _LENGTH, _CHUNK_SIZE_LINE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _UNTIL_CLOSE, _DONE = range(8)


def encode_request(method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    """A request's bytes; headers as given (the caller adds Host and Content-Length). A name or
    value that could split the message (CR, LF, NUL, other controls) raises ProtocolError, as
    would a method or target that could: nothing a handler passes may inject a request."""
    if not _STR_TOKEN.fullmatch(method):
        raise ProtocolError(f"invalid method {method!r}")
    if not target or _BAD_TARGET.search(target):
        raise ProtocolError(f"invalid request target {target!r}")
    lines = [f"{method} {target} HTTP/1.1"]
    for name, value in headers:
        if not _STR_TOKEN.fullmatch(name) or _BAD_STR_VALUE.search(value):
            raise ProtocolError(f"invalid header {name!r}: {value!r}")
        lines.append(f"{name}: {value}")
    lines.append("\r\n")
    try:
        return "\r\n".join(lines).encode("latin-1") + body
    except UnicodeEncodeError as exc:
        raise ProtocolError(f"a header is not Latin-1: {exc}") from None


class ResponseParser:
    """Parses the responses on one connection, one at a time.

    ``expect(method)`` before each request, ``feed`` what the socket gave (``b""`` at EOF),
    then ``next_event()`` until END: a ``Head`` (interim 1xx responses are skipped), body chunks
    as ``bytes``, END; NEED_DATA when more must be fed. ``reusable`` says whether the connection
    can carry another request after END.
    """

    __slots__ = ("_buffer", "_eof", "_head_request", "_keep_alive", "_remaining", "_state")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._eof = False
        self._state = _DONE
        self._remaining = 0
        self._head_request = False
        self._keep_alive = True

    def expect(self, method: str) -> None:
        if self._state != _DONE:
            raise ProtocolError("the previous response was not read to its end")
        self._state = _HEAD
        self._head_request = method == "HEAD"

    def feed(self, data: bytes) -> None:
        if data:
            self._buffer += data
        else:
            self._eof = True

    @property
    def reusable(self) -> bool:
        """After END: the server keeps the connection open and sent nothing unasked."""
        return self._state == _DONE and self._keep_alive and not self._buffer and not self._eof

    def next_event(self) -> Head | bytes | Marker:
        state = self._state
        if state == _HEAD:
            return self._head()
        if state in (_LENGTH, _CHUNK_DATA):
            return self._counted_body()
        if state == _CHUNK_SIZE_LINE:
            return self._chunk_size()
        if state == _CHUNK_END:
            return self._chunk_end()
        if state == _TRAILERS:
            return self._trailers()
        if state == _UNTIL_CLOSE:
            if self._buffer:
                data = bytes(self._buffer)
                self._buffer.clear()
                return data
            if self._eof:
                self._state = _DONE
                return END
            return NEED_DATA
        return END

    def _head(self) -> Head | bytes | Marker:
        while True:
            buffer = self._buffer
            end = _HEAD_END.search(buffer)
            if end is None:
                if len(buffer) > MAX_HEAD:
                    raise ProtocolError(f"response head over {MAX_HEAD} bytes")
                if self._eof:
                    raise ProtocolError("the upstream closed the connection before a response")
                return NEED_DATA
            if end.end() > MAX_HEAD:
                raise ProtocolError(f"response head over {MAX_HEAD} bytes")
            lines = bytes(buffer[: end.start()]).split(b"\n")
            del buffer[: end.end()]
            head = self._parse_head(lines)
            if 100 <= head.status < 200:
                if head.status == 101:
                    raise ProtocolError("the upstream switched protocols unasked")
                continue  # interim (100 Continue, 103 Early Hints): the real answer follows
            return head

    def _parse_head(self, lines: list[bytes]) -> Head:
        status_line = lines[0].removesuffix(b"\r")
        match = _STATUS_LINE.fullmatch(status_line)
        if match is None:
            raise ProtocolError(f"invalid status line {status_line[:100]!r}")
        minor, status, reason = match.groups()
        headers: list[tuple[bytes, bytes]] = []
        lengths: set[bytes] = set()
        transfer_encoding: bytes | None = None
        connection = b""
        for raw in lines[1:]:
            line = raw.removesuffix(b"\r")
            name, colon, value = line.partition(b":")
            if not colon or not _TOKEN.fullmatch(name):  # a leading space is obsolete line folding
                raise ProtocolError(f"invalid header line {line[:100]!r}")
            value = value.strip(b" \t")
            if _BAD_VALUE.search(value):
                raise ProtocolError(f"invalid header value for {name[:100]!r}")
            name = name.lower()
            headers.append((name, value))
            if name == b"content-length":
                lengths.update(part.strip() for part in value.split(b","))
            elif name == b"transfer-encoding":
                transfer_encoding = value.lower() if transfer_encoding is None else transfer_encoding + b"," + value
            elif name == b"connection":
                connection += b"," + value.lower()
        code = int(status)
        tokens = {token.strip() for token in connection.split(b",")}
        self._keep_alive = b"close" not in tokens and (minor == b"1" or b"keep-alive" in tokens)
        if not 100 <= code < 200:  # an interim response has no body: the final one's framing counts
            self._framing(code, lengths, transfer_encoding)
        return Head(code, reason or b"", headers)

    def _framing(self, code: int, lengths: set[bytes], transfer_encoding: bytes | None) -> None:
        if self._head_request or code in (204, 304):
            self._state, self._remaining = _LENGTH, 0
        elif transfer_encoding is not None:
            if lengths:
                raise ProtocolError("both Transfer-Encoding and Content-Length: ambiguous framing")
            if transfer_encoding.replace(b" ", b"") != b"chunked":
                raise ProtocolError(f"unsupported Transfer-Encoding {transfer_encoding[:100]!r}")
            self._state = _CHUNK_SIZE_LINE
        elif lengths:
            if len(lengths) != 1:
                raise ProtocolError("conflicting Content-Length values")
            (length,) = lengths
            if not length.isdigit() or len(length) > 18:
                raise ProtocolError(f"invalid Content-Length {length[:40]!r}")
            self._state, self._remaining = _LENGTH, int(length)
        else:
            self._state, self._keep_alive = _UNTIL_CLOSE, False

    def _counted_body(self) -> bytes | Marker:
        remaining = self._remaining
        if remaining == 0:
            if self._state == _CHUNK_DATA:
                self._state = _CHUNK_END
                return self._chunk_end()
            self._state = _DONE
            return END
        buffer = self._buffer
        if not buffer:
            if self._eof:
                raise ProtocolError("the upstream closed the connection in the middle of a body")
            return NEED_DATA
        if len(buffer) <= remaining:
            data = bytes(buffer)
            buffer.clear()
        else:
            data = bytes(buffer[:remaining])
            del buffer[:remaining]
        self._remaining = remaining - len(data)
        return data

    def _line(self) -> bytes | None:
        """One line from the buffer (without its line break), or None until it is complete."""
        buffer = self._buffer
        end = buffer.find(b"\n")
        if end < 0:
            if len(buffer) > _MAX_CHUNK_LINE:
                raise ProtocolError("a chunk line is too long")
            if self._eof:
                raise ProtocolError("the upstream closed the connection in the middle of a chunked body")
            return None
        line = bytes(buffer[:end])
        del buffer[: end + 1]
        return line

    def _chunk_size(self) -> bytes | Marker:
        line = self._line()
        if line is None:
            return NEED_DATA
        match = _CHUNK_SIZE.fullmatch(line)
        if match is None:
            raise ProtocolError(f"invalid chunk size line {line[:100]!r}")
        size = int(match.group(1), 16)
        if size == 0:
            self._state, self._remaining = _TRAILERS, MAX_HEAD  # the trailers' byte budget
            return self._trailers()
        self._state, self._remaining = _CHUNK_DATA, size
        return self._counted_body()

    def _chunk_end(self) -> bytes | Marker:
        line = self._line()
        if line is None:
            return NEED_DATA
        if line not in (b"", b"\r"):
            raise ProtocolError("a chunk is longer than its size says")
        self._state = _CHUNK_SIZE_LINE
        return self._chunk_size()

    def _trailers(self) -> Marker:
        while True:
            line = self._line()
            if line is None:
                return NEED_DATA
            if line in (b"", b"\r"):
                self._state = _DONE
                return END
            self._remaining -= len(line) + 1
            if self._remaining < 0:
                raise ProtocolError(f"trailers over {MAX_HEAD} bytes")
