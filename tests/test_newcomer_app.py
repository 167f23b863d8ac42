"""A service written as a user would write it (tests/newcomer: its own OpenAPI 3.1 spec, its
handlers in the Flask/Connexion/FastAPI habits), served by a real server and called with httpx.
Every convention those users bring must do what its author meant."""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import jwt
import pytest

from tests.conftest import Running, serve
from trio_router import App

SPEC = Path(__file__).parent / "newcomer" / "library.yaml"
KEY = {"X-API-Key": "library-key"}
MEMBER = {"name": "ada", "email": "ada@example.org", "password": "hunter22"}


def fresh_module() -> ModuleType:
    return importlib.reload(importlib.import_module("tests.newcomer.library_app"))


async def _client(read_only: Any = "refuse") -> AsyncIterator[tuple[httpx.AsyncClient, ModuleType]]:
    module = fresh_module()
    app = App.from_spec(SPEC, module, read_only=read_only)
    running: Running
    async with serve(app, access_log=False) as running, httpx.AsyncClient(base_url=running.url, headers=KEY) as client:
        yield client, module


@pytest.fixture
async def library() -> AsyncIterator[tuple[httpx.AsyncClient, ModuleType]]:
    async for pair in _client():
        yield pair


@pytest.fixture
async def lenient_library() -> AsyncIterator[tuple[httpx.AsyncClient, ModuleType]]:
    async for pair in _client("ignore"):
        yield pair


async def test_a_tuple_with_status_and_headers_is_the_201_its_author_meant(library: Any) -> None:
    client, _ = library
    created = await client.post("/members", json=MEMBER)
    assert created.status_code == 201
    assert created.headers["location"] == "/members/1"
    assert created.headers["content-type"] == "application/json"
    assert created.json() == {"id": 1, "name": "ada", "email": "ada@example.org", "joined": "2026-12-03T00:00:00Z"}
    listed = await client.get("/members")  # a list of pydantic models
    assert listed.status_code == 200 and listed.json()[0]["name"] == "ada"


async def test_a_read_only_property_sent_by_a_client_is_refused_naming_it(library: Any) -> None:
    client, module = library
    refused = await client.post("/members", json={**MEMBER, "id": 7})
    assert refused.status_code == 400
    assert refused.json()["errors"] == [
        {"in": "body", "pointer": "/id", "detail": "is read-only: a request may not send it"}
    ]
    assert module.SEEN_BODIES == []


async def test_with_read_only_ignore_the_property_never_reaches_the_handler(lenient_library: Any) -> None:
    client, module = lenient_library
    created = await client.post("/members", json={**MEMBER, "id": 7, "joined": "1999-01-01T00:00:00Z"})
    assert created.status_code == 201
    assert created.json()["id"] == 1
    assert module.SEEN_BODIES == [MEMBER]


async def test_a_write_only_property_never_leaves_the_server_nor_reaches_the_log(
    library: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client, _ = library
    await client.post("/members", json=MEMBER)
    with caplog.at_level(logging.WARNING):
        leaked = await client.get("/members/1/debug")
    assert leaked.status_code == 500
    assert "hunter22" not in leaked.text
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "body/password: is write-only: a response may not include it" in logged
    assert "hunter22" not in logged


async def test_dict_headers_keep_alive_after_a_handlers_409_and_str_header_pairs(library: Any) -> None:
    client, _ = library
    await client.post("/members", json=MEMBER)
    patched = await client.patch("/members/1", json={"name": "ada lovelace"})
    assert patched.status_code == 200 and patched.headers["etag"].startswith('"1-')
    assert patched.json()["name"] == "ada lovelace"
    taken = await client.post("/members", json={**MEMBER, "name": "ada lovelace"})
    assert taken.status_code == 409
    assert taken.headers["content-type"] == "application/problem+json"
    assert "connection" not in taken.headers  # a handler's 4xx keeps the connection
    await client.post("/items", json={"kind": "book", "title": "SICP", "pages": 657})
    first = await client.put("/items/2")
    assert first.json() == {"reserved": True}  # a dataclass
    again = await client.put("/items/2")
    assert again.status_code == 409 and again.headers["retry-after"] == "5"
    assert "connection" not in again.headers


async def test_a_dict_body_is_typed_with_the_operations_declared_json_media_type(library: Any) -> None:
    client, _ = library
    added = await client.post("/items", json={"kind": "dvd", "title": "Metropolis", "minutes": 153})
    assert added.status_code == 201
    assert added.headers["content-type"] == "application/vnd.library+json"
    assert added.json() == {"kind": "dvd", "title": "Metropolis", "minutes": 153, "id": 1}
    fetched = await client.get("/items/1")
    assert fetched.headers["content-type"] == "application/vnd.library+json"
    wrong = await client.post("/items", json={"kind": "dvd", "title": "Nosferatu"})
    assert wrong.status_code == 400
    assert wrong.json()["errors"] == [{"in": "body", "pointer": "", "detail": "'minutes' is a required property"}]


async def test_a_tuple_with_a_status_answers_404_and_an_empty_204(library: Any) -> None:
    client, _ = library
    missing = await client.get("/members/9")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    await client.post("/members", json=MEMBER)
    gone = await client.delete("/members/1")
    assert gone.status_code == 204 and gone.content == b""
    assert "content-type" not in gone.headers


async def test_jwt_and_event_stream(library: Any) -> None:
    client, _ = library
    token = jwt.encode(
        {"sub": "grace", "exp": int(time.time()) + 60}, "library-jwt-secret-long-enough-for-hs256", algorithm="HS256"
    )
    me = await client.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json() == {"sub": "grace"}
    assert (await client.get("/me")).status_code == 401
    await client.post("/items", json={"kind": "book", "title": "SICP", "pages": 657})
    stream = await client.get("/events")
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert 'event: item\ndata: {"id":1,"title":"SICP"}' in stream.text
