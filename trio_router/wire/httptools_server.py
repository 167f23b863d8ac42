"""A ``ServerParser`` on httptools (llhttp, the parser of Node.js and uvicorn), with the rules of
rules.py llhttp leaves to us and the response framing h11 would apply.

llhttp parses everything it is given in one call and has no pause: the events of pipelined
requests are queued (bounded by one receive's bytes, since the connection receives again
only when the queue is empty). Its lenient flags stay off: it is the stricter parser, and
rules.py brings h11 up to it.
"""

from __future__ import annotations

from collections import deque

import httptools

from ..errors import HTTPError
from .interface import CLOSED, END_OF_BODY, NEED_DATA, RequestHead, ResponseRefused
from .rules import (
    BOTH_FRAMINGS_DETAIL,
    REASONS,
    comma_tokens,
    keeps_alive,
    method_and_version_problem,
    method_refusal,
    oversized_head,
    refuse,
    screen_head,
)

_NO_BODY_STATUSES = frozenset({204, 304})
_UNKNOWN_METHOD = "Invalid method encountered"
# llhttp's reasons that have a more precise status (the rest are 400).
_LLHTTP_STATUSES = {
    "Transfer-Encoding can't be present with Content-Length": (400, BOTH_FRAMINGS_DETAIL),
    "Invalid HTTP version": (505, "this HTTP version is not supported (HTTP/1.1 and 1.0 are)"),
    "Request has invalid `Transfer-Encoding`": (501, "Only Transfer-Encoding: chunked is supported"),
    # a chunk of 2**64 bytes or more: larger than any body limit (h11 reads it until the limit's 413)
    "Chunk size overflow": (413, "a chunk of the request body is larger than any body limit"),
}


class _Refused(Exception):
    """Raised from a callback to stop llhttp at a head rules.py refuses."""


