"""The document served at /openapi.json: the user's spec, plus the error answers the server gives.

The server answers every operation with errors of its own (400 for a request that does not
match, 401/403 where security applies, 413/415 where a body is read, 500/503/504 anywhere), in
problem+json or the spec's ``x-error-format``. A spec that does not declare them misleads its
clients and every tool that checks responses against it (schemathesis flags each one), so the
served copy declares them, as shared ``components/responses`` entries referenced from each
operation. A status, or its range (``4XX``), or ``default`` that the user declared is left as
written. The file on disk is never changed (``openapi_error_responses = false`` serves it as is).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from ..http.error_formats import openai_error
from .operations import Operation

PREFIX = "trio-router"  # component names the server adds ("trio-router.400"), apart from the user's

_DESCRIPTIONS = {
    400: "The request does not match the API (each problem listed with where it is), or is malformed.",
    401: "Credentials are missing or invalid (WWW-Authenticate says which scheme).",
    403: "The credentials are valid but lack a scope this operation needs.",
    408: "The request body did not arrive in time.",
    413: "The request body (or form) is larger than the server accepts.",
    415: "The body's Content-Type is not one this operation accepts (Accept lists them).",
    426: "This operation is a WebSocket: upgrade with a GET.",
    500: "The handler failed, or its answer does not match the API (details in the server log).",
    503: "The server is shedding load or shutting down (Retry-After says when to try again).",
    504: "The request's deadline passed before its answer was ready.",
}


def statuses_of(operation: Operation) -> list[int]:
    """The error statuses the server itself may answer ``operation`` with."""
    found = [400]
    if operation.security:
        found += [401, 403]
    if operation.body is not None:
        found += [408, 413, 415]
    if operation.websocket:
        found.append(426)
    return [*found, 500, 503, 504]


def with_error_responses(root: dict[str, Any], operations: Iterable[Operation]) -> dict[str, Any]:
    """A copy of the spec ``root`` declaring, on each of ``operations``, the errors the server
    gives it (the user's own declarations win)."""
    served = copy.deepcopy(root)
    paths = served.get("paths")
    if not isinstance(paths, dict):
        return served
    used: set[tuple[str, int]] = set()
    for operation in operations:
        item = paths.get(operation.path)
        spec = item.get(operation.method.lower()) if isinstance(item, dict) else None
        if not isinstance(spec, dict) or not isinstance(spec.get("responses"), dict):
            continue  # a path item behind a $ref to another file: served as written
        declared = {str(status).upper() for status in spec["responses"]}
        if "DEFAULT" in declared:
            continue
        style = "openai" if operation.render_error is openai_error else "problem"
        for status in statuses_of(operation):
            if str(status) in declared or f"{str(status)[0]}XX" in declared:
                continue
            spec["responses"][str(status)] = {"$ref": f"#/components/responses/{_name(style, status)}"}
            used.add((style, status))
    if used:
        components = served.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        responses = components.setdefault("responses", {})
        nullable = _nullable(str(served.get("openapi", "3.1")))
        for style, status in sorted(used):
            schema_name = f"{PREFIX}.{style}"
            schemas.setdefault(schema_name, _PROBLEM if style == "problem" else _openai_schema(nullable))
            responses[_name(style, status)] = {
                "description": _DESCRIPTIONS[status],
                "content": {_MEDIA[style]: {"schema": {"$ref": f"#/components/schemas/{schema_name}"}}},
            }
    return served


def _name(style: str, status: int) -> str:
    return f"{PREFIX}.{status}" if style == "problem" else f"{PREFIX}.{style}.{status}"


def _nullable(version: str) -> dict[str, Any]:
    return {"type": "string", "nullable": True} if version.startswith("3.0") else {"type": ["string", "null"]}


_MEDIA = {"problem": "application/problem+json", "openai": "application/json"}

_PROBLEM: dict[str, Any] = {
    "type": "object",
    "description": "An RFC 9457 problem: the server's own error answers.",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "request_id": {"type": "string"},
        "errors": {
            "type": "array",
            "description": "Each way the request does not match the API, and where.",
            "items": {
                "type": "object",
                "properties": {
                    "in": {"type": "string"},
                    "name": {"type": "string"},
                    "pointer": {"type": "string"},
                    "detail": {"type": "string"},
                },
            },
        },
    },
}


def _openai_schema(nullable: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "description": "OpenAI's error object (x-error-format: openai).",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "param": nullable,
                    "code": nullable,
                },
            }
        },
    }
