"""A multipart/form-data (RFC 7578) parser for a complete body, sans-IO.

Bodies are already bounded by ``max_body_bytes`` and read whole before validation, so a parser
over bytes in memory is enough; it refuses anything malformed with a reason rather than guessing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PARAM = re.compile(r';\s*([A-Za-z0-9_\-*]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]*))')
MAX_PARTS = 1000


class MultipartError(ValueError):
    """The body is not well-formed multipart/form-data."""


@dataclass(frozen=True, slots=True)
class UploadedFile:
    """A file part: its name as the client gave it, its media type and its bytes."""

    filename: str
    content_type: str
    data: bytes

    def __len__(self) -> int:
        return len(self.data)


@dataclass(frozen=True, slots=True)
class Part:
    name: str
    filename: str | None
    content_type: str
    data: bytes


def header_params(value: str) -> tuple[str, dict[str, str]]:
    """``form-data; name="a"; filename="b.txt"`` -> ("form-data", {"name": "a", "filename": "b.txt"})."""
    main, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for found in _PARAM.finditer(";" + rest):
        quoted, bare = found.group(2), found.group(3)
        params[found.group(1).lower()] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
    return main.strip().lower(), params


def parse_multipart(body: bytes, boundary: str) -> list[Part]:
    if not boundary or len(boundary) > 70:
        raise MultipartError("the Content-Type needs a boundary of 1 to 70 characters")
    delimiter = b"--" + boundary.encode("latin-1")
    start = body.find(delimiter)
    if start < 0 or (start > 0 and body[start - 2 : start] != b"\r\n"):
        raise MultipartError("the body does not start with the boundary")
    segments = body[start + len(delimiter) :].split(b"\r\n" + delimiter)
    if not segments[-1].startswith(b"--"):
        raise MultipartError("the body does not end with the closing boundary")
    if len(segments) - 1 > MAX_PARTS:
        raise MultipartError(f"more than {MAX_PARTS} parts")
    return [_part(segment) for segment in segments[:-1]]


def _part(segment: bytes) -> Part:
    segment = segment.lstrip(b" \t")
    if not segment.startswith(b"\r\n"):
        raise MultipartError("a boundary must be followed by a line break")
    head, found, data = segment[2:].partition(b"\r\n\r\n")
    if not found:
        if head.endswith(b"\r\n") or not head:  # a part with no headers at all
            raise MultipartError("each part needs a Content-Disposition header")
        raise MultipartError("a part's headers do not end with an empty line")
    headers: dict[str, str] = {}
    for line in head.decode("latin-1").split("\r\n"):
        name, colon, value = line.partition(":")
        if not colon:
            raise MultipartError(f"malformed part header {line[:40]!r}")
        headers[name.strip().lower()] = value.strip()
    disposition, params = header_params(headers.get("content-disposition", ""))
    if disposition != "form-data" or "name" not in params:
        raise MultipartError("each part needs 'Content-Disposition: form-data; name=...'")
    content_type = headers.get("content-type", "text/plain" if "filename" not in params else "application/octet-stream")
    return Part(params["name"], params.get("filename"), content_type, data)
