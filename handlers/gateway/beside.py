"""Serving a second app from the gateway's process (the admin API, the embedded mock backend)."""

from __future__ import annotations

import socket
from functools import partial
from typing import Any

from trio_router import App, Server, Settings


def serve_beside(app: App, other: App, listener: socket.socket, **settings: Any) -> None:
    """Serve ``other`` on ``listener`` (bound already, so a taken port stops startup) for as long
    as ``app``'s server runs; it is cancelled with the server's background tasks."""
    server = Server(other, Settings.model_validate(settings))
    app.background(partial(server.serve, [listener]))
