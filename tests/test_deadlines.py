"""Per-request deadlines, client disconnects and Expect: 100-continue."""

from __future__ import annotations

import select

import pytest
import trio

from tests.apps import Probe, build_app
from tests.conftest import raw_request, serve


async def test_deadline_expiry_is_504_and_the_handler_is_really_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    probe = Probe()
    async with serve(build_app(probe), request_timeout=5) as running:
        client = await running.connect()
        start = trio.current_time()
        reply = await client.request("GET", "/sleep", headers=[])
        assert reply.status == 504
        assert reply.headers["content-type"] == "application/problem+json"
        assert 5 <= trio.current_time() - start < 6
        assert probe.cancelled == ["sleep"]
        assert probe.finally_ran == ["sleep"]


async def test_operation_timeout_overrides_the_server_default(autojump_clock: trio.testing.MockClock) -> None:
    async with serve(build_app(Probe()), request_timeout=30) as running:
        client = await running.connect()
        start = trio.current_time()
        assert (await client.request("GET", "/short")).status == 504  # route deadline 0.5 s < its 2 s sleep
        assert trio.current_time() - start < 1
        client = await running.connect()
        assert (await client.request("GET", "/long")).body == b"done in a minute"  # 120 s > server's 30 s


async def test_client_header_shortens_but_cannot_extend_the_deadline(autojump_clock: trio.testing.MockClock) -> None:
    async with serve(build_app(Probe()), request_timeout=10) as running:
        client = await running.connect()
        start = trio.current_time()
        reply = await client.request("GET", "/sleep?20", headers=[("request-timeout", "2.5")])
        assert reply.status == 504
        assert 2.5 <= trio.current_time() - start < 3
        client = await running.connect()
        start = trio.current_time()
        reply = await client.request("GET", "/sleep?20", headers=[("x-request-timeout", "1000")])
        assert reply.status == 504
        assert 10 <= trio.current_time() - start < 11


async def test_handler_that_swallows_cancellation_still_ends_with_504(autojump_clock: trio.testing.MockClock) -> None:
    probe = Probe()
    async with serve(build_app(probe), request_timeout=3) as running:
        client = await running.connect()
        reply = await client.request("GET", "/swallow")
        assert reply.status == 504
        assert probe.cancelled == ["swallow"]


async def test_cpu_bound_handler_past_its_deadline_is_checked_when_it_returns() -> None:
    async with serve(build_app(Probe()), request_timeout=0.2) as running:
        client = await running.connect()
        reply = await client.request("GET", "/spin?0.4")
        assert reply.status == 504


async def test_client_disconnect_cancels_the_request() -> None:
    probe = Probe()
    async with serve(build_app(probe), request_timeout=60) as running:
        client = await running.connect()
        await client.send(raw_request("GET", "/sleep"))
        await probe.started.wait()
        await client.aclose()
        with trio.fail_after(5):
            await probe.finished.wait()
        assert probe.cancelled == ["sleep"]
        assert running.server.context is not None
        with trio.fail_after(5):
            while running.server.context.connections or running.server.helper_tasks:  # noqa: ASYNC110
                await trio.sleep(0.01)  # neither the connection nor its watcher task outlives the client


async def test_a_short_suspension_never_starts_a_watcher_and_a_long_one_does() -> None:
    """Watching a client's socket costs a task wake-up, a registration and a cancellation; a
    suspension shorter than the watch delay never pays it, one that lasts does."""
    probe = Probe()
    async with serve(build_app(probe), request_timeout=60) as running:
        client = await running.connect()
        for _ in range(3):
            assert (await client.request("GET", "/sleep?0.001")).status == 200
        await trio.sleep(0.3)  # several ticks of the watch delay, the connection still open
        assert running.server.helper_tasks == 0  # no watcher task was ever started for it
        await client.send(raw_request("GET", "/sleep"))
        await probe.started.wait()
        await trio.sleep(0.3)
        assert running.server.helper_tasks == 1  # the long one is watched
        await client.aclose()
        with trio.fail_after(1):  # noticed at once: the watcher is already waiting on the socket
            while not probe.cancelled:  # noqa: ASYNC110 (the probe records, it does not signal)
                await trio.sleep(0.01)
        assert probe.cancelled == ["sleep"]


@pytest.mark.skipif(not hasattr(select, "epoll"), reason="one watch set for all connections needs epoll")
async def test_one_task_watches_every_suspended_connection() -> None:
    """A task per watched connection was 3.8 KB of each suspended request; on Linux one epoll
    set and one task watch them all, and a client that leaves still cancels only its own."""
    probe = Probe()
    async with serve(build_app(probe), request_timeout=60) as running:
        clients = [await running.connect() for _ in range(50)]
        for client in clients:
            await client.send(raw_request("GET", "/sleep"))
        await trio.sleep(0.3)  # every one suspended past the watch delay
        assert running.server.helper_tasks == 1  # was 50
        await clients[0].aclose()
        with trio.fail_after(1):
            while not probe.cancelled:  # noqa: ASYNC110
                await trio.sleep(0.01)
        await trio.sleep(0.1)
        assert probe.cancelled == ["sleep"]  # the others are still watched, not cancelled
        for client in clients[1:]:
            await client.aclose()
        with trio.fail_after(2):
            while len(probe.cancelled) < 50 or running.server.helper_tasks:  # noqa: ASYNC110
                await trio.sleep(0.01)  # every one noticed, and the watch task ended with the last


