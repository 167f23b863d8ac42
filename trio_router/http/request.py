"""The request object handlers receive."""

from __future__ import annotations

import itertools
import os
import re
from typing import TYPE_CHECKING

from ..observability.metrics import UNMATCHED
from ..observability.tracing import TraceContext
from ..runtime.bridge import await_

if TYPE_CHECKING:
    from ..runtime.executor import HandlerRuntime
    from .connection import HTTPConnection

# An inbound X-Request-ID is kept if it is visible ASCII of a sane length, else replaced.
_REQUEST_ID = re.compile(rb"[\x21-\x7e]{1,128}")
# Generated ids: a random per-process prefix and a counter, unique without a random draw per
# request (every response carries one, so this is on the hot path).
_ID_PREFIX = os.urandom(6).hex() + "-"
_id_counter = itertools.count(1)


class Request:
    """One parsed request head plus lazy access to its body.

    ``path`` is the target's path part exactly as sent (still percent-encoded: routing
    decodes after matching, so ``%2F`` cannot forge a segment). Header names are lowercase
    bytes, as h11 delivers them.
    """

    __slots__ = (
        "_body",
        "_connection",
        "_id",
        "_trace",
        "headers",
        "http_version",
        "method",
        "operation",
        "path",
        "path_params",
        "query_string",
        "route",
        "target",
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
        self._id: str | None = None
        self.operation = UNMATCHED  # set by routing: the metrics label, never the raw path
        self.route = UNMATCHED  # the route template, for logs
        self.path_params: dict[str, str] = {}  # decoded values of the template's parameters
        self._trace: TraceContext | None = None
        self.method = method
        self.target = target
        path, _, query = target.partition(b"?")
        self.path = path.decode("latin-1")
        self.query_string = query
        self.headers = headers
        self.http_version = http_version

    def header(self, name: str) -> str | None:
        """The first value of a header (case-insensitive name), decoded as latin-1."""
        key = name.lower().encode("latin-1")
        for header_name, value in self.headers:
            if header_name == key:
                return value.decode("latin-1")
        return None

    async def body(self) -> bytes:
        """The whole request body. The first call sends ``100 Continue`` if the client waits for it."""
        if self._body is None:
            self._body = await self._connection.read_body()
        return self._body

    def read(self) -> bytes:
        """``await request.body()`` for synchronous handlers (through the bridge)."""
        if self._body is None:
            self._body = await_(self._connection.read_body())
        return self._body

    @property
    def id(self) -> str:
        """The request id: the client's ``X-Request-ID`` if well-formed, else generated (lazily)."""
        if self._id is None:
            for name, value in self.headers:
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
            for name, value in self.headers:
                if name == b"traceparent":
                    inbound = value
                    break
            self._trace = TraceContext.from_header(inbound)
        return self._trace

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
