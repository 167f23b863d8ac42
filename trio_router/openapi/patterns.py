"""The spec's regular expressions (``pattern``, ``patternProperties``) on a linear-time engine.

Python's ``re`` backtracks: ``^(a+)+$`` against 26 characters held the event loop for 2.2 s. It
is not even the right dialect: JSON Schema's patterns are ECMA-262, where ``$`` matches only at
the end of the input and ``\\d`` only ASCII digits; in ``re``, ``$`` also matches before a final
newline and ``\\d`` any Unicode digit. jsonschema-rs's standard engine (Rust's ``regex`` crate
with its ECMA-262 translation) matches in time linear in the input and follows ECMA-262 on those
points; tests/test_patterns.py checks it against node's own RegExp. What it cannot run
(backreferences, lookaround) is refused at startup with the pattern's place in the spec.

Both validators use it: jsonschema-rs on the hot path, built with ``LINEAR``, and jsonschema,
whose error messages we show, through ``with_linear_patterns``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any

import jsonschema_rs
from jsonschema import FormatChecker
from jsonschema.exceptions import ValidationError
from jsonschema.validators import extend

LINEAR = jsonschema_rs.RegexOptions()
# Keywords whose values are data, not subschemas: a "$ref" or "pattern" key inside them is data.
LITERAL_KEYWORDS = frozenset({"enum", "const", "example", "examples", "default", "discriminator", "xml", "required"})

Search = Callable[[str], bool]


class UnsupportedPattern(ValueError):
    pass


def _compiled(pattern: str) -> Search:
    """The engine's search for ``pattern`` as given (jsonschema_rs.ValidationError if it cannot)."""
    return jsonschema_rs.validator_for({"pattern": pattern}, pattern_options=LINEAR).is_valid


@lru_cache(maxsize=4096)
def search(pattern: str) -> Search:
    """Whether a text contains a match of ``pattern`` (unanchored, as JSON Schema's ``pattern``)."""
    try:
        return _compiled(engine_pattern(pattern))
    except jsonschema_rs.ValidationError:
        raise UnsupportedPattern(
            f"the pattern {pattern!r} cannot run on the linear-time regular expression engine"
            " (backreferences, lookaround, \\0 and [\\b] are not supported)"
        ) from None


_ECMA_DOT = "[^\\n\\r\\u2028\\u2029]"  # ECMA-262's "." stops at every line terminator
_ECMA_BOUNDARIES = {"b": "(?-u:\\b)", "B": "(?-u:\\B)"}  # between ASCII word characters, as ECMA's \w


def engine_pattern(pattern: str) -> str:
    """``pattern`` with the two constructs jsonschema-rs would read otherwise than ECMA-262 does
    (found by the differential test): ``.`` (it would match ``\\r`` and U+2028) and ``\\b``/``\\B``
    (Unicode word boundaries, where ECMA's are ASCII), rewritten outside character classes."""
    out: list[str] = []
    in_class = False
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            escaped = pattern[index + 1]
            out.append(_ECMA_BOUNDARIES.get(escaped, "\\" + escaped) if not in_class else "\\" + escaped)
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == ".":
            char = _ECMA_DOT
        out.append(char)
        index += 1
    return "".join(out)


def engine_schema(schema: Any) -> Any:
    """``schema`` with its patterns as ``engine_pattern`` makes them, for jsonschema-rs itself."""
    if isinstance(schema, list):
        return [engine_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    rewritten: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "pattern" and isinstance(value, str):
            rewritten[key] = engine_pattern(value)
        elif key == "patternProperties" and isinstance(value, dict):
            rewritten[key] = {engine_pattern(name): engine_schema(sub) for name, sub in value.items()}
        elif key in ("properties", "$defs", "dependentSchemas") and isinstance(value, dict):
            rewritten[key] = {name: engine_schema(sub) for name, sub in value.items()}
        elif key in LITERAL_KEYWORDS:
            rewritten[key] = value
        else:
            rewritten[key] = engine_schema(value)
    return rewritten


def pattern_problems(schema: dict[str, Any], pointer: str) -> Iterator[tuple[str, str]]:
    """(JSON pointer, reason) for each regular expression of one schema object (at ``pointer``;
    not its subschemas) that the engine cannot run."""
    candidates: list[tuple[str, str]] = []
    if isinstance(schema.get("pattern"), str):
        candidates.append((schema["pattern"], f"{pointer}/pattern"))
    if isinstance(schema.get("patternProperties"), dict):
        names = schema["patternProperties"]
        candidates += [(name, f"{pointer}/patternProperties/{_escape(name)}") for name in names]
    for pattern, where in candidates:
        try:
            search(pattern)
        except UnsupportedPattern as exc:
            yield where, str(exc)


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def with_linear_patterns(validator_class: Any) -> Any:
    """``validator_class`` with every keyword that runs a pattern on the linear engine."""
    original_additional = validator_class.VALIDATORS["additionalProperties"]

    def pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
        if validator.is_type(instance, "string") and not search(pattern)(instance):
            yield ValidationError(f"{instance!r} does not match {pattern!r}")

    def pattern_properties(validator: Any, patterns: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
        if not validator.is_type(instance, "object"):
            return
        for pattern, subschema in patterns.items():
            matches = search(pattern)
            for name, value in instance.items():
                if matches(name):
                    yield from validator.descend(value, subschema, path=name, schema_path=pattern)

    def additional_properties(validator: Any, allowed: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
        patterns = schema.get("patternProperties")
        if not patterns or not validator.is_type(instance, "object"):
            yield from original_additional(validator, allowed, instance, schema)
            return
        declared = schema.get("properties", {})
        searches = [search(pattern) for pattern in patterns]
        extras = sorted(
            name for name in instance if name not in declared and not any(matches(name) for matches in searches)
        )
        if validator.is_type(allowed, "object"):
            for extra in extras:
                yield from validator.descend(instance[extra], allowed, path=extra)
        elif allowed is False and extras:
            names = ", ".join(repr(extra) for extra in extras)
            verb = "does" if len(extras) == 1 else "do"
            regexes = ", ".join(repr(pattern) for pattern in sorted(patterns))
            yield ValidationError(f"{names} {verb} not match any of the regexes: {regexes}")

    keywords = {"pattern": pattern, "patternProperties": pattern_properties}
    keywords["additionalProperties"] = additional_properties
    extended = extend(validator_class, keywords)  # type: ignore[no-untyped-call]
    # openapi-schema-validator's classes check schemas against the OpenAPI meta-schemas with a
    # check_schema of their own, which extend() does not carry over.
    extended.check_schema = classmethod(validator_class.check_schema.__func__)
    return extended


def with_linear_regex_format(checker: FormatChecker) -> FormatChecker:
    """``checker`` with ``format: regex`` decided by the linear engine: jsonschema compiles the
    client's text with Python's ``re``, whose parser recurses (1,000 nested parentheses raise
    RecursionError) and whose dialect is not ECMA-262."""
    linear = FormatChecker(())
    linear.checkers = dict(checker.checkers)

    @linear.checks("regex")
    def is_regex(instance: object) -> bool:
        if not isinstance(instance, str):
            return True
        try:
            _compiled(instance)  # not cached: the text is the client's
        except jsonschema_rs.ValidationError:
            return False
        return True

    return linear
