"""A lean HTTP/1.1 client for streaming upstream calls over pooled keep-alive connections; the wire
format is client_protocol.py's (sans-IO).

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
from .client_protocol import END, NEED_DATA, Head, ProtocolError, ResponseParser, encode_request

_RECEIVE = 65536
_READS_PER_YIELD = 16
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


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

    def __init__(self, pool: UpstreamPool, key: tuple[str, int], connection: _Connection, head: Head) -> None:
        self.status_code = head.status
        self._raw_headers = head.headers
        self._headers: httpx.Headers | None = None
        self._pool = pool
        self._key = key
        self._connection: _Connection | None = connection
        self._read_timeout = pool.read_timeout

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

    async def aiter_lines(self) -> AsyncIterator[str]:
        """The body's text lines (UTF-8), split on CRLF, LF or CR as the chunks arrive."""
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        pending = ""
        async for chunk in self.aiter_raw():
            pending += decoder.decode(chunk)
            # A CR at the very end may be the first half of a CRLF: keep it for the next chunk.
            cut = len(pending) - 1 if pending.endswith("\r") else len(pending)
            *lines, rest = _LINE_BREAK.split(pending[:cut])
            pending = rest + pending[cut:]
            for line in lines:
                yield line
        *lines, rest = _LINE_BREAK.split(pending + decoder.decode(b"", final=True))
        for line in lines:
            yield line
        if rest:
            yield rest

    async def aread(self) -> bytes:
        chunks = []
        async for chunk in self.aiter_raw():
            chunks.append(chunk)
        return b"".join(chunks)

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
    ) -> UpstreamResponse:
        """Send the request; return once the response head is in (the body follows)."""
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
            return await self.send(method, url, headers, body, connect_timeout=connect_timeout, read_timeout=wait)
        except BaseException:
            self.discard(connection)
            raise
        assert type(event) is Head
        return UpstreamResponse(self, key, connection, event)

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
