"""What a handler's result becomes, and whether it matches the operation's declared responses.

What a handler returns is read by ``http.answers`` (a plain value is sent with the operation's
lowest 2xx status, JSON typed with the JSON media type declared for its status); the response
is then checked against the spec (status declared, media type declared, JSON body valid,
required headers present) according to the ``response_validation`` mode.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass

from ..http.answers import answer
from ..http.response import NOT_JSON, Response
from .multipart import header_params
from .schemas import SchemaValidator, violations


@dataclass(frozen=True, slots=True)
class DeclaredResponse:
    status: str  # "200", "2XX", "default"
    media_types: dict[str, SchemaValidator | None]  # media type -> schema validator (None: no schema)
    required_headers: tuple[str, ...]  # lowercase
    json_type: bytes | None  # the first JSON media type declared (what a JSON answer is typed as)


@dataclass(frozen=True, slots=True)
class ResponseChecker:
    by_status: dict[str, DeclaredResponse]
    success_status: int  # what a plain return value is sent with
    own_json_type: bool  # some status declares a JSON media type other than application/json

    def declared_for(self, status: int) -> DeclaredResponse | None:
        code = str(status)
        return self.by_status.get(code) or self.by_status.get(f"{code[0]}XX") or self.by_status.get("default")

    def answer(self, result: object) -> Response:
        """The response for a handler's result (see http/answers.py)."""
        return answer(result, self.success_status, self.json_type if self.own_json_type else None)

    def json_type(self, status: int) -> bytes | None:
        declared = self.declared_for(status)
        return declared.json_type if declared is not None else None

    def violations(self, response: Response) -> Iterator[str]:
        """Each way ``response`` breaks the spec, in words for the log (never a value: JSON
        Schema messages quote them, so only the pointer and the rule are logged)."""
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
        if validator is None or response.stream is not None or not is_json(media_type):
            return
        value = response.value
        if value is NOT_JSON:
            try:
                value = json.loads(response.body)
            except ValueError:
                yield "the body is not valid JSON"
                return
        for pointer, message in violations(validator, value, quote=False):
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


def is_json(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")
