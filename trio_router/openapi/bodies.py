"""Request bodies: choosing the declared media type, decoding it, and what the validator sees.

JSON bodies are validated as parsed. Form and multipart fields arrive as text and are coerced
to the property types first, as parameters are. File parts reach the handler as
``UploadedFile``; the validator sees their bytes as latin-1 text so ``maxLength`` counts bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import strict_json
from .coercion import OutOfRange, coerce_text, item_schema, property_schema, schema_types
from .multipart import MultipartError, UploadedFile, header_params, parse_multipart
from .parameters import ParameterError, parse_query, percent_decode
from .schemas import SchemaValidator


class BodyError(ValueError):
    """A body that cannot be decoded; ``status`` is 400 (malformed) or 415 (unsupported type)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class MediaType:
    name: str  # "application/json", "multipart/*", ...
    decode: Callable[[bytes, dict[str, str]], tuple[Any, Any]]  # -> (handler value, validator value)
    validator: SchemaValidator | None


@dataclass(frozen=True, slots=True)
class BodyDecoder:
    required: bool
    media_types: tuple[MediaType, ...]

    @property
    def accepted(self) -> str:
        return ", ".join(media.name for media in self.media_types)

    def choose(self, content_type: str | None) -> tuple[MediaType, dict[str, str]]:
        """The declared media type the request's Content-Type selects (exact, then type/*, then */*)."""
        if content_type is None:
            raise BodyError(415, f"a body needs a Content-Type; this operation accepts {self.accepted}")
        name, params = header_params(content_type)
        major = name.split("/")[0]
        for candidate in (name, f"{major}/*", "*/*"):
            for media in self.media_types:
                if media.name == candidate:
                    return media, params
        raise BodyError(415, f"Content-Type {name!r} is not accepted here; use {self.accepted}")


def check_json_depth(body: bytes, max_depth: int) -> None:
    """The server's ``max_json_depth``, before ``decode_json`` parses (and recurses)."""
    try:
        strict_json.check_depth(body, max_depth)
    except strict_json.JSONRefused as exc:
        raise BodyError(400, f"the body is not valid JSON: {exc}") from None


def decode_json(body: bytes, params: dict[str, str]) -> tuple[Any, Any]:
    """A JSON body (its depth checked already by ``check_json_depth``)."""
    try:
        value = strict_json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise BodyError(400, "the body is not UTF-8") from None
    except ValueError as exc:
        raise BodyError(400, f"the body is not valid JSON: {exc}") from None
    return value, value


def decode_text(body: bytes, params: dict[str, str]) -> tuple[Any, Any]:
    try:
        text = body.decode(params.get("charset", "utf-8"))
    except (UnicodeDecodeError, LookupError):
        raise BodyError(400, f"the body is not {params.get('charset', 'utf-8')} text") from None
    return text, text


def decode_bytes(body: bytes, params: dict[str, str]) -> tuple[Any, Any]:
    return body, None


def form_decoder(schema: Any) -> Callable[[bytes, dict[str, str]], tuple[Any, Any]]:
    def decode(body: bytes, params: dict[str, str]) -> tuple[Any, Any]:
        try:
            pairs = [(name, percent_decode(value, True)) for name, value in parse_query(body)]
        except ParameterError as exc:
            raise BodyError(400, f"a form field {exc}") from None
        value = _fields(pairs, schema)
        return value, value

    return decode


