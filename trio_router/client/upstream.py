"""A lean HTTP/1.1 client for streaming upstream calls over pooled keep-alive connections; the wire
format is protocol.py's (sans-IO).

Why not httpx here: profiling the gateway showed httpx's per-request machinery (cookie jars,
redirect and auth hooks, response models) above httpcore costing ~40% of the gateway's CPU for
a proxied request; this client does what a proxy needs and no more. Errors are httpx's
exception types (``ConnectError``, ``ConnectTimeout``, ``ReadTimeout``, ``RemoteProtocolError``,
``LocalProtocolError``), so callers handle one family whichever client made the call.

Connections are kept per (host, port) for reuse; one that was not read to the end of its
response, or whose exchange was cancelled, is closed rather than pooled.
"""

from __future__ import annotations

import codecs
import re
import socket
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import trio

from ..http.transport import PeerGone, SendTimeout, Transport
from ..wire.interface import NEED_DATA
from .protocol import END, Head, ProtocolError, ResponseParser, encode_request

_RECEIVE = 65536
_READS_PER_YIELD = 16
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class ResponseTooLarge(httpx.RemoteProtocolError):
    """The upstream sent more than the caller allows (a body, or one line of it): the
    connection is closed, not pooled, and nothing more is read."""


class _Connection:
    """A pooled upstream connection: the socket as the server's ``Transport`` (send what the
    kernel takes now, wait only when it takes nothing; ``trio.SocketStream`` yields to the
    scheduler after every call even when the call did not wait) and the response parser."""

    __slots__ = ("parser", "reads_without_yielding", "transport")

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.parser = ResponseParser()
        self.reads_without_yielding = 0


