"""Path templates (``/pets/{id}``, ``/files/{name}.{ext}``), parsed once at startup.

A template is a list of segments. A segment is static text, a whole-segment parameter
(``{id}``), or a pattern mixing text and parameters (``{name}.{ext}``). Matching works on
the raw, still percent-encoded segment; captured values are decoded afterwards, so an
encoded ``%2F`` or ``%2E`` can neither forge a segment nor move a separator.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

_PARAM = re.compile(r"\{([^{}/]+)\}")


class TemplateError(ValueError):
    """A path template that cannot be routed; the message names the template."""


@dataclass(frozen=True, slots=True)
class Static:
    text: str  # decoded


@dataclass(frozen=True, slots=True)
class Whole:
    name: str


@dataclass(frozen=True, slots=True)
class Pattern:
    """Literal text around parameters within one segment: ``{name}.{ext}``, ``v{major}``."""

    source: str
    names: tuple[str, ...]
    regex: re.Pattern[str]

    @property
    def skeleton(self) -> str:
        """The pattern with parameter names erased: two patterns with one skeleton are the same route."""
        return _PARAM.sub("{}", self.source)

    def match(self, raw_segment: str) -> list[str] | None:
        """The parameter values (still percent-encoded), in order, or None."""
        found = self.regex.fullmatch(raw_segment)
        if found is None:
            return None
        return list(found.groups())


Segment = Static | Whole | Pattern


def parse_template(template: str) -> list[Segment]:
    if not template.startswith("/"):
        raise TemplateError(f"path template {template!r} must start with '/'")
    segments: list[Segment] = []
    for text in template[1:].split("/"):
        if "{" not in text and "}" not in text:
            segments.append(Static(text))
            continue
        whole = _PARAM.fullmatch(text)
        if whole:
            segments.append(Whole(whole.group(1)))
            continue
        segments.append(_pattern(template, text))
    return segments


def _pattern(template: str, text: str) -> Pattern:
    names: list[str] = []
    regex = ""
    position = 0
    for found in _PARAM.finditer(text):
        if found.start() == position and names:
            raise TemplateError(f"path template {template!r}: parameters in {text!r} need text between them")
        regex += re.escape(text[position : found.start()]) + "([^/]+)"
        names.append(found.group(1))
        position = found.end()
    regex += re.escape(text[position:])
    if "{" in _PARAM.sub("", text) or "}" in _PARAM.sub("", text):
        raise TemplateError(f"path template {template!r}: unbalanced braces in {text!r}")
    return Pattern(text, tuple(names), re.compile(regex))


def param_names(segments: list[Segment]) -> list[str]:
    """The template's parameter names in capture order (a name may repeat)."""
    names: list[str] = []
    for segment in segments:
        if isinstance(segment, Whole):
            names.append(segment.name)
        elif isinstance(segment, Pattern):
            names.extend(segment.names)
    return names


def decode_segment(raw: str) -> str:
    return unquote(raw) if "%" in raw else raw
