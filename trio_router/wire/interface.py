"""What the connection needs of an HTTP/1.1 server-side parser, whichever library parses.

A parser is a sans-IO state machine for one connection: bytes go in (``receive_data``),
request heads and body chunks come out, and responses are turned into bytes that move its
state on. It never reads or writes a socket, so each implementation is tested without one and
the two are compared with each other (tests/test_wire_differential.py).

Errors a client caused come out as ``HTTPError`` with the status it should see (400, 414, 431,
501, ...); after one the connection answers it and closes.
"""

from __future__ import annotations

from typing import Final, Protocol


class Marker:
    """A named sentinel among a parser's events (server and client side alike)."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


NEED_DATA: Final = Marker("NEED_DATA")  # nothing more until more bytes arrive
END_OF_BODY: Final = Marker("END_OF_BODY")  # the request body is complete
CLOSED: Final = Marker("CLOSED")  # the client closed cleanly between requests


class RequestHead:
    """A parsed request head. Header names are lowercase; values have no surrounding whitespace."""

    __slots__ = ("headers", "http_version", "method", "target")

    def __init__(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], http_version: bytes) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.http_version = http_version

    def __repr__(self) -> str:
        return f"RequestHead({self.method!r}, {self.target!r}, {self.headers!r}, {self.http_version!r})"


class ServerParser(Protocol):
    """One connection's HTTP/1.1 server state, as the connection loop uses it."""

    def receive_data(self, data: bytes) -> None:
        """Bytes from the client; ``b""`` when it closed its side."""

    def next_head(self) -> RequestHead | object:
        """The next request head, ``NEED_DATA``, ``CLOSED``, or an ``HTTPError`` to answer
        (returned, not raised: the connection answers it and closes)."""

    def next_body(self) -> bytes | object:
        """The next chunk of the current request's body, ``NEED_DATA`` or ``END_OF_BODY``.
        Raises ``HTTPError`` (400) for a malformed body."""

    @property
    def body_pending(self) -> bool:
        """The current request's body has not been read to its end."""

    @property
    def expects_continue(self) -> bool:
        """The client waits for ``100 Continue`` before it sends the body."""

    @property
    def can_respond(self) -> bool:
        """A response may start now (none has started for the current request)."""

    @property
    def exchange_done(self) -> bool:
        """Request and response are complete and the connection may serve another."""

    @property
    def responded(self) -> bool:
        """The response to the current request has been written (or the connection must close)."""

    @property
    def buffered(self) -> bytes:
        """Received bytes not parsed yet (pipelined requests, an upgraded protocol's first bytes)."""

    def input_unfinished(self) -> bool:
        """The client may still be sending input we did not read (lingering before close helps)."""

    def continue_response(self) -> bytes: ...

    def complete_response(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, head_only: bool) -> bytes:
        """A whole response (``headers`` carry its Content-Length)."""

    def stream_head(self, status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
        """The head of a response whose body follows in ``stream_data`` calls (chunked)."""

    def stream_data(self, data: bytes) -> bytes: ...

    def stream_end(self) -> bytes: ...

    def send_failed(self) -> None:
        """The last bytes did not go out: the connection can only close now."""

    def start_next_cycle(self) -> None: ...


class ResponseRefused(Exception):
    """The parser will not write what the app produced (an invalid header, a response the
    protocol state does not allow): the connection sends a bare 500 and closes."""
