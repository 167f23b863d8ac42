"""Values that Python's own parsers turn into a 500 or an invalid answer, sent through a real
socket: JSON nested 100,000 deep, integers of 5,000 digits, 1e999999, in a JSON body, a query
parameter, a JSON-encoded parameter and a form. Each is a 400 naming the limit, and the same
connection serves on."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Client, Running, serve
from tests.specs import write_spec
from trio_router import App

OK = {"200": {"description": "ok", "content": {"application/json": {"schema": {}}}}}


def values_app(tmp_path: Path) -> App:
    number = {"type": "number"}
    integer = {"type": "integer"}
    paths = {
        "/echo": {
            "post": {
                "operationId": "echo",
                "requestBody": {
                    "content": {
                        "application/json": {"schema": {}},
                        "application/x-www-form-urlencoded": {
                            "schema": {"type": "object", "properties": {"count": integer}}
                        },
                    }
                },
                "responses": OK,
            }
        },
        "/items": {
            "get": {
                "operationId": "items",
                "parameters": [
                    {"name": "limit", "in": "query", "schema": integer},
                    {"name": "price", "in": "query", "schema": number},
                    {"name": "filter", "in": "query", "content": {"application/json": {"schema": {}}}},
                    {"name": "code", "in": "query", "schema": {"type": "string", "maxLength": 5}},
                ],
                "responses": OK,
            }
        },
    }
    paths["/tags"] = {
        "post": {
            "operationId": "tags",
            "requestBody": {"content": {"application/json": {"schema": {"type": "array", "items": integer}}}},
            "responses": OK,
        }
    }
    handlers = types.ModuleType("values_handlers")
    handlers.tags = lambda request: {}  # type: ignore[attr-defined]
    handlers.echo = lambda request: {"got": request.body}  # type: ignore[attr-defined]
    handlers.items = lambda request: {"got": request.params}  # type: ignore[attr-defined]
    return App.from_spec(write_spec(tmp_path, paths), handlers)


async def refused(client: Client, method: str, path: str, body: bytes = b"", kind: str = "application/json") -> str:
    """The detail of the 400 (the only answer accepted), all its errors joined."""
    headers = [("content-type", kind)] if body else []
    reply = await client.request(method, path, body=body, headers=headers)
    assert reply.status == 400, (reply.status, reply.body[:300])
    problem = reply.json()
    return " | ".join([problem["detail"], *(error["detail"] for error in problem.get("errors", []))])


@pytest.fixture
async def running(tmp_path: Path) -> Any:
    async with serve(values_app(tmp_path), max_body_bytes=1 << 20) as server:
        yield server


async def test_json_nested_deeper_than_the_limit(running: Running) -> None:
    client = await running.connect()
    deep = b"[" * 100_000 + b"]" * 100_000
    assert "nest more than 256 deep (the server's max_json_depth)" in await refused(client, "POST", "/echo", deep)
    at_limit = b"[" * 256 + b"]" * 256
    assert (await client.request("POST", "/echo", at_limit, [("content-type", "application/json")])).status == 200
    # Brackets inside strings do not nest; escaped quotes do not end a string.
    texts = json.dumps({"a": "[" * 1000, "b": '\\"' + "{" * 1000}).encode()
    assert (await client.request("POST", "/echo", texts, [("content-type", "application/json")])).status == 200
    filter_ = "[" * 3000 + "]" * 3000  # within the 8 KiB target limit
    assert "nest more than 256 deep" in await refused(client, "GET", f"/items?filter={filter_}")


async def test_numbers_python_will_not_convert(running: Running) -> None:
    client = await running.connect()
    huge = "9" * 5000
    for detail in [
        await refused(client, "POST", "/echo", f'{{"n": {huge}}}'.encode()),
        await refused(client, "GET", f"/items?limit={huge}"),
        await refused(client, "GET", f"/items?price=-{huge}"),
        await refused(client, "POST", "/echo", f"count={huge}".encode(), "application/x-www-form-urlencoded"),
    ]:
        assert "more than 4300 digits (the server's limit)" in detail
        assert "set_int_max_str_digits" not in detail
    for detail in [
        await refused(client, "POST", "/echo", b'{"n": 1e999999}'),
        await refused(client, "POST", "/echo", b"[-1e400]"),
        await refused(client, "GET", "/items?price=1e999999"),
    ]:
        assert "out of range" in detail
    assert "NaN is not JSON" in await refused(client, "POST", "/echo", b"[NaN]")
    fine = await client.request("GET", f"/items?limit={'9' * 4300}&price=1e308")
    assert fine.status == 200 and fine.json()["got"]["price"] == 1e308


async def test_errors_quote_briefly_and_list_at_most_twenty(running: Running) -> None:
    """An error quoted the whole offending value, once per error: the answer could be several
    times the request."""
    client = await running.connect()
    reply = await client.request("GET", f"/items?code={'x' * 5000}")
    assert reply.status == 400 and len(reply.body) < 600
    assert "(5000 characters) is too long" in reply.json()["errors"][0]["detail"]
    many = json.dumps(["not a number " * 20] * 1000).encode()
    reply = await client.request("POST", "/tags", body=many, headers=[("content-type", "application/json")])
    problem = reply.json()
    assert reply.status == 400 and len(reply.body) < len(many) / 10
    assert problem["detail"] == "the request does not match the API: 1000 problems (the first 20 listed)"
    assert len(problem["errors"]) == 20