class UpstreamResponse:
    """The head of an upstream response; the body is read with ``aiter_raw`` / ``aread``."""

    def __init__(
        self, pool: UpstreamPool, key: tuple[str, int], connection: _Connection, head: Head, read_timeout: float
    ) -> None:
        self.status_code = head.status
        self._raw_headers = head.headers
        self._headers: httpx.Headers | None = None
        self._pool = pool
        self._key = key
        self._connection: _Connection | None = connection
        self._read_timeout = read_timeout  # for each piece of the body: the longest silence allowed

    @property
    def headers(self) -> httpx.Headers:
        """httpx's case-insensitive headers, built on first use."""
        if self._headers is None:
            self._headers = httpx.Headers(self._raw_headers)
        return self._headers

    def header(self, name: bytes) -> bytes | None:
        """One header's value by its lowercase name, without building ``headers``."""
        for key, value in self._raw_headers:
            if key == name:
                return value
        return None

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        connection = self._connection
        if connection is None:
            return
        while True:
            event = await _next_event(connection, self._read_timeout)
            if event is END:
                self._release(reusable=True)
                return
            assert isinstance(event, bytes)  # a head comes only first
            yield event

    aiter_bytes = aiter_raw  # httpx's name: no content-encoding is asked for, so raw is decoded

    async def aiter_lines(self, max_line: int | None = None) -> AsyncIterator[str]:
        """The body's text lines (UTF-8), split on CRLF, LF or CR as the chunks arrive. Each
        chunk is scanned once (a line arriving in many pieces is not re-split at every piece);
        a line longer than ``max_line`` characters raises ``ResponseTooLarge``."""
        splitter = _LineSplitter(max_line)
        async for chunk in self.aiter_raw():
            for line in splitter.feed(chunk):
                yield line
        for line in splitter.end():
            yield line

    async def aread(self, max_bytes: int | None = None) -> bytes:
        """The whole body; more than ``max_bytes`` raises ``ResponseTooLarge``."""
        chunks = []
        size = 0
        async for chunk in self.aiter_raw():
            size += len(chunk)
            if max_bytes is not None and size > max_bytes:
                self.close()
                raise ResponseTooLarge(f"the upstream's body is over {max_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def aread_prefix(self, limit: int) -> bytes:
        """At most ``limit`` bytes of the body, without reading the rest (the connection is then
        closed, not pooled): enough to quote an error page of any size."""
        chunks = []
        size = 0
        async for chunk in self.aiter_raw():
            chunks.append(chunk)
            size += len(chunk)
            if size >= limit:
                self.close()
                break
        return b"".join(chunks)[:limit]

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        """Release the connection: back to the pool if the body was read to its end, else closed.
        Nothing to await (closing a socket does not block), so a handler need not suspend."""
        self._release(reusable=False)

    def _release(self, *, reusable: bool) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if reusable and connection.parser.reusable:
            self._pool.give_back(self._key, connection)
        else:
            self._pool.discard(connection)


class UpstreamPool:
    """Keep-alive connections per upstream, at most ``max_idle`` idle ones each."""

    def __init__(self, connect_timeout: float = 5.0, read_timeout: float = 300.0, max_idle: int = 64) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._max_idle = max_idle
        self._idle: dict[tuple[str, int], list[_Connection]] = {}

    async def send(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        body_timeout: float | None = None,
    ) -> UpstreamResponse:
        """Send the request; return once the response head is in (the body follows). The head
        must come within ``read_timeout`` s of the request being sent, and each later piece of
        the body within ``body_timeout`` s of the one before (default: ``read_timeout``)."""
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise httpx.UnsupportedProtocol(f"the lean upstream client speaks http:// only, not {url!r}")
        key = (parts.hostname, parts.port or 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        # Host from the URL unless the caller set one; Content-Length always from the body.
        given = [(name.lower(), value) for name, value in headers if name.lower() != "content-length"]
        host = [] if any(name == "host" for name, _ in given) else [("host", parts.netloc)]
        all_headers = [*host, ("content-length", str(len(body))), *given]
        try:
            request = encode_request(method, target, all_headers, body)
        except ProtocolError as exc:
            raise httpx.LocalProtocolError(str(exc)) from None
        wait = read_timeout if read_timeout is not None else self.read_timeout
        connection = self._idle.get(key, []).pop() if self._idle.get(key) else None
        fresh = connection is None
        if connection is None:
            connection = await self._connect(key, connect_timeout or self.connect_timeout)
        try:
            connection.parser.expect(method)
            rest = connection.transport.send_nowait(request)
            if rest is not None:
                await connection.transport.send_rest(rest, wait)
            event = await _next_event(connection, wait)
        except SendTimeout as exc:
            self.discard(connection)
            raise httpx.WriteTimeout(str(exc)) from exc
        except (PeerGone, httpx.RemoteProtocolError) as exc:
            self.discard(connection)
            if fresh:
                raise httpx.RemoteProtocolError(str(exc) or "the upstream closed the connection") from exc
            # A pooled connection the upstream had closed meanwhile: once more on a new one.
            again = {"connect_timeout": connect_timeout, "read_timeout": wait, "body_timeout": body_timeout}
            return await self.send(method, url, headers, body, **again)
        except BaseException:
            self.discard(connection)
            raise
        assert type(event) is Head
        return UpstreamResponse(self, key, connection, event, wait if body_timeout is None else body_timeout)

    def give_back(self, key: tuple[str, int], connection: _Connection) -> None:
        idle = self._idle.setdefault(key, [])
        if len(idle) < self._max_idle:
            idle.append(connection)
        else:
            self.discard(connection)

    def discard(self, connection: _Connection) -> None:
        connection.transport.close()

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                self.discard(connection)
        self._idle.clear()

    @staticmethod
    async def _connect(key: tuple[str, int], within: float) -> _Connection:
        with trio.move_on_after(within) as waiting:
            try:
                stream = await trio.open_tcp_stream(*key)  # resolution and happy eyeballs
            except OSError as exc:
                raise httpx.ConnectError(f"cannot connect to {key[0]}:{key[1]}: {exc}") from exc
            return _Connection(Transport(socket.socket(fileno=stream.socket.detach())))
        assert waiting.cancelled_caught
        raise httpx.ConnectTimeout(f"no connection to {key[0]}:{key[1]} within {within:g}s")


async def _next_event(connection: _Connection, within: float) -> Head | bytes | object:
    """The response's next event (interim 1xx heads are skipped by the parser); reads as needed,
    at most ``within`` s in all. What is buffered, or already in the kernel, is taken without
    arming any timeout (a response's head, body and end usually arrive in one read, and a cancel
    scope per read cost the gateway ~3% of its time); a body that keeps arriving faster than it
    is read yields to the scheduler every ``_READS_PER_YIELD`` reads, so it cannot starve other
    connections or hold off a cancellation."""
    parser = connection.parser
    transport = connection.transport
    deadline = None
    while True:
        try:
            event = parser.next_event()
        except ProtocolError as exc:
            raise httpx.RemoteProtocolError(str(exc)) from exc
        if event is not NEED_DATA:
            return event
        try:
            data = transport.recv_nowait(_RECEIVE)  # b"" at EOF or reset
        except OSError as exc:
            raise httpx.ReadError(f"the upstream connection broke: {exc}") from exc
        if data is None:
            if deadline is None:
                deadline = trio.current_time() + within
            with trio.move_on_at(deadline) as waiting:
                await trio.lowlevel.wait_readable(transport.sock)
            if waiting.cancelled_caught:
                raise httpx.ReadTimeout(f"the upstream sent nothing for {within:g}s")
            connection.reads_without_yielding = 0
            continue
        connection.reads_without_yielding += 1
        if connection.reads_without_yielding >= _READS_PER_YIELD:
            connection.reads_without_yielding = 0
            await trio.lowlevel.checkpoint()
        parser.feed(data)  # b"" at EOF: the parser then ends a close-delimited body, or complains


class _LineSplitter:
    """Text lines out of UTF-8 chunks in linear time: only the new chunk is searched for line
    breaks, the unfinished line is kept as pieces (joined once it ends) and bounded."""

    __slots__ = ("_after_cr", "_decoder", "_max_line", "_pending", "_pending_size")

    def __init__(self, max_line: int | None) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._max_line = max_line
        self._pending: list[str] = []
        self._pending_size = 0
        self._after_cr = False  # the last chunk ended in CR: a LF starting this one completes that break

    def feed(self, chunk: bytes) -> list[str]:
        return self._split(self._decoder.decode(chunk))

    def end(self) -> list[str]:
        lines = self._split(self._decoder.decode(b"", final=True))
        if self._pending:
            lines.append("".join(self._pending))
            self._pending, self._pending_size = [], 0
        return lines

    def _split(self, text: str) -> list[str]:
        if self._after_cr and text:
            self._after_cr = False
            if text[0] == "\n":
                text = text[1:]
        if text:
            self._after_cr = text.endswith("\r")
        *complete, rest = _LINE_BREAK.split(text)
        if complete:
            complete[0] = "".join((*self._pending, complete[0]))
            self._pending, self._pending_size = [], 0
        if rest:
            self._pending.append(rest)
            self._pending_size += len(rest)
        limit = self._max_line
        if limit is not None and (self._pending_size > limit or any(len(line) > limit for line in complete)):
            raise ResponseTooLarge(f"the upstream sent a line over {limit} characters")
        return complete
