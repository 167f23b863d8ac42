"""Loading specs: versions, $refs across files, and one precise problem (with its JSON pointer)
for every way a spec or its binding can be wrong. Real-world specs are read in place."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import serve
from tests.test_cli import run_cli
from trio_router import App, SpecError
from trio_router.openapi.document import SpecDocument

# ../shared/specs beside the repository; a clone elsewhere (CI) finds the workspace's copy.
_SHARED = [Path(__file__).resolve().parents[2] / "shared", Path("/work/shared")]
BRRTROUTER = next(
    (found for found in (base / "specs" / "brrtrouter-petstore.openapi.yaml" for base in _SHARED) if found.exists()),
    _SHARED[0] / "specs" / "brrtrouter-petstore.openapi.yaml",
)
OK = {"200": {"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}}}


def write_spec(directory: Path, paths: dict[str, Any], version: str = "3.1.0", **extra: Any) -> Path:
    spec = {"openapi": version, "info": {"title": "t", "version": "1"}, "paths": paths, **extra}
    path = directory / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def module(**functions: Any) -> types.ModuleType:
    handlers = types.ModuleType("test_handlers")
    for name, function in functions.items():
        setattr(handlers, name, function)
    return handlers


def problems_of(spec: Path, handlers: types.ModuleType) -> list[str]:
    with pytest.raises(SpecError) as caught:
        App.from_spec(spec, handlers)
    return [str(problem) for problem in caught.value.problems]


@pytest.mark.skipif(not BRRTROUTER.exists(), reason="the shared real-world specs are not on this machine")
def test_brrtrouters_spec_is_refused_at_the_exact_pointer_and_loads_once_fixed(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        SpecDocument.load(BRRTROUTER)
    assert [str(problem) for problem in caught.value.problems] == [
        "#/paths/~1users~1{user_id}/get: Unevaluated properties are not allowed ('links' was unexpected)"
    ]
    document = yaml.safe_load(BRRTROUTER.read_text())
    del document["paths"]["/users/{user_id}"]["get"]["links"]
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(yaml.safe_dump(document))
    loaded = SpecDocument.load(fixed)
    assert loaded.version == "3.1"
    operation_ids = [
        op["operationId"] for item in document["paths"].values() for op in item.values() if "operationId" in op
    ]
    handlers = module(**{operation_id: (lambda request: None) for operation_id in operation_ids})
    # Everything binds; what stops serving is only that no verifier is configured for its
    # security schemes, which is refused rather than served open.
    found = problems_of(fixed, handlers)
    assert len(found) == len(operation_ids)
    assert all("has no verifier configured" in problem for problem in found)


def test_versions_and_unreadable_documents(tmp_path: Path) -> None:
    swagger = tmp_path / "old.yaml"
    swagger.write_text("swagger: '2.0'\ninfo: {title: t, version: '1'}\npaths: {}\n")
    with pytest.raises(SpecError, match=r"only OpenAPI 3\.0\.x and 3\.1\.x"):
        SpecDocument.load(swagger)
    broken = tmp_path / "broken.yaml"
    broken.write_text("openapi: 3.1.0\npaths: {a: [}\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        SpecDocument.load(broken)
    with pytest.raises(SpecError, match="cannot read the spec"):
        SpecDocument.load(tmp_path / "missing.json")
    wrong_shape = write_spec(tmp_path, {"/a": {"get": {"responses": {"200": {"description": 5}}}}})
    with pytest.raises(SpecError) as caught:
        SpecDocument.load(wrong_shape)
    assert caught.value.problems[0].pointer == "/paths/~1a/get/responses/200/description"


def test_every_binding_problem_is_listed_with_its_pointer(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path,
        {
            "/pets/{id}": {"get": {"operationId": "get_pet", "responses": OK}},
            "/owners": {
                "get": {"operationId": "list_owners", "responses": OK},
                "post": {"operationId": "get_pet", "responses": OK},
            },
            "/things": {
                "get": {
                    "operationId": "things",
                    "parameters": [{"$ref": "#/components/parameters/Missing"}],
                    "responses": OK,
                }
            },
            "/slow": {"get": {"operationId": "slow", "x-timeout": -1, "responses": OK}},
            "/wants": {"get": {"operationId": "wants", "responses": OK}},
        },
    )
    found = problems_of(spec, module(get_pet=lambda request: None, slow=lambda request: None, wants=lambda color: 1))
    assert found == [
        "#/paths/~1pets~1{id}/get: path parameter 'id' of /pets/{id} is not declared in parameters",
        "#/paths/~1owners/get: no handler: test_handlers has no function 'list_owners'",
        "#/paths/~1owners/post: operationId 'get_pet' is also used at /paths/~1pets~1{id}/get",
        "#/paths/~1things/get/parameters/0: $ref '#/components/parameters/Missing' points at nothing",
        "#/paths/~1slow/get: x-timeout must be a positive number of seconds, not -1",
        "#/paths/~1wants/get: handler <lambda> wants 'color', which the operation does not declare "
        "(declare it in the spec, give it a default, or take `request`)",
    ]


async def test_refs_across_files_and_openapi_30_nullable(tmp_path: Path) -> None:
    (tmp_path / "common.yaml").write_text(
        yaml.safe_dump(
            {
                "Label": {"type": "string", "maxLength": 5, "nullable": True},
                "Limit": {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 3}},
            }
        )
    )
    spec = write_spec(
        tmp_path,
        {
            "/labels": {
                "post": {
                    "operationId": "add",
                    "parameters": [{"$ref": "common.yaml#/Limit"}],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"type": "object", "properties": {"label": {"$ref": "common.yaml#/Label"}}}
                            }
                        },
                    },
                    "responses": OK,
                }
            }
        },
        version="3.0.3",
    )
    app = App.from_spec(spec, module(add=lambda body, limit=1: {"label": body["label"], "limit": limit}))
    async with serve(app) as running, httpx.AsyncClient(base_url=running.url) as client:
        assert (await client.post("/labels?limit=2", json={"label": None})).json() == {"label": None, "limit": 2}
        too_long = await client.post("/labels", json={"label": "toolong"})
        assert too_long.json()["errors"][0]["pointer"] == "/label"
        assert (await client.post("/labels?limit=9", json={})).json()["errors"][0]["name"] == "limit"


@pytest.mark.slow
def test_check_and_routes_commands(tmp_path: Path) -> None:
    checked = run_cli("check")
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith("ok: 21 operations served by the petstore app")
    table = run_cli("routes").stdout.splitlines()
    assert table[0].split() == ["METHOD", "PATH", "OPERATION", "SECURITY", "HANDLER"]
    listed = [" ".join(line.split()) for line in table]
    assert "GET /pets/{pet_id} get_pet - trio_router_apps.petstore:get_pet" in listed
    bad = write_spec(tmp_path, {"/x": {"get": {"operationId": "nowhere", "responses": OK}}})
    refused = run_cli("check", "--spec", str(bad), "--handlers", "handlers.petstore")
    assert refused.returncode == 1
    assert "#/paths/~1x/get: no handler: handlers.petstore has no function 'nowhere'" in refused.stderr


async def test_conflicting_paths_stop_startup_and_declared_options_win(tmp_path: Path) -> None:
    id_param = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
    name_param = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]
    conflicting = write_spec(
        tmp_path,
        {
            "/pets/{id}": {"get": {"operationId": "a", "parameters": id_param, "responses": OK}},
            "/pets/{name}": {"get": {"operationId": "b", "parameters": name_param, "responses": OK}},
        },
    )
    found = problems_of(conflicting, module(a=lambda request: {}, b=lambda request: {}))
    assert found == ["#/paths/~1pets~1{name}/get: path templates '/pets/{id}' and '/pets/{name}' match the same paths"]

    declared = write_spec(
        tmp_path,
        {
            "/things": {
                "get": {"operationId": "list_things", "responses": OK},
                "options": {"operationId": "things_options", "responses": OK},
            }
        },
    )
    app = App.from_spec(declared, module(list_things=lambda request: {}, things_options=lambda request: {"custom": 1}))
    async with serve(app) as running, httpx.AsyncClient(base_url=running.url) as client:
        assert (await client.options("/things")).json() == {"custom": 1}
        head = await client.head("/things")
        assert (head.status_code, head.content) == (200, b"")


def test_a_fault_in_a_shared_schema_is_reported_once_where_it_is_written(tmp_path: Path) -> None:
    uses = {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}}
    answer = {"200": {"description": "ok", "content": uses}}
    paths = {f"/{name}": {"get": {"operationId": name, "responses": answer}} for name in ("a", "b", "c")}
    schemas = {"Pet": {"type": "object", "properties": {"owner": {"$ref": "#/components/schemas/Owner"}}}}
    spec = write_spec(tmp_path, paths, components={"schemas": schemas})
    handlers = module(a=lambda: {}, b=lambda: {}, c=lambda: {})
    assert problems_of(spec, handlers) == [
        "#/components/schemas/Pet/properties/owner: $ref '#/components/schemas/Owner' points at nothing"
    ]
    for version in ("3.1.0", "3.0.3"):
        typo = {"Pet": {"type": "strin"}}
        spec = write_spec(tmp_path, paths, version, components={"schemas": typo})
        types_listed = (
            "array, boolean, integer, null, number, object, string"
            if version == "3.1.0"
            else ("array, boolean, integer, number, object, string")
        )
        assert problems_of(spec, handlers) == [
            f"#/components/schemas/Pet/type: {'invalid schema: ' if version == '3.1.0' else ''}'strin' is not a"
            f" JSON Schema type (one of: {types_listed})"
        ]


def test_an_unknown_http_scheme_is_named_as_such(tmp_path: Path) -> None:
    schemes = {"jwt": {"type": "http", "scheme": "bearr", "bearerFormat": "JWT"}}
    spec = write_spec(tmp_path, {}, components={"securitySchemes": schemes})
    with pytest.raises(SpecError) as caught:
        SpecDocument.load(spec)
    [problem] = caught.value.problems
    assert problem.pointer == "/components/securitySchemes/jwt/scheme"
    assert problem.message.startswith("'bearr' is not an HTTP authentication scheme (did you mean bearer?)")


def test_a_yaml_syntax_error_names_file_line_and_column_on_one_line(tmp_path: Path) -> None:
    spec = tmp_path / "broken.yaml"
    spec.write_text("openapi: 3.1.0\ninfo: {title: t\n  version: 1\npaths: {}\n")
    refused = run_cli("check", "--spec", str(spec), "--handlers", "handlers.petstore")
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"trio-router: spec {spec} cannot be served with handlers.petstore: {spec}:3:10: not valid YAML:"
        " expected ',' or '}', but got ':' (while parsing a flow mapping)"
    )
