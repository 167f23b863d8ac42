"""The request object handlers receive."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .connection import HTTPConnection


class Request:
    """One parsed request head plus lazy access to its body.

    ``path`` is the target's path part exactly as sent (still percent-encoded: routing
    decodes after matching, so ``%2F`` cannot forge a segment). Header names are lowercase
    bytes, as h11 delivers them.
    """

    __slots__ = ("_body", "_connection", "headers", "http_version", "method", "path", "query_string", "target")

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

    def set_operation_timeout(self, seconds: float) -> None:
        """Replace the server's default deadline for this request (a client header may still shorten it)."""
        self._connection.set_operation_timeout(seconds)

    @property
    def deadline(self) -> float:
        """The request's deadline on trio's clock."""
        return self._connection.request_deadline
