"""trio_router.testing on the Pet Store: the in-process client, and the spec's strategies used
the way docs/testing.md tells users to use them."""

from __future__ import annotations

import importlib
import time
from pathlib import Path

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers import petstore
from trio_router import App
from trio_router.testing import InvalidRequest, SpecStrategies, TestClient

SPEC = Path(__file__).resolve().parent.parent / "specs" / "petstore.yaml"
SECRET = "testing-secret-long-enough-for-hs256"
STRATEGIES = SpecStrategies(SPEC)
CREDENTIALS = {
    "authorization": "Bearer "
    + jwt.encode(
        {"sub": "t", "scope": "pets:write stats:read", "exp": int(time.time()) + 86400}, SECRET, algorithm="HS256"
    )
}


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PETSTORE_JWT_SECRET", SECRET)
    monkeypatch.setenv("PETSTORE_API_KEYS", "k")


def fresh_app() -> App:
    return App.from_spec(SPEC, importlib.reload(petstore))


_shared: list[App] = []


def shared_app() -> App:
    """One app for all examples of a property (compiling the spec per example would dominate)."""
    if not _shared:
        _shared.append(fresh_app())
    return _shared[0]


async def test_the_client_speaks_http_without_a_port() -> None:
    async with TestClient(fresh_app()) as client:
        created = await client.post("/pets", json={"kind": "dog", "name": "Ace"})
        assert created.status_code == 201
        assert (await client.get(created.headers["location"])).json()["name"] == "Ace"
        missing = await client.get("/pets/9999")
        assert (missing.status_code, missing.headers["content-type"]) == (404, "application/problem+json")
    # The real server code answers: its limits apply, and the client reconnects after a close.
    async with TestClient(fresh_app(), max_body_bytes=1024) as client:
        assert (await client.post("/pets", content=b"x" * 2048)).status_code == 413
        assert (await client.get("/health")).json() == {"status": "ok"}


def test_every_operation_has_strategies() -> None:
    assert len(STRATEGIES.operation_ids) == 21
    names = {(p["in"], p["name"]) for p in STRATEGIES.parameters("list_pets")}
    assert names == {
        ("query", "limit"),
        ("query", "offset"),
        ("query", "species"),
        ("query", "tags"),
        ("header", "X-Request-Budget"),
    }


OPERATIONS = st.sampled_from(STRATEGIES.operation_ids)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), operation_id=OPERATIONS)
async def test_valid_requests_are_never_refused_as_invalid_nor_fail(data: st.DataObject, operation_id: str) -> None:
    request = data.draw(STRATEGIES.valid_requests(operation_id, CREDENTIALS))
    async with TestClient(shared_app()) as client:
        reply = await client.send(request)
    # 404 (an id that does not exist) is fine; 400 would mean we refuse what the spec allows,
    # and 5xx includes a response that breaks the spec (response validation is strict).
    assert reply.status_code < 500, reply.text
    assert reply.status_code != 400, (request.url, request.content[:300], reply.text)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), operation_id=OPERATIONS)
async def test_a_request_invalid_in_one_parameter_is_a_400_naming_it(data: st.DataObject, operation_id: str) -> None:
    strategy = STRATEGIES.invalid_requests(operation_id, CREDENTIALS)
    invalid: InvalidRequest = data.draw(strategy)
    async with TestClient(shared_app()) as client:
        reply = await client.send(invalid.request)
    assert reply.status_code == 400, (invalid, reply.text)
    named = {(error["in"], error.get("name")) for error in reply.json()["errors"]}
    assert (invalid.location, invalid.name) in named, (invalid.request.url, reply.text)


async def test_the_client_has_every_method_docs_testing_promises() -> None:
    async with TestClient(fresh_app()) as client:
        created = await client.post("/pets", json={"kind": "cat", "name": "Tom"}, headers=CREDENTIALS)
        where = created.headers["location"]
        assert (await client.put(where, json={"kind": "cat", "name": "Tim"}, headers=CREDENTIALS)).json()[
            "name"
        ] == "Tim"
        assert (await client.patch(where, json={"name": "Tam"}, headers=CREDENTIALS)).json()["name"] == "Tam"
        assert (await client.head(where)).status_code == 200
        assert "GET" in (await client.options(where)).headers["allow"]
        assert (await client.delete(where, headers=CREDENTIALS)).status_code == 204
        assert (await client.get(where)).status_code == 404
