"""Where a connection is in its lifecycle: when its one cancel scope fires, the phase says what
the client gets (connection.py), and the metrics count connections by it."""

from __future__ import annotations

import enum


class Phase(enum.Enum):
    IDLE = "idle"  # waiting for the first byte of a request
    HEAD = "head"  # a request head is partly received
    HANDLER = "handler"  # the app is working on a request
    BODY = "body"  # reading (or draining) a request body
    SEND = "send"  # a response has started
    UPGRADED = "upgraded"  # another protocol (WebSocket) owns the socket: no HTTP response any more
