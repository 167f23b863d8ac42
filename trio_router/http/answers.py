"""What a handler returns, made a Response: the one place where every answer convention is read.

People bring the conventions of the framework they come from, and each means one thing:

- a ``Response`` is sent as built;
- ``(body, status)``, ``(body, headers)`` and ``(body, status, headers)`` are Flask's and
  Connexion's tuples (so a tuple is never a JSON array: return a list for that);
- a dict, list, pydantic model (or a list of them), dataclass or number is JSON;
- a str is text, bytes are ``application/octet-stream``;
- ``None`` is 204 No Content, or JSON ``null`` where the operation's success answer has a body.

JSON is typed with the media type the operation declares for the status (``application/
vnd.api+json``, say), else ``application/json``. What cannot be read as any of these is a
TypeError naming the call that would have worked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .headers import encode_headers
from .response import BYTES, Response, checked_status

JsonType = Callable[[int], bytes | None]  # the JSON media type an operation declares for a status, if any

_TUPLE_HELP = (
    "a handler may return (body, status), (body, headers) or (body, status, headers), as in Flask;"
    " return a list for a JSON array"
)


def answer(result: object, success_status: int | None = None, json_type: JsonType | None = None) -> Response:
    """``result`` as the Response its author meant. ``success_status``: the status of a plain
    value, the operation's lowest 2xx (None: a route without a spec, where it is 200 and ``None``
    is 204); ``json_type``: the operation's own JSON media type for a status."""
    status: int | None = None
    headers: Any = None
    if type(result) is tuple:
        result, status, headers = _unpack(result)
    kind = type(result)
    if kind is dict or kind is list:  # the common answer first
        response = Response(result, status or success_status or 200, headers or ())
    elif isinstance(result, Response):
        response = result if status is None and headers is None else _amended(result, status, headers)
    elif result is None:
        if status is not None or success_status in (None, 204):
            response = Response(status=status or 204, headers=headers or ())
        else:
            response = Response.json(None, success_status, headers or ())
    elif isinstance(result, bytes | bytearray | memoryview):
        response = Response(bytes(result), status or success_status or 200, headers or ())
        response.default_type(BYTES)
    else:
        response = Response(result, status or success_status or 200, headers or ())
    if json_type is not None and response.typed_by_default_as_json:
        declared = json_type(response.status)
        if declared is not None and declared != b"application/json":
            response = _retyped(response, declared)
    return response


def _unpack(result: tuple[Any, ...]) -> tuple[Any, int | None, Any]:
    if len(result) == 3:
        body, status, headers = result
        return body, checked_status(status), headers
    if len(result) == 2:
        body, second = result
        if isinstance(second, Mapping | list):
            return body, None, second
        return body, checked_status(second), None
    raise TypeError(f"{_TUPLE_HELP}; this one has {len(result)} items")


def _amended(response: Response, status: int | None, headers: Any) -> Response:
    """A copy of ``response`` with the tuple's status and headers (an app may return one
    Response object for many requests, so it is not changed)."""
    copy = Response(response.body, status or response.status, stream=response.stream, upgrade=response.upgrade)
    copy.headers = [*encode_headers(headers or ()), *response.headers]
    copy.value = response.value
    return copy


def _retyped(response: Response, content_type: bytes) -> Response:
    copy = Response(response.body, response.status, stream=response.stream, upgrade=response.upgrade)
    copy.headers = [(name, content_type if name == b"content-type" else value) for name, value in response.headers]
    copy.value = response.value
    return copy
