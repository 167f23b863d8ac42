"""encode_complete_response writes the common response itself and only advances h11's state:
its bytes and h11's state afterwards must be exactly what h11's own send() gives, and every
case it leaves to h11 must still be right (sans-IO, no sockets)."""

from __future__ import annotations

import h11
import pytest

from trio_router.http.protocol import REASONS, encode_complete_response

BODY = b'{"id":1}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]


def server_after(request: bytes) -> h11.Connection:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(request)
    assert type(conn.next_event()) is h11.Request
    conn.next_event()  # EndOfMessage of a bodiless request
    return conn


def by_h11(conn: h11.Connection, status: int, headers: list[tuple[bytes, bytes]], body: bytes, head: bool) -> bytes:
    data = conn.send(h11.Response(status_code=status, headers=headers, reason=REASONS[status]))
    if body and not head:
        data += conn.send(h11.Data(data=body))
    return data + conn.send(h11.EndOfMessage())


@pytest.mark.parametrize(
    ("request_bytes", "headers", "head"),
    [
        (b"GET /a HTTP/1.1\r\nhost: x\r\n\r\n", HEADERS, False),  # the fast path
        (b"GET /a HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n", HEADERS, False),  # client closes
        (b"GET /a HTTP/1.0\r\n\r\n", HEADERS, False),  # HTTP/1.0
        (b"HEAD /a HTTP/1.1\r\nhost: x\r\n\r\n", HEADERS, True),
        (b"GET /a HTTP/1.1\r\nhost: x\r\n\r\n", [*HEADERS, (b"connection", b"close")], False),  # server closes
    ],
)
def test_bytes_and_state_match_h11s_own_send(
    request_bytes: bytes, headers: list[tuple[bytes, bytes]], head: bool
) -> None:
    ours, theirs = server_after(request_bytes), server_after(request_bytes)
    assert encode_complete_response(ours, 201, list(headers), BODY, head) == by_h11(theirs, 201, headers, BODY, head)
    assert (ours.our_state, ours.their_state) == (theirs.our_state, theirs.their_state)
    if ours.our_state is h11.DONE and ours.their_state is h11.DONE:
        ours.start_next_cycle()  # the connection goes on to the next request as usual
        ours.receive_data(b"GET /b HTTP/1.1\r\nhost: x\r\n\r\n")
        assert ours.next_event().target == b"/b"  # type: ignore[union-attr]
    else:
        assert ours.our_state is h11.MUST_CLOSE
