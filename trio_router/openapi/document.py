"""Reading an OpenAPI document: YAML or JSON files, ``$ref`` across files, meta-schema validation.

Nothing here knows about HTTP. The loader's job is to turn a spec on disk into plain data plus
a way to follow references, and to say precisely (with a JSON pointer) what is wrong with it.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin, urlparse

import jsonschema
import yaml
from jsonschema.exceptions import ValidationError, best_match
from openapi_spec_validator.schemas import schema_v30, schema_v31

Node = dict[str, Any]


@dataclass(frozen=True, slots=True)
class SpecProblem:
    """One thing wrong with a spec: where (file and JSON pointer) and what."""

    pointer: str
    message: str
    file: str = ""

    def __str__(self) -> str:
        if not self.pointer and not self.file:
            return self.message  # about the file as a whole, which the message names
        where = f"{self.file}#{self.pointer}" if self.file else f"#{self.pointer}"
        return f"{where}: {self.message}"


class SpecError(Exception):
    """A spec that cannot be served; ``problems`` lists every reason found, one line each."""

    def __init__(self, problems: list[SpecProblem]) -> None:
        super().__init__("\n".join(str(problem) for problem in problems))
        self.problems = problems


def pointer_of(path: Iterable[str | int]) -> str:
    """A JSON pointer (RFC 6901) for a sequence of keys."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


def _parts_of(pointer: str) -> list[str]:
    if not pointer:
        return []
    if not pointer.startswith("/"):
        raise KeyError(f"{pointer!r} is not a JSON pointer")
    return [unquote(part).replace("~1", "/").replace("~0", "~") for part in pointer[1:].split("/")]


