"""Listening sockets, the accept loop, and the shutdown sequence.

Shutdown, in order: stop accepting and close the listeners; close idle keep-alive
connections at once; let requests in flight finish (their responses carry
``connection: close``) until the grace deadline; then cancel what remains, answering 503
where a response has not started. Connections live in their own nursery, apart from the
accept loops, so closing the listeners never touches a request.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable

import trio

from ..client.http_client import close_shared_client
from ..observability.access_log import AccessLog
from ..observability.otel import otlp_recorder
from ..runtime.executor import HandlerRuntime
from ..settings import Settings
from .connection import HTTPConnection
from .context import Application, ServerContext
from .request import Request
from .response import Response, problem
from .server_metrics import ServerMetrics

log = logging.getLogger("trio_router.http")

_ACCEPT_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_ACCEPT_BATCH = 64  # accepts per wake-up, so a connection storm cannot monopolise the loop


class ListenError(Exception):
    """The server cannot listen where it was told to; the message is meant for a human."""


def bind_listener(host: str, port: int, backlog: int, reuse_port: bool) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ListenError(f"cannot resolve host {host!r}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise ListenError(f"cannot listen on {host}:{port}: {reason}") from None
    sock.setblocking(False)
    return sock


def listener_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class HTTPServer:
    """Serves an app on already-bound listening sockets until ``shutdown()``."""

    def __init__(self, app: Application, settings: Settings, worker_name: str | None = None) -> None:
        self.app = app
        self.settings = settings
        self.worker_name = worker_name
        self.metrics: ServerMetrics | None = None
        self._shutdown_requested = trio.Event()
        self._drained = trio.Event()
        self.context: ServerContext | None = None
        self.spans = otlp_recorder(settings.otel_sample_ratio, settings.otel_service_name) if settings.otel else None
        self.cancelled_requests = 0
        self._helpers: trio.Nursery | None = None

    @property
    def helper_tasks(self) -> int:
        """Live helper tasks: disconnect watchers (one at most per connection) and metrics work."""
        return len(self._helpers.child_tasks) if self._helpers else 0

    def shutdown(self) -> None:
        self._shutdown_requested.set()

    async def serve(
        self, listeners: list[socket.socket], *, task_status: trio.TaskStatus[HTTPServer] = trio.TASK_STATUS_IGNORED
    ) -> bool:
        """Serve until shutdown; True when every in-flight request finished within the grace period.
        The listeners are closed in the end, also when the server is cancelled (one an app runs
        as a background task, such as the gateway's admin listener, ends that way)."""
        try:
            return await self._serve(listeners, task_status)
        finally:
            for listener in listeners:
                listener.close()

    def compose(self, context: ServerContext) -> None:
        """Attach what a server composed above the HTTP layer adds (serving.Server: the
        guardrails) to the context its connections share, before the first connection."""

    async def _serve(self, listeners: list[socket.socket], task_status: trio.TaskStatus[HTTPServer]) -> bool:
        async with trio.open_nursery() as helpers:
            self._helpers = helpers
            context = ServerContext(
                self.settings, self.app, spawn_helper=helpers.start_soon, runtime=HandlerRuntime(self.settings)
            )
            self.context = context
            self.app.stats = context.stats  # App.count lands in this server's metrics
            self.compose(context)
            context.spans = self.spans
            if self.settings.access_log:
                context.access_log = AccessLog(self.settings.access_log_max_per_second)
            if self.settings.metrics_path:
                self.metrics = ServerMetrics(context, self.worker_name)
                context.metrics_response = _guarded(self.metrics.response, getattr(self.app, "metrics_guard", None))
                context.metrics_target = self.settings.metrics_path.encode()
                helpers.start_soon(self.metrics.run)
            for task in getattr(self.app, "background_tasks", ()):
                helpers.start_soon(task)
            async with trio.open_nursery() as connections:
                async with trio.open_nursery() as acceptors:
                    for listener in listeners:
                        acceptors.start_soon(self._accept_loop, listener, connections.start_soon)
                    task_status.started(self)
                    await self._shutdown_requested.wait()
                    acceptors.cancel_scope.cancel()
                for listener in listeners:
                    trio.lowlevel.notify_closing(listener)
                    listener.close()
                clean = await self._drain(context)
                # Backstop: cancelled connections answer within the linger timeout.
                connections.cancel_scope.deadline = trio.current_time() + self.settings.linger_timeout + 1
            helpers.cancel_scope.cancel()
        context.runtime.pool.close()
        if self.metrics is not None:
            self.metrics.share()  # final counts, so the other workers keep reporting this one's requests
        await close_shared_client()
        if self.spans is not None:
            await trio.to_thread.run_sync(self.spans.shutdown)  # flushes what is still batched
        return clean

    async def _drain(self, context: ServerContext) -> bool:
        context.shutting_down = True
        in_flight = list(context.connections)
        for connection in in_flight:
            connection.begin_shutdown()
        if context.connections:
            log.info("draining %d connection(s), up to %gs", len(context.connections), self.settings.shutdown_timeout)
            with trio.move_on_after(self.settings.shutdown_timeout):
                await self._drained.wait()
        remaining = list(context.connections)
        for connection in remaining:
            connection.cancel_for_shutdown()
        self.cancelled_requests = len(remaining)
        if remaining:
            log.warning("cancelled %d request(s) still running after the grace period", len(remaining))
        return not remaining

    async def _accept_loop(self, listener: socket.socket, start_soon: Callable[..., None]) -> None:
        while True:
            await trio.lowlevel.wait_readable(listener)
            for _ in range(_ACCEPT_BATCH):
                try:
                    sock, _ = listener.accept()
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno in _ACCEPT_RESOURCE_ERRNOS:
                        log.error("accept failed (%s); pausing 100 ms", exc.strerror)
                        await trio.sleep(0.1)
                        break
                    if exc.errno == errno.ECONNABORTED:
                        continue
                    raise
                start_soon(self.serve_socket, sock)

    async def serve_socket(self, sock: socket.socket) -> None:
        """Serve one connected socket (accepted here, or handed over: an in-process test client)."""
        context = self.context
        assert context is not None
        try:
            await HTTPConnection(sock, context).serve()
        except Exception:
            log.exception("connection task failed")
        finally:
            if context.shutting_down and not context.connections:
                self._drained.set()


def _guarded(
    metrics: Callable[[], Response], allowed: Callable[[Request], bool] | None
) -> Callable[[Request], Response]:
    """/metrics for the requests the app's ``guard_metrics`` lets through (all without one)."""

    def respond(request: Request) -> Response:
        if allowed is not None and not allowed(request):
            return problem(401, "the metrics need an operator's credentials")
        return metrics()

    return respond
