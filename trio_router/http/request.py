"""The request object handlers receive."""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, unquote_plus

import trio

from ..observability.metrics import UNMATCHED, RequestStats
from ..observability.tracing import TraceContext
from ..runtime.bridge import await_
from .response import Response, problem

if TYPE_CHECKING:
    from ..runtime.executor import HandlerRuntime
    from ..settings import Settings
    from .connection import HTTPConnection
    from .context import ServerContext

# An inbound X-Request-ID is kept if it is visible ASCII of a sane length, else replaced.
_REQUEST_ID = re.compile(rb"[\x21-\x7e]{1,128}")
# Generated ids: a random per-process prefix and a counter, unique without a random draw per
# request (every response carries one, so this is on the hot path).
_ID_PREFIX = os.urandom(6).hex() + "-"
_id_counter = itertools.count(1)
_NO_PARAMS: dict[str, Any] = {}  # shared and never written: routes made in code declare no parameters


class Request:
    """One parsed request head plus lazy access to its body.

    ``path`` is the target's path part exactly as sent (still percent-encoded: routing
    decodes after matching, so ``%2F`` cannot forge a segment). Header names are lowercase
    bytes, as h11 delivers them.
    """

    __slots__ = (
        "_body",
        "_connection",
        "_cookies",
        "_headers",
        "_id",
        "_query",
        "_trace",
        "auth",
        "body",
        "guardrails",
        "http_version",
        "method",
        "operation",
        "params",
        "path",
        "path_params",
        "query_string",
        "raw_headers",
        "render_error",
        "route",
        "target",
        "tenant",
        "websocket",
    )

    def __init__(
        self,
        connection: HTTPConnection,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        http_version: bytes,
    ) -> None:
        self._connection = connection
        self._body: bytes | None = None
        self.body: Any = None  # the decoded, validated body of a spec operation (None without one)
        self.params: dict[str, Any] = _NO_PARAMS  # every declared parameter by Python name, typed
        self.auth: dict[str, Any] = _NO_PARAMS  # security scheme name -> the Principal its credentials proved
        self._id: str | None = None
        self._headers: Headers | None = None
        self._query: dict[str, Any] | None = None
        self._cookies: dict[str, str] | None = None
        self.operation = UNMATCHED  # set by routing: the metrics label, never the raw path
        self.route = UNMATCHED  # the route template, for logs
        self.path_params: dict[str, Any] = {}  # decoded (and for spec operations, typed) path parameters
        self.tenant: str | None = None  # set by the app when it knows (guardrail verdicts carry it)
        self.websocket: Any = None  # the WebSocket of an x-websocket operation's session
        self.render_error: Callable[..., Response] = problem  # the app's / operation's x-error-format
        self.guardrails: object = None  # the operation's x-guardrails as written (buffered answers: guarded_answer.py)
        self._trace: TraceContext | None = None
        self.method = method
        self.target = target
        path, _, query = target.partition(b"?")
        self.path = path.decode("latin-1")
        self.query_string = query
        self.raw_headers = headers
        self.http_version = http_version

    @property
    def headers(self) -> Headers:
        """The headers as a case-insensitive mapping of text (repeated headers joined with ", ")."""
        if self._headers is None:
            self._headers = Headers(self.raw_headers)
        return self._headers

    def header(self, name: str) -> str | None:
        """The first value of a header (case-insensitive name), decoded as latin-1."""
        key = name.lower().encode("latin-1")
        for header_name, value in self.raw_headers:
            if header_name == key:
                return value.decode("latin-1")
        return None

    @property
    def query(self) -> dict[str, Any]:
        """Query parameters: typed and validated for a spec operation (declared ones only);
        for a route registered in code, every name with its last value as text."""
        if self._query is None:
            self._query = {}
            for field in self.query_string.decode("latin-1").split("&"):
                name, _, value = field.partition("=")
                if name:
                    self._query[unquote_plus(name)] = unquote_plus(value)
        return self._query

    @query.setter
    def query(self, values: dict[str, Any]) -> None:
        self._query = values

    @property
    def cookies(self) -> dict[str, str]:
        """The ``Cookie`` header's pairs (values percent-decoded)."""
        if self._cookies is None:
            self._cookies = {name: unquote(value) for name, value in cookie_pairs(self.header("cookie")).items()}
        return self._cookies

    async def receive(self) -> bytes:
        """The whole raw request body. The first call sends ``100 Continue`` if the client waits for it."""
        if self._body is None:
            self._body = await self._connection.read_body()
        return self._body

    def read(self) -> bytes:
        """``await request.receive()`` for synchronous handlers (through the bridge)."""
        if self._body is None:
            self._body = await_(self._connection.read_body())
        return self._body

    @property
    def principal(self) -> Any:
        """The Principal of the first scheme that authenticated the request, or None."""
        return next(iter(self.auth.values()), None)

    @property
    def operation_id(self) -> str:
        """The operationId of the matched operation (the handler's name for a route made in code)."""
        return self.operation

    @property
    def request_id(self) -> str:
        return self.id

    @property
    def remaining(self) -> float:
        """Seconds left before the request's deadline (504)."""
        return self.deadline - trio.current_time()

    @property
    def id(self) -> str:
        """The request id: the client's ``X-Request-ID`` if well-formed, else generated (lazily)."""
        if self._id is None:
            for name, value in self.raw_headers:
                if name == b"x-request-id" and _REQUEST_ID.fullmatch(value):
                    self._id = value.decode("ascii")
                    break
            else:
                self._id = f"{_ID_PREFIX}{next(_id_counter):x}"
        return self._id

    @property
    def trace(self) -> TraceContext:
        """The W3C trace context: the client's ``traceparent`` if valid, else a new trace (lazily)."""
        if self._trace is None:
            inbound = None
            for name, value in self.raw_headers:
                if name == b"traceparent":
                    inbound = value
                    break
            self._trace = TraceContext.from_header(inbound)
        return self._trace

    @property
    def draining(self) -> bool:
        """True once the server has begun to shut down (readiness should then say no)."""
        return self._connection.context.shutting_down

    @property
    def settings(self) -> Settings:
        return self._connection.settings

    @property
    def server(self) -> ServerContext:
        """What the connections of this server share (counters, settings, and the guardrails the server composed)."""
        return self._connection.context

    @property
    def last_event_id(self) -> str | None:
        """The ``Last-Event-ID`` an SSE client sends when it reconnects, to resume after that event."""
        return self.header("last-event-id")

    def extend_deadline(self, seconds: float) -> None:
        """Push the request's deadline back (a stream that severs itself needs time to say so)."""
        self._connection.request_deadline += seconds

    def about_to_wait(self) -> None:
        """Before the request waits on I/O outside its handler (a JWKS fetch, a password hash in
        a worker thread): from here the request's own deadline bounds the wait, not the header
        timeout still armed from reading the head, and a client that hangs up cancels it."""
        self._connection.handler_suspended()

    def spawn(self, function: Callable[[], Awaitable[None]]) -> None:
        """Start a server helper task (a stream's producer): it outlives the handler, not the server."""
        self._connection.context.spawn_helper(function)

    @property
    def stats(self) -> RequestStats:
        """The server's counters (metrics), for the app's own records."""
        return self._connection.context.stats

    @property
    def runtime(self) -> HandlerRuntime:
        return self._connection.context.runtime

    def set_operation_timeout(self, seconds: float) -> None:
        """Replace the server's default deadline for this request (a client header may still shorten it)."""
        self._connection.set_operation_timeout(seconds)

    @property
    def deadline(self) -> float:
        """The request's deadline on trio's clock."""
        return self._connection.request_deadline


def cookie_pairs(header: str | None) -> dict[str, str]:
    """A ``Cookie`` header's pairs, values left raw (percent-encoded if the client encoded them)."""
    cookies: dict[str, str] = {}
    if header:
        for item in header.split(";"):
            name, sep, value = item.strip().partition("=")
            if sep and name:
                cookies[name] = value
    return cookies


class Headers(Mapping[str, str]):
    """Request headers by case-insensitive name; built on first use from h11's list."""

    __slots__ = ("_values",)

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        values: dict[str, str] = {}
        for name, value in raw:
            key = name.decode("latin-1")
            text = value.decode("latin-1")
            values[key] = f"{values[key]}, {text}" if key in values else text
        self._values = values

    def __getitem__(self, name: str) -> str:
        return self._values[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def get(self, name: str, default: Any = None) -> Any:
        return self._values.get(name.lower(), default)
