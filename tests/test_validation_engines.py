"""The hot path's validator (jsonschema-rs) must accept and reject exactly what jsonschema does,
for every schema of the shipped specs it is used on: generated instances, biased towards each
schema's own shapes (its properties, enums, bounds, patterns) so both verdicts occur often."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_router.openapi.document import SpecDocument, child
from trio_router.openapi.schemas import SchemaCompiler, SchemaValidator

ROOT = Path(__file__).resolve().parent.parent


def _brrtrouter_fixed() -> list[Path]:
    """BRRTRouter's spec with its one meta-schema error (operation-level `links`) removed."""
    from tests.test_spec_loading import BRRTROUTER

    if not BRRTROUTER.exists():
        return []
    document = yaml.safe_load(BRRTROUTER.read_text())
    del document["paths"]["/users/{user_id}"]["get"]["links"]
    fixed = Path(tempfile.mkdtemp()) / "brrtrouter-fixed.yaml"
    fixed.write_text(yaml.safe_dump(document))
    return [fixed]


SPECS = [ROOT / "specs" / "petstore.yaml", *_brrtrouter_fixed()]


def schemas_of(path: Path) -> list[tuple[str, SchemaValidator]]:
    """Every schema a spec validates with: parameters, bodies and responses, in both directions."""
    document = SpecDocument.load(path)
    compiler = SchemaCompiler(document)
    found: list[tuple[str, SchemaValidator]] = []

    def walk(node: Any, uri: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                where = child(uri, key)
                if key == "schema" and isinstance(value, dict):
                    for direction in ("request", "response"):
                        found.append((where, compiler.validator(value, where, direction)))  # type: ignore[arg-type]
                else:
                    walk(value, where)
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, child(uri, index))

    walk(document.root.get("paths"), child(document.uri + "#", "paths"))
    walk(document.root.get("components"), child(document.uri + "#", "components"))
    return found


FAST = [
    (where, validator) for spec in SPECS for where, validator in schemas_of(spec) if validator.engine != "jsonschema"
]

scalars = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    scalars | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


def instances(schema: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    if not isinstance(schema, dict) or depth > 4:
        return json_values
    options: list[st.SearchStrategy[Any]] = [json_values]
    if "enum" in schema:
        options.append(st.sampled_from(schema["enum"]))
    if "const" in schema:
        options.append(st.just(schema["const"]))
    kinds = schema.get("type", [])
    for kind in [kinds] if isinstance(kinds, str) else kinds:
        if kind == "integer":
            low, high = schema.get("minimum", -10), schema.get("maximum", 10**6)
            options += [st.integers(low - 2, high + 2), st.sampled_from([low - 1, low, high, high + 1, float(low)])]
        elif kind == "number":
            options.append(st.floats(allow_nan=False, allow_infinity=False) | st.integers())
        elif kind == "string":
            low, high = schema.get("minLength", 0), schema.get("maxLength", 12)
            options.append(st.text(min_size=max(0, low - 1), max_size=min(high + 1, 80)))
            if "pattern" in schema:
                options.append(st.from_regex(schema["pattern"]))
        elif kind == "array":
            options.append(st.lists(instances(schema.get("items", {}), depth + 1), max_size=4))
        elif kind == "object":
            properties = schema.get("properties", {})
            options.append(
                st.fixed_dictionaries(
                    {},
                    optional={name: instances(sub, depth + 1) for name, sub in properties.items()}
                    | {"extra": json_values},
                )
            )
    for keyword in ("oneOf", "anyOf", "allOf"):
        options += [instances(branch, depth + 1) for branch in schema.get(keyword, [])]
    return st.one_of(options)


def test_the_fast_engine_is_used_where_it_applies() -> None:
    assert len(FAST) >= 40  # the Pet Store's schemas are plain 2020-12: the fast engine serves them


@pytest.mark.parametrize(("where", "validator"), FAST, ids=[where.partition("#")[2] for where, _ in FAST])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_jsonschema_rs_and_jsonschema_agree(where: str, validator: SchemaValidator, data: st.DataObject) -> None:
    value = data.draw(instances(validator.schema))
    assert validator.is_valid(value) == validator.reference.is_valid(value), (where, value)
