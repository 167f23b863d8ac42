"""What a handler's result becomes, and whether it matches the operation's declared responses.

A plain value is sent as JSON with the operation's single 2xx status; a ``Response`` is sent as
given. Either is then checked against the spec (status declared, media type declared, JSON body
valid, required headers present) according to the ``response_validation`` mode.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from ..http.response import Response, coerce_response
from .multipart import header_params
from .schemas import SchemaValidator, violations

NOT_JSON: Any = object()


@dataclass(frozen=True, slots=True)
class DeclaredResponse:
    status: str  # "200", "2XX", "default"
    media_types: dict[str, SchemaValidator | None]  # media type -> schema validator (None: no schema)
    required_headers: tuple[str, ...]  # lowercase


@dataclass(frozen=True, slots=True)
class ResponseChecker:
    by_status: dict[str, DeclaredResponse]
    success_status: int  # what a plain return value is sent with

    def declared_for(self, status: int) -> DeclaredResponse | None:
        code = str(status)
        return self.by_status.get(code) or self.by_status.get(f"{code[0]}XX") or self.by_status.get("default")

    def coerce(self, result: object) -> tuple[Response, Any]:
        """The response for a handler's result, and the value its JSON body encodes (NOT_JSON if
        none was encoded here), so validation need not parse back what was just serialised."""
        if isinstance(result, BaseModel):
            result = result.model_dump(mode="json")
        if isinstance(result, Response):
            return result, NOT_JSON
        if result is None and self.success_status != 204:
            return Response.json(None, status=self.success_status), None
        response = coerce_response(result)
        if response.status == 200 and self.success_status != 200:
            response.status = self.success_status
        return response, result if isinstance(result, dict | list) else NOT_JSON

    def violations(self, response: Response, value: Any = None) -> Iterator[str]:
        """Each way ``response`` breaks the spec, in words for the log; ``value``: what its JSON
        body encodes, if known (else NOT_JSON and the body is parsed)."""
        declared = self.declared_for(response.status)
        if declared is None:
            yield f"status {response.status} is not declared ({', '.join(self.by_status)} are)"
            return
        if declared.required_headers:
            present = {name for name, _ in response.headers}
            for header in declared.required_headers:
                if header.encode() not in present:
                    yield f"required header {header!r} is missing"
        if not declared.media_types:
            if response.body:
                yield f"status {response.status} declares no content, but a body was sent"
            return
        content_type = next((header for name, header in response.headers if name == b"content-type"), None)
        if content_type is None:
            if response.body or response.stream is not None:
                yield "the body has no Content-Type"
            return
        media_type = _media_type(content_type)
        validator, found = _match_media(declared.media_types, media_type)
        if not found:
            yield f"Content-Type {media_type!r} is not declared for {response.status}"
            return
        if validator is None or response.stream is not None or not _is_json(media_type):
            return
        if value is NOT_JSON:
            try:
                value = json.loads(response.body)
            except ValueError:
                yield "the body is not valid JSON"
                return
        for pointer, message in violations(validator, value):
            yield f"body{pointer or ' '}: {message}"


@functools.lru_cache(maxsize=256)
def _media_type(content_type: bytes) -> str:
    """``application/json; charset=utf-8`` -> ``application/json`` (apps send few distinct values)."""
    return header_params(content_type.decode("latin-1"))[0]


def _match_media(declared: dict[str, SchemaValidator | None], media_type: str) -> tuple[SchemaValidator | None, bool]:
    for candidate in (media_type, media_type.split("/")[0] + "/*", "*/*"):
        if candidate in declared:
            return declared[candidate], True
    return None, False


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")
