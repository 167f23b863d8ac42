"""The response a handler returns, and RFC 9457 problem+json responses."""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, Iterable
from typing import Any

from .protocol import REASONS
from .upgrade import Upgrade

Headers = list[tuple[bytes, bytes]]

_JSON = (b"content-type", b"application/json")
_TEXT = (b"content-type", b"text/plain; charset=utf-8")
_BYTES = (b"content-type", b"application/octet-stream")
_PROBLEM = (b"content-type", b"application/problem+json")
# json.dumps() with any non-default argument builds a new encoder per call; this one is built once.
_json = json.JSONEncoder(separators=(",", ":")).encode


def _encode_headers(headers: Iterable[tuple[str | bytes, str | bytes]]) -> Headers:
    return [
        (
            (name.encode("latin-1") if isinstance(name, str) else name).lower(),
            value.encode("latin-1") if isinstance(value, str) else value,
        )
        for name, value in headers
    ]


class Response:
    """A status, headers and either a complete body or an async stream of chunks.

    A complete body is sent with ``Content-Length``; a stream is sent chunked (or
    close-delimited to an HTTP/1.0 client), one send per chunk.
    """

    __slots__ = ("body", "guardrails", "headers", "status", "stream", "upgrade")

    def __init__(
        self,
        body: bytes = b"",
        status: int = 200,
        headers: Iterable[tuple[str | bytes, str | bytes]] = (),
        *,
        stream: AsyncIterable[bytes] | None = None,
        upgrade: Upgrade | None = None,
    ) -> None:
        self.status = status
        self.headers: Headers = _encode_headers(headers) if headers else []
        self.body = body
        self.stream = stream
        # Upgrade: the connection hands its socket to this coroutine instead of sending a response
        # (it sends its own, e.g. a WebSocket handshake's 101), and closes when it returns.
        self.upgrade = upgrade
        self.guardrails: dict[str, int] | None = None  # verdicts by action, once the guardrails checked it

    @classmethod
    def json(cls, value: Any, status: int = 200, headers: Iterable[tuple[str, str]] = ()) -> Response:
        response = cls(_json(value).encode(), status, headers)
        response.headers.append(_JSON)
        return response

    @classmethod
    def text(cls, value: str, status: int = 200, headers: Iterable[tuple[str, str]] = ()) -> Response:
        response = cls(value.encode(), status, headers)
        response.headers.append(_TEXT)
        return response


def coerce_response(result: object) -> Response:
    """What a handler may return: a Response, JSON-able dict/list, str, bytes, or None (204)."""
    if isinstance(result, Response):
        return result
    if isinstance(result, dict | list):
        return Response.json(result)
    if isinstance(result, str):
        return Response.text(result)
    if isinstance(result, bytes | bytearray):
        response = Response(bytes(result))
        response.headers.append(_BYTES)
        return response
    if result is None:
        return Response(status=204)
    raise TypeError(f"handler returned {type(result).__name__}; return a Response, dict, list, str, bytes or None")


def problem(status: int, detail: str | None = None, **extra: Any) -> Response:
    """An RFC 9457 problem+json response; ``type`` stays ``about:blank`` so ``title`` is the status phrase."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": REASONS.get(status, b"Error").decode(),
        "status": status,
    }
    if detail:
        body["detail"] = detail
    body.update(extra)
    response = Response(_json(body).encode(), status)
    response.headers.append(_PROBLEM)
    return response
