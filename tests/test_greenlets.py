"""Synchronous handlers in pooled greenlets, through a real server."""

from __future__ import annotations

import gc
import warnings

import greenlet
import pytest
import trio
import trio.lowlevel

import trio_router
from tests.conftest import raw_request, serve
from tests.sync_apps import SyncProbe, build_sync_app


async def test_sync_handler_runs_in_a_pooled_greenlet_on_the_connection_task() -> None:
    probe = SyncProbe()
    async with serve(build_sync_app(probe)) as running:
        client = await running.connect()
        for _ in range(3):
            assert (await client.request("GET", "/where")).json() == {"in_handler": True}
        assert len(set(map(id, probe.tasks))) == 1  # the connection's own task, no task per request
        assert len(set(map(id, probe.greenlets))) == 1  # one worker, reused
        assert probe.greenlets[0] is not greenlet.getcurrent()
        assert running.server.context is not None
        pool = running.server.context.runtime.pool
        assert (pool.created, pool.pooled, pool.active) == (1, 1, 0)


async def test_sleeping_handlers_overlap_without_threads(autojump_clock: trio.testing.MockClock) -> None:
    probe = SyncProbe()
    async with serve(build_sync_app(probe)) as running:
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for _ in range(20):

                async def one() -> None:
                    client = await running.connect()
                    assert (await client.request("GET", "/nap?10")).body == b"rested"

                nursery.start_soon(one)
        assert 10 <= trio.current_time() - start < 11  # 20 x 10 s of sleep, concurrently
        assert running.server.context is not None
        assert running.server.context.runtime.pool.created == 20


async def test_await_returns_results_and_raises_errors() -> None:
    async with serve(build_sync_app(SyncProbe())) as running:
        client = await running.connect()
        assert (await client.request("GET", "/await-result")).json() == {"value": 42, "error": "upstream said no"}


async def test_deadline_cancels_a_sleeping_sync_handler(autojump_clock: trio.testing.MockClock) -> None:
    probe = SyncProbe()
    async with serve(build_sync_app(probe), request_timeout=5) as running:
        client = await running.connect()
        start = trio.current_time()
        reply = await client.request("GET", "/nap")
        assert reply.status == 504
        assert 5 <= trio.current_time() - start < 6
        assert probe.cancelled == ["nap"]
        assert probe.finally_ran == ["nap"]
        assert running.server.context is not None
        pool = running.server.context.runtime.pool
        assert (pool.active, pool.suspended, pool.pooled) == (0, 0, 1)  # the worker survived


async def test_swallowed_cancellation_still_ends_the_request(autojump_clock: trio.testing.MockClock) -> None:
    probe = SyncProbe()
    async with serve(build_sync_app(probe), request_timeout=2) as running:
        client = await running.connect()
        assert (await client.request("GET", "/stubborn")).status == 504
        assert probe.cancelled == ["stubborn"]


async def test_client_disconnect_cancels_a_sync_handler() -> None:
    probe = SyncProbe()
    async with serve(build_sync_app(probe)) as running:
        client = await running.connect()
        await client.send(raw_request("GET", "/nap"))
        await probe.started.wait()
        await client.aclose()
        with trio.fail_after(5):
            await probe.finished.wait()
        assert probe.cancelled == ["nap"]


async def test_shutdown_grace_expiry_cancels_a_sync_handler_with_503(autojump_clock: trio.testing.MockClock) -> None:
    probe = SyncProbe()
    async with serve(build_sync_app(probe), shutdown_timeout=3, request_timeout=1000) as running:
        client = await running.connect()
        await client.send(raw_request("GET", "/nap"))
        await probe.started.wait()
        running.server.shutdown()
        assert (await client.read_reply()).status == 503
        assert probe.finally_ran == ["nap"]


async def test_exception_is_a_500_with_request_id_and_the_worker_is_kept(caplog: pytest.LogCaptureFixture) -> None:
    async with serve(build_sync_app(SyncProbe())) as running:
        client = await running.connect()
        reply = await client.request("GET", "/crash", headers=[("x-request-id", "req-123")])
        assert reply.status == 500
        assert reply.json()["request_id"] == "req-123"
        assert b"internal detail" not in reply.body
        assert any("req-123" in r.getMessage() and r.exc_info for r in caplog.records)
        generated = await client.request("GET", "/crash", headers=[("x-request-id", "bad id with spaces")])
        assert generated.json()["request_id"] != "bad id with spaces"
        assert (await client.request("GET", "/where")).status == 200
        assert running.server.context is not None
        assert running.server.context.runtime.pool.created == 1


async def test_contextvars_are_visible_inside_and_do_not_leak_to_the_next_request() -> None:
    probe = SyncProbe()
    async with serve(build_sync_app(probe)) as running:
        client = await running.connect()
        assert (await client.request("GET", "/context?alice")).json() == {"before": "nobody", "after": "alice"}
        assert (await client.request("GET", "/context")).json() == {"before": "nobody", "after": "nobody"}


async def test_reentrant_bridge_call_fails_with_a_clear_error() -> None:
    async with serve(build_sync_app(SyncProbe())) as running:
        client = await running.connect()
        message = (await client.request("GET", "/reentrant")).body.decode()
        assert "code running on the trio task itself" in message
        assert "use `await`" in message


def test_await_outside_a_handler_is_a_clear_error_and_leaks_no_warning() -> None:
    async def never() -> None:
        await trio.lowlevel.checkpoint()

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a "never awaited" RuntimeWarning would fail the test
        with pytest.raises(trio_router.BridgeError, match="outside any trio-router handler"):
            trio_router.await_(never())
        gc.collect()


