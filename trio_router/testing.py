"""Testing an app: an in-process client and hypothesis strategies generated from its spec.

``TestClient`` runs the app behind the real server code (h11, limits, deadlines, problem+json)
over an in-process socket pair: no listening port, no network. ``SpecStrategies`` turns each
operation of a spec into strategies of valid requests (from schemathesis's generators) and of
requests made invalid in exactly one parameter (built here from the parameter's schema keywords,
independently of the validator that must reject them). See docs/testing.md.

Needs the test extra: ``pip install 'trio-router[test]'``.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import h11
import httpx
import trio
from hypothesis import strategies as st

from .app import App
from .openapi.document import SpecDocument, child
from .openapi.schemas import SchemaCompiler
from .serving import Server
from .settings import Settings

BASE_URL = "http://testserver"


def _verb(method: str) -> Callable[..., Coroutine[Any, Any, httpx.Response]]:
    """``client.get(url, **kwargs)`` and its siblings: ``request`` with the method filled in, as httpx's."""

    async def call(self: TestClient, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request(method, url, **kwargs)

    call.__name__ = call.__qualname__ = method.lower()
    return call


class TestClient:
    """``async with TestClient(app) as client: reply = await client.get("/pets/1")``.

    Requests are built and replies returned as httpx objects. One keep-alive connection is
    reused until the server closes it, like a real client.
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, app: App, **settings: Any) -> None:
        self._server = Server(app, Settings(port=0, access_log=False, metrics_path="", **settings))
        self._nursery: trio.Nursery | None = None
        self._stream: trio.SocketStream | None = None
        self._h11: h11.Connection | None = None

    async def __aenter__(self) -> TestClient:
        self._nursery_manager = trio.open_nursery()
        self._nursery = await self._nursery_manager.__aenter__()
        await self._nursery.start(self._server.serve, [])
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self._close_connection()
        self._server.shutdown()
        await self._nursery_manager.__aexit__(kind, error, traceback)

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """``httpx.Request``'s arguments: ``params``, ``headers``, ``json``, ``data``, ``files``, ``content``."""
        return await self.send(httpx.Request(method, httpx.URL(BASE_URL).join(url), **kwargs))

    get = _verb("GET")
    post = _verb("POST")
    put = _verb("PUT")
    patch = _verb("PATCH")
    delete = _verb("DELETE")
    head = _verb("HEAD")
    options = _verb("OPTIONS")

    async def send(self, request: httpx.Request) -> httpx.Response:
        if self._h11 is None or self._h11.our_state is not h11.IDLE:
            await self._connect()
        assert self._stream is not None and self._h11 is not None
        body = request.read()
        headers = [(b"host", b"testserver")]
        headers += [(name, value) for name, value in request.headers.raw if name.lower() != b"host"]
        conn = self._h11
        data = conn.send(h11.Request(method=request.method, target=request.url.raw_path, headers=headers))
        data += conn.send(h11.Data(data=body)) if body else b""
        data += conn.send(h11.EndOfMessage())
        await self._stream.send_all(data)
        head, content = await self._receive()
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        else:
            await self._close_connection()
        return httpx.Response(
            head.status_code, headers=[(n, v) for n, v in head.headers], content=content, request=request
        )

    async def _receive(self) -> tuple[h11.Response, bytes]:
        assert self._stream is not None and self._h11 is not None
        head: h11.Response | None = None
        chunks: list[bytes] = []
        while True:
            event = self._h11.next_event()
            if event is h11.NEED_DATA:
                self._h11.receive_data(await self._stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                head = event
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                assert head is not None, "the server closed the connection without a response"
                return head, b"".join(chunks)

    async def _connect(self) -> None:
        await self._close_connection()
        assert self._nursery is not None
        server_side, client_side = socket.socketpair()
        self._nursery.start_soon(self._server.serve_socket, server_side)
        self._stream = trio.SocketStream(trio.socket.from_stdlib_socket(client_side))
        self._h11 = h11.Connection(h11.CLIENT)

    async def _close_connection(self) -> None:
        if self._stream is not None:
            await self._stream.aclose()
        self._stream = self._h11 = None


@dataclass(frozen=True, slots=True)
class InvalidRequest:
    """A request that breaks the spec in one parameter: ``location`` and ``name`` say which."""

    request: httpx.Request
    location: str
    name: str


class SpecStrategies:
    """Hypothesis strategies of requests for each operation of a spec, by operationId."""

    def __init__(self, spec: str | Path) -> None:
        from schemathesis import openapi

        self._schema = openapi.from_path(str(spec))
        self._document = SpecDocument.load(spec)
        self._compiler = SchemaCompiler(self._document)
        self._operations: dict[str, tuple[str, str, list[dict[str, Any]]]] = {}
        root = self._document.uri + "#"
        for path, item in (self._document.root.get("paths") or {}).items():
            item_uri = child(root, "paths", path)
            item, item_uri = self._document.resolve(item, item_uri)
            for method, operation in item.items():
                if isinstance(operation, dict) and "operationId" in operation:
                    parameters = self._parameters(item, item_uri, operation, child(item_uri, method))
                    self._operations[operation["operationId"]] = (path, method.upper(), parameters)

    @property
    def operation_ids(self) -> list[str]:
        return list(self._operations)

    def parameters(self, operation_id: str) -> list[dict[str, Any]]:
        """The operation's parameters, resolved, each with its schema inlined."""
        return self._operations[operation_id][2]

    def valid_requests(
        self, operation_id: str, headers: dict[str, str] | None = None
    ) -> st.SearchStrategy[httpx.Request]:
        """Requests the spec accepts (``headers``, e.g. credentials, are added to each)."""
        return self._cases(operation_id).map(lambda case: _to_request(case, headers)).filter(_sendable)

    def invalid_requests(
        self, operation_id: str, headers: dict[str, str] | None = None
    ) -> st.SearchStrategy[InvalidRequest]:
        """Valid requests with exactly one parameter made invalid (or left out, if required)."""
        mutable = [parameter for parameter in self.parameters(operation_id) if _violations(parameter) is not None]
        if not mutable:
            return st.nothing()

        @st.composite
        def build(draw: st.DrawFn) -> InvalidRequest:
            case = draw(self._cases(operation_id))
            parameter = draw(st.sampled_from(mutable))
            bad = draw(_violations(parameter))  # type: ignore[arg-type]
            container = _container(case, parameter["in"])
            if bad is _MISSING:
                container.pop(parameter["name"], None)
            else:
                container[parameter["name"]] = _escaped(bad) if parameter["in"] == "path" else bad
            return InvalidRequest(_to_request(case, headers), parameter["in"], parameter["name"])

        return build().filter(lambda invalid: _sendable(invalid.request))

    def _cases(self, operation_id: str) -> st.SearchStrategy[Any]:
        path, method, _ = self._operations[operation_id]
        return self._schema[path][method].as_strategy()

    def _parameters(
        self, item: dict[str, Any], item_uri: str, operation: dict[str, Any], uri: str
    ) -> list[dict[str, Any]]:
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for owner, owner_uri in ((item, item_uri), (operation, uri)):
            for index, raw in enumerate(owner.get("parameters") or []):
                parameter, parameter_uri = self._document.resolve(raw, child(owner_uri, "parameters", index))
                schema = parameter.get("schema", {})
                inlined = self._compiler.inline(schema, child(parameter_uri, "schema"))
                merged[parameter["in"], parameter["name"]] = {**parameter, "schema": inlined}
        return list(merged.values())


_MISSING: Any = object()
_VISIBLE = "".join(chr(code) for code in range(0x21, 0x7F) if chr(code) not in ';,"\\')


def _sendable(request: httpx.Request) -> bool:
    """False for what no HTTP/1.1 client can send (generators sometimes produce CR or NUL in headers)."""
    return all(not any(byte in value for byte in b"\r\n\0") for _, value in request.headers.raw)


def _violations(parameter: dict[str, Any]) -> st.SearchStrategy[Any] | None:
    """Values that break ``parameter``'s schema by its keywords (None if none can be made)."""
    if parameter.get("content") or parameter.get("style") == "deepObject":
        return None  # JSON text and nested keys: left to schemathesis's own negative generation
    schema = parameter.get("schema") or {}
    options = [st.just(_MISSING)] if parameter.get("required") and parameter["in"] != "path" else []
    kind = schema.get("type")
    if kind == "array":
        item = _primitive_violations(schema.get("items") or {})
        if item is not None:
            options.append(st.lists(item, min_size=1, max_size=3))
    elif kind in ("integer", "number", "boolean", "string") or "enum" in schema:
        primitive = _primitive_violations(schema)
        if primitive is not None:
            options.append(primitive)
    return st.one_of(options) if options else None


def _primitive_violations(schema: dict[str, Any]) -> st.SearchStrategy[str] | None:
    options: list[st.SearchStrategy[str]] = []
    kind = schema.get("type")
    words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8)
    if kind in ("integer", "number"):
        options.append(words)
        if kind == "integer":
            options.append(st.just("1.5"))
        if isinstance(schema.get("minimum"), int | float):
            options.append(st.just(_number_text(schema["minimum"] - 1)))
        if isinstance(schema.get("maximum"), int | float):
            options.append(st.just(_number_text(schema["maximum"] + 1)))
    elif kind == "boolean":
        options.append(words.filter(lambda text: text not in ("true", "false")))
    if isinstance(schema.get("enum"), list):
        allowed = {str(value) for value in schema["enum"]}
        options.append(words.filter(lambda text: text not in allowed))
    if kind == "string":
        if isinstance(schema.get("maxLength"), int) and schema["maxLength"] < 1000:
            options.append(st.just("a" * (schema["maxLength"] + 1)))
        if isinstance(schema.get("pattern"), str):
            pattern = re.compile(schema["pattern"])
            visible = st.text(alphabet=_VISIBLE, min_size=1, max_size=10)  # fits a header or cookie too
            options.append(visible.filter(lambda text: not pattern.search(text)))
    return st.one_of(options) if options else None


def _escaped(value: Any) -> Any:
    """Path values are placed into the URL as given: percent-encode them (a ``#`` would end the path)."""
    if isinstance(value, list):
        return [_escaped(item) for item in value]
    return quote(value, safe="") if isinstance(value, str) else value


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else json.dumps(value)


def _container(case: Any, location: str) -> dict[str, Any]:
    attribute = {"path": "path_parameters", "query": "query", "header": "headers", "cookie": "cookies"}[location]
    if getattr(case, attribute) is None:
        setattr(case, attribute, {})
    found: dict[str, Any] = getattr(case, attribute)
    return found


def _to_request(case: Any, extra_headers: dict[str, str] | None) -> httpx.Request:
    kwargs = case.as_transport_kwargs(base_url=BASE_URL)
    replaced = {name.lower() for name in extra_headers or {}}
    headers = {
        name: value
        for name, value in (kwargs.get("headers") or {}).items()
        if not name.lower().startswith("x-schemathesis") and name.lower() not in replaced
    }
    headers.update(extra_headers or {})
    cookies = kwargs.get("cookies") or {}
    if cookies:
        headers["cookie"] = "; ".join(f"{name}={value}" for name, value in cookies.items())
    raw_headers = [(name.encode("latin-1"), _header_bytes(value)) for name, value in headers.items()]
    files = kwargs.get("files")
    if files:
        files = [(name, (spec[0], _as_bytes(spec[1]), *spec[2:])) for name, spec in files]
    return httpx.Request(
        kwargs["method"],
        kwargs["url"],
        params=kwargs.get("params"),
        headers=raw_headers,
        json=kwargs.get("json"),
        data=kwargs.get("data"),
        files=files,
        content=kwargs.get("content") if kwargs.get("content") is not None else None,
    )


def _header_bytes(value: Any) -> bytes:
    text = str(value)
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return value.encode() if isinstance(value, str) else json.dumps(value).encode()
