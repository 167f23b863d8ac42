"""WebSockets against a real server with a real client (trio-websocket's, and raw sockets for
what a well-behaved client never does): echo, authentication before the upgrade, refused
handshakes, message size, close codes, deadlines and pings under MockClock, shutdown."""

from __future__ import annotations

import base64
import importlib
import os
import types
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed, ConnectionRejected, WebSocketConnection, open_websocket_url

import handlers.petstore as petstore
from tests.conftest import Running, serve
from tests.specs import write_spec
from trio_router import App, Request, WebSocket

SPEC = Path(__file__).parent.parent / "specs" / "petstore.yaml"
KEY = base64.b64encode(os.urandom(16)).decode()


def handshake(path: str, *extra: str, version: str = "13", key: str = KEY) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "host: t", "upgrade: websocket", "connection: Upgrade"]
    lines += [f"sec-websocket-version: {version}", f"sec-websocket-key: {key}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@asynccontextmanager
async def websocket(
    running: Running, path: str, headers: list[tuple[str, str]] | None = None
) -> AsyncIterator[WebSocketConnection]:
    async with open_websocket_url(f"ws://127.0.0.1:{running.port}{path}", extra_headers=headers) as ws:
        yield ws


async def test_the_petstore_echo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PETSTORE_API_KEYS", "k")
    module = importlib.reload(petstore)
    async with serve(App.from_spec(SPEC, module)) as running:
        async with websocket(running, "/pets/echo") as ws:
            await ws.send_message("hello")
            assert await ws.get_message() == "hello"
            await ws.send_message(b"\x00\x01")
            assert await ws.get_message() == b"\x00\x01"  # binary stays binary
            await ws.send_message("count")
            assert await ws.get_message() == str(len(module._pets))
        with trio.fail_after(2):  # the client closed: the handler's loop ended, the session is gone
            while running.server.context.websockets:  # type: ignore[union-attr]  # noqa: ASYNC110
                await trio.sleep(0.01)
        # Not a handshake: a precise HTTP answer, and the connection keeps serving.
        client = await running.connect()
        plain = await client.request("GET", "/pets/echo")
        assert (plain.status, plain.headers["upgrade"]) == (426, "websocket")
        await client.send(handshake("/pets/echo", version="8"))
        old = await client.read_reply()
        assert (old.status, old.headers["sec-websocket-version"]) == (426, "13")
        await client.send(handshake("/pets/echo", key="short"))
        assert (await client.read_reply()).status == 400
        assert (await client.request("GET", "/pets/1")).status == 200


def events_app(log: list[str]) -> App:
    app = App()

    @app.route("GET", "/ws", websocket=True, timeout=30)
    def session(ws: WebSocket) -> None:
        try:
            for message in ws:
                if message == "fail":
                    raise RuntimeError("handler bug")
                if message == "bye":
                    ws.close(4000, "asked to")
                    return
                ws.send(f"{ws.request.path}:{message}")
        finally:
            closed = ws.closed
            log.append(f"end {closed.code if closed else 'open'}")

    return app


async def test_close_codes_for_each_way_a_session_ends() -> None:
    log: list[str] = []
    async with serve(events_app(log), websocket_max_message_bytes=100) as running:
        async with websocket(running, "/ws") as ws:
            await ws.send_message("a")
            assert await ws.get_message() == "/ws:a"
            await ws.send_message("bye")
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
            assert (closed.value.reason.code, closed.value.reason.reason) == (4000, "asked to")
        async with websocket(running, "/ws") as ws:
            await ws.send_message("fail")
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
            assert closed.value.reason.code == 1011  # the handler raised: internal error
        async with websocket(running, "/ws") as ws:
            await ws.send_message("x" * 101)
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
            assert closed.value.reason.code == 1009  # message too big
    assert log == ["end 4000", "end open", "end 1009"]  # closed by the handler, then by the server


async def test_the_session_deadline_and_shutdown_close_with_1001(autojump_clock: trio.testing.MockClock) -> None:
    log: list[str] = []
    async with serve(events_app(log)) as running:
        async with websocket(running, "/ws") as ws:
            started = trio.current_time()
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()  # the handler waits too: nothing happens until the deadline
            assert closed.value.reason.code == 1001 and trio.current_time() - started == pytest.approx(30, abs=0.1)
        assert log == ["end open"]  # cancelled at its deadline, its finally ran
        async with websocket(running, "/ws") as ws:
            running.server.shutdown()
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
            assert closed.value.reason.code == 1001  # told at once, not at the end of the grace period
            assert "shutting down" in (closed.value.reason.reason or "")


async def test_a_client_that_stops_answering_pings_is_dropped(autojump_clock: trio.testing.MockClock) -> None:
    log: list[str] = []
    async with serve(events_app(log), websocket_ping_interval=5, websocket_ping_timeout=3) as running:
        client = await running.connect()
        await client.send(handshake("/ws"))
        received = await client.stream.receive_some(4096)
        assert received.startswith(b"HTTP/1.1 101 ")
        started = trio.current_time()
        # Read (the ping arrives) but never answer it: a peer that is connected but gone.
        with trio.fail_after(60):
            while await client.stream.receive_some(4096):
                pass
        assert 8 <= trio.current_time() - started <= 8 + 5  # ping at 5 s, no pong by 8 s, then the close wait
        with trio.fail_after(10):
            while running.server.context.websockets:  # type: ignore[union-attr]  # noqa: ASYNC110
                await trio.sleep(0.01)
        assert log == ["end open"]  # the handler was cancelled


async def test_an_abrupt_disconnect_ends_the_handler() -> None:
    log: list[str] = []
    async with serve(events_app(log)) as running:
        client = await running.connect()
        await client.send(handshake("/ws"))
        assert (await client.stream.receive_some(4096)).startswith(b"HTTP/1.1 101 ")
        await client.aclose()
        with trio.fail_after(2):
            while not log:  # noqa: ASYNC110
                await trio.sleep(0.01)
        assert log == ["end 1006"]  # the iteration ended: closed without a close frame


def secured_spec(directory: Path) -> Path:
    feed = {
        "operationId": "feed",
        "x-websocket": True,
        "security": [{"Key": []}],
        "parameters": [{"name": "room", "in": "path", "required": True, "schema": {"type": "integer", "maximum": 9}}],
        "responses": {"101": {"description": "upgraded"}},
    }
    schemes = {"Key": {"type": "apiKey", "in": "header", "name": "X-Key"}}
    return write_spec(directory, {"/feed/{room}": {"get": feed}}, components={"securitySchemes": schemes})


async def test_authentication_and_validation_run_before_the_upgrade(tmp_path: Path) -> None:
    module = types.ModuleType("ws_handlers")

    def feed(ws: WebSocket, room: int, request: Request) -> None:
        ws.send(f"room {room}, authenticated by {sorted(request.auth)}")
        for _ in ws:  # stay open until the client leaves
            pass

    module.feed = feed  # type: ignore[attr-defined]
    security = {"Key": {"keys": ["secret"]}}
    async with serve(App.from_spec(secured_spec(tmp_path), module, security=security), max_websockets=1) as running:
        with pytest.raises(ConnectionRejected) as refused:
            async with websocket(running, "/feed/1"):
                pass
        assert refused.value.status_code == 401
        with pytest.raises(ConnectionRejected) as refused:
            async with websocket(running, "/feed/10", [("x-key", "secret")]):
                pass
        assert refused.value.status_code == 400  # room above its maximum
        async with websocket(running, "/feed/3", [("x-key", "secret")]) as ws:
            assert await ws.get_message() == "room 3, authenticated by ['Key']"
            with pytest.raises(ConnectionRejected) as refused:  # max_websockets=1 while this one is open
                async with websocket(running, "/feed/4", [("x-key", "secret")]):
                    pass
            assert refused.value.status_code == 503


def test_websocket_operations_are_checked_at_startup(tmp_path: Path) -> None:
    from trio_router.openapi.document import SpecError

    module = types.ModuleType("ws_handlers")

    async def feed(ws: WebSocket) -> None:
        pass

    module.feed = feed  # type: ignore[attr-defined]
    with pytest.raises(SpecError, match="must be a plain def"):
        App.from_spec(secured_spec(tmp_path), module, security={"Key": {"keys": ["s"]}})
    with pytest.raises(ValueError, match="GET only"):
        App().route("POST", "/ws", websocket=True)(lambda ws: None)
