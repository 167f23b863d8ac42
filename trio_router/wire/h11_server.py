"""The reference ``ServerParser``: h11, plus the rules of rules.py that h11 leaves to us.

Two shortcuts read h11 internals (the version is pinned in pyproject.toml, and the suite runs
both paths): the request's header triples are copied into a plain list once, and a common
complete response is written here with only h11's state machine told (``complete_response``).
"""

from __future__ import annotations

import h11

from ..errors import HTTPError
from .interface import CLOSED, END_OF_BODY, NEED_DATA, RequestHead, ResponseRefused
from .rules import REASONS, head_end, method_and_version_problem, oversized_head, refuse, screen_head

_FRAMING_HEADERS = frozenset({b"content-length", b"transfer-encoding", b"connection"})
_END_OF_MESSAGE = h11.EndOfMessage()  # immutable: one instance spares h11 a header normalisation per response
_CAN_RESPOND = (h11.IDLE, h11.SEND_RESPONSE)
_NO_BODY_STATUSES = frozenset({204, 304})
_CR_LF = (0x0D, 0x0A)
_SERVERS_FRAMING = [b"content-length"]  # the only framing header of a fast-path response
_RESPONDED = (h11.DONE, h11.MUST_CLOSE)
_CONTINUE = h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")


class H11Server:
    """One connection's server side on h11."""

    __slots__ = ("_conn", "_max_target_bytes")

    def __init__(self, max_header_bytes: int, max_target_bytes: int) -> None:
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_header_bytes)
        self._max_target_bytes = max_target_bytes

    def receive_data(self, data: bytes) -> None:
        self._conn.receive_data(data)

    def next_head(self) -> RequestHead | object:
        conn = self._conn
        problem = self._screen()
        if problem is not None:
            return problem
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            buffered, closed = conn.trailing_data
            if closed and not buffered.strip():
                return CLOSED
            if exc.error_status_hint == 431:
                return oversized_head(buffered, self._max_target_bytes)
            return refuse(exc.error_status_hint, str(exc) or "malformed request")
        if type(event) is h11.Request:
            problem = method_and_version_problem(event.method, event.http_version)
            if problem is not None:
                return problem
            # h11's Headers is a Sequence ABC whose iteration goes through __getitem__ per item;
            # every later pass over the headers runs over this list instead.
            headers = [(name, value) for _, name, value in event.headers._full_items]
            return RequestHead(event.method, event.target, headers, event.http_version)
        if event is h11.NEED_DATA:
            return NEED_DATA
        return CLOSED  # ConnectionClosed

    def _screen(self) -> HTTPError | None:
        """rules.screen_head on a complete head before h11 parses it; empty lines before a
        request line dropped (RFC 9112 2.2: a server SHOULD ignore them; h11 refuses them)."""
        conn = self._conn
        if conn.their_state is not h11.IDLE:
            return None
        buffer = conn._receive_buffer
        data = buffer._data
        if data and data[0] in _CR_LF:
            blank = len(data) - len(data.lstrip(b"\r\n"))
            buffer._extract(blank)
            data = buffer._data
        end = head_end(data)
        return None if end < 0 else screen_head(bytes(data[:end]))

    def next_body(self) -> bytes | object:
        try:
            event = self._conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise refuse(400, f"malformed request body: {exc}") from None
        if event is h11.NEED_DATA:
            return NEED_DATA
        if type(event) is h11.Data:
            return event.data
        return END_OF_BODY

    @property
    def body_pending(self) -> bool:
        return self._conn.their_state is h11.SEND_BODY

    @property
    def expects_continue(self) -> bool:
        return self._conn.they_are_waiting_for_100_continue

    @property
    def can_respond(self) -> bool:
        return self._conn.our_state in _CAN_RESPOND

    @property
    def exchange_done(self) -> bool:
        return self._conn.our_state is h11.DONE and self._conn.their_state is h11.DONE

    @property
    def responded(self) -> bool:
        return self._conn.our_state in _RESPONDED

    @property
    def buffered(self) -> bytes:
        return self._conn.trailing_data[0]

    def input_unfinished(self) -> bool:
        conn = self._conn
        return conn.their_state not in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED) or bool(conn.trailing_data[0])

    def continue_response(self) -> bytes:
        return self._send(_CONTINUE)

    def complete_response(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, head_only: bool) -> bytes:
        """The common case (a keep-alive HTTP/1.1 exchange, a body, no framing header other than
        the server's own Content-Length) is written here and only h11's state machine is told:
        h11's three ``send`` calls were a quarter of a small GET's instructions. Everything else
        (HTTP/1.0 peers, closing, HEAD, an app's own framing headers) goes through h11."""
        conn = self._conn
        fast = (
            conn.our_state is h11.SEND_RESPONSE
            and conn.their_http_version == b"1.1"
            and not head_only
            and status >= 200
            and conn._cstate.keep_alive
            and [name for name, _ in headers if name in _FRAMING_HEADERS] == _SERVERS_FRAMING
        )
        if not fast:
            data = self._send(_response_head(status, headers))
            if body and not head_only and status not in _NO_BODY_STATUSES:
                data += self._send(h11.Data(data=body))
            return data + self._send(_END_OF_MESSAGE)
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

    def stream_head(self, status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
        return self._send(_response_head(status, headers))

    def stream_data(self, data: bytes) -> bytes:
        return self._send(h11.Data(data=data))

    def stream_end(self) -> bytes:
        return self._send(_END_OF_MESSAGE)

    def _send(self, event: h11.Event) -> bytes:
        try:
            return self._conn.send(event) or b""
        except h11.LocalProtocolError as exc:
            raise ResponseRefused(str(exc)) from exc

    def send_failed(self) -> None:
        self._conn.send_failed()

    def start_next_cycle(self) -> None:
        self._conn.start_next_cycle()


def _response_head(status: int, headers: list[tuple[bytes, bytes]]) -> h11.Response:
    """h11's event without its header validation: the connection checked the app's headers."""
    return h11.Response(status_code=status, headers=headers, reason=REASONS.get(status, b""), _parsed=True)
