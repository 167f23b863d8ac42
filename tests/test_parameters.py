"""Parameter decoding, sans-IO: every style of the OpenAPI specification's style table, and
properties that hold for any value (an encoded delimiter stays inside its value)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_router.http.request import Headers
from trio_router.openapi.parameters import ABSENT, ParameterError, compile_parameter, parse_query

STRING = {"type": "string"}
ARRAY = {"type": "array", "items": {"type": "string"}}
OBJECT = {
    "type": "object",
    "properties": {"R": {"type": "integer"}, "G": {"type": "integer"}, "B": {"type": "integer"}},
}
BLUE = "blue"
COLOURS = ["blue", "black", "brown"]
RGB = {"R": 100, "G": 200, "B": 150}

# The "Style Examples" table of the OpenAPI specification, row by row: (style, explode, location,
# schema, serialised, expected).
TABLE = [
    ("matrix", False, "path", STRING, ";color=blue", BLUE),
    ("matrix", False, "path", ARRAY, ";color=blue,black,brown", COLOURS),
    ("matrix", False, "path", OBJECT, ";color=R,100,G,200,B,150", RGB),
    ("matrix", True, "path", STRING, ";color=blue", BLUE),
    ("matrix", True, "path", ARRAY, ";color=blue;color=black;color=brown", COLOURS),
    ("matrix", True, "path", OBJECT, ";R=100;G=200;B=150", RGB),
    ("label", False, "path", STRING, ".blue", BLUE),
    ("label", False, "path", ARRAY, ".blue,black,brown", COLOURS),
    ("label", False, "path", OBJECT, ".R,100,G,200,B,150", RGB),
    ("label", True, "path", STRING, ".blue", BLUE),
    ("label", True, "path", ARRAY, ".blue.black.brown", COLOURS),
    ("label", True, "path", OBJECT, ".R=100.G=200.B=150", RGB),
    ("simple", False, "path", STRING, "blue", BLUE),
    ("simple", False, "path", ARRAY, "blue,black,brown", COLOURS),
    ("simple", False, "path", OBJECT, "R,100,G,200,B,150", RGB),
    ("simple", True, "path", ARRAY, "blue,black,brown", COLOURS),
    ("simple", True, "path", OBJECT, "R=100,G=200,B=150", RGB),
    ("simple", False, "header", ARRAY, "blue, black, brown", COLOURS),
    ("simple", True, "header", OBJECT, "R=100,G=200,B=150", RGB),
    ("form", False, "query", STRING, "color=blue", BLUE),
    ("form", False, "query", ARRAY, "color=blue,black,brown", COLOURS),
    ("form", False, "query", OBJECT, "color=R,100,G,200,B,150", RGB),
    ("form", True, "query", STRING, "color=blue", BLUE),
    ("form", True, "query", ARRAY, "color=blue&color=black&color=brown", COLOURS),
    ("form", True, "query", OBJECT, "R=100&G=200&B=150", RGB),
    ("spaceDelimited", False, "query", ARRAY, "color=blue%20black%20brown", COLOURS),
    ("spaceDelimited", False, "query", OBJECT, "color=R%20100%20G%20200%20B%20150", RGB),
    ("pipeDelimited", False, "query", ARRAY, "color=blue|black|brown", COLOURS),
    ("pipeDelimited", False, "query", OBJECT, "color=R|100|G|200|B|150", RGB),
    ("deepObject", True, "query", OBJECT, "color[R]=100&color[G]=200&color[B]=150", RGB),
    ("form", False, "cookie", ARRAY, "blue,black,brown", COLOURS),
]


def decode(style: str, explode: bool, location: str, schema: dict[str, Any], raw: str, name: str = "color") -> Any:
    decoder = compile_parameter({"name": name, "in": location, "style": style, "explode": explode}, schema, None)
    if location == "path":
        return decoder({name: raw})
    if location == "query":
        return decoder(parse_query(raw.encode()))
    if location == "header":
        return decoder(Headers([(name.encode(), raw.encode())]))
    return decoder({name: raw})


@pytest.mark.parametrize(("style", "explode", "location", "schema", "raw", "expected"), TABLE)
def test_the_specifications_style_table(
    style: str, explode: bool, location: str, schema: dict[str, Any], raw: str, expected: Any
) -> None:
    assert decode(style, explode, location, schema, raw) == expected


def test_absent_parameters_and_malformed_styles() -> None:
    assert decode("form", True, "query", STRING, "other=1") is ABSENT
    assert decode("deepObject", True, "query", OBJECT, "R=1") is ABSENT
    for style, raw in (("label", "blue"), ("matrix", "blue"), ("matrix", ";other=blue")):
        with pytest.raises(ParameterError):
            decode(style, False, "path", STRING, raw)
    with pytest.raises(ParameterError, match="given 2 times"):
        decode("form", True, "query", STRING, "color=a&color=b")
    with pytest.raises(ParameterError, match="key,value pairs"):
        decode("simple", False, "path", OBJECT, "R,100,G")
    with pytest.raises(ParameterError, match="UTF-8"):
        decode("simple", False, "path", STRING, "%ff")


def test_styles_not_allowed_in_a_location_are_refused_at_compile_time() -> None:
    with pytest.raises(ValueError, match="not allowed"):
        compile_parameter({"name": "x", "in": "path", "style": "form"}, STRING, None)
    with pytest.raises(ValueError, match="not allowed"):
        compile_parameter({"name": "x", "in": "header", "style": "deepObject"}, OBJECT, None)


def test_text_is_coerced_only_when_it_really_is_the_type() -> None:
    schema = {"type": "array", "items": {"type": "integer"}}
    assert decode("form", False, "query", schema, "color=1,-2,0") == [1, -2, 0]
    # Python's int() accepts these; a JSON Schema integer does not, so they stay text (and fail validation).
    assert decode("form", False, "query", schema, "color=1_000,%201,01") == ["1_000", " 1", "01"]
    booleans = {"type": "array", "items": {"type": "boolean"}}
    assert decode("form", False, "query", booleans, "color=true,false,True") == [True, False, "True"]


values = st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=5)


@given(values)
def test_an_encoded_delimiter_stays_inside_its_value(items: list[str]) -> None:
    encoded = ",".join(quote(item, safe="") for item in items)
    assert decode("simple", False, "path", ARRAY, encoded) == items
    assert decode("form", False, "query", ARRAY, "color=" + encoded) == items
    # "." is unreserved, so quote() keeps it; a client must encode it inside a label-style value.
    labels = ".".join(quote(item, safe="").replace(".", "%2E") for item in items)
    assert decode("label", True, "path", ARRAY, "." + labels) == items
    if not any("|" in item for item in items):  # clients send "|" as %7C, so %7C must delimit too
        piped = "|".join(quote(item, safe="") for item in items)
        assert decode("pipeDelimited", False, "query", ARRAY, "color=" + piped) == items
