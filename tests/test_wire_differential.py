"""The two parsers against each other: hypothesis writes request byte streams, valid and hostile
(wrong framing, bad characters, bare LF, obs-fold, repeated or signed lengths, unknown methods
and versions, pipelining), splits them anywhere, and both parsers must give the same heads, the
same bodies and the same refusal status, driven the way the connection drives them.

h11 is the reference; where it is laxer than llhttp, wire/rules.py makes it as strict (its
docstring lists the rules), and this test is what keeps the two from drifting apart.
"""

from __future__ import annotations

import re
from collections import deque

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from trio_router.errors import HTTPError
from trio_router.http.protocol import check_request_head
from trio_router.wire.h11_server import H11Server
from trio_router.wire.httptools_server import HttptoolsServer
from trio_router.wire.interface import CLOSED, END_OF_BODY, NEED_DATA, RequestHead

MAX_HEADER_BYTES = 2048
MAX_TARGET_BYTES = 512
Trace = list[tuple[object, ...]]


def drive(parser: H11Server | HttptoolsServer, pieces: list[bytes], eof: bool) -> Trace:
    """Feed ``pieces`` one at a time as the connection would: a head, its whole body, a 200
    response, the next cycle. The trace ends at a refusal, a close, or when input runs out."""
    trace: Trace = []
    pending = deque(pieces)

    def feed() -> bool:
        if pending:
            parser.receive_data(pending.popleft())
            return True
        if eof:
            parser.receive_data(b"")
            pending.append(b"")  # marks EOF as given
            return True
        return False

    while True:
        head = parser.next_head()
        if head is NEED_DATA:
            if pending == deque([b""]) or not feed():
                trace.append(("needs more",))
                return trace
            continue
        if head is CLOSED:
            trace.append(("closed",))
            return trace
        if isinstance(head, HTTPError):
            trace.append(("refused", head.status))
            return trace
        assert type(head) is RequestHead
        trace.append(("head", head.method, head.target, head.headers, head.http_version))
        try:  # the connection's own checks, as it applies them to every head
            check_request_head(head, MAX_HEADER_BYTES, MAX_TARGET_BYTES, 1 << 20)
        except HTTPError as exc:  # refused before anything saw the head: as a parser's refusal
            trace[-1] = ("refused", exc.status)
            return trace
        body = b""
        while True:
            try:
                chunk = parser.next_body()
            except HTTPError as exc:
                trace.append(("body refused", exc.status, body))
                return trace
            if chunk is NEED_DATA:
                if pending == deque([b""]) or not feed():
                    trace.append(("body so far", body))
                    return trace
            elif chunk is END_OF_BODY:
                break
            else:
                body += chunk  # type: ignore[operator]
        trace.append(("body", body))
        parser.complete_response(200, [(b"content-length", b"0")], b"", head.method == b"HEAD")
        if not parser.exchange_done:
            trace.append(("closes",))
            return trace
        parser.start_next_cycle()


def both(pieces: list[bytes], eof: bool = False) -> tuple[Trace, Trace]:
    return (
        drive(H11Server(MAX_HEADER_BYTES, MAX_TARGET_BYTES), pieces, eof),
        drive(HttptoolsServer(MAX_HEADER_BYTES, MAX_TARGET_BYTES), pieces, eof),
    )


# -- request streams -------------------------------------------------------------------------

