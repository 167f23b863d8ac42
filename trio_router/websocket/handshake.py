"""What makes a request a WebSocket opening handshake (RFC 6455 section 4.2.1), and the
response that upgrades one.

The checks (sans-IO) run before the upgrade is handed to trio-websocket, so a request that is not a
handshake gets a precise HTTP answer (and the connection lives on) instead of a protocol error.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from ..errors import HTTPError
from ..http.request import Request
from ..http.response import Response
from .session import run_session

VERSION = "13"
_UPGRADE_HEADERS = [(b"upgrade", b"websocket"), (b"connection", b"Upgrade")]


def _tokens(values: Iterable[bytes]) -> set[str]:
    return {token.strip().lower() for value in values for token in value.decode("latin-1").split(",")}


def check_handshake(method: str, http_version: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    """Raise the HTTPError a client gets for a request that cannot open a WebSocket."""

    def values(name: bytes) -> list[bytes]:
        return [value for header, value in headers if header == name]

    if method != "GET" or http_version != b"1.1" or "websocket" not in _tokens(values(b"upgrade")):
        raise HTTPError(
            426, "this operation is a WebSocket: send a GET HTTP/1.1 upgrade request", close=False,
            headers=list(_UPGRADE_HEADERS),
        )  # fmt: skip
    if "upgrade" not in _tokens(values(b"connection")):
        raise HTTPError(400, "a WebSocket handshake needs Connection: Upgrade", close=False)
    versions = values(b"sec-websocket-version")
    if [v.strip() for v in versions] != [VERSION.encode()]:
        raise HTTPError(
            426, f"unsupported WebSocket version; this server speaks {VERSION}", close=False,
            headers=[(b"sec-websocket-version", VERSION.encode())],
        )  # fmt: skip
    keys = values(b"sec-websocket-key")
    try:
        valid_key = len(keys) == 1 and len(base64.b64decode(keys[0].strip(), validate=True)) == 16
    except (binascii.Error, ValueError):
        valid_key = False
    if not valid_key:
        raise HTTPError(400, "Sec-WebSocket-Key must be one base64-encoded 16-byte value", close=False)


def websocket_upgrade(request: Request, invoke: Callable[[Request], Any], session_timeout: float | None) -> Response:
    """The response that upgrades ``request`` to a WebSocket session running ``invoke`` (checked
    first: a request that is not a handshake, or one over the session limit, gets an HTTP answer)."""
    check_handshake(request.method, request.http_version, request.raw_headers)
    settings = request.settings
    if request.server.websockets >= settings.max_websockets:
        raise HTTPError(
            503, "too many WebSocket sessions; try again later", close=False,
            headers=[(b"retry-after", str(settings.retry_after).encode())],
        )  # fmt: skip
    request.set_operation_timeout(session_timeout or settings.websocket_timeout)
    return Response(status=101, upgrade=partial(run_session, request=request, invoke=invoke))