class HttptoolsServer:
    """One connection's server side on llhttp."""

    __slots__ = (
        "_body_pending",
        "_chunked",
        "_closed",
        "_completed",
        "_error",
        "_events",
        "_expects_continue",
        "_head_bytes",
        "_head_only",
        "_head_parts",
        "_headers",
        "_in_head",
        "_keep_alive",
        "_max_header_bytes",
        "_max_target_bytes",
        "_must_close",
        "_no_body",
        "_parser",
        "_paused",
        "_request_version",
        "_responded",
        "_started",
        "_undecided",
        "_url",
    )  # fmt: skip

    def __init__(self, max_header_bytes: int, max_target_bytes: int) -> None:
        self._parser = httptools.HttpRequestParser(self)
        self._max_header_bytes = max_header_bytes
        self._max_target_bytes = max_target_bytes
        self._events: deque[object] = deque()
        self._error: HTTPError | None = None  # the refusal that stopped llhttp (no more parsing after it)
        self._paused = b""  # bytes after an upgrade request, parsed only if the connection goes on in HTTP
        self._closed = False
        self._undecided = b""  # the start of a request line whose method llhttp refused
        self._completed = 0  # messages llhttp has parsed to their end
        self._in_head = False
        self._head_bytes = 0
        self._head_parts: list[bytes] = []
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._reset_exchange()

    def _reset_exchange(self) -> None:
        self._body_pending = False
        self._expects_continue = False
        self._keep_alive = True
        self._request_version = b"1.1"
        self._head_only = False
        self._started = False  # a response head went out
        self._responded = False
        self._must_close = False
        self._chunked = False
        self._no_body = False

    # -- llhttp's callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_head = True
        self._url = b""
        self._headers = []
        self._head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        # h11's shape: lowercase names, values without the whitespace llhttp leaves at their end,
        # and Transfer-Encoding's value lowercased
        name = name.lower()
        value = value.rstrip(b" \t")
        self._headers.append((name, value.lower() if name == b"transfer-encoding" else value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self._parser
        version = parser.get_http_version().encode("ascii")
        method = parser.get_method()
        headers = self._headers
        problem = method_and_version_problem(method, version) or _head_problem(headers, version)
        if problem is None and b"%s %s HTTP/%s\r\n" % (method, self._url, version) not in self._head_data():
            # llhttp takes "GET /  HTTP/1.1" (two spaces); h11, and RFC 9112 3, do not
            problem = refuse(400, "malformed request line")
        if problem is not None:
            self._error = problem
            raise _Refused
        self._events.append(RequestHead(method, self._url, headers, version))
        self._headers = []  # a chunked body's trailer fields land here, unused (as h11's are)

    def on_body(self, body: bytes) -> None:
        self._events.append(body)

    def on_message_complete(self) -> None:
        self._events.append(END_OF_BODY)
        self._completed += 1

    # -- input -------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        if not data:
            self._closed = True
            return
        if self._undecided:  # llhttp refused a method whose request line has not ended yet
            self._undecided += data
            self._error = _refused_method(self._undecided, self._max_header_bytes)
            if self._error is not None:
                self._undecided = b""
            return
        if self._error is not None:
            return
        if self._paused:
            self._paused += data
            return
        continues_head = self._in_head
        # the reads of a head in progress (the first may begin with what preceded it): for the
        # request line's check and the words of an error; bounded by the head limit below
        if continues_head:
            self._head_parts.append(data)
        else:
            self._head_parts = [data]
        completed = self._completed
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._paused = data[upgrade.args[0] :]
        except _Refused:
            pass
        except httptools.HttpParserCallbackError as exc:
            if self._error is None:  # not ours: re-raise what the callback raised
                raise exc.__context__ or exc  # noqa: B904
        except httptools.HttpParserError as exc:
            self._error = _parse_error(str(exc), self._head_data(), self._completed > completed)
            if self._error is None:
                self._undecided = self._head_data().lstrip(b"\r\n")
        if self._in_head and self._error is None:
            self._head_bytes = self._head_bytes + len(data) if continues_head else self._seen_head_bytes()
            if self._head_bytes > self._max_header_bytes:
                # as h11's limit on an incomplete head: 414 if the request line has not ended
                line = b"GET " + self._url + (b" HTTP/1.1\n" if self._headers else b"")
                self._error = oversized_head(line, self._max_target_bytes)

    def _head_data(self) -> bytes:
        """The reads of the head in progress as one (joined once per head: a head dribbled in
        many reads costs no more than one that came whole)."""
        parts = self._head_parts
        if len(parts) > 1:
            parts[:] = [b"".join(parts)]
        return parts[0]

    def _seen_head_bytes(self) -> int:
        """The size of the incomplete head as far as llhttp has reported it (a header it has not
        finished is not counted: at most one receive's bytes)."""
        return len(self._url) + sum(len(name) + len(value) + 4 for name, value in self._headers)

    def next_head(self) -> RequestHead | object:
        events = self._events
        while events:
            event = events.popleft()
            if type(event) is RequestHead:
                self._body_pending = True
                self._keep_alive = keeps_alive(event.headers, event.http_version)
                self._request_version = event.http_version
                self._head_only = event.method == b"HEAD"
                self._expects_continue = event.http_version == b"1.1" and b"100-continue" in comma_tokens(
                    event.headers, b"expect"
                )
                return event
            # leftovers of a request whose body was not read: the connection closed it instead
        if self._error is not None:
            return self._error
        if self._closed:
            return refuse(400, "the connection closed in the middle of a request head") if self._in_head else CLOSED
        return NEED_DATA

    def next_body(self) -> bytes | object:
        events = self._events
        if not events:
            if self._error is not None:
                raise self._error
            return NEED_DATA
        event = events.popleft()
        if event is END_OF_BODY:
            self._body_pending = False
            return END_OF_BODY
        self._expects_continue = False  # the client sends the body anyway
        assert type(event) is bytes
        return event

    # -- state -------------------------------------------------------------------------

    @property
    def body_pending(self) -> bool:
        return self._body_pending

    @property
    def expects_continue(self) -> bool:
        return self._expects_continue and not self._events

    @property
    def can_respond(self) -> bool:
        return not self._started

    @property
    def exchange_done(self) -> bool:
        return self._responded and not self._must_close and not self._body_pending

    @property
    def responded(self) -> bool:
        return self._responded or self._must_close

    @property
    def buffered(self) -> bytes:
        return self._paused

    def input_unfinished(self) -> bool:
        return self._body_pending or bool(self._events) or bool(self._paused)

    # -- output ------------------------------------------------------------------------

    def continue_response(self) -> bytes:
        self._expects_continue = False
        return b"HTTP/1.1 100 Continue\r\n\r\n"

    def complete_response(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, head_only: bool) -> bytes:
        data = self._head(status, headers, streamed=False)
        self._finish()
        return data if head_only or self._no_body else data + body

    def stream_head(self, status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
        return self._head(status, headers, streamed=True)

    def stream_data(self, data: bytes) -> bytes:
        if self._no_body or not data:
            return b""
        if self._chunked:
            return b"%x\r\n%s\r\n" % (len(data), data)
        return data

    def stream_end(self) -> bytes:
        self._finish()
        return b"0\r\n\r\n" if self._chunked and not self._no_body else b""

    def _head(self, status: int, headers: list[tuple[bytes, bytes]], streamed: bool) -> bytes:
        """The response head with the framing h11 would give it: Content-Length as given; a
        body of unknown length chunked for HTTP/1.1, and for HTTP/1.0 delimited by the close;
        ``Connection: close`` whenever the connection will not serve another request."""
        if self._started:
            raise ResponseRefused("a response has already started")
        self._started = True
        self._expects_continue = False
        self._no_body = self._head_only or status in _NO_BODY_STATUSES
        keep_alive = self._keep_alive and b"close" not in comma_tokens(headers, b"connection")
        out = headers
        if streamed and status not in _NO_BODY_STATUSES:
            out = [pair for pair in headers if pair[0] not in (b"content-length", b"transfer-encoding")]
            if self._request_version == b"1.1":
                self._chunked = True
                out.append((b"transfer-encoding", b"chunked"))
            else:
                keep_alive = False
        if not keep_alive:
            self._must_close = True
            if b"close" not in comma_tokens(out, b"connection"):
                out = [pair for pair in out if pair[0] != b"connection"]
                out.append((b"connection", b"close"))
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b""))]
        lines.extend(b"%s: %s\r\n" % pair for pair in out)
        lines.append(b"\r\n")
        return b"".join(lines)

    def _finish(self) -> None:
        self._responded = True

    def send_failed(self) -> None:
        self._started = self._must_close = True

    def start_next_cycle(self) -> None:
        self._reset_exchange()
        paused, self._paused = self._paused, b""
        if paused:
            self.receive_data(paused)


