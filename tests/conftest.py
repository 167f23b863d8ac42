"""Real listening servers and raw-socket clients for the tests.

The client parses responses with h11 in client mode, so the tests read exactly what a
conforming HTTP client would, byte for byte from a real socket.
"""

from __future__ import annotations

import importlib
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11
import pytest
import trio
import yaml

from trio_router import App, Settings
from trio_router.http.server import bind_listener
from trio_router.observability.otel import SpanRecorder
from trio_router.serving import Server


@dataclass
class Running:
    server: Server
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def connect(self) -> Client:
        return Client(await trio.open_tcp_stream("127.0.0.1", self.port))


@asynccontextmanager
async def serve(app: App, spans: SpanRecorder | None = None, **settings: Any) -> AsyncIterator[Running]:
    """A real server on 127.0.0.1:<free port>; shut down (gracefully) on exit. ``spans``: an
    OpenTelemetry span recorder (tests give one with an in-memory exporter)."""
    config = Settings(port=0, **settings)
    listener = bind_listener(config.host, 0, config.backlog, reuse_port=False)
    port = listener.getsockname()[1]
    server = Server(app, config)
    server.spans = spans
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, [listener])
        yield Running(server, port)
        server.shutdown()


async def slow_and_quick(running: Running, slow: str, quick: str, started: trio.Event, settle: float = 0.0) -> Any:
    """The replies to GET ``slow`` and to GET ``quick``, each on its own connection, the second
    sent once ``started`` is set (and ``settle`` seconds more): for a test that one request is
    served while another's expensive step runs."""
    slow_client, quick_client = await running.connect(), await running.connect()
    replies: dict[str, Any] = {}

    async def fetch_slow() -> None:
        replies["slow"] = await slow_client.request("GET", slow)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(fetch_slow)
        await started.wait()
        await trio.sleep(settle)
        replies["quick"] = await quick_client.request("GET", quick)
    return replies["slow"], replies["quick"]


GATEWAY_SPEC = Path(__file__).resolve().parent.parent / "specs" / "gateway.yaml"


@asynccontextmanager
async def serve_gateway_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: dict[str, Any]
) -> AsyncIterator[tuple[Running, Any]]:
    """The gateway (handlers.gateway, reloaded so its setup reads ``config``) on a real server,
    and the gateway module (its REGISTRY, admin port)."""
    import handlers.gateway as gateway

    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("GATEWAY_CONFIG", str(path))
    module = importlib.reload(gateway)
    async with serve(App.from_spec(GATEWAY_SPEC, module)) as running:
        yield running, module


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    reason: bytes = b""
    interim: list[int] = field(default_factory=list)

    def json(self) -> Any:
        import json

        return json.loads(self.body)


class Client:
    """A raw socket plus an h11 client that parses whatever the server sends."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT)

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: list[tuple[str, str]] | None = None
    ) -> Reply:
        await self.send(raw_request(method, path, body, headers))
        return await self.read_reply(head_only=method == "HEAD")

    async def read_reply(self, head_only: bool = False) -> Reply:
        conn = self.h11
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        if conn.our_state is h11.IDLE:  # tell h11 a request went out, so it can frame the answer
            conn.send(h11.Request(method="HEAD" if head_only else "GET", target="/", headers=[("host", "t")]))
            conn.send(h11.EndOfMessage())
        interim: list[int] = []
        head: h11.Response | None = None
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await self.stream.receive_some(65536))
            elif type(event) is h11.InformationalResponse:
                interim.append(event.status_code)
            elif type(event) is h11.Response:
                head = event
            elif type(event) is h11.Data:
                body += event.data
            elif type(event) is h11.EndOfMessage:
                break
            else:
                raise AssertionError(f"connection closed before a full response ({event})")
        assert head is not None
        headers = {name.decode(): value.decode() for name, value in head.headers}
        return Reply(head.status_code, headers, body, head.reason, interim)

    async def closed_by_server(self) -> bool:
        """True when the server closed the connection (EOF or reset), reading what is left.
        Closes our side too, as a client would, so the server stops lingering."""
        try:
            while await self.stream.receive_some(65536):
                pass
        except trio.BrokenResourceError:
            pass
        await self.stream.aclose()
        return True

    async def aclose(self) -> None:
        await self.stream.aclose()


def raw_request(method: str, path: str, body: bytes = b"", headers: list[tuple[str, str]] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "host: test"]
    header_list = headers or []
    lines += [f"{name}: {value}" for name, value in header_list]
    if body and not any(name.lower() in ("content-length", "transfer-encoding") for name, _ in header_list):
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def server_socket_pair() -> tuple[socket.socket, socket.socket]:
    """A connected TCP pair on loopback: (server side, client side)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    return server, client


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    # Jump only after real idleness, so bytes in flight on loopback are never skipped past.
    return trio.testing.MockClock(autojump_threshold=0.02)


# The modules whose every test runs once per HTTP parser (settings.http): everything that drives
# the protocol edge through a real socket. The rest of the suite runs on the default (auto).
BOTH_PARSERS = frozenset(
    {
        "test_deadlines", "test_exchange", "test_guarded_streams", "test_hostile_bodies", "test_hostile_values",
        "test_limits", "test_newcomer_app", "test_parameters", "test_reference_app", "test_security",
        "test_shutdown", "test_streaming", "test_testing", "test_websocket_limits", "test_websockets",
    }
)  # fmt: skip


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.module.__name__.rpartition(".")[2] in BOTH_PARSERS:
        metafunc.parametrize("http_parser", ["h11", "httptools"], indirect=True)


@pytest.fixture(autouse=True)
def http_parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """The parser a BOTH_PARSERS test runs on, through the setting's environment variable, so
    that servers the test starts in any way (conftest.serve, TestClient, the CLI) pick it up."""
    name: str | None = getattr(request, "param", None)
    if name is not None:
        monkeypatch.setenv("TRIO_ROUTER_HTTP", name)
    return name
