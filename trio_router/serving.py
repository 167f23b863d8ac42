"""The server as `trio-router run`, TestClient and ``trio_router.Server`` serve an app: the HTTP
layer's server (http/server.py) composed with what sits beside it and that it does not know,
the guardrails (their policies and verdict sinks)."""

from __future__ import annotations

from .http.context import Application, ServerContext
from .http.server import HTTPServer
from .settings import Settings
from .streaming.guardrails.service import ServerGuardrails


class Server(HTTPServer):
    """Serves an app on already-bound listening sockets until ``shutdown()``, guardrails included."""

    def __init__(self, app: Application, settings: Settings, worker_name: str | None = None) -> None:
        super().__init__(app, settings, worker_name)
        self.guardrails = ServerGuardrails(settings)  # a sink that cannot be opened stops startup here

    def compose(self, context: ServerContext) -> None:
        self.guardrails.serve_with(context.stats)
        context.guardrails = self.guardrails