def _head_problem(headers: list[tuple[bytes, bytes]], http_version: bytes) -> HTTPError | None:
    """What h11 refuses in a head and llhttp accepts: Host missing (HTTP/1.1) or repeated, a
    Transfer-Encoding other than exactly ``chunked``, and one beside ``Content-Length: 0``."""
    hosts = 0
    encodings: list[bytes] = []
    length = False
    for name, value in headers:
        if name == b"host":
            hosts += 1
        elif name == b"transfer-encoding":
            encodings.append(value)
        elif name == b"content-length":
            length = True
    if encodings and (len(encodings) > 1 or encodings[0].lower() != b"chunked"):  # h11 checks it first
        return refuse(501, "Only Transfer-Encoding: chunked is supported")
    if encodings and length:  # llhttp lets "Content-Length: 0" through beside chunked
        return refuse(400, BOTH_FRAMINGS_DETAIL)
    if hosts > 1:
        return refuse(400, "Found multiple Host: headers")
    if hosts == 0 and http_version == b"1.1":
        return refuse(400, "Missing mandatory Host: header")
    return None


def _refused_method(start: bytes, max_header_bytes: int) -> HTTPError | None:
    """rules.method_refusal for a request line llhttp refused: never None once the line has
    ended (llhttp knows no such method) or outgrown the head limit."""
    problem = method_refusal(start)
    if problem is None and (b"\n" in start or len(start) > max_header_bytes):
        return refuse(400, "malformed request line") if b"\n" in start else refuse(431, "request head too large")
    return problem


def _parse_error(reason: str, data: bytes, after_a_request: bool) -> HTTPError | None:
    """llhttp's refusal as the status (and, where rules.py names the fault, the words) the h11
    parser would give the same request: where several faults meet, h11's screen decides which
    is reported (rules.screen_head). None: the refused method has not ended yet."""
    refused = _refused_request(data, after_a_request)
    if reason == _UNKNOWN_METHOD:
        # a token llhttp does not know is 501 as for h11 (rules.unknown_method); anything else
        # where a method belongs is a malformed request line
        return _refused_method(refused, len(refused) + 1)
    status, detail = _LLHTTP_STATUSES.get(reason, (400, reason))
    if status == 400:
        named = screen_head(refused)
        if named is not None:
            return named
    return refuse(status, detail)


def _refused_request(data: bytes, after_a_request: bool) -> bytes:
    """The refused request's bytes within ``data``, the read(s) llhttp refused: its start, or,
    when a request ended earlier in the same read, from the last request line on (llhttp
    stopped there; the request before it ended in a blank line). httptools reports no offset."""
    if after_a_request:
        line = data.rfind(b" HTTP/")
        start = data.rfind(b"\r\n\r\n", 0, line)
        if line >= 0 and start >= 0:
            data = data[start + 4 :]
    return data.lstrip(b"\r\n")
