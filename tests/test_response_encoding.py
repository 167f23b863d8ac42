"""Both parsers' responses against h11's own ``send`` (sans-IO, no sockets).

H11Server writes the common complete response itself and only advances h11's state: its bytes
and state must be exactly what h11's send() gives. HttptoolsServer frames every response
itself: status line, headers (as a multiset: h11 may reorder the Connection header), body
bytes and whether the connection goes on must match h11's for complete and streamed answers.
"""

from __future__ import annotations

import h11
import pytest

from trio_router.wire.h11_server import H11Server
from trio_router.wire.httptools_server import HttptoolsServer
from trio_router.wire.interface import END_OF_BODY, RequestHead
from trio_router.wire.rules import REASONS

BODY = b'{"id":1}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]
REQUESTS = {
    "keep-alive": b"GET /a HTTP/1.1\r\nhost: x\r\n\r\n",
    "client closes": b"GET /a HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    "HTTP/1.0": b"GET /a HTTP/1.0\r\n\r\n",
    "HTTP/1.0 keep-alive asked": b"GET /a HTTP/1.0\r\nconnection: keep-alive\r\n\r\n",
    "HEAD": b"HEAD /a HTTP/1.1\r\nhost: x\r\n\r\n",
}


def h11_after(request: bytes) -> h11.Connection:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(request)
    assert type(conn.next_event()) is h11.Request
    conn.next_event()  # EndOfMessage of a bodiless request
    return conn


def ours_after(parser: H11Server | HttptoolsServer, request: bytes) -> None:
    parser.receive_data(request)
    assert type(parser.next_head()) is RequestHead
    assert parser.next_body() is END_OF_BODY


def by_h11(conn: h11.Connection, status: int, headers: list[tuple[bytes, bytes]], chunks: list[bytes] | None) -> bytes:
    """h11's bytes for a complete body (``chunks`` None: ``BODY``) or a streamed one."""
    data = conn.send(h11.Response(status_code=status, headers=headers, reason=REASONS[status])) or b""
    for chunk in [BODY] if chunks is None else chunks:
        data += conn.send(h11.Data(data=chunk)) or b""
    return data + (conn.send(h11.EndOfMessage()) or b"")


def by_parser(
    parser: H11Server | HttptoolsServer,
    status: int,
    headers: list[tuple[bytes, bytes]],
    chunks: list[bytes] | None,
    head_only: bool,
) -> bytes:
    if chunks is None:
        return parser.complete_response(status, list(headers), BODY, head_only)
    data = parser.stream_head(status, list(headers))
    for chunk in [] if head_only else chunks:  # as the connection does
        data += parser.stream_data(chunk)
    return data + parser.stream_end()


def split(response: bytes) -> tuple[bytes, list[bytes], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *lines = head.split(b"\r\n")
    names_lowered = [name.lower() + b":" + value for name, _, value in (line.partition(b":") for line in lines)]
    return status_line, sorted(names_lowered), body


@pytest.mark.parametrize("case", list(REQUESTS))
@pytest.mark.parametrize("status", [200, 201, 204])
@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize("server_closes", [False, True])
@pytest.mark.parametrize("parser_class", [H11Server, HttptoolsServer])
def test_responses_match_h11s_own(
    case: str, status: int, streamed: bool, server_closes: bool, parser_class: type[H11Server | HttptoolsServer]
) -> None:
    request = REQUESTS[case]
    head_only = case == "HEAD"
    headers = [pair for pair in HEADERS if not (streamed or status == 204) or pair[0] != b"content-length"]
    if server_closes:
        headers.append((b"connection", b"close"))
    body = None if not streamed else ([] if status == 204 else [b"data: 1\n\n", b"", b"data: 2\n\n"])
    if status == 204 and not streamed:
        body = None
    theirs = h11_after(request)
    ours = parser_class(16384, 8192)
    ours_after(ours, request)
    # h11 is given no body bytes where none may go out (HEAD, 204); ours must drop them itself
    expected = by_h11(theirs, status, headers, [] if head_only or status == 204 else body)
    got = by_parser(ours, status, headers, body, head_only)
    if parser_class is H11Server:
        assert got == expected
    else:
        assert split(got) == split(expected)
    goes_on = theirs.our_state is h11.DONE and theirs.their_state is h11.DONE
    assert ours.exchange_done is goes_on
    if goes_on:
        ours.start_next_cycle()  # the connection goes on to the next request as usual
        ours.receive_data(b"GET /b HTTP/1.1\r\nhost: x\r\n\r\n")
        assert ours.next_head().target == b"/b"  # type: ignore[attr-defined]


@pytest.mark.parametrize("parser_class", [H11Server, HttptoolsServer])
def test_100_continue_is_sent_once_and_only_before_the_body(parser_class: type[H11Server | HttptoolsServer]) -> None:
    parser = parser_class(16384, 8192)
    parser.receive_data(b"POST /a HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\n")
    assert type(parser.next_head()) is RequestHead
    assert parser.expects_continue and parser.body_pending
    assert parser.continue_response() == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert not parser.expects_continue
    parser.receive_data(b"ok")
    assert parser.next_body() == b"ok" and parser.next_body() is END_OF_BODY and not parser.body_pending
