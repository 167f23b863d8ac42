"""WebSockets: operations marked ``x-websocket: true`` upgrade, after authentication, to a
session whose synchronous handler talks through a ``WebSocket`` (trio-websocket underneath)."""

from .session import WebSocket, WebSocketClosed

__all__ = ["WebSocket", "WebSocketClosed"]
