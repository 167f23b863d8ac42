"""Errors every layer may raise; the HTTP layer turns them into problem+json responses."""

from __future__ import annotations

from typing import Any

from .http.headers import HeaderInput, encode_headers


class DropConnection(Exception):
    """Raise it (from a handler or a stream's generator) to cut the connection at once, without
    finishing the response: what a crashing upstream looks like, for testing the clients of
    one (the mock model backend's ``drop`` fault)."""


class HTTPError(Exception):
    """A request answered with an error status (a precise 4xx, or 503 when shedding load).

    Raised by the HTTP layer (limits, framing) and by apps; the connection turns it into
    a problem+json response. The connection stays open for the next request unless ``close``
    says it must end: the HTTP layer sets it where the input can no longer be trusted (broken
    framing, a body too large to read past). ``headers``: a dict or (name, value) pairs.
    """

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        close: bool = False,
        headers: HeaderInput | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.close = close
        self.headers = encode_headers(headers) if headers else []
        self.extra = extra  # further problem+json members (RFC 9457 extensions), e.g. ``errors``
