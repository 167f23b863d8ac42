"""One trio task per connection, driving one HTTP/1.1 parser (wire/: h11 or httptools).

The lifecycle (docs/architecture.md has the picture): await a request head under the
idle/header deadline -> check it -> hand it to the app inline (no task per request) ->
write the response in one send -> drain or close -> next request.

All deadlines live on ONE cancel scope per connection, re-armed as the connection moves
between phases (a new scope costs ~4 us, re-arming ~1.7 us). When the scope fires, the
phase it fired in says what the client gets: nothing (idle, head: slowloris), 408 (body),
504 (handler), 503 (shutdown), or an aborted stream (send).
"""

from __future__ import annotations

import logging
import math
import socket
from typing import Any

import trio

from ..errors import DropConnection, HTTPError
from ..wire.interface import CLOSED, NEED_DATA, RequestHead, ResponseRefused, ServerParser
from .context import ServerContext
from .phases import Phase
from .protocol import SERVER_HEADER, body_too_large, check_request_head, client_timeout, invalid_app_header
from .request import Request
from .response import Response, problem
from .transport import PeerGone, SendTimeout, Transport, peer_address
from .upgrade import UpgradedStream, replayed_head
from .watcher import DisconnectWatcher

log = logging.getLogger("trio_router.http")

_CLOSE = (b"connection", b"close")
_NO_BODY_STATUSES = frozenset({204, 304})
_DEADLINE_SLACK = 0.05  # seconds an idle deadline may fire early to spare a re-arm per request
# Sent raw when the parser refuses what the app produced (e.g. a header with a newline): its
# state machine cannot serialise anything else then.
_RAW_500 = b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class ClientDisconnected(Exception):
    """The client closed its side while we still needed its input."""


class _RequestAbandoned(Exception):
    """The request's scope was cancelled but the handler swallowed the cancellation."""


