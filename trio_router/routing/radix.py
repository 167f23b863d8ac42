"""A radix tree over path segments: every edge is one whole segment.

Lookup walks one segment at a time with a dict lookup for static segments, so it costs
O(path length) whatever the number of routes. (A character-level radix tree would compress
shared prefixes further, but a Python dict lookup per segment beats a per-character walk.)

Precedence, per segment from left to right: static text beats a pattern (``{name}.{ext}``),
which beats a whole-segment parameter (``{id}``); patterns at one position are tried from
the most literal text to the least. When a more specific branch cannot complete the
match, the next one is tried, so the result is always the most specific template that
matches the whole path. A repeated parameter name keeps its last value (BRRTRouter's rule).

Trailing slashes are significant: ``/pets/`` is not ``/pets`` (a 404 unless declared).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from .template import Pattern, Static, TemplateError, Whole, decode_segment, param_names, parse_template

T = TypeVar("T")


class RouteConflict(TemplateError):
    """Two templates that would match exactly the same paths."""


@dataclass
class _Node(Generic[T]):
    static: dict[str, _Node[T]] = field(default_factory=dict)
    patterns: list[tuple[Pattern, _Node[T]]] = field(default_factory=list)
    whole: _Node[T] | None = None
    template: str | None = None
    names: list[str] = field(default_factory=list)  # this template's parameter names, in capture order
    value: T | None = None


@dataclass(frozen=True, slots=True)
class Match(Generic[T]):
    template: str
    value: T
    raw_params: dict[str, str]  # still percent-encoded: style decoders split before decoding

    @property
    def params(self) -> dict[str, str]:
        """The parameters percent-decoded."""
        return {name: decode_segment(value) for name, value in self.raw_params.items()}


class Router(Generic[T]):
    def __init__(self) -> None:
        self._root: _Node[T] = _Node()

    def add(self, template: str, value: T) -> None:
        """Insert a template. Raises ``RouteConflict`` if an equivalent template is already there."""
        node = self._root
        segments = parse_template(template)
        for segment in segments:
            if isinstance(segment, Static):
                node = node.static.setdefault(segment.text, _Node())
            elif isinstance(segment, Whole):
                if node.whole is None:
                    node.whole = _Node()
                node = node.whole
            else:
                node = self._pattern_child(node, segment)
        if node.template is not None:
            raise RouteConflict(f"path templates {node.template!r} and {template!r} match the same paths")
        node.template, node.names, node.value = template, param_names(segments), value

    @staticmethod
    def _pattern_child(node: _Node[T], pattern: Pattern) -> _Node[T]:
        for existing, shared in node.patterns:
            if existing.skeleton == pattern.skeleton:
                return shared
        child: _Node[T] = _Node()
        node.patterns.append((pattern, child))
        # Most literal text first; ties broken by the skeleton, so insertion order never matters.
        node.patterns.sort(key=lambda item: (-len(item[0].skeleton), item[0].skeleton))
        return child

    def match(self, path: str) -> Match[T] | None:
        """The most specific template matching ``path`` (raw, percent-encoded), or None."""
        if not path.startswith("/"):
            return None
        values: list[str] = []
        node = self._walk(self._root, path[1:].split("/"), 0, values)
        if node is None:
            return None
        assert node.template is not None and node.value is not None
        # dict() keeps the last value of a repeated name.
        return Match(node.template, node.value, dict(zip(node.names, values, strict=True)))

    def _walk(self, node: _Node[T], segments: list[str], index: int, params: list[str]) -> _Node[T] | None:
        if index == len(segments):
            return node if node.template is not None else None
        raw = segments[index]
        child = node.static.get(decode_segment(raw))
        if child is not None:
            found = self._walk(child, segments, index + 1, params)
            if found is not None:
                return found
        for pattern, child in node.patterns:
            captured = pattern.match(raw)
            if captured is not None:
                mark = len(params)
                params.extend(captured)
                found = self._walk(child, segments, index + 1, params)
                if found is not None:
                    return found
                del params[mark:]
        if node.whole is not None and raw:
            params.append(raw)
            found = self._walk(node.whole, segments, index + 1, params)
            if found is not None:
                return found
            params.pop()
        return None
