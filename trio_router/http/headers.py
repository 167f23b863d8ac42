"""Header lists as the connection sends them: lowercase names, both halves bytes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

Headers = list[tuple[bytes, bytes]]
HeaderInput = Mapping[str, str] | Mapping[bytes, bytes] | Iterable[tuple[str | bytes, str | bytes]]


def encode_headers(headers: HeaderInput) -> Headers:
    """``headers`` as a dict (``{"Location": "/pets/1"}``) or pairs of str or bytes, as the
    connection sends them. Anything else is a TypeError at once, where the author made it,
    rather than a dropped connection when the response goes out."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    try:
        return [(_encode(name).lower(), _encode(value)) for name, value in pairs]
    except (TypeError, ValueError):
        raise TypeError(
            "headers must be a dict or (name, value) pairs of str or bytes (latin-1), for example"
            ' {"Location": "/pets/1"} or [("Retry-After", "5")]'
        ) from None


def _encode(text: str | bytes) -> bytes:
    if isinstance(text, bytes):
        return text
    if isinstance(text, str):
        return text.encode("latin-1")
    raise TypeError(text)
