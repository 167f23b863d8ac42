"""Limits with precise errors, and hostile input that must not hurt the server."""

from __future__ import annotations

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.apps import Probe, build_app
from tests.conftest import Running, raw_request, serve


async def _still_serving(running: Running) -> None:
    client = await running.connect()
    assert (await client.request("GET", "/hello")).status == 200
    await client.aclose()


async def test_oversized_header_block_is_431_and_closed() -> None:
    async with serve(build_app(Probe()), max_header_bytes=4096, max_target_bytes=1024) as running:
        client = await running.connect()
        reply = await client.request("GET", "/hello", headers=[("x-filler", "a" * 5000)])
        assert reply.status == 431
        assert reply.headers["content-type"] == "application/problem+json"
        assert reply.headers["connection"] == "close"
        assert await client.closed_by_server()
        await _still_serving(running)


async def test_long_target_is_414_whether_or_not_it_fits_the_head_limit() -> None:
    async with serve(build_app(Probe()), max_header_bytes=4096, max_target_bytes=1024) as running:
        client = await running.connect()
        assert (await client.request("GET", "/" + "a" * 2000)).status == 414
        assert await client.closed_by_server()
        client = await running.connect()
        assert (await client.request("GET", "/" + "a" * 10_000)).status == 414
        assert await client.closed_by_server()
        await _still_serving(running)


async def test_declared_body_too_large_is_413_before_any_body_is_read() -> None:
    probe = Probe()
    async with serve(build_app(probe), max_body_bytes=1000) as running:
        client = await running.connect()
        headers = [("content-length", "5000"), ("x-request-id", "big-upload-1")]
        await client.send(raw_request("POST", "/echo", headers=headers))
        reply = await client.read_reply()  # answered although we never sent the body
        assert reply.status == 413
        assert reply.json()["request_id"] == "big-upload-1"  # like every other problem
        assert reply.headers["connection"] == "close"
        assert probe.bodies == []
        assert await client.closed_by_server()


async def test_chunked_body_is_counted_and_cut_at_the_limit() -> None:
    async with serve(build_app(Probe()), max_body_bytes=1000) as running:
        client = await running.connect()
        chunk = b"200\r\n" + b"x" * 0x200 + b"\r\n"
        await client.send(raw_request("POST", "/echo", headers=[("transfer-encoding", "chunked")]) + chunk * 3)
        reply = await client.read_reply()
        assert reply.status == 413 and reply.json()["request_id"]
        assert reply.headers["connection"] == "close"
        assert await client.closed_by_server()
        await _still_serving(running)


async def test_a_chunk_size_beyond_64_bits_is_413_and_closed() -> None:
    """llhttp refuses a chunk size of 2**64 or more as it reads it; h11 takes it and reads on
    until the body limit: both answer 413 (the wire differential test allows this one gap)."""
    probe = Probe()
    async with serve(build_app(probe), max_body_bytes=1000) as running:
        client = await running.connect()
        head = raw_request("POST", "/echo", headers=[("transfer-encoding", "chunked")])
        await client.send(head + b"f" * 18 + b"\r\n" + b"x" * 1500)
        reply = await client.read_reply()
        assert reply.status == 413 and reply.headers["connection"] == "close"
        assert probe.bodies == []
        assert await client.closed_by_server()
        await _still_serving(running)


