"""Decoding parameters (path, query, header, cookie) in every OpenAPI style, sans-IO.

Each declared parameter compiles at startup into a ``ParameterDecoder``: a function from the raw
text of its location to a typed value, plus the validator for its schema. Raw text stays
percent-encoded until after splitting on the style's delimiters, so an encoded ``%2C`` is a comma
inside a value, never a separator.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, unquote_plus

from . import strict_json
from .coercion import OutOfRange, coerce_text, item_schema, plain_type, property_schema, schema_types
from .schemas import SchemaValidator

Location = str  # "path", "query", "header", "cookie"
QueryPairs = list[tuple[str, str]]  # (decoded name, raw value)

_DEFAULT_STYLE = {"path": "simple", "query": "form", "header": "simple", "cookie": "form"}
_ALLOWED_STYLES = {
    "path": {"simple", "label", "matrix"},
    "query": {"form", "spaceDelimited", "pipeDelimited", "deepObject"},
    "header": {"simple"},
    "cookie": {"form"},
}
_SPACE = re.compile(r"%20|\+| ")
_PIPE = re.compile(r"\||%7[cC]")


class ParameterError(ValueError):
    """The raw text cannot be decoded in the parameter's style; the message says how it is wrong."""


def percent_decode(raw: str, plus_is_space: bool = False) -> str:
    """Percent-decode as UTF-8, refusing bytes that are not UTF-8 instead of inventing characters."""
    if "%" not in raw and not (plus_is_space and "+" in raw):
        return raw
    try:
        decode = unquote_plus if plus_is_space else unquote
        return decode(raw, errors="strict")
    except UnicodeDecodeError:
        raise ParameterError("is not valid percent-encoded UTF-8") from None


def parse_query(query_string: bytes) -> QueryPairs:
    """``a=1&b=x%2Cy`` -> [("a", "1"), ("b", "x%2Cy")]: names decoded, values left raw."""
    pairs: QueryPairs = []
    if not query_string:
        return pairs
    for field in query_string.decode("latin-1").split("&"):
        if not field:
            continue
        name, _, value = field.partition("=")
        pairs.append((percent_decode(name, True), value))
    return pairs


@dataclass(frozen=True, slots=True)
class ParameterDecoder:
    name: str
    location: Location
    required: bool
    decode: Callable[[Any], Any]  # raw source for its location -> value, or ABSENT
    validator: SchemaValidator | None
    plain: type | tuple[type, ...] | None
    python_name: str  # the keyword a handler may declare to receive it
    default: Any  # the schema's default, used when the parameter is absent (ABSENT: none)

    def __call__(self, source: Any) -> Any:
        return self.decode(source)


class _Absent:
    def __repr__(self) -> str:
        return "absent"


ABSENT: Any = _Absent()


def compile_parameter(spec: dict[str, Any], schema: Any, validator: SchemaValidator | None) -> ParameterDecoder:
    """The decoder for one (dereferenced) Parameter Object; ``schema`` is its inlined schema."""
    location, name = spec["in"], spec["name"]
    style = spec.get("style", _DEFAULT_STYLE[location])
    if style not in _ALLOWED_STYLES[location]:
        raise ValueError(f"style {style!r} is not allowed for {location} parameters")
    explode = bool(spec.get("explode", style == "form"))
    content = spec.get("content")
    if content:
        media_type = next(iter(content))
        if not media_type.split(";")[0].strip().endswith("json"):
            raise ValueError(f"content {media_type!r}: only JSON parameter content is decoded")
        shape = "json"
    else:
        types = schema_types(schema)
        shape = "array" if "array" in types else "object" if "object" in types else "primitive"
    convert = _CONVERTERS[shape]
    raw_getter = _raw_getter(location, name, style, explode, shape, schema)

    def decode(source: Any) -> Any:
        raw = raw_getter(source)
        if raw is ABSENT:
            return ABSENT
        try:
            return convert(raw, schema)
        except OutOfRange as exc:
            raise ParameterError(str(exc)) from None

    python_name = name.lower().replace("-", "_") if location == "header" else name
    default = schema.get("default", ABSENT) if isinstance(schema, dict) else ABSENT
    required = bool(spec.get("required", location == "path"))
    return ParameterDecoder(name, location, required, decode, validator, plain_type(schema), python_name, default)


# Converters: the style has produced text pieces (still percent-encoded) of the right shape.


def _primitive(raw: Any, schema: Any) -> Any:
    return coerce_text(raw, schema)


def _array(raw: Any, schema: Any) -> Any:
    items = item_schema(schema)
    return [coerce_text(piece, items) for piece in raw]


def _object(raw: Any, schema: Any) -> Any:
    return {key: coerce_text(value, property_schema(schema, key)) for key, value in raw.items()}


def _json(raw: Any, schema: Any) -> Any:
    try:
        strict_json.check_depth(raw.encode(), strict_json.DEFAULT_MAX_DEPTH)
        return strict_json.loads(raw)
    except ValueError as exc:
        raise ParameterError(f"is not valid JSON: {exc}") from None


_CONVERTERS: dict[str, Callable[[Any, Any], Any]] = {
    "primitive": _primitive,
    "array": _array,
    "object": _object,
    "json": _json,
}


def _pairs_to_object(pieces: list[str]) -> dict[str, str]:
    """``k,v,k2,v2`` (already split) -> {k: v, k2: v2}."""
    if len(pieces) % 2:
        raise ParameterError("needs key,value pairs")
    return dict(zip(pieces[::2], pieces[1::2], strict=True))


