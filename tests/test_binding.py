"""Binding handlers to operations: x-handler, keyword injection (typed parameters, a pydantic
body, the request), async handlers, and what each response_validation mode does with a handler
whose response breaks the spec."""

from __future__ import annotations

import logging
import types
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from tests.specs import write_spec
from trio_router import App, Request, Response
from trio_router.testing import TestClient

OBJECT = {
    "application/json": {"schema": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}}
}


def spec_file(directory: Path) -> Path:
    paths = {
        "/items/{item_id}": {
            "parameters": [{"name": "item_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "get": {
                "operationId": "get_item",
                "parameters": [
                    {"name": "verbose", "in": "query", "schema": {"type": "boolean", "default": False}},
                    {"name": "X-Trace-Level", "in": "header", "schema": {"type": "integer"}},
                ],
                "responses": {"200": {"description": "ok", "content": OBJECT}},
            },
            "put": {
                "operationId": "put_item",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {"name": {"type": "string"}, "size": {"type": "integer"}},
                            }
                        }
                    },
                },
                "responses": {"201": {"description": "stored", "content": OBJECT}},
            },
        },
        "/other": {
            "get": {
                "operationId": "whatever",
                "x-handler": "tests.test_binding:bound_elsewhere",
                "responses": {"200": {"description": "ok", "content": OBJECT}},
            }
        },
        "/drift": {"get": {"operationId": "drift", "responses": {"200": {"description": "ok", "content": OBJECT}}}},
    }
    return write_spec(directory, paths)


class Item(BaseModel):
    name: str
    size: int = 1


def bound_elsewhere(request: Request) -> dict[str, Any]:
    return {"n": 7}


def handlers() -> types.ModuleType:
    module = types.ModuleType("binding_handlers")

    def get_item(item_id: int, verbose: bool, x_trace_level: int | None = None) -> dict[str, Any]:
        return {"n": item_id, "verbose": verbose, "trace": x_trace_level}

    async def put_item(item_id: int, body: Item, request: Request) -> dict[str, Any]:
        assert isinstance(body, Item) and request.operation_id == "put_item"
        return {"n": item_id * body.size}

    def drift(request: Request) -> Response:
        return Response.json({"n": "not a number"})

    module.get_item = get_item  # type: ignore[attr-defined]
    module.put_item = put_item  # type: ignore[attr-defined]
    module.drift = drift  # type: ignore[attr-defined]
    return module


async def test_keyword_injection_pydantic_bodies_and_x_handler(tmp_path: Path) -> None:
    app = App.from_spec(spec_file(tmp_path), handlers())
    async with TestClient(app) as client:
        got = await client.get("/items/5?verbose=true", headers={"X-Trace-Level": "2"})
        assert got.json() == {"n": 5, "verbose": True, "trace": 2}
        assert (await client.get("/items/5")).json() == {"n": 5, "verbose": False, "trace": None}  # schema default
        put = await client.request("PUT", "/items/3", json={"name": "box", "size": 4})
        assert (put.status_code, put.json()) == (201, {"n": 12})  # the single 2xx, from an async handler
        assert (await client.get("/other")).json() == {"n": 7}


@pytest.mark.parametrize(("mode", "status"), [("strict", 500), ("warn", 200), ("off", 200)])
async def test_response_validation_modes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: Any, status: int
) -> None:
    app = App.from_spec(spec_file(tmp_path), handlers(), response_validation=mode)
    with caplog.at_level(logging.WARNING, logger="trio_router.app"):
        async with TestClient(app) as client:
            reply: httpx.Response = await client.get("/drift")
    assert reply.status_code == status
    logged = [record for record in caplog.records if "does not match the spec" in record.getMessage()]
    if mode == "off":
        assert not logged
    else:
        assert "body/n: is not of type integer" in logged[0].getMessage()
        assert "not a number" not in logged[0].getMessage()  # what a handler sends is never logged
        assert logged[0].levelno == (logging.ERROR if mode == "strict" else logging.WARNING)
