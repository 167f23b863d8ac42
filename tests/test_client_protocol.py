"""The lean upstream client's wire format without sockets, with h11 as the oracle: responses
h11 encodes (or accepts) parse to the same status, headers and body, however the bytes are
split; responses h11 refuses for their framing are refused here too; requests encoded here
are what h11 reads, and nothing a caller passes can inject a second request."""

from __future__ import annotations

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_router.client.protocol import (
    END,
    MAX_HEAD,
    NEED_DATA,
    Head,
    ProtocolError,
    ResponseParser,
    encode_request,
)

Parsed = tuple[int, list[tuple[bytes, bytes]], bytes, bool]


def parse(data: bytes, split: int | None = None, method: str = "GET", eof: bool = False) -> Parsed:
    """Feed ``data`` in pieces of ``split`` bytes (all at once if None): (status, headers, body,
    reusable)."""
    parser = ResponseParser()
    parser.expect(method)
    pieces = [data] if split is None else [data[i : i + split] for i in range(0, len(data), split)]
    pieces += [b""] if eof else []
    head: Head | None = None
    body = b""
    for piece in pieces:
        parser.feed(piece)
        while (event := parser.next_event()) is not NEED_DATA:
            if event is END:
                assert head is not None
                return head.status, head.headers, body, parser.reusable
            if isinstance(event, Head):
                head = event
            else:
                assert isinstance(event, bytes)
                body += event
    raise AssertionError("the response never ended")


def h11_parse(data: bytes, method: str = "GET", eof: bool = False) -> Parsed:
    connection = h11.Connection(h11.CLIENT)
    connection.send(h11.Request(method=method, target="/", headers=[("host", "x")]))
    connection.send(h11.EndOfMessage())
    connection.receive_data(data)
    if eof:
        connection.receive_data(b"")
    status, headers, body = 0, [], b""
    while True:
        event = connection.next_event()
        if isinstance(event, h11.Response):
            status, headers = event.status_code, [(bytes(n), bytes(v)) for n, v in event.headers]
        elif isinstance(event, h11.Data):
            body += bytes(event.data)
        elif isinstance(event, h11.EndOfMessage):
            reusable = connection.their_state is h11.DONE and connection.our_state is h11.DONE
            return status, headers, body, reusable
        elif event is h11.NEED_DATA:
            raise AssertionError("h11 wants more")


def h11_response(status: int, headers: list[tuple[str, str]], chunks: list[bytes], http_version: str = "1.1") -> bytes:
    """What h11's server side sends for this response."""
    server = h11.Connection(h11.SERVER)
    server.receive_data(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    server.next_event()
    server.next_event()
    wire = server.send(h11.Response(status_code=status, headers=headers, http_version=http_version)) or b""
    for chunk in chunks:
        wire += server.send(h11.Data(data=chunk)) or b""
    return wire + (server.send(h11.EndOfMessage()) or b"")


header_values = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=30)
header_names = st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12).filter(
    lambda name: name not in ("content-length", "transfer-encoding", "connection")
)


@settings(max_examples=150, deadline=None)
@given(
    status=st.sampled_from([200, 201, 400, 404, 500, 503]),
    extra=st.lists(st.tuples(header_names, header_values), max_size=5),
    chunks=st.lists(st.binary(min_size=1, max_size=300), max_size=5),
    chunked=st.booleans(),
    split=st.one_of(st.none(), st.integers(1, 40)),
)
def test_whatever_h11_sends_parses_to_what_h11_reads(
    status: int, extra: list[tuple[str, str]], chunks: list[bytes], chunked: bool, split: int | None
) -> None:
    framing = [("transfer-encoding", "chunked")] if chunked else [("content-length", str(sum(map(len, chunks))))]
    wire = h11_response(status, [*framing, *extra], chunks)
    assert parse(wire, split) == h11_parse(wire)


