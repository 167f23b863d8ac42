"""The lean upstream client behind http_client.stream, against a real server: lines split
across chunk boundaries, pooled connections reused (and a stale one replaced), httpx's error
types for refused connections and silent upstreams."""

from __future__ import annotations

import itertools
import socket
import threading
from collections.abc import AsyncIterator
from functools import partial

import httpx
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import serve
from trio_router import App, Event, EventParser, EventTooLarge, Request, Response
from trio_router.client import upstream
from trio_router.client.upstream import UpstreamPool


def upstream_app() -> App:
    app = App()

    @app.route("POST", "/lines")
    async def lines(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            for chunk in (b"data: 1\r", b"\n\r\ndata: \xc3", b"\xa9\rlast"):  # CRLF and a UTF-8 char split
                yield chunk

        return Response(stream=chunks(), headers=[("content-type", "text/event-stream")])

    @app.route("POST", "/echo")
    async def echo(request: Request) -> Response:
        return Response(await request.receive(), headers=[("content-type", "application/octet-stream")])

    @app.route("POST", "/silent")
    async def silent(request: Request) -> Response:
        await trio.sleep(10)
        return Response(b"late")

    return app


async def test_lines_split_across_chunks_and_connections_reused() -> None:
    pool = UpstreamPool()
    async with serve(upstream_app(), keepalive_timeout=0.2) as running:
        response = await pool.send("POST", f"{running.url}/lines", [], b"")
        assert response.status_code == 200 and response.headers["content-type"] == "text/event-stream"
        assert [line async for line in response.aiter_lines()] == ["data: 1", "", "data: é", "last"]
        key = ("127.0.0.1", running.port)
        pooled = pool._idle[key][0]
        for payload in (b"one", b"two"):
            echoed = await pool.send("POST", f"{running.url}/echo", [("x-test", "1")], payload)
            assert await echoed.aread() == payload
            assert pool._idle[key] == [pooled]  # one connection, back in the pool each time
        await trio.sleep(0.5)  # the server closes the idle connection (keepalive_timeout)
        again = await pool.send("POST", f"{running.url}/echo", [], b"three")
        assert await again.aread() == b"three" and pool._idle[key][0] is not pooled  # replaced, not failed
        half_read = await pool.send("POST", f"{running.url}/lines", [], b"")
        await half_read.aclose()  # not read to the end: the connection is not reused
        assert pool._idle[key] == []
    await pool.aclose()


async def test_errors_are_httpx_types() -> None:
    pool = UpstreamPool(read_timeout=0.3)
    async with serve(upstream_app()) as running:
        with pytest.raises(httpx.ReadTimeout):
            await pool.send("POST", f"{running.url}/silent", [], b"")
        port = running.port
    with pytest.raises(httpx.ConnectError):  # nothing listens there any more
        await pool.send("POST", f"http://127.0.0.1:{port}/echo", [], b"")
    with pytest.raises(httpx.UnsupportedProtocol):
        await pool.send("POST", "https://example.com/", [], b"")


async def test_headers_from_the_caller_and_broken_responses() -> None:
    pool = UpstreamPool()
    app = App()

    @app.route("POST", "/headers")
    async def headers(request: Request) -> Response:
        seen = f"{request.header('host')} {request.header('content-length')} {request.header('x-a')}"
        return Response(seen.encode(), headers=[("content-type", "text/plain"), ("x-b", "2")])

    async with serve(app) as running:
        given = [("Host", "upstream.example"), ("Content-Length", "999"), ("X-A", "1")]
        response = await pool.send("POST", f"{running.url}/headers", given, b"four")
        assert await response.aread() == b"upstream.example 4 1"  # the caller's Host; the body's length
        assert response.header(b"x-b") == b"2" and response.headers["X-B"] == "2"
        with pytest.raises(httpx.LocalProtocolError):
            await pool.send("POST", f"{running.url}/headers", [("x-a", "1\r\nx-injected: 1")], b"")

    async def conflicting_lengths(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)
        await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok")

    async with trio.open_nursery() as nursery:
        (listener,) = await nursery.start(partial(trio.serve_tcp, conflicting_lengths, 0, host="127.0.0.1"))
        port = listener.socket.getsockname()[1]
        with pytest.raises(httpx.RemoteProtocolError, match="conflicting Content-Length"):
            await pool.send("GET", f"http://127.0.0.1:{port}/", [], b"")
        assert not pool._idle.get(("127.0.0.1", port))  # the connection was not kept
        nursery.cancel_scope.cancel()
    await pool.aclose()


async def test_reading_a_body_the_kernel_already_holds_lets_other_tasks_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reads that never have to wait never yield by themselves; the client yields every 16 of
    them, so a large answer already buffered cannot starve the other connections (or hold off
    a cancellation). Reads are made 1 KB here so that 64 of them fit in loopback's buffers."""
    monkeypatch.setattr(upstream, "_RECEIVE", 1024)
    size = 64 * 1024
    listener = socket.create_server(("127.0.0.1", 0))

    def serve_one() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(f"HTTP/1.1 200 OK\r\ncontent-length: {size}\r\n\r\n".encode() + b"x" * size)
            connection.recv(1)  # until the client closes

    thread = threading.Thread(target=serve_one, daemon=True)
    thread.start()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.lowlevel.checkpoint()

    pool = UpstreamPool()
    async with trio.open_nursery() as nursery:
        response = await pool.send("GET", f"http://127.0.0.1:{listener.getsockname()[1]}/", [], b"")
        await trio.sleep(0.2)  # the whole answer is in the kernel's buffers now
        nursery.start_soon(ticker)
        await trio.lowlevel.checkpoint()
        ticks = 0
        body = await response.aread()
        seen = ticks
        nursery.cancel_scope.cancel()
    assert len(body) == size
    assert seen >= 3  # 64 reads without waiting: a turn for the others every 16
    await pool.aclose()
    thread.join(5)
    listener.close()


_LINE_TEXT = st.text(alphabet=st.sampled_from("ab\r\né"), max_size=40)


@given(text=_LINE_TEXT, cuts=st.lists(st.integers(0, 200), max_size=8))
def test_lines_split_anywhere_are_the_lines_of_the_whole(text: str, cuts: list[int]) -> None:
    """The splitter scans each chunk once; wherever the bytes are cut (a CRLF or a UTF-8
    character included), it yields the lines of the whole text, as str.splitlines() would."""
    data = text.encode()
    bounds = sorted({min(cut, len(data)) for cut in cuts} | {0, len(data)})
    splitter = upstream._LineSplitter(None)
    lines = [line for start, end in itertools.pairwise(bounds) for line in splitter.feed(data[start:end])]
    assert lines + splitter.end() == text.splitlines()


def test_a_line_over_the_bound_raises_however_it_arrives() -> None:
    splitter = upstream._LineSplitter(100)
    assert splitter.feed(b"x" * 60 + b"\n") == ["x" * 60]
    splitter.feed(b"y" * 60)  # no break yet: held, 60 of 100
    with pytest.raises(upstream.ResponseTooLarge, match="a line over 100 characters"):
        splitter.feed(b"y" * 60)


def test_an_event_over_the_bound_raises_before_its_blank_line() -> None:
    parser = EventParser(max_event=100)
    assert parser.line("data: " + "a" * 50) is None
    with pytest.raises(EventTooLarge):
        parser.line("data: " + "b" * 60)


def test_events_under_the_bound_pass_whole() -> None:
    parser = EventParser(max_event=100)
    for _ in range(3):  # the bound is per event: it starts again after each blank line
        assert parser.line("data: " + "a" * 60) is None and parser.line("") == Event("a" * 60)
