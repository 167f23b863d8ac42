"""The radix tree against a reference matcher (a linear scan), with hypothesis."""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_router.routing import RouteConflict, Router, TemplateError

WORDS = ["a", "b", "pets", "x"]
SEGMENT_TEMPLATES = [*WORDS, "{p}", "{q}", "{id}", "{p}.{q}", "v{p}", "{p}.json", "{q}-{p}"]
PATH_SEGMENTS = [*WORDS, "1", "1.2", "v3", "x.json", "a-b", "a%2Fb", "%61", "", "a.b.json", "v", "pets.json"]

templates = st.lists(
    st.lists(st.sampled_from(SEGMENT_TEMPLATES), min_size=1, max_size=4).map(lambda s: "/" + "/".join(s)),
    min_size=1,
    max_size=10,
)
paths = st.lists(st.sampled_from(PATH_SEGMENTS), min_size=0, max_size=5).map(lambda s: "/" + "/".join(s))

_PARAM = re.compile(r"\{([^{}]+)\}")


def _segment_key(segment: str) -> tuple[object, ...]:
    if "{" not in segment:
        return (0, segment)
    if _PARAM.fullmatch(segment):
        return (2,)
    skeleton = _PARAM.sub("{}", segment)
    return (1, -len(skeleton), skeleton)


def _shape(template: str) -> tuple[tuple[object, ...], ...]:
    return tuple(_segment_key(segment) for segment in template[1:].split("/"))


def reference_match(accepted: list[str], path: str) -> tuple[str, dict[str, str]] | None:
    """Every template that matches, segment by segment; the most specific wins."""
    raw_segments = path[1:].split("/")
    candidates = []
    for template in accepted:
        template_segments = template[1:].split("/")
        if len(template_segments) != len(raw_segments):
            continue
        values: list[tuple[str, str]] = []
        for spec, raw in zip(template_segments, raw_segments, strict=True):
            if "{" not in spec:
                if unquote(raw) != spec:
                    break
            elif _PARAM.fullmatch(spec):
                if not raw:
                    break
                values.append((spec[1:-1], unquote(raw)))
            else:
                names = _PARAM.findall(spec)
                regex = "".join(
                    re.escape(part) if i % 2 == 0 else "([^/]+)" for i, part in enumerate(_PARAM.split(spec))
                )
                found = re.fullmatch(regex, raw)
                if not found:
                    break
                values.extend((name, unquote(value)) for name, value in zip(names, found.groups(), strict=True))
        else:
            candidates.append((_shape(template), template, dict(values)))
    if not candidates:
        return None
    _, template, params = min(candidates, key=lambda c: c[0])
    return template, params


def _conflict_free(candidates: list[str]) -> list[str]:
    seen: set[tuple[tuple[object, ...], ...]] = set()
    kept = []
    for template in candidates:
        if _shape(template) not in seen:
            seen.add(_shape(template))
            kept.append(template)
    return kept


def _build(routes: list[str]) -> Router[str]:
    router: Router[str] = Router()
    for template in routes:
        router.add(template, template)
    return router


@settings(max_examples=400, deadline=None)
@given(routes=templates, probes=st.lists(paths, min_size=1, max_size=10), data=st.data())
def test_tree_agrees_with_the_reference_matcher_in_any_insertion_order(
    routes: list[str], probes: list[str], data: st.DataObject
) -> None:
    accepted = _conflict_free(routes)
    shuffled = data.draw(st.permutations(accepted))
    for template in accepted:  # also paths shaped like the routes, so most probes reach deep
        filled = [
            segment if "{" not in segment else data.draw(st.sampled_from(PATH_SEGMENTS))
            for segment in template[1:].split("/")
        ]
        probes.append("/" + "/".join(filled))
    for router in (_build(accepted), _build(shuffled)):
        for path in probes:
            found = router.match(path)
            assert (None if found is None else (found.template, found.params)) == reference_match(accepted, path)


@settings(max_examples=200, deadline=None)
@given(routes=templates)
def test_equivalent_templates_are_reported_as_conflicts(routes: list[str]) -> None:
    router: Router[str] = Router()
    shapes: set[tuple[tuple[object, ...], ...]] = set()
    for template in routes:
        if _shape(template) in shapes:
            with pytest.raises(RouteConflict):
                router.add(template, template)
        else:
            router.add(template, template)
            shapes.add(_shape(template))


def test_precedence_backtracking_and_decoding() -> None:
    router = _build(["/pets/{id}", "/pets/mine/toys", "/files/{name}.{ext}", "/files/{f}", "/a/{id}/b/{id}"])
    assert router.match("/pets/mine").template == "/pets/{id}"  # static branch cannot finish: fall back
    assert router.match("/pets/mine/toys").template == "/pets/mine/toys"
    assert router.match("/files/archive.tar.gz").params == {"name": "archive.tar", "ext": "gz"}
    assert router.match("/files/a%2Eb").params == {"f": "a.b"}  # an encoded dot is not a separator
    assert router.match("/pets/a%2Fb").params == {"id": "a/b"}  # an encoded slash is not a segment
    assert router.match("/a/1/b/2").params == {"id": "2"}  # a repeated name keeps its last value
    assert router.match("/pets/") is None  # trailing slashes are significant
    assert router.match("pets") is None


@pytest.mark.parametrize("template", ["pets", "/a/{x}{y}", "/a/{x"])
def test_bad_templates_are_refused(template: str) -> None:
    with pytest.raises(TemplateError):
        Router().add(template, 1)