class HTTPConnection:
    # One per open connection: slots, not a dict.
    __slots__ = (
        "_body_received", "_client_timeout", "_declared_body", "_handler_waits", "_method", "_request", "_upgraded",
        "accepted_at", "cancel_reason", "client", "closing", "context", "parser", "phase", "request_deadline",
        "request_start", "scope", "settings", "transport", "watcher",
    )  # fmt: skip

    def __init__(self, sock: socket.socket, context: ServerContext) -> None:
        settings = context.settings
        self.context = context
        self.settings = settings
        self.transport = Transport(sock)
        self.client = peer_address(sock)
        self.parser: ServerParser = context.parser(settings.max_header_bytes, settings.max_target_bytes)
        self.watcher = DisconnectWatcher(
            self.transport, self._client_disconnected, context.spawn_helper, context.watch_delay
        )
        self.scope = trio.CancelScope()
        self.phase = Phase.IDLE
        self.cancel_reason: str | None = None
        self.closing = False
        self.accepted_at = trio.current_time()
        self.request_start = 0.0
        self.request_deadline = math.inf
        self._client_timeout = math.inf
        self._declared_body: int | None = None
        self._body_received = 0
        self._handler_waits = False
        self._request: Request | None = None
        self._method = "OTHER"  # until a request head parses
        self._upgraded: UpgradedStream | None = None

    # -- the connection lifecycle ------------------------------------------------------

    async def serve(self) -> None:
        self.context.connections.add(self)
        try:
            with self.scope:
                await self._serve_requests()
            if self.scope.cancelled_caught:
                await self._respond_to_cancellation()
        except _RequestAbandoned:
            await self._respond_to_cancellation()
        except (ClientDisconnected, PeerGone, SendTimeout, DropConnection):
            pass  # DropConnection: the app wants the connection cut, response unfinished
        except Exception:
            log.exception("connection failed")
            await self._final_response(500, "internal server error")
        finally:
            self.watcher.close()
            try:
                await self._close()
            finally:
                self.context.connections.discard(self)

    async def _serve_requests(self) -> None:
        served = 0
        while True:
            event = await self._await_request(first=served == 0)
            if event is None:
                return
            served += 1
            keep_alive = served < self.settings.max_requests_per_connection
            if not await self._exchange(event, keep_alive):
                return
            self.parser.start_next_cycle()

    async def _await_request(self, first: bool) -> RequestHead | None:
        """The next request head, or None when the connection should end quietly."""
        parser = self.parser
        event = parser.next_head()
        if event is NEED_DATA:
            if self.closing or self.context.shutting_down:
                return None
            self.phase = Phase.IDLE
            if first:
                self._set_deadline(self.accepted_at + self.settings.header_timeout)
            else:
                self._extend_deadline(trio.current_time() + self.settings.keepalive_timeout)
            data = await self.transport.recv_next(self.settings.receive_bytes)
            if not data:
                return None
            self.phase = Phase.HEAD
            parser.receive_data(data)
            event = parser.next_head()
            if event is NEED_DATA:
                if not first:  # the first request's head is already bounded from accept
                    self._set_deadline(trio.current_time() + self.settings.header_timeout)
                while event is NEED_DATA:
                    parser.receive_data(await self.transport.recv(self.settings.receive_bytes))
                    event = parser.next_head()
        else:
            # Pipelined input: the head is already here. Its deadline replaces whatever the last
            # request left armed, and a checkpoint keeps it from starving other connections.
            self.phase = Phase.HEAD
            self._set_deadline(trio.current_time() + self.settings.header_timeout)
            await trio.lowlevel.checkpoint()
        if type(event) is RequestHead:
            return event
        if isinstance(event, HTTPError):
            self.phase = Phase.HANDLER
            self.request_start = trio.current_time()
            self._request, self._method = None, "OTHER"
            await self._send_response(problem(event.status, event.detail), head_only=False, keep_alive=False)
            return None
        assert event is CLOSED
        return None

    async def _exchange(self, event: RequestHead, keep_alive: bool) -> bool:
        """Answer one request. Returns whether the connection may serve another."""
        try:
            request = self._start_request(event)
            response = self._own_response(request)
            if response is None:  # not the server's own: the app's (one coroutine frame less)
                response = await self.context.app.handle(request)
            self._check_handler_outcome()
        except HTTPError as exc:
            self.watcher.disarm()
            response = self._problem(exc.status, exc.detail, **exc.extra)
            response.headers.extend(exc.headers)
            keep_alive = keep_alive and not exc.close
        if response.upgrade is not None:
            await self._hand_over(event, response)
            return False
        keep_alive = await self._send_response(response, event.method == b"HEAD", keep_alive)
        if keep_alive and self.parser.body_pending:
            keep_alive = await self._drain_body()
        return keep_alive and self.parser.exchange_done

    def _start_request(self, event: RequestHead) -> Request:
        """Check the head, settle a bodiless request's framing, and fix the request's deadline."""
        self.phase = Phase.HANDLER
        now = self.request_start = trio.current_time()
        self._body_received = 0
        self._handler_waits = False
        self._request = None
        self._method = event.method.decode("ascii")
        settings = self.settings
        # The request exists before its head is checked, so a refusal (413 from Content-Length)
        # carries its request id like every other problem.
        request = self._request = Request(self, self._method, event.target, event.headers, event.http_version)
        self._declared_body, timeout_header = check_request_head(
            event, settings.max_header_bytes, settings.max_target_bytes, settings.max_body_bytes
        )
        if self._declared_body == 0:
            self.parser.next_body()  # a bodiless request's end: nothing left to read
        self._client_timeout = client_timeout(timeout_header)
        self.request_deadline = now + min(settings.request_timeout, self._client_timeout)
        return request

    def _own_response(self, request: Request) -> Response | None:
        """The server's own /metrics, or None for a request the app answers. Not a coroutine
        around the app's: every suspended request would hold one more frame (~300 bytes)."""
        context = self.context
        if (
            context.metrics_response is not None
            and request.target == context.metrics_target
            and request.method in ("GET", "HEAD")
        ):
            request.operation = "metrics"
            return context.metrics_response(request)
        return None

    def _check_handler_outcome(self) -> None:
        """A cancelled request ends cancelled, even if its handler swallowed the cancellation or
        never gave trio a chance to deliver it (CPU-bound past its deadline)."""
        if self.watcher.armed:
            self.watcher.disarm()
        if self.scope.cancel_called or trio.current_time() >= self.request_deadline:
            raise _RequestAbandoned

    # -- hooks the request and the app call ------------------------------------------

    def set_operation_timeout(self, seconds: float) -> None:
        self.request_deadline = self.request_start + min(seconds, self._client_timeout)

    def handler_suspended(self) -> None:
        """The handler is about to wait on I/O: its deadline and the disconnect watch now matter."""
        self._handler_waits = True
        if self.phase is Phase.BODY:
            return  # the body reader owns the socket and the deadline; it arms both when done
        self._set_deadline(self.request_deadline)
        self.watcher.arm()

    async def read_body(self) -> bytes:
        """The whole request body, bounded in size and time (413, 408)."""
        parser = self.parser
        if not parser.body_pending:
            return b""
        if parser.expects_continue:
            await self._write(parser.continue_response(), streaming=False)
        self.watcher.disarm()
        chunks = await self._receive_body(limit=self.settings.max_body_bytes)
        self.phase = Phase.HANDLER
        self._set_deadline(self.request_deadline)
        if self._handler_waits:
            self.watcher.arm()
        return b"".join(chunks)

    # -- body ----------------------------------------------------------------------

    async def _receive_body(self, limit: int) -> list[bytes | bytearray]:
        self.phase = Phase.BODY
        self._set_deadline(min(self.request_deadline, trio.current_time() + self.settings.body_timeout))
        parser = self.parser
        chunks: list[bytes | bytearray] = []  # h11 gives bytearrays
        while True:
            event = parser.next_body()
            if event is NEED_DATA:
                data = await self.transport.recv(self.settings.receive_bytes)
                if not data:
                    raise ClientDisconnected
                parser.receive_data(data)
            elif type(event) is bytes or type(event) is bytearray:
                self._body_received += len(event)
                if self._body_received > limit:
                    raise body_too_large(self.settings.max_body_bytes)
                chunks.append(event)
            else:  # END_OF_BODY
                return chunks

    async def _drain_body(self) -> bool:
        """Discard what the handler did not read, if small enough to keep the connection."""
        try:
            await self._receive_body(limit=self._body_received + self.settings.drain_body_bytes)
        except HTTPError:
            return False
        return True

    def _unread_body_forces_close(self) -> bool:
        parser = self.parser
        if not parser.body_pending:
            return False
        if parser.expects_continue or self._declared_body is None:
            return True  # the client may never send it, or its size is unknown
        return self._declared_body - self._body_received > self.settings.drain_body_bytes

    # -- response ------------------------------------------------------------------

    async def _send_response(self, response: Response, head_only: bool, keep_alive: bool) -> bool:
        parser = self.parser
        if not parser.can_respond:
            return False
        keep_alive = keep_alive and not (self.closing or self.context.shutting_down or self._unread_body_forces_close())
        headers = [*response.headers, self.context.date.get(), SERVER_HEADER]  # never mutate the app's list
        if self._request is not None:
            headers.append((b"x-request-id", self._request.id.encode()))
        status = response.status
        if response.stream is None and status not in _NO_BODY_STATUSES:
            headers.append((b"content-length", b"%d" % len(response.body)))
        if not keep_alive:
            headers.append(_CLOSE)
        try:
            bad_header = invalid_app_header(response.headers)
            if bad_header is not None:
                raise ResponseRefused(f"invalid response header {bad_header!r}")
            if response.stream is not None:
                await self._send_stream(parser.stream_head(status, headers), response, head_only)
                self._record(status, None)
                return keep_alive
            data = parser.complete_response(status, headers, response.body, head_only)
        except ResponseRefused:
            log.exception("the app produced a response that cannot be sent")
            await self._write(_RAW_500, streaming=False)
            self._record(500, 0)
            return False
        self.phase = Phase.SEND
        await self._write(data, streaming=False)
        self._record(status, len(response.body))
        return keep_alive

    async def _hand_over(self, event: RequestHead, response: Response) -> None:
        """Give the socket to the protocol the request upgraded to, until it is done with it
        (under the request's deadline); the connection closes afterwards."""
        assert response.upgrade is not None
        self.phase = Phase.UPGRADED
        self._set_deadline(self.request_deadline)
        settings = self.settings
        stream = self._upgraded = UpgradedStream(
            replayed_head(event),
            self.parser.buffered,
            self.transport,
            settings.send_timeout,
            settings.receive_bytes,
        )
        if self.closing or self.context.shutting_down:
            stream.going_away.set()
        try:
            await response.upgrade(stream)
        finally:
            self._record(response.status, None)

    def _problem(self, status: int, detail: str, **extra: Any) -> Response:
        request = self._request
        if request is None:
            return problem(status, detail, **extra)
        return request.render_error(status, detail, request_id=request.id, **extra)

    def _record(self, status: int, size: int | None) -> None:
        """Metrics, spans and the access log, once the response is out."""
        seconds = trio.current_time() - self.request_start
        self.context.record_exchange(self._request, self._method, status, seconds, size, self.client)

    async def _send_stream(self, head: bytes, response: Response, head_only: bool) -> None:
        """A body of unknown length: chunked, one send per chunk, under the request's deadline."""
        parser = self.parser
        stream = response.stream
        assert stream is not None
        self.phase = Phase.SEND
        self._set_deadline(self.request_deadline)
        try:
            await self._write(head, streaming=True)
            if not head_only:
                self.watcher.arm()  # the producer may sit idle for long: notice a client that leaves
                async for chunk in stream:
                    if chunk:
                        await self._write(parser.stream_data(chunk), streaming=True)
                self.watcher.disarm()
            await self._write(parser.stream_end(), streaming=True)
        finally:
            await self._close_producer(stream)

    async def _close_producer(self, stream: object) -> None:
        """Run a generator's ``finally`` now (deadline, disconnect, send error), not at GC time."""
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            with trio.CancelScope(shield=True, deadline=trio.current_time() + self.settings.linger_timeout):
                await aclose()

    async def _write(self, data: bytes, streaming: bool) -> None:
        """Send bytes; only a send that would block pays for a timeout."""
        try:
            rest = self.transport.send_nowait(data)
            if rest:
                if not streaming:
                    self._set_deadline(math.inf)  # the handler is done: only the send timeout applies now
                await self.transport.send_rest(rest, self.settings.send_timeout)
        except BaseException:
            self.parser.send_failed()  # the state machine must not believe the bytes went out
            raise

    # -- cancellation, shutdown, closing -------------------------------------------

    def _set_deadline(self, deadline: float) -> None:
        if self.scope.deadline != deadline:
            self.scope.deadline = deadline

    def _extend_deadline(self, deadline: float) -> None:
        """Like ``_set_deadline``, but a deadline up to ``_DEADLINE_SLACK`` earlier is left alone:
        re-arming on every keep-alive request costs more than a slightly early idle close."""
        if not 0 <= deadline - self.scope.deadline < _DEADLINE_SLACK:
            self.scope.deadline = deadline

    def _client_disconnected(self) -> None:
        self.cancel_reason = "disconnect"
        self.scope.cancel()

    def begin_shutdown(self) -> None:
        """Finish the request in flight (with ``connection: close``); an idle connection closes now."""
        self.closing = True
        if self._upgraded is not None:
            self._upgraded.going_away.set()
        if self.phase is Phase.IDLE:
            self.cancel_reason = "shutdown"
            self.scope.cancel()

    def cancel_for_shutdown(self) -> None:
        """The grace period is over: cancel whatever is still running."""
        self.cancel_reason = self.cancel_reason or "shutdown"
        self.scope.cancel()

    async def _respond_to_cancellation(self) -> None:
        """Tell the client why its request ended, when it is still there to be told."""
        if self.cancel_reason == "disconnect" or self.phase in (Phase.IDLE, Phase.HEAD, Phase.SEND, Phase.UPGRADED):
            return
        if self.cancel_reason == "shutdown":
            await self._final_response(503, "the server is shutting down")
        elif self.phase is Phase.BODY:
            await self._final_response(408, "the request body was not received in time")
        else:
            await self._final_response(504, "the request did not complete before its deadline")

    async def _final_response(self, status: int, detail: str) -> None:
        """A last response before closing, if the parser still allows one; bounded even under cancellation."""
        with trio.CancelScope(shield=True, deadline=trio.current_time() + self.settings.linger_timeout):
            try:
                head_only = self._method == "HEAD"
                await self._send_response(self._problem(status, detail), head_only=head_only, keep_alive=False)
            except (PeerGone, SendTimeout):
                pass

    async def _close(self) -> None:
        """Close. After a response to input we did not read to the end, linger first: discard
        what the client still sends (bounded in time and bytes) so that it reads our response
        instead of a reset."""
        transport = self.transport
        if self.parser.responded and self.parser.input_unfinished():
            transport.shutdown_write()
            budget = self.settings.max_body_bytes
            with trio.CancelScope(shield=True, deadline=trio.current_time() + self.settings.linger_timeout):
                while budget > 0:
                    data = await transport.recv(self.settings.receive_bytes)
                    if not data:
                        break
                    budget -= len(data)
        transport.close()
