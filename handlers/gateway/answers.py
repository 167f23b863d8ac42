"""What a backend's plain (non-streamed) answer must be before the gateway passes it on.

A 200 is a success only if it is the answer that was asked for: JSON (so not an HTML error page
from a proxy in front of the backend), no deeper than a sane bound, an object with the list
the endpoint defines (``choices``, ``data``). Anything else is a failed attempt, so the next
candidate is tried and the client never sees the backend's garbage as the gateway's own 500.
A 4xx is the client's business and is passed on, but in OpenAI's error shape: a backend's
``{"detail": ...}`` or HTML page is wrapped, quoted and bounded, never relayed raw.
"""

from __future__ import annotations

import json
from typing import Any

from trio_router import Response

_LISTS = {"/v1/chat/completions": "choices", "/v1/completions": "choices", "/v1/embeddings": "data"}
_QUOTED = 200  # characters of a backend's words quoted in an error message


class JSONAnswer(Response):
    """A backend's checked JSON answer, with the parsed ``payload`` kept so later steps (the
    usage meter) do not parse the body again."""

    __slots__ = ("payload",)

    def __init__(self, body: bytes, payload: dict[str, Any], headers: list[tuple[str, str]]) -> None:
        super().__init__(body, 200, headers)
        self.payload = payload


def media_type(content_type: str) -> str:
    return content_type.partition(";")[0].strip().lower()


def is_json(content_type: str) -> bool:
    media = media_type(content_type)
    return media == "application/json" or media.endswith("+json")


def parse_answer(path: str, content_type: str, body: bytes) -> dict[str, Any] | str:
    """The payload of a 200 answer to ``path``, or why it is not one (a sentence)."""
    if not is_json(content_type):
        return f"answered HTTP 200 with {media_type(content_type) or 'no content type'}, not JSON"
    payload = _loads(body)
    if payload is None:
        return "answered HTTP 200 with a body that is not JSON"
    wanted = _LISTS.get(path)
    if not isinstance(payload, dict) or (wanted is not None and not isinstance(payload.get(wanted), list)):
        return f"answered HTTP 200 with JSON that is not an answer to {path} (no {wanted!r} list)"
    return payload


def client_error_body(status: int, content_type: str, body: bytes) -> bytes:
    """A backend's 4xx body as OpenAI's error object: as it came if it is one, else wrapped."""
    payload = _loads(body) if is_json(content_type) else None
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str) and isinstance(error.get("type"), str):
        return body
    words = body[: _QUOTED * 4].decode("utf-8", "replace").strip()
    if isinstance(payload, dict) and isinstance(payload.get("detail"), str):
        words = payload["detail"]
    message = f"the backend answered HTTP {status}" + (f": {quote(words)}" if words else "")
    wrapped = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": "upstream_error"}}
    return json.dumps(wrapped).encode()


def quote(words: str) -> str:
    """At most ``_QUOTED`` characters of a backend's words, on one line."""
    flat = " ".join(words.split())
    return flat if len(flat) <= _QUOTED else flat[:_QUOTED] + "..."


def _loads(body: bytes) -> Any:
    """``json.loads``, or None for what is not JSON (nesting deep enough to exhaust the parser's
    recursion limit included: CPython's scanner raises RecursionError, it does not crash)."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None