def _assignments_to_object(pieces: list[str], separator: str = "=") -> dict[str, str]:
    """[``k=v``, ``k2=v2``] -> {k: v, k2: v2}."""
    result: dict[str, str] = {}
    for piece in pieces:
        key, found, value = piece.partition(separator)
        if not found:
            raise ParameterError(f"needs key=value items, got {piece!r}")
        result[key] = value
    return result


def _split_decoded(raw: str, separator: str | re.Pattern[str], plus: bool = False) -> list[str]:
    parts = separator.split(raw) if isinstance(separator, re.Pattern) else raw.split(separator)
    return [percent_decode(part, plus) for part in parts]


def _shape_text(text: str, shape: str, explode: bool, item_separator: str, plus: bool = False) -> Any:
    """The simple/form serialisation of one value: ``a,b,c`` lists, ``k,v`` or ``k=v`` objects."""
    if shape == "primitive" or shape == "json":
        return percent_decode(text, plus)
    pieces = _split_decoded(text, item_separator, plus)
    if shape == "array":
        return pieces
    return _assignments_to_object(pieces) if explode else _pairs_to_object(pieces)


def _raw_getter(location: str, name: str, style: str, explode: bool, shape: str, schema: Any) -> Callable[[Any], Any]:
    if location == "path":
        return _path_getter(name, style, explode, shape)
    if location == "header":
        return lambda headers: _header(headers, name, shape, explode)
    if location == "cookie":
        return lambda cookies: _cookie(cookies, name, shape)
    return _query_getter(name, style, explode, shape, schema)


def _header(headers: Any, name: str, shape: str, explode: bool) -> Any:
    value = headers.get(name)
    if value is None:
        return ABSENT
    if shape in ("primitive", "json"):
        return value
    pieces = [piece.strip() for piece in value.split(",")]
    if shape == "array":
        return pieces
    return _assignments_to_object(pieces) if explode else _pairs_to_object(pieces)


def _cookie(cookies: dict[str, str], name: str, shape: str) -> Any:
    value = cookies.get(name)
    if value is None:
        return ABSENT
    return _shape_text(value, shape, False, ",")


def _path_getter(name: str, style: str, explode: bool, shape: str) -> Callable[[dict[str, str]], Any]:
    def simple(params: dict[str, str]) -> Any:
        return _shape_text(params[name], shape, explode, ",")

    def label(params: dict[str, str]) -> Any:
        raw = params[name]
        if not raw.startswith("."):
            raise ParameterError("must start with '.' (label style)")
        separator = "." if explode else ","
        if shape in ("primitive", "json"):
            return percent_decode(raw[1:])
        pieces = _split_decoded(raw[1:], separator)
        if shape == "array":
            return pieces
        return _assignments_to_object(pieces) if explode else _pairs_to_object(pieces)

    def matrix(params: dict[str, str]) -> Any:
        raw = params[name]
        if not raw.startswith(";"):
            raise ParameterError("must start with ';' (matrix style)")
        items = []
        for item in raw[1:].split(";"):
            key, found, value = item.partition("=")
            if not found and shape != "array":
                raise ParameterError(f"needs ;name=value items, got {item!r}")
            items.append((percent_decode(key), value))
        if shape == "object" and explode:
            return {key: percent_decode(value) for key, value in items}
        if any(key != name for key, _ in items):
            raise ParameterError(f"expected ;{name}=... items")
        if shape == "array" and explode:
            return [percent_decode(value) for _, value in items]
        if len(items) != 1:
            raise ParameterError(f"expected one ;{name}=... item")
        return _shape_text(items[0][1], shape, False, ",")

    if style == "label":
        return label
    if style == "matrix":
        return matrix
    return simple


def _query_getter(name: str, style: str, explode: bool, shape: str, schema: Any) -> Callable[[QueryPairs], Any]:
    if style == "deepObject":
        prefix = name + "["

        def deep_object(pairs: QueryPairs) -> Any:
            found: dict[str, str] = {}
            for key, value in pairs:
                if key.startswith(prefix) and key.endswith("]"):
                    prop = key[len(prefix) : -1]
                    if "[" in prop or "]" in prop:
                        raise ParameterError(f"{key!r}: deepObject nests one level only")
                    found[prop] = percent_decode(value, True)
            return found if found else ABSENT

        return deep_object

    if shape == "object" and explode:  # form, exploded: the object's properties are top-level names
        properties = set(schema.get("properties", {})) if isinstance(schema, dict) else set()

        def exploded_object(pairs: QueryPairs) -> Any:
            found = {key: percent_decode(value, True) for key, value in pairs if key in properties}
            return found if found else ABSENT

        return exploded_object

    def values_of(pairs: QueryPairs) -> list[str]:
        return [value for key, value in pairs if key == name]

    if shape == "array" and explode:

        def exploded_array(pairs: QueryPairs) -> Any:
            values = values_of(pairs)
            return [percent_decode(value, True) for value in values] if values else ABSENT

        return exploded_array

    if shape in ("array", "object"):
        separator: str | re.Pattern[str] = {"spaceDelimited": _SPACE, "pipeDelimited": _PIPE}.get(style, ",")

        def delimited(pairs: QueryPairs) -> Any:
            value = _single(values_of(pairs))
            if value is ABSENT:
                return ABSENT
            pieces = _split_decoded(value, separator, True) if value else []
            return pieces if shape == "array" else _pairs_to_object(pieces)

        return delimited

    def single(pairs: QueryPairs) -> Any:
        value = _single(values_of(pairs))
        if value is ABSENT:
            return ABSENT
        return _shape_text(value, shape, False, ",", True)

    return single


def _single(values: list[str]) -> Any:
    if not values:
        return ABSENT
    if len(values) > 1:
        raise ParameterError(f"is given {len(values)} times; it takes one value")
    return values[0]
