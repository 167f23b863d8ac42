"""Keep-alive, pipelining, HEAD, HTTP/1.0, chunked responses, standard headers, routing errors."""

from __future__ import annotations

import socket

import trio

from tests.apps import Probe, build_app
from tests.conftest import raw_request, serve


async def test_keep_alive_serves_many_requests_in_one_task() -> None:
    probe = Probe()
    async with serve(build_app(probe)) as running:
        client = await running.connect()
        for _ in range(3):
            reply = await client.request("GET", "/hello")
            assert reply.status == 200
            assert reply.json() == {"hello": "world"}
            assert "connection" not in reply.headers
        # One task for the connection: the handler ran inline, no task per request.
        assert len(set(map(id, probe.tasks))) == 1
        assert probe.tasks[0] is not trio.lowlevel.current_task()


async def test_standard_headers_date_server_and_reason() -> None:
    async with serve(build_app(Probe())) as running:
        client = await running.connect()
        reply = await client.request("GET", "/hello")
        assert reply.reason == b"OK"
        assert reply.headers["server"] == "trio-router"
        assert reply.headers["date"].endswith(" GMT")
        assert reply.headers["content-length"] == str(len(reply.body))


async def test_pipelined_requests_are_answered_in_order() -> None:
    async with serve(build_app(Probe())) as running:
        client = await running.connect()
        burst = b"".join(raw_request("POST", "/echo", f"body-{i}".encode()) for i in range(50))
        await client.send(burst)
        for i in range(50):
            reply = await client.read_reply()
            assert reply.body == f"body-{i}".encode()


async def test_reading_pauses_while_a_request_is_in_flight() -> None:
    """The server does not slurp pipelined input it cannot act on yet: the client's send blocks."""
    probe = Probe()
    async with serve(build_app(probe)) as running:
        client = await running.connect()
        client.stream.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        await client.send(raw_request("GET", "/wait"))
        await probe.started.wait()
        flood = raw_request("GET", "/hello") * 400_000  # ~12 MB of pipelined requests
        with trio.move_on_after(1) as blocked:
            await client.send(flood)
        assert blocked.cancelled_caught, "the server buffered megabytes it should have left in the kernel"
        probe.release.set()
        assert (await client.read_reply()).body == b"released"
        await client.aclose()


async def test_max_requests_per_connection_closes_after_the_last() -> None:
    async with serve(build_app(Probe()), max_requests_per_connection=2) as running:
        client = await running.connect()
        assert "connection" not in (await client.request("GET", "/hello")).headers
        assert (await client.request("GET", "/hello")).headers["connection"] == "close"
        assert await client.closed_by_server()


async def test_head_has_headers_but_no_body() -> None:
    async with serve(build_app(Probe())) as running:
        client = await running.connect()
        reply = await client.request("HEAD", "/hello")
        assert reply.status == 200
        assert reply.body == b""
        assert int(reply.headers["content-length"]) == len(b'{"hello":"world"}')
        # The connection is still usable: the body was not sent after all.
        assert (await client.request("GET", "/hello")).json() == {"hello": "world"}


async def test_http_1_0_client_gets_response_and_close() -> None:
    async with serve(build_app(Probe())) as running:
        client = await running.connect()
        await client.send(b"GET /hello HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := await client.stream.receive_some(65536):
            data += chunk
        assert data.startswith(b"HTTP/1.1 200 OK\r\n")
        assert data.endswith(b'{"hello":"world"}')


async def test_streamed_body_is_chunked() -> None:
    async with serve(build_app(Probe())) as running:
        client = await running.connect()
        reply = await client.request("GET", "/stream")
        assert reply.headers["transfer-encoding"] == "chunked"
        assert reply.body == b"one,two,three"
        assert (await client.request("GET", "/hello")).status == 200


async def test_204_has_no_content_length() -> None:
    async with serve(build_app(Probe())) as running:
        client = await running.connect()
        reply = await client.request("GET", "/empty")
        assert reply.status == 204
        assert "content-length" not in reply.headers


async def test_unknown_path_404_and_wrong_method_405_with_allow_as_problem_json() -> None:
    async with serve(build_app(Probe())) as running:
        client = await running.connect()
        missing = await client.request("GET", "/nope")
        assert missing.status == 404
        assert missing.headers["content-type"] == "application/problem+json"
        assert missing.json()["status"] == 404
        wrong = await client.request("DELETE", "/hello")
        assert wrong.status == 405
        assert wrong.headers["allow"] == "GET, HEAD, OPTIONS"
        options = await client.request("OPTIONS", "/hello")
        assert (options.status, options.headers["allow"]) == (204, "GET, HEAD, OPTIONS")
        # Client errors keep the connection.
        assert (await client.request("GET", "/hello")).status == 200


async def test_handler_exception_is_a_500_without_internals_and_the_server_goes_on() -> None:
    async with serve(build_app(Probe())) as running:
        client = await running.connect()
        reply = await client.request("GET", "/boom")
        assert reply.status == 500
        assert reply.headers["content-type"] == "application/problem+json"
        assert b"secret" not in reply.body
        assert (await client.request("GET", "/hello")).status == 200


async def test_invalid_response_header_from_app_gives_500_not_a_crash() -> None:
    async with serve(build_app(Probe())) as running:
        client = await running.connect()
        await client.send(raw_request("GET", "/bad-header"))
        data = b""
        while chunk := await client.stream.receive_some(65536):
            data += chunk
        assert data.startswith(b"HTTP/1.1 500 ")
        assert (await (await running.connect()).request("GET", "/hello")).status == 200


async def test_path_templates_route_with_decoded_parameters_and_metrics_use_the_template() -> None:
    async with serve(build_app(Probe())) as running:
        client = await running.connect()
        reply = await client.request("GET", "/things/books/war%20and%20peace.epub")
        assert reply.json() == {"kind": "books", "name": "war and peace", "ext": "epub"}
        assert (await client.request("GET", "/things/a%2Fb/special")).json() == {"special": "a/b"}
        assert (await client.request("GET", "/things/books/")).status == 404  # trailing slash: no route
        assert running.server.context is not None
        operations = {operation for operation, _, _ in running.server.context.stats.requests}
        assert operations == {"thing", "special", "<unmatched>"}