def _read(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError([SpecProblem("", f"{path}: cannot read the spec: {exc.strerror}")]) from None
    try:
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise SpecError([SpecProblem("", f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}")]) from None
    except yaml.YAMLError as exc:
        raise SpecError([SpecProblem("", _yaml_problem(path, exc))]) from None


def _yaml_problem(path: Path, error: yaml.YAMLError) -> str:
    """``file:line:column: not valid YAML: what`` on one line (PyYAML's own message spans five,
    with the text quoted and a caret), as compilers and linters say it."""
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    context = getattr(error, "context", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    return f"{where}: not valid YAML: {problem}" + (f" ({context})" if context else "")


@dataclass
class SpecDocument:
    """A loaded spec: the root document, every file it references (by URI), and its version."""

    root: Node
    uri: str
    version: str  # "3.0" or "3.1"
    files: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> SpecDocument:
        """Read and validate ``path`` against the OpenAPI meta-schema of its version."""
        path = Path(path).resolve()
        root = _read(path)
        uri = path.as_uri()
        if not isinstance(root, dict):
            raise SpecError([SpecProblem("", "an OpenAPI document must be a mapping", str(path))])
        declared = str(root.get("openapi", ""))
        if declared.startswith("3.0."):
            version, meta = "3.0", schema_v30
        elif declared.startswith("3.1."):
            version, meta = "3.1", schema_v31
        else:
            found = f"'openapi: {declared}'" if declared else "no 'openapi' field"
            raise SpecError([SpecProblem("/openapi", f"only OpenAPI 3.0.x and 3.1.x are served; found {found}")])
        problems = list(_scheme_problems(root))
        reported = tuple(problem.pointer.rpartition("/")[0] for problem in problems)
        for error in _meta_errors(meta, root):
            pointer, message = _describe(error)
            if not (reported and pointer.startswith(reported)):  # a bad scheme name says it better
                problems.append(SpecProblem(pointer, message))
        if problems:
            raise SpecError(problems)
        return cls(root, uri, version, {uri: root})

    def file_of(self, uri: str) -> Any:
        """The parsed document behind ``uri`` (a file:// URI without fragment), loading it once."""
        document = self.files.get(uri)
        if document is None:
            parsed = urlparse(uri)
            if parsed.scheme != "file":
                raise SpecError([SpecProblem("", f"only local files can be referenced, not {uri}")])
            document = self.files[uri] = _read(Path(unquote(parsed.path)))
        return document

    def lookup(self, uri: str) -> Any:
        """The value a full reference (``file:///x.yaml#/components/...``) points at."""
        document_uri, fragment = urldefrag(uri)
        node = self.file_of(document_uri)
        for part in _parts_of(fragment):
            node = node[int(part)] if isinstance(node, list) else node[part]
        return node

    def resolve(self, node: Any, base: str) -> tuple[Any, str]:
        """Follow ``$ref`` until a real object; returns it with the URI it lives at.

        ``base`` is the URI of ``node`` itself (file plus pointer), so relative references in
        other files resolve against the file they are written in.
        """
        seen: set[str] = set()
        while isinstance(node, dict) and isinstance(node.get("$ref"), str):
            target = urljoin(base, node["$ref"])
            if target in seen:
                raise SpecError([SpecProblem(urldefrag(base)[1], f"$ref cycle through {node['$ref']!r}")])
            seen.add(target)
            try:
                node = self.lookup(target)
            except (KeyError, IndexError, ValueError, TypeError):
                raise SpecError(
                    [SpecProblem(urldefrag(base)[1], f"$ref {node['$ref']!r} points at nothing", self._file(base))]
                ) from None
            base = target if "#" in target else target + "#"
        return node, base

    def _file(self, uri: str) -> str:
        document_uri = urldefrag(uri)[0]
        return "" if document_uri == self.uri else unquote(urlparse(document_uri).path)


# The IANA HTTP Authentication Scheme Registry, and the HMAC scheme trio-router adds.
HTTP_SCHEMES = (
    "basic", "bearer", "concealed", "digest", "dpop", "gnap", "hoba", "mutual", "negotiate", "oauth",
    "privatetoken", "scram-sha-1", "scram-sha-256", "vapid", "hmac-sha256",
)  # fmt: skip


def _scheme_problems(root: Node) -> Iterator[SpecProblem]:
    """An http security scheme's name that is no scheme at all (``bearr``): the meta-schema would
    only say that ``bearerFormat`` was unexpected, which sends the reader to the wrong line."""
    schemes = (root.get("components") or {}).get("securitySchemes") or {}
    for name, scheme in schemes.items() if isinstance(schemes, dict) else ():
        if not isinstance(scheme, dict) or scheme.get("type") != "http" or not isinstance(scheme.get("scheme"), str):
            continue
        given = scheme["scheme"]
        if given.lower() not in HTTP_SCHEMES:
            close = difflib.get_close_matches(given.lower(), HTTP_SCHEMES, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            yield SpecProblem(
                pointer_of(["components", "securitySchemes", name, "scheme"]),
                f"{given!r} is not an HTTP authentication scheme{hint}; known: {', '.join(HTTP_SCHEMES)}",
            )


def _meta_errors(meta: dict[str, Any], root: Node) -> Iterator[ValidationError]:
    validator_class = jsonschema.validators.validator_for(meta)
    yield from validator_class(meta).iter_errors(root)


def _describe(error: ValidationError) -> tuple[str, str]:
    """Where and what, from a meta-schema error: for oneOf/anyOf, the branch that came closest,
    leaving out "'$ref' is required" for a node that is no reference (a Schema Object with a
    typo matches neither a schema nor a reference, and the typo is what the reader needs)."""
    if error.context:
        is_reference = isinstance(error.instance, dict) and "$ref" in error.instance
        candidates = [
            sub
            for sub in error.context
            if is_reference or not (sub.validator == "required" and _names_ref(sub.validator_value))
        ]
        closest = best_match(candidates) if candidates else None
        if closest is not None and list(closest.absolute_path)[: len(error.absolute_path)] == list(error.absolute_path):
            return _describe(closest) if closest.context else (pointer_of(closest.absolute_path), _message(closest))
    return pointer_of(error.absolute_path), _message(error)


def _names_ref(required: object) -> bool:
    return isinstance(required, list) and "$ref" in required


def _message(error: ValidationError) -> str:
    path = list(error.absolute_path)
    is_type = bool(path) and path[-1] == "type" and error.validator in ("enum", "anyOf", "oneOf")
    if is_type and isinstance(error.instance, str):
        return f"{error.instance!r} is not a JSON Schema type (one of: {', '.join(_OAS30_TYPES)})"
    return str(error.message)


_OAS30_TYPES = ("array", "boolean", "integer", "number", "object", "string")


def child(uri: str, *keys: str | int) -> str:
    """The URI of a value below the value at ``uri`` (``uri`` ends in a JSON pointer fragment)."""
    return uri + pointer_of(list(keys))
