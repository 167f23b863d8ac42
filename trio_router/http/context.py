"""What every connection of one server shares: settings, the app, and the registry the
shutdown sequence walks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ..observability.access_log import AccessLog
from ..observability.metrics import UNMATCHED, RequestStats
from ..observability.otel import SpanRecorder
from ..runtime.executor import HandlerRuntime
from ..settings import Settings
from ..wire.choice import ServerParserFactory, server_parser_factory
from .protocol import DateHeader
from .watcher import Spawn, WatchDelay

if TYPE_CHECKING:
    from .connection import HTTPConnection
    from .request import Request
    from .response import Response


class Application(Protocol):
    """What the HTTP layer needs of an app: turn a request into a response; and a place for
    the serving server's counters (the app's own counters land there)."""

    stats: RequestStats

    async def handle(self, request: Request) -> Response: ...


@dataclass(eq=False)
class ServerContext:
    settings: Settings
    app: Application
    spawn_helper: Spawn
    runtime: HandlerRuntime
    date: DateHeader = field(default_factory=DateHeader)
    stats: RequestStats = field(default_factory=RequestStats)
    metrics_response: Callable[[Request], Response] | None = None  # the app's guard_metrics applied
    metrics_target: bytes = b"/metrics"
    access_log: AccessLog | None = None
    connections: set[HTTPConnection] = field(default_factory=set)
    shutting_down: bool = False
    websockets: int = 0  # open WebSocket sessions (at most settings.max_websockets)
    spans: SpanRecorder | None = None  # OpenTelemetry export, when enabled
    # What the server composed above the HTTP layer carries along, opaque here: the guardrails
    # (streaming/guardrails/service.py) that streams and guarded answers reach through the request.
    guardrails: object = None
    watch_delay: WatchDelay = field(init=False)  # when disconnect watchers start (watcher.py)
    parser: ServerParserFactory = field(init=False)  # each connection's parser (settings.http)

    def __post_init__(self) -> None:
        self.watch_delay = WatchDelay(self.spawn_helper)
        self.parser = server_parser_factory(self.settings.http)

    def record_exchange(
        self, request: Request | None, method: str, status: int, seconds: float, size: int | None, client: str
    ) -> None:
        """One answered exchange into the metrics, spans and access log (``request`` is None
        when the head never parsed)."""
        operation = request.operation if request is not None else UNMATCHED
        self.stats.record(operation, method, status, seconds)
        if self.spans is not None:
            self.spans.record(request, method, status, seconds)
        if self.access_log is not None:
            self.access_log.record(request, method=method, status=status, seconds=seconds, size=size, client=client)
