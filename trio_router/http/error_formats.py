"""How error responses look: RFC 9457 problem+json by default, or OpenAI's error object for APIs
whose clients are OpenAI SDKs (they parse ``{"error": {"message", "type", "param", "code"}}``).

A spec chooses with ``x-error-format: problem | openai`` at its root (every error of the app,
including those raised before routing) or on an operation (that operation's errors).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .protocol import REASONS
from .response import Response, _json, problem

ErrorRenderer = Callable[..., Response]  # (status, detail, **extra) -> Response

_OPENAI_TYPES = {
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}
_JSON = (b"content-type", b"application/json")
_NOT_IN_OPENAI_ERRORS = frozenset({"errors", "param", "code", "request_id"})  # the id is in X-Request-ID


def openai_error(status: int, detail: str | None = None, **extra: Any) -> Response:
    """OpenAI's error shape. Validation errors name the first offending parameter in ``param``
    and list every violation in the message; ``code`` comes from the error's ``code`` extra."""
    message = detail or REASONS.get(status, b"Error").decode()
    errors = extra.get("errors") or []
    if errors:
        listed = "; ".join(
            f"{e.get('in')} {e.get('name') or e.get('pointer') or ''}: {e.get('detail')}" for e in errors
        )
        message = f"{message}: {listed}"
    kind = _OPENAI_TYPES.get(status) or ("invalid_request_error" if status < 500 else "api_error")
    param = extra.get("param") or (errors[0].get("name") or errors[0].get("pointer") if errors else None)
    error: dict[str, Any] = {"message": message, "type": kind, "param": param, "code": extra.get("code")}
    error.update((key, value) for key, value in extra.items() if key not in _NOT_IN_OPENAI_ERRORS)
    body = {"error": error}
    response = Response(_json(body).encode(), status)
    response.headers.append(_JSON)
    return response


ERROR_FORMATS: dict[str, ErrorRenderer] = {"problem": problem, "openai": openai_error}


def error_format(name: object) -> ErrorRenderer:
    """The renderer a spec's ``x-error-format`` names; ValueError for anything else."""
    if name is None:
        return problem
    if not isinstance(name, str) or name not in ERROR_FORMATS:
        raise ValueError(f"x-error-format must be one of {sorted(ERROR_FORMATS)}, not {name!r}")
    return ERROR_FORMATS[name]
