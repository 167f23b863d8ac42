"""JSON from clients, parsed so that every way it can be too much is a precise 400.

Python's ``json`` has three ways to turn a hostile document into a 500 or an invalid answer:
nesting deeper than the interpreter's recursion limit raises RecursionError; an integer of more
than 4,300 digits raises a ValueError that tells the client to call
``sys.set_int_max_str_digits()``; and ``1e999999`` parses as ``inf``, which comes back out as
``Infinity`` (not JSON). ``loads`` refuses each with a message that names the limit. The depth
check counts brackets outside strings and runs only when the document has more brackets than
the limit allows, so an ordinary body pays two ``bytes.count`` calls; beyond that it is a few
C-level passes (no regex that could backtrack, no Python loop per byte).
"""

from __future__ import annotations

import json
import sys
from array import array
from itertools import accumulate
from typing import Any

from .coercion import OutOfRange, finite_float

DEFAULT_MAX_DEPTH = 256
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 and -1 as signed bytes


class JSONRefused(ValueError):
    """Not JSON we accept; the message says why, for the client."""


def too_deep(data: bytes, max_depth: int) -> bool:
    """Whether ``data`` nests arrays and objects more than ``max_depth`` deep."""
    if data.count(b"[") + data.count(b"{") <= max_depth:
        return False
    # Escapes pair up from the left: drop escaped backslashes, then escaped quotes; what is left
    # of the quotes delimits strings, so every other piece is outside them.
    unescaped = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside = b"".join(unescaped.split(b'"')[0::2])
    steps = array("b", outside.translate(_STEPS, _NOT_BRACKETS))
    return max(accumulate(steps), default=0) > max_depth


def _refuse_constant(name: str) -> Any:
    raise JSONRefused(f"{name} is not JSON")


def _finite(text: str) -> float:
    try:
        return finite_float(text)
    except OutOfRange as exc:
        raise JSONRefused(f"the number {text[:32]} {exc}") from None


def check_depth(data: bytes, max_depth: int) -> None:
    if too_deep(data, max_depth):
        raise JSONRefused(f"arrays and objects nest more than {max_depth} deep (the server's max_json_depth)")


def loads(text: str) -> Any:
    """``text`` as JSON, or ``JSONRefused`` (after ``check_depth``, which bounds the recursion)."""
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite)
    except JSONRefused:
        raise
    except RecursionError:  # only with a max_json_depth above what the parser can go
        raise JSONRefused("arrays and objects nest too deep to parse") from None
    except ValueError as exc:
        if str(exc).startswith("Exceeds the limit"):
            limit = sys.get_int_max_str_digits()
            raise JSONRefused(f"an integer has more than {limit} digits (the server's limit)") from None
        raise JSONRefused(str(exc)) from None
