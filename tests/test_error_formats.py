"""x-error-format: OpenAI's error object where a spec asks for it (its SDKs parse that shape),
problem+json elsewhere; the openai SDK reads our errors as it reads OpenAI's."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import openai
import pytest
import trio

from tests.conftest import serve
from tests.specs import write_spec
from trio_router import App, HTTPError
from trio_router.openapi.document import SpecError

JSON_OBJECT = {"application/json": {"schema": {"type": "object"}}}


def spec_file(directory: Path, root_format: object = "openai") -> Path:
    body = {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["model"],
                    "properties": {"model": {"type": "string"}, "temperature": {"type": "number", "maximum": 2}},
                }
            }
        },
    }
    paths = {
        "/v1/chat/completions": {
            "post": {
                "operationId": "chat",
                "requestBody": body,
                "responses": {"200": {"description": "ok", "content": JSON_OBJECT}},
            }
        },
        "/health": {
            "get": {
                "operationId": "health",
                "x-error-format": "problem",
                "responses": {"200": {"description": "ok", "content": JSON_OBJECT}},
            }
        },
    }
    return write_spec(directory, paths, **{"x-error-format": root_format})


def handlers() -> types.ModuleType:
    module = types.ModuleType("format_handlers")

    def chat(body: dict[str, Any]) -> dict[str, Any]:
        raise HTTPError(404, f"the model {body['model']!r} does not exist", close=False, code="model_not_found")

    def health() -> dict[str, Any]:
        raise HTTPError(503, "draining", close=False)

    module.chat = chat  # type: ignore[attr-defined]
    module.health = health  # type: ignore[attr-defined]
    return module


def calls(url: str) -> list[openai.APIStatusError]:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0)
    errors = []
    for arguments in ({"model": "nope", "messages": []}, {"model": "m", "messages": [], "temperature": 5}):
        with pytest.raises(openai.APIStatusError) as raised:
            client.chat.completions.create(**arguments)
        errors.append(raised.value)
    return errors


async def test_openai_errors_where_the_spec_asks_and_problem_json_elsewhere(tmp_path: Path) -> None:
    async with serve(App.from_spec(spec_file(tmp_path), handlers())) as running:
        missing_model, invalid = await trio.to_thread.run_sync(calls, running.url)
        client = await running.connect()
        unknown = await client.request("GET", "/v2/nothing")
        health = await client.request("GET", "/health")
    assert isinstance(missing_model, openai.NotFoundError)
    assert (missing_model.code, missing_model.type) == ("model_not_found", "not_found_error")
    assert missing_model.message.endswith("the model 'nope' does not exist")
    assert isinstance(invalid, openai.BadRequestError) and invalid.type == "invalid_request_error"
    assert invalid.param == "/temperature" and "5 is greater than the maximum of 2" in invalid.message
    assert unknown.status == 404 and unknown.json()["error"]["type"] == "not_found_error"  # before routing too
    assert unknown.headers["content-type"] == "application/json"
    assert health.headers["content-type"] == "application/problem+json" and health.json()["status"] == 503


def test_an_unknown_error_format_stops_startup(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="x-error-format must be one of"):
        App.from_spec(spec_file(tmp_path, root_format="xml"), handlers())
