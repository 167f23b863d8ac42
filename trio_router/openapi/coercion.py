"""Turning the text of a parameter or form field into the type its schema declares.

Coercion never decides validity: text that is not a valid integer stays text, and the schema
validator then reports it in jsonschema's own words ("'abc' is not of type 'integer'"). The one
exception is a number too large to convert (``OutOfRange``), refused with the limit it broke.
"""

from __future__ import annotations

import math
import re
import sys
from typing import Any

_INTEGER = re.compile(r"-?(0|[1-9][0-9]*)")
_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_PRIMITIVES = ("integer", "number", "boolean", "null", "string")


class OutOfRange(ValueError):
    """A number the server will not convert: an integer longer than Python converts (4,300
    digits: ``int()`` would raise), or one beyond a double (``float()`` would give ``inf``,
    which no JSON answer can carry). The message completes "<name> ..."."""


def _integer(text: str) -> int:
    if len(text) - text.startswith("-") > sys.get_int_max_str_digits():
        raise OutOfRange(f"is an integer of more than {sys.get_int_max_str_digits()} digits (the server's limit)")
    return int(text)


def finite_float(text: str) -> float:
    """``float(text)``, refused where it would be ``inf`` (JSON's parser uses it too)."""
    value = float(text)
    if math.isinf(value):
        raise OutOfRange("is out of range (beyond a double's, about 1.8e308)")
    return value


def _number(text: str) -> int | float:
    return finite_float(text) if any(c in text for c in ".eE") else _integer(text)


def schema_types(schema: Any) -> tuple[str, ...]:
    """The types a (dereferenced, inlined) schema admits, most specific first; () if unknown."""
    if not isinstance(schema, dict):
        return ()
    declared = schema.get("type")
    if isinstance(declared, str):
        types: tuple[str, ...] = (declared,)
    elif isinstance(declared, list):
        types = tuple(kind for kind in (*_PRIMITIVES, "array", "object") if kind in declared)
    else:
        branches = schema.get("oneOf") or schema.get("anyOf") or schema.get("allOf") or []
        found: list[str] = []
        for branch in branches:
            found.extend(kind for kind in schema_types(branch) if kind not in found)
        types = tuple(found)
    if schema.get("nullable") is True and "null" not in types:  # OpenAPI 3.0
        types = (*types, "null")
    return types


def coerce_text(text: str, schema: Any) -> Any:
    """``text`` as the first primitive type of ``schema`` it parses as, else unchanged."""
    for kind in schema_types(schema):
        if kind == "integer" and _INTEGER.fullmatch(text):
            return _integer(text)
        if kind == "number" and _NUMBER.fullmatch(text):
            return _number(text)
        if kind == "boolean" and text in ("true", "false"):
            return text == "true"
        if kind == "null" and text in ("", "null"):
            return None
        if kind == "string":
            return text
    return text


def item_schema(schema: Any) -> Any:
    return schema.get("items", {}) if isinstance(schema, dict) else {}


def property_schema(schema: Any, name: str) -> Any:
    """The schema of property ``name``: declared directly, in a composed branch, or as additional."""
    if not isinstance(schema, dict):
        return {}
    found = schema.get("properties", {}).get(name)
    if found is not None:
        return found
    for keyword in ("allOf", "oneOf", "anyOf"):
        for branch in schema.get(keyword, ()):
            found = property_schema(branch, name)
            if found:
                return found
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, dict) else {}


_ANNOTATIONS = frozenset({"description", "title", "example", "examples", "deprecated"})
_PYTHON_TYPES: dict[str, type | tuple[type, ...]] = {"integer": int, "number": (int, float), "string": str}


def plain_type(schema: Any) -> type | tuple[type, ...] | None:
    """For a schema that says nothing but ``type: integer|number|string``, the Python type(s) a
    coerced value must have to be valid: a value of that type needs no validator run."""
    if not isinstance(schema, dict) or set(schema) - _ANNOTATIONS != {"type"}:
        return None
    kind = schema["type"]
    return _PYTHON_TYPES.get(kind) if isinstance(kind, str) else None
