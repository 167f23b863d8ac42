"""Server-sent events from handlers' generators, against a real server: encoding, keep-alives,
deadline severing (MockClock), back-pressure from a slow reader, disconnects, failures."""

from __future__ import annotations

import itertools
import types
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import trio
import trio.lowlevel
import trio.testing

import trio_router
from tests.conftest import serve
from tests.specs import SSE_RESPONSE, write_spec
from trio_router import App, Event, EventStream, Request, StreamOutcome
from trio_router.streaming.sse import encode


def test_encoding_of_fields_multiline_data_and_json() -> None:
    assert encode("hi") == b"data: hi\n\n"
    assert encode(Event("a\nb\r\nc", event="note", id="7", retry=1500)) == (
        b"id: 7\nevent: note\nretry: 1500\ndata: a\ndata: b\ndata: c\n\n"
    )
    assert encode(Event({"n": 1})) == b'data: {"n":1}\n\n'
    for bad in (Event("x", event="a\nb"), Event("x", id="1\r")):
        try:
            encode(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad} was encoded")


class Log:
    def __init__(self) -> None:
        self.produced = 0
        self.closed = trio.Event()
        self.last_event_id: str | None = None
        self.outcomes: list[tuple[str, bool]] = []  # each on_close: the reason, and whether finally had run

    async def ended(self, outcome: StreamOutcome) -> None:
        await trio.lowlevel.checkpoint()  # on_close may await
        self.outcomes.append((outcome.reason, self.closed.is_set()))


def build(log: Log) -> App:
    app = App()

    @app.route("GET", "/ticks")
    def ticks(request: Request) -> EventStream:
        log.last_event_id = request.last_event_id

        def generate() -> Iterator[Event]:
            try:
                for n in range(3):
                    trio_router.sleep(1)  # a sync generator may block on the bridge between events
                    log.produced += 1
                    yield Event({"n": n}, event="tick", id=str(n))
            finally:
                log.closed.set()

        return EventStream(generate(), keepalive=0.4, on_close=log.ended)

    @app.route("GET", "/forever", timeout=5)
    async def forever(request: Request) -> EventStream:
        async def generate() -> AsyncIterator[str]:
            try:
                yield "started"
                await trio.sleep_forever()
            finally:
                log.closed.set()

        return EventStream(generate(), keepalive=100, on_close=log.ended)

    @app.route("GET", "/flood")
    def flood(request: Request) -> EventStream:
        def generate() -> Iterator[str]:
            try:
                while True:
                    log.produced += 1
                    yield "x" * 65536
            finally:
                log.closed.set()

        return EventStream(generate())

    @app.route("GET", "/broken")
    def broken(request: Request) -> EventStream:
        def generate() -> Iterator[str]:
            yield "one"
            raise RuntimeError("boom")

        return EventStream(generate(), on_close=log.ended)

    return app


async def read_all(client: object, path: str, headers: list[tuple[str, str]] | None = None) -> bytes:
    reply = await client.request("GET", path, headers=headers)  # type: ignore[attr-defined]
    assert reply.status == 200 and reply.headers["content-type"] == "text/event-stream"
    return reply.body  # type: ignore[no-any-return]


async def test_events_keepalives_and_last_event_id(autojump_clock: trio.testing.MockClock) -> None:
    log = Log()
    async with serve(build(log)) as running:
        client = await running.connect()
        body = await read_all(client, "/ticks", [("last-event-id", "41")])
    assert log.last_event_id == "41"
    events = [block for block in body.split(b"\n\n") if block]
    assert [block for block in events if not block.startswith(b":")] == [
        b'id: %d\nevent: tick\ndata: {"n":%d}' % (n, n) for n in range(3)
    ]
    # One second between events, a keep-alive every 0.4 s of silence: two before each event.
    assert events.count(b": keep-alive") == 6
    assert log.closed.is_set()
    assert log.outcomes == [("complete", True)]


async def test_the_deadline_severs_the_stream_with_a_terminal_event(autojump_clock: trio.testing.MockClock) -> None:
    log = Log()
    async with serve(build(log)) as running:
        client = await running.connect()
        started = trio.current_time()
        body = await read_all(client, "/forever")
        assert trio.current_time() - started == 5  # the route's deadline, exactly
    assert (
        body
        == b'data: started\n\nevent: error\ndata: {"error":"deadline","detail":"the stream reached its deadline"}\n\n'
    )
    assert log.closed.is_set()  # the generator's finally ran
    assert log.outcomes == [("deadline", True)]


