"""What a schema violation is called, the same way wherever it shows.

jsonschema's own messages speak Python (``is not one of ['a', 'b']``, a pattern's repr with
doubled backslashes, ``is not a 'email'``); these say it in the spec's terms: ``is not one of:
a, b``, the pattern as written, ``is not a valid email``. A request's answer quotes the value
the client sent (briefly: a long one is cut); a log line never quotes one (``quote=False``),
because what a handler put in a response may be a secret.
"""

from __future__ import annotations

import json
from typing import Any

from jsonschema.exceptions import ValidationError

QUOTE_LIMIT = 64  # characters of an offending value a message quotes

# Keywords whose messages name only what the schema or the keys say, never a value.
_VALUE_FREE = frozenset(
    {"required", "additionalProperties", "unevaluatedProperties", "dependentRequired", "readOnly", "writeOnly"}
)


def describe(error: ValidationError, quote: bool = True) -> str:
    """``error`` in words; with ``quote``, naming the offending value (briefly)."""
    keyword = error.validator
    rule: Any = error.validator_value
    subject = quoted(error.instance) if quote else "the value"
    if keyword == "enum" and isinstance(rule, list):
        return f"{subject} is not one of: {', '.join(plain(option) for option in rule)}"
    if keyword == "const":
        return f"{subject} is not {plain(rule)}"
    if keyword == "pattern":
        return f"{subject} does not match {rule}"
    if keyword == "format":
        return f"{subject} is not a valid {rule}"
    if keyword in _VALUE_FREE:
        return error.message
    if quote:
        return briefly(error.message, error.instance)
    if keyword is None:  # a false schema
        return "is not allowed here"
    if keyword == "type":
        return f"is not of type {' or '.join(rule) if isinstance(rule, list) else rule}"
    return f"breaks {keyword}: {plain(rule)}"


def plain(value: Any) -> str:
    """A schema's value as the spec writes it: strings bare, the rest as JSON."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value)[: QUOTE_LIMIT * 2]
    except TypeError:
        return repr(value)[: QUOTE_LIMIT * 2]


def quoted(instance: Any) -> str:
    """``instance`` as a message quotes it: its repr, cut at ``QUOTE_LIMIT`` characters with its size."""
    text = repr(instance)
    return text if len(text) <= QUOTE_LIMIT else f"{text[:QUOTE_LIMIT]}... ({_size(instance, text)})"


def briefly(message: str, instance: Any) -> str:
    """``message`` with a long quoted value cut to ``QUOTE_LIMIT`` characters and its size: a
    5,000-character value would otherwise come back once per error, a few times the request."""
    text = repr(instance)
    if len(text) <= QUOTE_LIMIT or text not in message:
        return message[: QUOTE_LIMIT * 8]
    return message.replace(text, quoted(instance), 1)[: QUOTE_LIMIT * 8]


def _size(instance: Any, text: str) -> str:
    if isinstance(instance, str):
        return f"{len(instance)} characters"
    if isinstance(instance, list):
        return f"{len(instance)} items"
    if isinstance(instance, dict):
        return f"{len(instance)} members"
    return f"{len(text)} characters"
