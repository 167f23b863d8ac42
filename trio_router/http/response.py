"""The response a handler returns, and RFC 9457 problem+json responses."""

from __future__ import annotations

import json
from collections.abc import AsyncIterable
from typing import Any

from pydantic_core import PydanticSerializationError, to_jsonable_python

from .headers import HeaderInput, Headers, encode_headers
from .protocol import REASONS
from .upgrade import Upgrade

_JSON = (b"content-type", b"application/json")
_TEXT = (b"content-type", b"text/plain; charset=utf-8")
_PROBLEM = (b"content-type", b"application/problem+json")
BYTES = (b"content-type", b"application/octet-stream")
# json.dumps() with any non-default argument builds a new encoder per call; this one is built once.
_json = json.JSONEncoder(separators=(",", ":")).encode

NOT_JSON: Any = object()  # a Response.value meaning the body was not encoded from a JSON value here


class Response:
    """A status, headers and either a complete body or an async stream of chunks.

    ``body`` is bytes as given; text, encoded as UTF-8 and typed text/plain; or any JSON value
    (dicts, lists, numbers, pydantic models and dataclasses, nested as you like), encoded at once
    and typed as JSON: for an operation of the spec, with the JSON media type it declares. A
    complete body is sent with ``Content-Length``; a stream is sent chunked (or close-delimited
    to an HTTP/1.0 client), one send per chunk. ``headers``: a dict or (name, value) pairs.
    """

    __slots__ = ("body", "guardrails", "headers", "status", "stream", "upgrade", "value")

    def __init__(
        self,
        body: Any = b"",
        status: int = 200,
        headers: HeaderInput = (),
        *,
        stream: AsyncIterable[bytes] | None = None,
        upgrade: Upgrade | None = None,
    ) -> None:
        self.status = status if type(status) is int and 100 <= status <= 599 else checked_status(status)
        self.headers: Headers = encode_headers(headers) if headers else []
        self.value: Any = NOT_JSON  # the JSON value ``body`` encodes, when encoded here (spares parsing it back)
        kind = type(body)
        if kind is bytes:
            self.body = body
        elif kind is dict or kind is list:  # the common answer, ahead of the isinstance checks
            self.value, self.body = encode_json(body)
            self.default_type(_JSON)
        elif isinstance(body, str):
            self.body = body.encode()
            if body:  # Flask's ("", 204) has no content to type
                self.default_type(_TEXT)
        elif isinstance(body, bytearray | memoryview):
            self.body = bytes(body)
        elif body is None:
            self.body = b""
        else:
            self.value, self.body = encode_json(body)
            self.default_type(_JSON)
        self.stream = stream
        # Upgrade: the connection hands its socket to this coroutine instead of sending a response
        # (it sends its own, e.g. a WebSocket handshake's 101), and closes when it returns.
        self.upgrade = upgrade
        self.guardrails: dict[str, int] | None = None  # verdicts by action, once the guardrails checked it

    def default_type(self, content_type: tuple[bytes, bytes]) -> None:
        """Give the body ``content_type`` unless the author's headers already typed it."""
        if not self.headers or not any(name == b"content-type" for name, _ in self.headers):
            self.headers.append(content_type)

    @property
    def typed_by_default_as_json(self) -> bool:
        """Whether this response is JSON typed here (so an operation's own JSON media type may replace it)."""
        return self.value is not NOT_JSON and any(header is _JSON for header in self.headers)

    @classmethod
    def json(cls, value: Any, status: int = 200, headers: HeaderInput = ()) -> Response:
        """``value`` as JSON, a string included (``Response(text)`` sends text)."""
        response = cls(b"", status, headers)
        response.value, response.body = encode_json(value)
        response.default_type(_JSON)
        return response

    @classmethod
    def text(cls, value: str, status: int = 200, headers: HeaderInput = ()) -> Response:
        response = cls(value.encode(), status, headers)
        response.default_type(_TEXT)
        return response


def checked_status(status: object) -> int:
    """``status`` as an int (an ``HTTPStatus`` is one), or a TypeError saying what was wrong:
    ``Response(body, {"Location": ...})`` puts the headers where the status goes."""
    if type(status) is int and 100 <= status <= 599:
        return status
    if isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599:
        return int(status)
    raise TypeError(f"a response status is an int from 100 to 599, not {status!r}: Response(body, status, headers)")


def encode_json(value: Any) -> tuple[Any, bytes]:
    """``value`` as JSON: (the plain JSON value it stands for, its encoding). Plain dicts and lists
    take the C encoder alone; pydantic models, dataclasses, datetimes, UUIDs, sets and the like,
    anywhere inside, are first made plain by pydantic (what FastAPI users return)."""
    try:
        return value, _json(value).encode()
    except TypeError:
        pass
    try:
        plain = to_jsonable_python(value)
    except PydanticSerializationError as exc:
        raise TypeError(
            f"cannot send {type(value).__name__} as JSON ({exc}): return dicts, lists, str, numbers, pydantic"
            " models or dataclasses, or bytes in a Response with its Content-Type"
        ) from None
    return plain, _json(plain).encode()


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
