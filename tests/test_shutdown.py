"""Graceful shutdown in process: listeners first, idle connections at once, in-flight drained."""

from __future__ import annotations

import socket

import trio

from tests.apps import Probe, build_app
from tests.conftest import raw_request, server_socket_pair
from trio_router import Settings
from trio_router.http.connection import HTTPConnection
from trio_router.http.context import ServerContext
from trio_router.http.server import bind_listener
from trio_router.runtime.executor import HandlerRuntime
from trio_router.serving import Server


def _start(nursery: trio.Nursery, probe: Probe, results: list[bool], **settings: object) -> tuple[Server, int]:
    """A server whose serve() result (clean drain or not) lands in ``results``."""
    listener = bind_listener("127.0.0.1", 0, 16, reuse_port=False)
    server = Server(build_app(probe), Settings(port=0, **settings))  # type: ignore[arg-type]

    async def run() -> None:
        results.append(await server.serve([listener]))

    nursery.start_soon(run)
    return server, listener.getsockname()[1]


async def test_shutdown_closes_listener_and_idle_connections_and_drains_in_flight() -> None:
    probe = Probe()
    results: list[bool] = []
    async with trio.open_nursery() as nursery:
        server, port = _start(nursery, probe, results, shutdown_timeout=30)
        await trio.sleep(0.05)
        idle = await trio.open_tcp_stream("127.0.0.1", port)
        busy = await trio.open_tcp_stream("127.0.0.1", port)
        await idle.send_all(raw_request("GET", "/hello"))
        assert (await idle.receive_some(65536)).startswith(b"HTTP/1.1 200")
        await busy.send_all(raw_request("GET", "/wait"))
        await probe.started.wait()

        server.shutdown()
        with trio.fail_after(2):
            assert await idle.receive_some(65536) == b""  # the idle keep-alive connection is closed at once
        with trio.fail_after(2):
            while True:  # the listener is closed: new connections are refused
                try:
                    stream = await trio.open_tcp_stream("127.0.0.1", port)
                except OSError:
                    break
                await stream.aclose()
                await trio.sleep(0.01)
        probe.release.set()
        data = b""
        with trio.fail_after(2):
            while chunk := await busy.receive_some(65536):
                data += chunk
        assert data.startswith(b"HTTP/1.1 200")
        assert b"connection: close\r\n" in data
        assert data.endswith(b"released")
    assert results == [True]


async def test_requests_still_running_at_the_grace_deadline_get_503(autojump_clock: trio.testing.MockClock) -> None:
    probe = Probe()
    results: list[bool] = []
    async with trio.open_nursery() as nursery:
        server, port = _start(nursery, probe, results, shutdown_timeout=10, request_timeout=1000)
        await trio.sleep(0.05)
        busy = await trio.open_tcp_stream("127.0.0.1", port)
        await busy.send_all(raw_request("GET", "/sleep"))
        await probe.started.wait()
        start = trio.current_time()
        server.shutdown()
        data = b""
        while chunk := await busy.receive_some(65536):
            data += chunk
        assert 10 <= trio.current_time() - start < 11
        assert data.startswith(b"HTTP/1.1 503 ")
        assert probe.finally_ran == ["sleep"]
    assert results == [False]
    assert server.cancelled_requests == 1


async def test_response_is_one_coalesced_send_on_a_nodelay_socket() -> None:
    """Head and body leave in one send() call: count the calls on the real server socket."""

    class CountingSocket(socket.socket):
        sends: list[int] = []

        def send(self, data: object, *args: object) -> int:
            sent = super().send(data, *args)  # type: ignore[arg-type]
            CountingSocket.sends.append(sent)
            return sent

    server_side, client_side = server_socket_pair()
    counted = CountingSocket(fileno=server_side.detach())
    settings = Settings()
    context = ServerContext(
        settings, build_app(Probe()), spawn_helper=lambda fn: None, runtime=HandlerRuntime(settings)
    )
    connection = HTTPConnection(counted, context)
    assert counted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    client_side.sendall(
        raw_request("GET", "/hello") * 2 + b"GET /hello HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n"
    )
    await connection.serve()
    received = b""
    while chunk := client_side.recv(65536):
        received += chunk
    client_side.close()
    assert received.count(b"HTTP/1.1 200 OK") == 3
    assert len(CountingSocket.sends) == 3