async def test_streamed_response_is_cut_at_the_deadline_and_its_producer_closed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    probe = Probe()
    async with serve(build_app(probe), request_timeout=5) as running:
        client = await running.connect()
        await client.send(raw_request("GET", "/endless"))
        start = trio.current_time()
        received = b""
        while chunk := await client.stream.receive_some(65536):
            received += chunk
        assert 5 <= trio.current_time() - start < 6
        assert received.startswith(b"HTTP/1.1 200 ")
        assert received.count(b"tick") in (5, 6)
        assert not received.endswith(b"0\r\n\r\n")  # aborted, not a clean end of the chunked body
        assert probe.finally_ran == ["endless"]


async def test_client_leaving_a_stream_closes_its_producer() -> None:
    probe = Probe()
    async with serve(build_app(probe)) as running:
        client = await running.connect()
        await client.send(raw_request("GET", "/endless"))
        assert b"tick" in await client.stream.receive_some(65536)
        await client.aclose()
        with trio.fail_after(5):
            await probe.finished.wait()


async def test_pipelined_input_during_a_slow_request_is_not_mistaken_for_a_disconnect() -> None:
    probe = Probe()
    async with serve(build_app(probe)) as running:
        client = await running.connect()
        await client.send(raw_request("GET", "/wait"))
        await probe.started.wait()
        await client.send(raw_request("GET", "/hello"))
        await trio.sleep(0.1)
        probe.release.set()
        assert (await client.read_reply()).body == b"released"
        assert (await client.read_reply()).json() == {"hello": "world"}


async def test_100_continue_is_sent_only_when_the_handler_reads_the_body() -> None:
    probe = Probe()
    async with serve(build_app(probe)) as running:
        client = await running.connect()
        await client.send(raw_request("POST", "/echo", headers=[("expect", "100-continue"), ("content-length", "5")]))
        # Nothing else is sent before the 100: the handler asked for the body.
        assert await client.stream.receive_some(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        await client.send(b"hello")
        reply = await client.read_reply()
        assert reply.body == b"hello"
        assert probe.bodies == [b"hello"]


async def test_error_before_the_body_is_read_sends_no_100_and_closes() -> None:
    probe = Probe()
    async with serve(build_app(probe), max_body_bytes=10) as running:
        client = await running.connect()
        # 413: decided from the head alone.
        await client.send(raw_request("POST", "/echo", headers=[("expect", "100-continue"), ("content-length", "50")]))
        reply = await client.read_reply()
        assert (reply.status, reply.interim) == (413, [])
        assert await client.closed_by_server()
        # A handler that answers without reading: no 100, and the unread body closes the connection.
        client = await running.connect()
        await client.send(
            raw_request("POST", "/ignore-body", headers=[("expect", "100-continue"), ("content-length", "5")])
        )
        reply = await client.read_reply()
        assert (reply.status, reply.interim) == (200, [])
        assert reply.headers["connection"] == "close"
        assert await client.closed_by_server()


async def test_small_unread_body_is_drained_and_the_connection_kept() -> None:
    async with serve(build_app(Probe())) as running:
        client = await running.connect()
        reply = await client.request("POST", "/ignore-body", b"x" * 1000)
        assert "connection" not in reply.headers
        assert (await client.request("GET", "/hello")).status == 200


@pytest.mark.skipif(not hasattr(select, "epoll"), reason="the watch set needs epoll")
async def test_a_closed_connections_watch_cannot_remove_the_next_one_on_its_descriptor() -> None:
    """A socket closed while watched leaves the set by itself, and its number may go straight to
    the next connection: the stale watcher's unwatch must not take the new registration along."""
    import socket as socket_module

    from trio_router.http.transport import Transport
    from trio_router.http.watcher import DisconnectWatcher, WatchDelay

    noticed: list[str] = []
    async with trio.open_nursery() as nursery:
        delay = WatchDelay(nursery.start_soon)
        first, first_peer = socket_module.socketpair()
        stale = DisconnectWatcher(Transport(first), lambda: noticed.append("first"), nursery.start_soon, delay)
        stale.arm()
        stale.start_watching()
        number = first.fileno()
        first.close()  # closed without unwatching: the kernel drops it from the set
        second, second_peer = socket_module.socketpair()
        if second.fileno() != number:
            second.close()
            second_peer.close()
            first_peer.close()
            pytest.skip("the descriptor was not reused")
        current = DisconnectWatcher(Transport(second), lambda: noticed.append("second"), nursery.start_soon, delay)
        current.arm()
        current.start_watching()
        stale.close()  # unwatches under the old number, now the second socket's
        second_peer.close()  # the second client hangs up
        with trio.fail_after(2):
            while not noticed:  # noqa: ASYNC110
                await trio.sleep(0.01)
        assert noticed == ["second"]
        current.close()
        for sock in (second, first_peer):
            sock.close()


@pytest.mark.skipif(not hasattr(select, "epoll"), reason="the watch set needs epoll")
async def test_the_watch_task_ends_even_if_a_socket_closed_before_its_watch() -> None:
    import socket as socket_module

    from trio_router.http.transport import Transport
    from trio_router.http.watcher import DisconnectWatcher, WatchDelay

    with trio.fail_after(2):  # the nursery waits for the watch task: it must end once nothing is watched
        async with trio.open_nursery() as nursery:
            delay = WatchDelay(nursery.start_soon)
            sock, peer = socket_module.socketpair()
            watcher = DisconnectWatcher(Transport(sock), lambda: None, nursery.start_soon, delay)
            watcher.arm()
            watcher.start_watching()
            await trio.sleep(0.05)
            sock.close()
            watcher.close()
            peer.close()