METHODS = st.sampled_from([b"GET", b"POST", b"PUT", b"HEAD", b"DELETE", b"OPTIONS", b"PATCH", b"BREW", b"get", b""])
TARGETS = st.one_of(
    st.sampled_from([b"/", b"/pets/1?x=1&y=%20", b"/%2F..", b"*", b"http://h/a", b"/a[b]{c}|", b"/a b", b"/\xff"]),
    st.binary(min_size=1, max_size=12).map(lambda raw: b"/" + raw),
    st.integers(500, 600).map(lambda n: b"/" + b"a" * n),  # around the target limit
)
VERSIONS = st.sampled_from([b"1.1"] * 6 + [b"1.0", b"1.0", b"2.0", b"1.2", b"0.9", b"11", b"1.1 "])
VALUE_CHARS = st.sampled_from([b"a", b"Z", b"0", b" ", b"\t", b",", b"\x01", b"\x7f", b"\x80", b"\xff", b"\x00", b"\r"])
VALUES = st.lists(VALUE_CHARS, max_size=6).map(b"".join)
CLEAN_METHODS = {b"GET", b"POST", b"PUT", b"HEAD", b"DELETE", b"OPTIONS", b"PATCH"}
CLEAN_TARGET = re.compile(rb"[\x21-\x7e]{1,500}")
CLEAN_NAMES = {b"x-a", b"Accept", b"X_Under", b"Expect", b"Connection", b"Upgrade"}
CLEAN_VALUE = re.compile(rb"[!-~\x80-\xff]([ \t!-~\x80-\xff]*[!-~\x80-\xff])?|")
NAMES = st.sampled_from(
    [b"x-a", b"Accept", b"X_Under", b"x a", b"", b"x:y", b"Expect", b"Connection", b"Upgrade", b"Host", b"x\x01"]
)


@st.composite
def headers(draw: st.DrawFn, body_length: int) -> tuple[list[tuple[bytes, bytes]], int]:
    """A head's header lines, mostly sane, with every framing header's hostile variants; and
    how many faults they hold."""
    lines: list[tuple[bytes, bytes]] = []
    host = draw(st.sampled_from([[b"h"], [b"h"], [b"h"], [], [b"h", b"h"], [b""]]))
    faults = host != [b"h"]
    lines += [(b"Host", value) for value in host]
    framing = draw(
        st.sampled_from(["length", "length", "chunked", "none", "both", "twice", "list", "signed", "te-other"])
    )
    faults += framing not in ("length", "chunked", "none")
    if framing in ("length", "both", "twice", "list", "signed"):
        lines.append((b"Content-Length", b"+%d" % body_length if framing == "signed" else b"%d" % body_length))
    if framing == "twice":
        lines.append((b"content-length", b"%d" % body_length))
    if framing == "list":
        lines[-1] = (b"Content-Length", b"%d, %d" % (body_length, body_length))
    if framing in ("chunked", "both"):
        lines.append((b"Transfer-Encoding", draw(st.sampled_from([b"chunked", b"Chunked", b"chunked "]))))
    if framing == "te-other":
        lines.append((b"Transfer-Encoding", draw(st.sampled_from([b"gzip", b"gzip, chunked", b"identity"]))))
    extra = draw(st.lists(st.tuples(NAMES, VALUES), max_size=3))
    faults += sum(name not in CLEAN_NAMES or not CLEAN_VALUE.fullmatch(value) for name, value in extra)
    lines += extra
    if draw(st.booleans()):
        lines.append((b"Connection", draw(st.sampled_from([b"close", b"keep-alive", b"upgrade", b"Close"]))))
    if draw(st.integers(0, 9)) == 0:
        lines.append((b"x-big", b"b" * draw(st.integers(1800, 2200))))  # around the head limit
        faults += 1
    return draw(st.permutations(lines)), faults


def chunked(body: bytes, draw: st.DrawFn) -> tuple[bytes, int]:
    """``body`` chunked, now and then with a chunk-size or its line broken; and the faults."""
    out = b""
    faults = 0
    for start in range(0, len(body), 4):
        piece = body[start : start + 4]
        good = [b"%x" % len(piece)] * 8 + [b"%X;ext=1" % len(piece)]
        size = draw(st.sampled_from([*good, b"zz", b"f" * 18, b""]))
        end = draw(st.sampled_from([b"\r\n"] * 8 + [b"\n", b"XX"]))
        faults += (size not in good) + (end != b"\r\n")
        out += size + b"\r\n" + piece + end
    return out + b"0\r\n" + draw(st.sampled_from([b"", b"", b"Trailer: x\r\n"])) + b"\r\n", faults