async def test_chunked_body_within_limit_is_read() -> None:
    async with serve(build_app(Probe())) as running:
        client = await running.connect()
        await client.send(
            raw_request("POST", "/echo", headers=[("transfer-encoding", "chunked")])
            + b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        reply = await client.read_reply()
        assert reply.body == b"hello world"


async def test_slowloris_dribbling_does_not_extend_the_header_deadline(autojump_clock: trio.testing.MockClock) -> None:
    async with serve(build_app(Probe()), header_timeout=10) as running:
        client = await running.connect()
        head = raw_request("GET", "/hello", headers=[("x-slow", "a" * 100)])

        async def dribble() -> None:
            try:
                for byte in head[:-4]:
                    await client.send(bytes([byte]))
                    await trio.sleep(1)  # one byte a second: each byte alone would reset a naive timer
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(dribble)
            assert await client.closed_by_server()
            nursery.cancel_scope.cancel()
        assert 10 <= trio.current_time() - start < 11


async def test_header_deadline_on_later_requests_starts_at_their_first_byte(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with serve(build_app(Probe()), header_timeout=10, keepalive_timeout=30) as running:
        client = await running.connect()
        assert (await client.request("GET", "/hello")).status == 200
        await trio.sleep(20)  # idle, within keep-alive
        await client.send(b"GET /hel")
        start = trio.current_time()
        assert await client.closed_by_server()
        assert 10 <= trio.current_time() - start < 11


async def test_idle_keep_alive_connection_is_closed_after_the_timeout(autojump_clock: trio.testing.MockClock) -> None:
    async with serve(build_app(Probe()), keepalive_timeout=5) as running:
        client = await running.connect()
        assert (await client.request("GET", "/hello")).status == 200
        start = trio.current_time()
        assert await client.closed_by_server()
        assert 5 <= trio.current_time() - start < 6


async def test_body_read_deadline_is_408(autojump_clock: trio.testing.MockClock) -> None:
    async with serve(build_app(Probe()), body_timeout=7) as running:
        client = await running.connect()
        await client.send(raw_request("POST", "/echo", headers=[("content-length", "100")]) + b"only some")
        start = trio.current_time()
        reply = await client.read_reply()
        assert reply.status == 408
        assert 7 <= trio.current_time() - start < 8
        assert await client.closed_by_server()


async def test_client_that_stops_reading_is_dropped_after_the_send_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    probe = Probe()
    async with serve(build_app(probe), send_timeout=3) as running:
        client = await running.connect()
        await client.send(raw_request("GET", "/big", headers=[]).replace(b"/big", b"/big?50000000"))
        await trio.sleep(10)  # read nothing: the server's send blocks, then gives up
        await _still_serving(running)
        assert await client.closed_by_server()


async def test_missing_host_on_http_1_1_is_400() -> None:
    async with serve(build_app(Probe())) as running:
        client = await running.connect()
        await client.send(b"GET /hello HTTP/1.1\r\n\r\n")
        reply = await client.read_reply()
        assert reply.status == 400
        assert reply.headers["connection"] == "close"
        assert await client.closed_by_server()


async def test_bad_request_line_is_400() -> None:
    async with serve(build_app(Probe())) as running:
        client = await running.connect()
        await client.send(b"NOT AN HTTP REQUEST\r\n\r\n")
        assert (await client.read_reply()).status == 400
        assert await client.closed_by_server()
        await _still_serving(running)


async def test_disagreeing_duplicate_content_length_is_400() -> None:
    async with serve(build_app(Probe())) as running:
        client = await running.connect()
        await client.send(b"POST /echo HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd")
        assert (await client.read_reply()).status == 400
        assert await client.closed_by_server()


async def test_content_length_with_transfer_encoding_is_400_and_closed() -> None:
    """RFC 9112 6.1: the classic request-smuggling shape."""
    probe = Probe()
    async with serve(build_app(probe)) as running:
        client = await running.connect()
        await client.send(
            b"POST /echo HTTP/1.1\r\nhost: a\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n"
            b"0\r\n\r\nGET /hello HTTP/1.1\r\nhost: a\r\n\r\n"
        )
        reply = await client.read_reply()
        assert reply.status == 400
        assert reply.headers["connection"] == "close"
        assert await client.closed_by_server()  # the smuggled GET is never answered
        assert probe.bodies == []


async def test_a_header_continued_by_obs_fold_is_400_and_closed() -> None:
    """h11 unfolds "Transfer-Encoding:" + " chunked" on the next line and honours it; a proxy in
    front may not unfold it the same way, so an edge server refuses the message (RFC 9112 5.2),
    wherever the fold falls: the first request, a later one on the connection, split reads."""
    probe = Probe()
    folded = b"POST /echo HTTP/1.1\r\nhost: a\r\ntransfer-encoding:\r\n chunked\r\n\r\n0\r\n\r\n"
    seam = folded.index(b"\n chunked") + 1  # one read ends a line, the next continues it
    async with serve(build_app(probe)) as running:
        for pieces in ([folded], [folded[:seam], folded[seam:]], [folded.replace(b"\n chunked", b"\n\tchunked")]):
            client = await running.connect()
            for piece in pieces:
                await client.send(piece)
                await trio.sleep(0.01)
            reply = await client.read_reply()
            assert reply.status == 400 and "obs-fold" in reply.json()["detail"]
            assert await client.closed_by_server()
        # After an ordinary request whose body holds a newline and a space (pretty JSON).
        client = await running.connect()
        body = b'{\n  "a": 1\n}'
        assert (await client.request("POST", "/echo", body=body)).body == body
        await client.send(b"GET /hello HTTP/1.1\r\nhost: a\r\nx-note: one\r\n two\r\n\r\n")
        assert (await client.read_reply()).status == 400
        assert probe.bodies == [body]  # nothing folded reached a handler
        await _still_serving(running)


async def test_malformed_client_timeout_header_is_400_and_keeps_the_connection() -> None:
    async with serve(build_app(Probe())) as running:
        client = await running.connect()
        reply = await client.request("GET", "/hello", headers=[("request-timeout", "soon")])
        assert reply.status == 400
        assert "request-timeout" in reply.json()["detail"]
        assert (await client.request("GET", "/hello")).status == 200


async def test_garbage_gets_an_answer_or_a_close_never_a_hang(autojump_clock: trio.testing.MockClock) -> None:
    async with serve(build_app(Probe())) as running:
        for garbage in (
            b"\x00\xff\x10\r\n\r\n",
            b"GET / HTTP/9.9\r\n\r\n",
            b"\r\n" * 100,
            b"GET /\x7f HTTP/1.1\r\n\r\n",
        ):
            client = await running.connect()
            await client.send(garbage)
            with trio.fail_after(60):
                assert await client.closed_by_server()
        await _still_serving(running)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=600), split=st.integers(min_value=1, max_value=50))
def test_random_bytes_never_crash_or_hang_the_server(data: bytes, split: int) -> None:
    async def scenario() -> None:
        async with serve(build_app(Probe()), header_timeout=1, body_timeout=1, linger_timeout=0.2) as running:
            client = await running.connect()
            try:
                for i in range(0, len(data), split):
                    await client.send(data[i : i + split])
            except trio.BrokenResourceError:
                pass
            with trio.fail_after(5):
                await client.closed_by_server()
            await _still_serving(running)
            await trio.sleep(1)  # virtual time: lingering closes finish
            assert running.server.context is not None
            assert not running.server.context.connections, "a connection outlived its client"
            assert running.server.helper_tasks == 0

    trio.run(scenario, clock=trio.testing.MockClock(autojump_threshold=0.01))
