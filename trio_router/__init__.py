"""trio-router: an OpenAPI-first HTTP/1.1 server on trio + h11."""

from .app import App, Route
from .client.http_client import http_client, shared_async_client
from .client.upstream import ResponseTooLarge
from .errors import DropConnection, HTTPError
from .http.request import Request
from .http.response import Response, problem
from .http.server import bind_listener
from .openapi.document import SpecError
from .openapi.multipart import UploadedFile
from .runtime.bridge import BridgeError, await_, in_handler, sleep
from .security.verifiers import InvalidCredentials, Principal
from .serving import Server
from .settings import Settings
from .streaming.event_stream import EventStream, StreamError, StreamOutcome
from .streaming.guarded_answer import export_verdicts, guard_answer
from .streaming.sse import Event, EventParser, EventTooLarge
from .websocket import WebSocket, WebSocketClosed

__all__ = [
    "App",
    "BridgeError",
    "DropConnection",
    "Event",
    "EventParser",
    "EventStream",
    "EventTooLarge",
    "HTTPError",
    "InvalidCredentials",
    "Principal",
    "Request",
    "Response",
    "ResponseTooLarge",
    "Route",
    "Server",
    "Settings",
    "SpecError",
    "StreamError",
    "StreamOutcome",
    "UploadedFile",
    "WebSocket",
    "WebSocketClosed",
    "await_",
    "bind_listener",
    "export_verdicts",
    "guard_answer",
    "http_client",
    "in_handler",
    "problem",
    "shared_async_client",
    "sleep",
]
__version__ = "0.1.0"