@st.composite
def message(draw: st.DrawFn) -> tuple[bytes, int]:
    """One request's bytes and how many faults it holds."""
    body = draw(st.binary(max_size=10))
    lines, faults = draw(headers(len(body)))
    eol = draw(st.sampled_from([b"\r\n"] * 10 + [b"\n"]))
    method, target, version = draw(METHODS), draw(TARGETS), draw(VERSIONS)
    faults += (eol != b"\r\n") + (method not in CLEAN_METHODS) + (version not in (b"1.1", b"1.0"))
    faults += not CLEAN_TARGET.fullmatch(target)
    rendered = [method + b" " + target + b" HTTP/" + version] + [name + b": " + value for name, value in lines]
    if lines and draw(st.integers(0, 9)) == 0:
        rendered.append(b" folded")  # obs-fold: a line continuing the one before
        faults += 1
    head = eol.join(rendered) + eol + eol
    if draw(st.integers(0, 9)) == 0:
        head = b"\r\n" + head  # an empty line before the request line (allowed)
    framing = {name.lower() for name, _ in lines}
    if b"transfer-encoding" in framing:
        encoded, chunk_faults = chunked(body, draw)
        return head + encoded, faults + chunk_faults
    return head + (body if b"content-length" in framing else b""), faults


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[bytes], bool, bool]:
    """Messages split anywhere, whether the client then closes, and whether one message holds
    more than one fault (then which status is reported may differ: see the test)."""
    messages = draw(st.lists(message(), min_size=1, max_size=3))
    data = b"".join(raw for raw, _ in messages)
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=4)))
    pieces = [data[start:end] for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    return [piece for piece in pieces if piece], draw(st.booleans()), any(faults > 1 for _, faults in messages)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
@example(([b"GET / HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n"], False, False))  # pipelined
@example(([b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nab", b"c"], True, False))  # a split body
@example(
    (
        [b"GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n"],
        False,
        False,
    )
)
def test_both_parsers_give_the_same_events_or_the_same_refusal(stream: tuple[list[bytes], bool, bool]) -> None:
    """Exactly the same trace, refusal status included, for streams whose messages hold one
    fault at most. Where one message holds several, each parser reports the first it meets
    and h11 sees a head whole (rules.screen_head) while llhttp reads it in order: the same
    events up to the refusal, at the same request, but the status may name another fault."""
    pieces, eof, several_faults = stream
    reference, fast = both(pieces, eof)
    if fast[-1][:2] == ("body refused", 413) and reference[-1][0] in ("body so far", "body refused"):
        # a chunk size of 2**64 or more: llhttp refuses it at once, h11 reads on until the
        # connection's body limit gives the same 413 (tests/test_limits.py, both parsers), or
        # until the client closes mid-body
        fast, reference = fast[:-1], reference[:-1]
    if several_faults:
        reference, fast = blur_refusal(reference), blur_refusal(fast)
    assert fast == reference, ([len(piece) for piece in pieces], eof, pieces)


def blur_refusal(trace: Trace) -> Trace:
    return [("refused",) if entry[0] in ("refused", "body refused") else entry for entry in trace]


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\nx", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
        (b"GET / HTTP/1.1\nHost: a\n\n", 400),  # bare LF
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400),  # obs-fold
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400),
        (b"BREW / HTTP/1.1\r\nHost: a\r\n\r\n", 501),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        (b"GET /" + b"a" * 600 + b" HTTP/1.1\r\nHost: a\r\n" + b"x: y\r\n" * 400, 414),
        (b"GET / HTTP/1.1\r\nHost: a\r\n" + b"x: y\r\n" * 400, 431),
    ],
)
def test_each_framing_rule_refuses_alike(data: bytes, status: int) -> None:
    """The named rules, each as one stream, whole and split byte by byte."""
    for pieces in ([data], [data[i : i + 1] for i in range(len(data))]):
        reference, fast = both(pieces)
        assert reference[-1][:2] == fast[-1][:2] == ("refused", status) or (
            reference[-1][:2] == fast[-1][:2] == ("body refused", status)
        ), (reference, fast)
