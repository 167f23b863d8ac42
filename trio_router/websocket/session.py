"""A WebSocket session: the handshake (trio-websocket), the handler in a pooled greenlet, a
heartbeat, and a close code for every way a session ends.

| how it ends | close code |
|---|---|
| the handler returns | 1000 (unless it closed with its own code) |
| the client closes | the client's code; the handler's ``receive`` raises ``WebSocketClosed`` |
| a message over ``websocket_max_message_bytes`` | 1009 (trio-websocket) |
| a message in more than ``websocket_max_fragments`` frames | 1009 (``fragments.FragmentLimit``) |
| the handler raises | 1011, the error logged with the request id |
| the session deadline (``x-stream-timeout`` or ``websocket_timeout``) | 1001, handler cancelled |
| server shutdown | 1001 at once; the handler is cancelled if still running at the grace deadline |
| no pong within ``websocket_ping_timeout`` | handler cancelled, connection dropped |
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_server_stream

from ..http.request import Request
from ..http.upgrade import UpgradedStream
from ..runtime.bridge import await_
from ..runtime.current import current_request
from ..settings import Settings
from .fragments import FragmentLimitedStream

log = logging.getLogger("trio_router.websocket")

GOING_AWAY, INTERNAL_ERROR = 1001, 1011


class WebSocketClosed(Exception):
    """The WebSocket is closed; ``code`` and ``reason`` say how (1000 normal, 1001 going away,
    1009 message too big, 1011 server error...)."""

    def __init__(self, code: int, reason: str | None) -> None:
        super().__init__(f"WebSocket closed ({code}{': ' + reason if reason else ''})")
        self.code = code
        self.reason = reason


class WebSocket:
    """A handler's end of a WebSocket. Each method suspends only the handler (through the
    bridge), never the server; iterate it to receive until the client closes."""

    def __init__(self, connection: WebSocketConnection, request: Request, close_timeout: float) -> None:
        self._connection = connection
        self._close_timeout = close_timeout
        self.request = request

    @property
    def subprotocol(self) -> str | None:
        return self._connection.subprotocol

    @property
    def closed(self) -> WebSocketClosed | None:
        reason = self._connection.closed
        return None if reason is None else WebSocketClosed(reason.code, reason.reason)

    def receive(self, timeout: float | None = None) -> str | bytes:
        """The next message (``str`` for text, ``bytes`` for binary). Raises ``WebSocketClosed``
        once the connection is closed and ``TimeoutError`` after ``timeout`` seconds without one."""
        return await_(self._receive(timeout))

    def send(self, message: str | bytes) -> None:
        if not isinstance(message, str | bytes):
            raise TypeError(f"a WebSocket message is str or bytes, not {type(message).__name__}")
        await_(self._guarded(self._connection.send_message(message)))

    def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Close with ``code`` and wait (at most ``websocket_close_timeout``) for the client's reply."""
        await_(close_within(self._connection, code, reason, self._close_timeout))

    def __iter__(self) -> Iterator[str | bytes]:
        while True:
            try:
                yield self.receive()
            except WebSocketClosed:
                return

    async def _receive(self, within: float | None) -> str | bytes:
        if within is None:
            return await self._guarded(self._connection.get_message())  # type: ignore[no-any-return]
        with trio.move_on_after(within):
            return await self._guarded(self._connection.get_message())  # type: ignore[no-any-return]
        raise TimeoutError(f"no WebSocket message within {within:g}s")

    @staticmethod
    async def _guarded(operation: Any) -> Any:
        try:
            return await operation
        except ConnectionClosed as exc:
            reason = exc.reason
            if reason is None:  # closed without a close frame
                raise WebSocketClosed(1006, None) from None
            raise WebSocketClosed(reason.code, reason.reason) from None


async def close_within(connection: WebSocketConnection, code: int, reason: str | None, seconds: float) -> None:
    """Send a close frame and wait for the reply, but not forever (the client may be gone)."""
    with trio.move_on_after(seconds):
        await connection.aclose(code, reason)


async def run_session(stream: UpgradedStream, request: Request, invoke: Callable[[Request], Any]) -> None:
    """Complete the handshake, run the handler until it returns, close with the right code."""
    settings = request.settings
    server = request.server
    server.websockets += 1
    unresponsive = False

    def drop() -> None:
        nonlocal unresponsive
        unresponsive = True
        nursery.cancel_scope.cancel()

    try:
        async with trio.open_nursery() as nursery:
            connection: WebSocketConnection | None = None
            with trio.move_on_after(settings.header_timeout):
                proposal = await wrap_server_stream(
                    nursery,
                    FragmentLimitedStream(stream, settings.websocket_max_fragments),
                    message_queue_size=settings.websocket_queue_size,
                    max_message_size=settings.websocket_max_message_bytes,
                )
                connection = await proposal.accept()
            if connection is None:  # the handshake did not complete in time
                nursery.cancel_scope.cancel()
                return
            socket = WebSocket(connection, request, settings.websocket_close_timeout)
            nursery.start_soon(_keeper, stream, connection, settings, drop)
            await _run_handler(socket, request, invoke)
            nursery.cancel_scope.cancel()
    finally:
        server.websockets -= 1
        if unresponsive:
            log.info("WebSocket client stopped answering pings (request id %s)", request.id)


async def _run_handler(socket: WebSocket, request: Request, invoke: Callable[[Request], Any]) -> None:
    connection = socket._connection
    close_timeout = request.settings.websocket_close_timeout
    request.websocket = socket
    token = current_request.set(request)
    code, reason = 1000, None
    try:
        await request.runtime.pool.run(invoke, request, _nothing)
    except WebSocketClosed:
        pass  # the client closed; the handler let it end the session
    except trio.Cancelled:
        code, reason = GOING_AWAY, "the session ended (deadline or shutdown)"
        raise
    except Exception:
        log.exception("WebSocket handler for %s failed (request id %s)", request.operation, request.id)
        code, reason = INTERNAL_ERROR, "internal error"
    finally:
        current_request.reset(token)
        with trio.CancelScope(shield=True):
            await close_within(connection, code, reason, close_timeout)


async def _keeper(
    stream: UpgradedStream, connection: WebSocketConnection, settings: Settings, unresponsive: Callable[[], None]
) -> None:
    """One task per session for both of its timers (a task costs memory in every idle session):
    a ping every ``websocket_ping_interval``, answered within ``websocket_ping_timeout`` or the
    client is gone; and a 1001 goodbye as soon as the server begins to shut down."""
    while True:
        with trio.move_on_after(settings.websocket_ping_interval):
            await stream.going_away.wait()
            await close_within(connection, GOING_AWAY, "the server is shutting down", settings.websocket_close_timeout)
            return
        with trio.move_on_after(settings.websocket_ping_timeout) as waiting:
            try:
                await connection.ping()
            except ConnectionClosed:
                return
        if waiting.cancelled_caught:
            unresponsive()
            return


def _nothing() -> None:
    pass