@pytest.mark.parametrize(
    ("wire", "method", "eof", "reusable"),
    [
        (b"HTTP/1.1 204 No Content\r\n\r\n", "GET", False, True),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", "HEAD", False, True),  # no body after HEAD
        (b"HTTP/1.1 304 Not Modified\r\ncontent-length: 5\r\n\r\n", "GET", False, True),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", "POST", False, True),
        (
            b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            "GET",
            False,
            True,
        ),
        (b"HTTP/1.0 200 OK\r\n\r\nuntil the end", "GET", True, False),  # close-delimited
        (b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok", "GET", False, False),
        (b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 2\r\n\r\nok", "GET", False, True),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 2, 2\r\n\r\nok", "GET", False, True),  # duplicates agreeing
        (b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", "GET", False, True),  # bare LF line breaks
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2;ext=1\r\nok\r\n0\r\nt: v\r\n\r\n",
            "GET",
            False,
            True,
        ),
    ],
)
def test_framing_cases_agree_with_h11(wire: bytes, method: str, eof: bool, reusable: bool) -> None:
    for split in (None, 1, 7):
        status, _, body, parsed_reusable = parse(wire, split, method, eof)
        expected_status, _, expected_body, _ = h11_parse(wire, method, eof)  # h11 merges header values
        assert (status, body, parsed_reusable) == (expected_status, expected_body, reusable)


@pytest.mark.parametrize(
    "wire",
    [
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\ncontent-length: 0\r\n\r\n",
        b"garbage\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok",  # conflicting lengths
        b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 0x10\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nbad name: 1\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nx: a\x00b\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",  # not a chunk size
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nokay\r\n0\r\n\r\n",  # longer than its size
    ],
)
def test_broken_framing_is_refused_as_h11_refuses_it(wire: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse(wire)
    with pytest.raises(h11.RemoteProtocolError):
        h11_parse(wire)


@pytest.mark.parametrize(
    "wire",
    [
        # Both framings: h11 lets Transfer-Encoding win; a proxy refuses the ambiguity, the
        # root of response splitting between hops that disagree.
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 2\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        # Obsolete line folding: h11 unfolds it; RFC 9112 lets a gateway answer 502 instead.
        b"HTTP/1.1 200 OK\r\nx-a: 1\r\n folded\r\ncontent-length: 0\r\n\r\n",
        # A protocol switch nobody asked for (h11 hands it to the caller).
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n",
    ],
)
def test_stricter_than_h11_where_a_proxy_must_be(wire: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse(wire)


@pytest.mark.parametrize(
    "wire",
    [
        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",  # closed mid-body
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nab",  # closed mid-chunk
        b"HTTP/1.1 200 OK\r\ncontent-",  # closed mid-head
        b"",  # closed before anything
    ],
)
def test_a_connection_closed_too_early_is_an_error(wire: bytes) -> None:
    with pytest.raises(ProtocolError, match="closed"):
        parse(wire, eof=True)


def test_heads_and_chunk_lines_are_bounded() -> None:
    endless_head = b"HTTP/1.1 200 OK\r\n" + b"x-a: " + b"a" * MAX_HEAD
    with pytest.raises(ProtocolError, match="head over"):
        parse(endless_head, split=4096)
    endless_chunk_line = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + b"1" * 2000
    with pytest.raises(ProtocolError, match="too long"):
        parse(endless_chunk_line)


def test_unasked_bytes_after_a_response_make_the_connection_unusable() -> None:
    status, _, body, reusable = parse(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA")
    assert (status, body, reusable) == (200, b"ok", False)


def test_a_parser_reads_one_response_after_another_on_a_connection() -> None:
    parser = ResponseParser()
    for n in range(3):
        parser.expect("GET")
        parser.feed(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n" + str(n).encode())
        head = parser.next_event()
        assert isinstance(head, Head) and head.status == 200
        assert parser.next_event() == str(n).encode()
        assert parser.next_event() is END and parser.reusable
    parser.expect("GET")
    with pytest.raises(ProtocolError, match="not read to its end"):
        parser.expect("GET")


@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    headers=st.lists(st.tuples(header_names, header_values), max_size=5),
    body=st.binary(max_size=200),
)
def test_encoded_requests_are_what_h11_reads(method: str, headers: list[tuple[str, str]], body: bytes) -> None:
    sent = [("host", "upstream:8000"), ("content-length", str(len(body))), *headers]
    server = h11.Connection(h11.SERVER)
    server.receive_data(encode_request(method, "/v1/x?q=1", sent, body))
    request = server.next_event()
    assert isinstance(request, h11.Request)
    assert (request.method, request.target) == (method.encode(), b"/v1/x?q=1")
    assert [(bytes(n), bytes(v)) for n, v in request.headers] == [(n.encode(), v.encode()) for n, v in sent]
    received = b""
    while isinstance(event := server.next_event(), h11.Data):
        received += bytes(event.data)
    assert received == body and isinstance(event, h11.EndOfMessage)


@pytest.mark.parametrize(
    ("method", "target", "headers"),
    [
        ("GET", "/", [("x-a", "1\r\nx-injected: yes")]),
        ("GET", "/", [("x-a", "1\nGET /other HTTP/1.1")]),
        ("GET", "/", [("x-a\r\nx-b", "1")]),
        ("GET", "/", [("", "1")]),
        ("GET", "/", [("x-a", "nul\x00")]),
        ("GET", "/ HTTP/1.1\r\nx: y\r\n\r\nGET /smuggled", []),
        ("GET", "", []),
        ("GE T", "/", []),
        ("GET", "/", [("x-a", "snowman \u2603")]),
    ],
)
def test_nothing_a_caller_passes_can_split_a_request(method: str, target: str, headers: list[tuple[str, str]]) -> None:
    with pytest.raises(ProtocolError):
        encode_request(method, target, headers, b"")


@settings(max_examples=300, deadline=None)
@given(
    prefix=st.sampled_from([b"", b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"]),
    noise=st.binary(max_size=300),
    split=st.integers(1, 50),
    eof=st.booleans(),
)
def test_any_bytes_end_in_events_or_a_protocol_error(prefix: bytes, noise: bytes, split: int, eof: bool) -> None:
    """Whatever an upstream sends, the parser answers with events, NEED_DATA or ProtocolError:
    no other exception, no loop without progress, nothing buffered past its limits."""
    parser = ResponseParser()
    parser.expect("GET")
    wire = prefix + noise
    pieces = [wire[i : i + split] for i in range(0, len(wire), split)] + ([b""] if eof else [])
    try:
        for piece in pieces:
            parser.feed(piece)
            for _ in range(len(wire) + 10):  # each event consumes input or ends the response
                event = parser.next_event()
                if event is NEED_DATA or event is END:
                    break
            else:
                raise AssertionError("the parser kept producing events without input")
    except ProtocolError:
        pass