async def test_sync_handler_reads_the_body_lazily_with_100_continue() -> None:
    async with serve(build_sync_app(SyncProbe())) as running:
        client = await running.connect()
        head = raw_request("POST", "/read", headers=[("expect", "100-continue"), ("content-length", "3")])
        await client.send(head)
        assert await client.stream.receive_some(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        await client.send(b"abc")
        assert (await client.read_reply()).body == b"cba"
        # Refused before reading: no 100, and the body never has to be sent.
        client = await running.connect()
        await client.send(
            raw_request(
                "POST", "/read", headers=[("expect", "100-continue"), ("content-length", "3"), ("x-reject", "1")]
            )
        )
        reply = await client.read_reply()
        assert (reply.status, reply.interim) == (401, [])


async def test_http_client_calls_an_upstream_and_is_cancelled_with_the_request(
    autojump_clock: trio.testing.MockClock,
) -> None:
    upstream_probe = SyncProbe()
    async with serve(build_sync_app(upstream_probe)) as upstream:
        url = f"http://127.0.0.1:{upstream.port}"
        async with serve(build_sync_app(SyncProbe(), upstream=url), request_timeout=5) as gateway:
            client = await gateway.connect()
            reply = await client.request("GET", "/proxy?1")
            assert (reply.status, reply.body) == (200, b"rested")
            start = trio.current_time()
            reply = await client.request("GET", "/proxy?60")  # upstream sleeps past our deadline
            assert reply.status == 504
            assert trio.current_time() - start < 6
        with trio.fail_after(10):
            await upstream_probe.was_cancelled.wait()  # our cancelled call hung up; the upstream noticed


async def test_over_the_limit_requests_are_shed_with_503_and_retry_after() -> None:
    probe = SyncProbe()
    async with serve(build_sync_app(probe), max_handlers=2, handler_overflow="shed", retry_after=7) as running:
        busy = [await running.connect() for _ in range(2)]
        for client in busy:
            await client.send(raw_request("GET", "/nap"))
        await trio.testing.wait_all_tasks_blocked()
        extra = await running.connect()
        reply = await extra.request("GET", "/where")
        assert reply.status == 503
        assert reply.headers["retry-after"] == "7"
        assert reply.headers["content-type"] == "application/problem+json"
        assert running.server.context is not None
        assert running.server.context.runtime.admission.shed == 1
        for client in busy:
            await client.aclose()
        await probe.finished.wait()
        await trio.testing.wait_all_tasks_blocked()
        assert (await extra.request("GET", "/where")).status == 200  # capacity is back


@pytest.mark.parametrize(
    ("nap", "queue_timeout", "status", "waited"),
    [
        (10, 30, 200, (9, 11)),  # the slot frees first: served as soon as the nap ends
        (50, 3, 503, (3, 4)),  # the queue timeout comes first: shed, never waiting past it
    ],
)
async def test_queued_request_gets_the_next_slot_or_a_bounded_wait(
    autojump_clock: trio.testing.MockClock, nap: int, queue_timeout: float, status: int, waited: tuple[float, float]
) -> None:
    app = build_sync_app(SyncProbe())
    async with serve(app, max_handlers=1, handler_queue_timeout=queue_timeout, request_timeout=100) as running:
        first = await running.connect()
        await first.send(raw_request("GET", f"/nap?{nap}"))
        await trio.testing.wait_all_tasks_blocked()
        second = await running.connect()
        start = trio.current_time()
        assert (await second.request("GET", "/where")).status == status
        assert waited[0] <= trio.current_time() - start < waited[1]
        assert (await first.read_reply()).body == b"rested"


async def test_full_queue_sheds_at_once() -> None:
    async with serve(build_sync_app(SyncProbe()), max_handlers=1, handler_queue_size=1) as running:
        holders = [await running.connect() for _ in range(2)]
        for client in holders:  # one runs, one queues
            await client.send(raw_request("GET", "/nap"))
        await trio.testing.wait_all_tasks_blocked()
        third = await running.connect()
        assert (await third.request("GET", "/where")).status == 503
        for client in holders:
            await client.aclose()


def test_memory_diagnostic_measures_suspended_handlers() -> None:
    from trio_router.runtime.memory import measure_suspended_handlers

    report = measure_suspended_handlers(200)
    # A suspended greenlet handler holds more than the same wait in async code, and not absurdly more.
    assert 0 < report.greenlet_share < 64_000
    assert report.per_handler > report.greenlet_share
    assert report.greenlet_rss > 0
    assert "200 handlers suspended at once" in report.render()


@pytest.mark.skipif(
    __import__("resource").getrlimit(__import__("resource").RLIMIT_NOFILE)[0] < 5000,
    reason="needs 4,200 sockets: raise ulimit -n",
)
async def test_the_default_limits_let_thousands_of_waiting_sync_handlers_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """2,100 sync handlers that each wait 6 s on I/O. With the old defaults (1,024 handlers, a
    1,024-deep queue, 5 s in it) 1,024 were answered and 1,076 got 503; greenlets make a waiting
    handler cost kilobytes, so the default bound comes from memory and all of them run at once."""
    # A backlog for all the connections at once: a dropped SYN is retried a real second later,
    # by which time the mock clock has jumped past the first handlers' wait.
    async with serve(build_sync_app(SyncProbe()), request_timeout=60, backlog=4096) as running:
        statuses: list[int] = []

        async def one() -> None:
            client = await running.connect()
            statuses.append((await client.request("GET", "/nap?6")).status)
            await client.aclose()

        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            for _ in range(2100):
                nursery.start_soon(one)
        assert statuses == [200] * 2100
        assert trio.current_time() - started < 12  # together, not in two rounds
