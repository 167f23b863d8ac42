"""``readOnly`` and ``writeOnly``: what a request may not send and a response may not include.

OpenAPI 3.0 makes them rules; in 3.1 JSON Schema calls them annotations, but the specification
still says a readOnly property SHOULD NOT be sent in a request and a writeOnly one SHOULD NOT be
sent in a response, and a user who marks ``password`` writeOnly means it never to leave the
server. Both versions get the same rules here:

- a request carrying a readOnly property is refused (or, with ``read_only="ignore"``, the
  property is removed before validation and before the handler sees the body);
- a response carrying a writeOnly property fails response validation;
- a readOnly property in ``required`` is required of responses only, a writeOnly one of
  requests only (OpenAPI 3.0's rule, which is what people who write ``required: [id]`` mean).

Messages give the place, never the value: the value of a writeOnly property is a secret.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from jsonschema.exceptions import ValidationError
from jsonschema.validators import extend

from .patterns import LITERAL_KEYWORDS

Direction = Literal["request", "response"]
ReadOnlyMode = Literal["refuse", "ignore"]

# The keyword a direction forbids, and what the message says about a property that has it.
FORBIDDEN = {"request": "readOnly", "response": "writeOnly"}
# Where an inlined schema remembers its discriminator's branches (an unknown keyword: ignored by
# validators); schemas.py writes it, stripping reads it.
BRANCHES = "x-trio-router-branches"

_REASONS = {
    "readOnly": "is read-only: a request may not send it",
    "writeOnly": "is write-only: a response may not include it",
}


def marked(schema: Any, keyword: str) -> bool:
    """Whether ``schema`` says ``keyword: true``, itself or in an ``allOf`` part (where a 3.1
    ``$ref`` with siblings puts them once inlined)."""
    if not isinstance(schema, dict):
        return False
    if schema.get(keyword) is True:
        return True
    parts = schema.get("allOf")
    return isinstance(parts, list) and any(marked(part, keyword) for part in parts)


def with_access_rules(validator_class: Any, direction: Direction, read_only: ReadOnlyMode = "refuse") -> Any:
    """``validator_class`` enforcing readOnly and writeOnly for messages going ``direction``."""
    forbidden = FORBIDDEN[direction]
    enforce = not (direction == "request" and read_only == "ignore")

    def refuse(validator: Any, value: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
        if value is True and enforce:
            yield ValidationError(_REASONS[forbidden])

    def required(validator: Any, names: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
        if not validator.is_type(instance, "object"):
            return
        properties = schema.get("properties") or {}
        for name in names:
            if name not in instance and not marked(properties.get(name), forbidden):  # required the other way
                yield ValidationError(f"{name!r} is a required property")

    def annotation(validator: Any, value: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
        return iter(())

    other = "writeOnly" if forbidden == "readOnly" else "readOnly"
    keywords = {forbidden: refuse, other: annotation, "required": required}
    extended = extend(validator_class, keywords)  # type: ignore[no-untyped-call]
    extended.check_schema = classmethod(validator_class.check_schema.__func__)
    return extended


def engine_access(schema: Any, direction: Direction, read_only: ReadOnlyMode = "refuse") -> Any:
    """``schema`` rewritten so that a validator knowing nothing of readOnly/writeOnly (jsonschema-rs)
    decides as ``with_access_rules`` does: a forbidden subschema becomes ``false``, and a property
    exempt in this direction leaves ``required``."""
    forbidden = FORBIDDEN[direction]
    enforce = not (direction == "request" and read_only == "ignore")
    return _rewrite(schema, forbidden, enforce)


def _rewrite(schema: Any, keyword: str, enforce: bool) -> Any:
    if isinstance(schema, list):
        return [_rewrite(item, keyword, enforce) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if enforce and schema.get(keyword) is True:
        return False
    rewritten: dict[str, Any] = {}
    found = schema.get("properties")
    properties: dict[str, Any] = found if isinstance(found, dict) else {}
    for key, value in schema.items():
        if key == "required" and isinstance(value, list):
            rewritten[key] = [name for name in value if not marked(properties.get(name), keyword)]
        elif key in ("properties", "patternProperties", "$defs", "dependentSchemas") and isinstance(value, dict):
            rewritten[key] = {name: _rewrite(sub, keyword, enforce) for name, sub in value.items()}
        elif key in LITERAL_KEYWORDS:
            rewritten[key] = value
        else:
            rewritten[key] = _rewrite(value, keyword, enforce)
    return rewritten


def uses_access(schema: Any) -> bool:
    """Whether ``schema`` marks anything readOnly or writeOnly (most schemas do not, and keep
    their fast path untouched)."""
    if isinstance(schema, list):
        return any(uses_access(item) for item in schema)
    if not isinstance(schema, dict):
        return False
    if schema.get("readOnly") is True or schema.get("writeOnly") is True:
        return True
    return any(key not in LITERAL_KEYWORDS and uses_access(value) for key, value in schema.items())


def strip_read_only(value: Any, schema: Any) -> bool:
    """Remove from ``value`` (a request body, in place) every property its schema marks readOnly,
    following ``properties``, ``items``, ``prefixItems``, ``allOf`` and the branch a discriminator
    selects; whether anything was removed. Branches of a oneOf/anyOf without a discriminator are
    not followed: which one applies is not known before validation."""
    if not isinstance(schema, dict):
        return False
    removed = False
    if isinstance(value, dict):
        properties = schema.get("properties")
        if isinstance(properties, dict):
            for name, sub in properties.items():
                if name not in value:
                    continue
                if marked(sub, "readOnly"):
                    del value[name]
                    removed = True
                else:
                    removed |= strip_read_only(value[name], sub)
        branch = _discriminated_branch(value, schema)
        if branch is not None:
            removed |= strip_read_only(value, branch)
    elif isinstance(value, list):
        items = schema.get("items")
        found = schema.get("prefixItems")
        prefix: list[Any] = found if isinstance(found, list) else []
        for index, item in enumerate(value):
            sub = prefix[index] if index < len(prefix) else items
            removed |= strip_read_only(item, sub)
    for part in schema.get("allOf") or ():
        removed |= strip_read_only(value, part)
    return removed


def _discriminated_branch(value: dict[str, Any], schema: dict[str, Any]) -> Any:
    discriminator = schema.get("discriminator")
    branches = schema.get("oneOf") or schema.get("anyOf")
    if not isinstance(discriminator, dict) or not isinstance(branches, list):
        return None
    index = schema.get(BRANCHES, {}).get(str(value.get(discriminator.get("propertyName", ""))))
    return branches[index] if index is not None else None