def multipart_decoder(
    schema: Any, part_types: dict[str, list[str]]
) -> Callable[[bytes, dict[str, str]], tuple[Any, Any]]:
    """``part_types``: the Encoding Object's ``contentType`` per field (``image/png, image/*``)."""

    def decode(body: bytes, params: dict[str, str]) -> tuple[Any, Any]:
        try:
            parts = parse_multipart(body, params.get("boundary", ""))
        except MultipartError as exc:
            raise BodyError(400, f"malformed multipart body: {exc}") from None
        texts: list[tuple[str, str]] = []
        files: dict[str, list[UploadedFile]] = {}
        for part in parts:
            allowed = part_types.get(part.name)
            if allowed is not None and not _media_type_allowed(header_params(part.content_type)[0], allowed):
                raise BodyError(400, f"part {part.name!r} is {part.content_type}; it must be {', '.join(allowed)}")
            if part.filename is not None or _is_binary(property_schema(schema, part.name)):
                upload = UploadedFile(part.filename or "", part.content_type, part.data)
                files.setdefault(part.name, []).append(upload)
                texts.append((part.name, part.data.decode("latin-1")))
            else:
                try:
                    texts.append((part.name, part.data.decode("utf-8")))
                except UnicodeDecodeError:
                    raise BodyError(400, f"form field {part.name!r} is not UTF-8") from None
        shadow = _fields(texts, schema)
        value = dict(shadow)
        for name, uploads in files.items():
            value[name] = uploads if isinstance(shadow.get(name), list) else uploads[-1]
        return value, shadow

    return decode


def _media_type_allowed(media_type: str, allowed: list[str]) -> bool:
    return any(
        pattern in ("*/*", media_type) or (pattern.endswith("/*") and media_type.startswith(pattern[:-1]))
        for pattern in allowed
    )


def _is_binary(schema: Any) -> bool:
    """A field declared as file content (3.0 ``format: binary``, 3.1 ``contentMediaType``, or an
    array of such): its parts reach the handler as UploadedFile even when sent without a filename."""
    if not isinstance(schema, dict):
        return False
    if "array" in schema_types(schema):
        return _is_binary(item_schema(schema))
    return schema.get("format") == "binary" or "contentMediaType" in schema


def _fields(pairs: list[tuple[str, str]], schema: Any) -> dict[str, Any]:
    """Form fields as an object: repeated names become lists where the schema wants an array (or
    says nothing of the field); a field declared otherwise and given twice is a 400, as a query
    parameter is, rather than one of its values silently winning."""
    fields: dict[str, Any] = {}
    for name, text in pairs:
        field_schema = property_schema(schema, name)
        try:
            if "array" in schema_types(field_schema):
                fields.setdefault(name, []).append(coerce_text(text, item_schema(field_schema)))
            elif name not in fields:
                fields[name] = coerce_text(text, field_schema)
            elif field_schema:
                raise BodyError(400, f"the form field {name!r} is given more than once, and it is not an array")
            else:
                held = fields[name]
                fields[name] = [*(held if isinstance(held, list) else [held]), coerce_text(text, field_schema)]
        except OutOfRange as exc:
            raise BodyError(400, f"the form field {name!r} {exc}") from None
    return fields


_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/")


def form_fields(content_type: str | None, body: bytes) -> int:
    """How many fields a form body holds, counted before it is parsed (0 for other media types):
    parsing 260,000 fields of a 1 MB form cost the event loop half a second."""
    if content_type is None or not content_type[:33].lower().startswith(_FORM_TYPES):
        return 0  # a JSON body, most of them: no second parse of its Content-Type
    name, params = header_params(content_type)
    if name == "application/x-www-form-urlencoded":
        return body.count(b"&") + 1
    boundary = params.get("boundary")
    if name.startswith("multipart/") and boundary:  # delimiters begin a line; the last one closes
        delimiter = b"--" + boundary.encode("latin-1")
        return max(0, body.count(b"\n" + delimiter) + body.startswith(delimiter) - 1)
    return 0


def decoder_for(
    media_type: str, schema: Any, encoding: dict[str, Any] | None = None
) -> Callable[[bytes, dict[str, str]], tuple[Any, Any]]:
    """The decoder for one declared media type; ``encoding`` is its Encoding Object map."""
    base = media_type.split(";")[0].strip().lower()
    if base == "application/json" or base.endswith("+json"):
        return decode_json
    if base == "application/x-www-form-urlencoded":
        return form_decoder(schema)
    if base.startswith("multipart/"):
        part_types = {
            name: [item.strip().lower() for item in str(spec["contentType"]).split(",")]
            for name, spec in (encoding or {}).items()
            if isinstance(spec, dict) and "contentType" in spec
        }
        return multipart_decoder(schema, part_types)
    if base.startswith("text/"):
        return decode_text
    return decode_bytes
