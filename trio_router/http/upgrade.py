"""A connection after an HTTP/1.1 Upgrade, as a ``trio.abc.Stream`` for the new protocol.

The connection has already parsed the upgrade request. A protocol library that does its own
handshake (trio-websocket, through wsproto) is given a stream that first replays that request,
rebuilt from the parsed head, plus whatever bytes followed it, and then reads the socket.
So the library sees exactly what a fresh connection would have shown it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from ..wire.interface import RequestHead
from .transport import PeerGone, SendTimeout, Transport

Upgrade = Callable[["UpgradedStream"], Awaitable[None]]


def replayed_head(event: RequestHead) -> bytes:
    """The request head as bytes again (names lowercased by the parser; values are untouched)."""
    lines = [b"%s %s HTTP/%s" % (event.method, event.target, event.http_version)]
    lines += [name + b": " + value for name, value in event.headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


class UpgradedStream(trio.abc.Stream):
    """The socket of an upgraded connection. ``going_away`` is set when the server begins to
    shut down, so the protocol can say goodbye before the grace period runs out. The first
    ``head_size`` bytes received are the replayed request head; the new protocol's own bytes
    follow."""

    def __init__(
        self, head: bytes, trailing: bytes, transport: Transport, send_timeout: float, receive_bytes: int
    ) -> None:
        self._prefix = head + trailing
        self.head_size = len(head)
        self._transport = transport
        self._send_timeout = send_timeout
        self._receive_bytes = receive_bytes
        self._closed = False
        self.going_away = trio.Event()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._closed:
            raise trio.ClosedResourceError("the upgraded stream is closed")
        if self._prefix:
            data, self._prefix = self._prefix, b""
            await trio.lowlevel.checkpoint()
            return data
        # Always a checkpoint: a protocol library may not yield between the frames it parses
        # (trio-websocket does not inside an unfinished message), so a client that keeps data
        # coming would otherwise hold the event loop for as long as it keeps sending.
        return await self._transport.recv_next(max_bytes or self._receive_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the upgraded stream is closed")
        try:
            rest = self._transport.send_nowait(bytes(data))
            if rest:
                await self._transport.send_rest(rest, self._send_timeout)
            else:
                await trio.lowlevel.checkpoint()
        except (PeerGone, SendTimeout) as exc:  # what protocol libraries expect of a trio stream
            raise trio.BrokenResourceError(str(exc)) from exc

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.wait_writable(self._transport.sock)

    async def aclose(self) -> None:
        """End our side (FIN); the connection closes the socket itself when the protocol is done."""
        if not self._closed:
            self._closed = True
            self._transport.shutdown_write()
        await trio.lowlevel.checkpoint()