async def test_a_disconnect_closes_the_generator(autojump_clock: trio.testing.MockClock) -> None:
    log = Log()
    async with serve(build(log)) as running:
        client = await running.connect()
        await client.send(b"GET /forever HTTP/1.1\r\nhost: t\r\n\r\n")
        received = b""
        while b"data: started" not in received:
            received += await client.stream.receive_some(65536)
        await client.aclose()
        with trio.fail_after(1):
            await log.closed.wait()
        await trio.testing.wait_all_tasks_blocked()
        assert not running.server.context.connections  # type: ignore[union-attr]  # the connection is freed too
        assert log.outcomes == [("disconnect", True)]  # once, after the generator's finally


async def test_a_slow_reader_holds_the_generator_back() -> None:
    log = Log()
    async with serve(build(log), sse_buffer_events=2) as running:
        client = await running.connect()
        await client.send(b"GET /flood HTTP/1.1\r\nhost: t\r\n\r\n")
        await trio.sleep(0.5)  # the client reads nothing: socket buffers fill, then the channel
        stalled_at = log.produced
        await trio.sleep(0.3)
        assert log.produced == stalled_at  # blocked, not queueing without bound
        # At most what the kernel's socket buffers hold (a few MB on loopback), plus the channel.
        assert stalled_at < 200
        received = 0
        while received < stalled_at * 65536 // 2:
            received += len(await client.stream.receive_some(1 << 20))
        await trio.sleep(0.2)
        assert log.produced > stalled_at  # reading let it go on
        await client.aclose()
        with trio.fail_after(2):
            await log.closed.wait()


async def test_a_failing_generator_ends_the_stream_with_an_error_event() -> None:
    log = Log()
    async with serve(build(log)) as running:
        client = await running.connect()
        body = await read_all(client, "/broken")
        assert body.endswith(
            b'event: error\ndata: {"error":"internal","detail":"the event source failed; '
            b'the error is in the server log"}\n\n'
        )
        assert body.startswith(b"data: one\n\n")
        assert (await client.request("GET", "/broken")).status == 200  # the connection lives on
    assert [reason for reason, _ in log.outcomes] == ["internal", "internal"]


def stream_spec(directory: Path) -> Path:
    operation = {
        "operationId": "watch",
        "x-timeout": 1,  # the handler's own deadline
        "x-stream-timeout": 7,  # the stream's, longer
        "responses": SSE_RESPONSE,
    }
    return write_spec(directory, {"/watch": {"get": operation}})


async def test_a_spec_operation_streams_its_generator_until_x_stream_timeout(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    module = types.ModuleType("stream_handlers")

    def watch(request: Request) -> Iterator[Event]:
        for n in itertools.count():
            yield Event(n, id=str(n))
            trio_router.sleep(2)

    module.watch = watch  # type: ignore[attr-defined]
    async with serve(App.from_spec(stream_spec(tmp_path), module)) as running:
        client = await running.connect()
        started = trio.current_time()
        body = await read_all(client, "/watch")
        assert trio.current_time() - started == 7
    assert body.startswith(b"id: 0\ndata: 0\n\nid: 1\ndata: 1\n\n")  # the stream outlived x-timeout
    assert body.count(b"\ndata: ") == 5 and body.endswith(b'"the stream reached its deadline"}\n\n')  # 0, 2, 4, 6 s


def test_parsing_events_back() -> None:
    from trio_router.streaming.sse import EventParser

    parser = EventParser()
    text = ': comment\n\nid: 7\nevent: note\nretry: 1500\ndata: a\ndata: b\n\ndata:no space\n\ndata: {"x": 1}\n\n'
    events = [event for line in text.split("\n") for event in [parser.line(line)] if event is not None]
    assert events == [Event("a\nb", "note", "7", 1500), Event("no space"), Event('{"x": 1}')]
    assert [parser.line(line) for line in encode(Event("x\ny", event="e", id="1")).decode().split("\n")][-2] == Event(
        "x\ny", "e", "1"
    )  # what encode writes, the parser reads back
