"""/openapi.json declares the errors the server itself gives (problem+json, or the spec's
x-error-format), where the spec does not; the user's file is untouched, a setting turns it off."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.conftest import serve
from trio_router import Settings
from trio_router.openapi.document import SpecDocument
from trio_router.runner import load_app

LIBRARY = Path(__file__).parent / "newcomer" / "library.yaml"


async def served(spec: Path, handlers: str, **settings: Any) -> dict[str, Any]:
    config = Settings(spec=str(spec), handlers=handlers, **settings)
    async with serve(load_app(config)) as running, httpx.AsyncClient() as client:
        document: dict[str, Any] = (await client.get(running.url + "/openapi.json")).json()
        return document


async def test_each_operation_declares_the_errors_the_server_may_give_it(tmp_path: Path) -> None:
    before = LIBRARY.read_text()
    document = await served(LIBRARY, "tests.newcomer.library_app")
    assert LIBRARY.read_text() == before
    members = document["paths"]["/members"]
    assert sorted(members["post"]["responses"]) == [
        "201",
        "400",
        "401",
        "403",
        "408",
        "409",
        "413",
        "415",
        "500",
        "503",
        "504",
    ]
    assert (
        members["post"]["responses"]["409"] == yaml.safe_load(before)["paths"]["/members"]["post"]["responses"]["409"]
    )
    assert sorted(document["paths"]["/events"]["get"]["responses"]) == ["200", "400", "401", "403", "500", "503", "504"]
    refused = document["components"]["responses"]["trio-router.400"]
    assert refused["content"]["application/problem+json"]["schema"] == {
        "$ref": "#/components/schemas/trio-router.problem"
    }
    served_file = tmp_path / "served.json"
    served_file.write_text(json.dumps(document))
    SpecDocument.load(served_file)  # still a valid OpenAPI 3.1 document


async def test_an_openai_error_format_gets_openais_error_object(tmp_path: Path) -> None:
    spec = yaml.safe_load(LIBRARY.read_text())
    spec["x-error-format"] = "openai"
    (tmp_path / "library.yaml").write_text(yaml.safe_dump(spec))
    document = await served(tmp_path / "library.yaml", "tests.newcomer.library_app")
    assert document["paths"]["/me"]["get"]["responses"]["401"] == {
        "$ref": "#/components/responses/trio-router.openai.401"
    }
    unauthorized = document["components"]["responses"]["trio-router.openai.401"]["content"]
    assert list(unauthorized) == ["application/json"]
    error = document["components"]["schemas"]["trio-router.openai"]["properties"]["error"]
    assert error["properties"]["code"] == {"type": ["string", "null"]}
    app = load_app(Settings(spec=str(tmp_path / "library.yaml"), handlers="tests.newcomer.library_app"))
    async with serve(app) as running, httpx.AsyncClient() as client:
        reply = await client.get(running.url + "/me")
    assert reply.status_code == 401 and set(reply.json()["error"]) >= {"message", "type", "param", "code"}


async def test_the_setting_serves_the_spec_as_written() -> None:
    document = await served(LIBRARY, "tests.newcomer.library_app", openapi_error_responses=False)
    assert document == yaml.safe_load(LIBRARY.read_text())
