"""The reference app, end to end: what `trio-router run` serves with no arguments, through httpx."""

from __future__ import annotations

import importlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import jwt
import pytest

from handlers import petstore
from tests.conftest import serve
from trio_router import App

SPEC = Path(__file__).resolve().parent.parent / "specs" / "petstore.yaml"


API_KEY = "test-key-5b1f"
JWT_SECRET = "test-secret-which-is-long-enough-for-hs256"


def token(scope: str, expires_in: float = 60, secret: str = JWT_SECRET) -> str:
    claims = {"sub": "alice", "scope": scope, "exp": int(time.time() + expires_in)}
    return jwt.encode(claims, secret, algorithm="HS256")


@pytest.fixture
async def client(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setenv("PETSTORE_API_KEYS", f"other-key,{API_KEY}")
    monkeypatch.setenv("PETSTORE_JWT_SECRET", JWT_SECRET)
    module = importlib.reload(petstore)  # a fresh in-memory store per test
    async with serve(App.from_spec(SPEC, module)) as running, httpx.AsyncClient(base_url=running.url) as http:
        yield http


def problems(reply: httpx.Response) -> list[tuple[str, str | None]]:
    assert reply.headers["content-type"] == "application/problem+json"
    body = reply.json()
    assert body["status"] == reply.status_code and body["request_id"] == reply.headers["x-request-id"]
    return [(error["in"], error.get("name") or error.get("pointer")) for error in body.get("errors", [])]


async def test_the_spec_has_at_least_fifteen_operations_all_bound(client: httpx.AsyncClient) -> None:
    app = App.from_spec(SPEC, petstore)
    assert len(app.routes) >= 15
    assert all(route.handler.__module__ == "handlers.petstore" for route in app.routes)


async def test_create_read_replace_rename_delete(client: httpx.AsyncClient) -> None:
    created = await client.post("/pets", json={"kind": "cat", "name": "Tom", "indoor": True})
    assert created.status_code == 201
    pet = created.json()
    assert created.headers["location"] == f"/pets/{pet['id']}"
    assert (await client.get(created.headers["location"])).json() == pet
    head = await client.head(created.headers["location"])
    assert head.status_code == 200 and head.content == b""
    replaced = await client.put(f"/pets/{pet['id']}", json={"kind": "dog", "name": "Max"})
    assert replaced.json()["kind"] == "dog"
    renamed = await client.patch(f"/pets/{pet['id']}", json={"name": "Maxi"})
    assert renamed.json()["name"] == "Maxi"
    deleted = await client.delete(f"/pets/{pet['id']}", headers={"x-api-key": API_KEY})
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert (await client.get(f"/pets/{pet['id']}")).status_code == 404


async def test_a_form_body_is_coerced_to_the_schema_types(client: httpx.AsyncClient) -> None:
    created = await client.post("/pets", data={"kind": "dog", "name": "Bo", "good_boy": "true"})
    assert created.status_code == 201
    assert created.json()["good_boy"] is True
    owner = await client.post(
        "/owners",
        content=b"name=Ann&pet_ids=1&pet_ids=2&newsletter=false",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert owner.status_code == 201
    assert owner.json()["pet_ids"] == [1, 2] and owner.json()["newsletter"] is False
    assert (await client.get(owner.headers["location"])).json() == owner.json()
    mine = await client.get(owner.headers["location"] + "/pets")
    assert [pet["id"] for pet in mine.json()] == [1, 2]


async def test_the_discriminator_names_the_precise_problem(client: httpx.AsyncClient) -> None:
    unknown = await client.post("/pets", json={"kind": "cow", "name": "Daisy"})
    assert unknown.status_code == 400
    assert problems(unknown) == [("body", "/kind")]
    assert "'cow' is not one of: cat, dog" in unknown.json()["errors"][0]["detail"]
    wrong_dog = await client.post("/pets", json={"kind": "dog", "name": "", "good_boy": 3})
    assert sorted(problems(wrong_dog)) == [("body", "/good_boy"), ("body", "/name")]


async def test_bodies_that_are_missing_malformed_or_of_the_wrong_type(client: httpx.AsyncClient) -> None:
    missing = await client.post("/pets", headers={"content-type": "application/json"})
    assert (missing.status_code, problems(missing)) == (400, [("body", None)])
    malformed = await client.post("/pets", content=b'{"kind": "dog",', headers={"content-type": "application/json"})
    assert malformed.status_code == 400 and "not valid JSON" in malformed.json()["errors"][0]["detail"]
    text = await client.post("/pets", content=b"Rex", headers={"content-type": "text/plain"})
    assert text.status_code == 415
    assert text.headers["accept"] == "application/json, application/x-www-form-urlencoded"
    no_type = await client.post("/pets", content=b"{}", headers={"content-type": ""})
    assert no_type.status_code == 415
    extra = await client.patch("/pets/1", json={"name": "Rex", "age": 3})
    assert problems(extra) == [("body", "")]


async def test_query_parameters_form_exploded_and_not_with_defaults(client: httpx.AsyncClient) -> None:
    await client.post("/pets", json={"kind": "cat", "name": "Tom", "tag": "small"})
    await client.post("/pets", json={"kind": "dog", "name": "Ace", "tag": "small"})
    cats = await client.get("/pets", params=[("species", "cat"), ("species", "bird")])
    assert [pet["name"] for pet in cats.json()] == ["Tom"]
    tagged = await client.get("/pets?tags=small,good&limit=2&offset=1")
    assert [pet["name"] for pet in tagged.json()] == ["Tom", "Ace"]
    assert tagged.headers["x-total-count"] == "3"
    bad = await client.get("/pets?limit=0&species=fish&offset=-1&offset=2")
    assert sorted(problems(bad)) == [("query", "limit"), ("query", "offset"), ("query", "species")]
    assert (await client.get("/pets", headers={"x-request-budget": "zero"})).status_code == 400


async def test_deep_object_pipe_and_space_delimited_queries(client: httpx.AsyncClient) -> None:
    await client.post("/pets", json={"kind": "dog", "name": "Red Rover"})
    found = await client.get("/pets/search?filter%5Bspecies%5D=dog&ids=1|2&words=red+rover")
    assert [pet["id"] for pet in found.json()] == [2]
    assert [pet["id"] for pet in (await client.get("/pets/search?ids=1%7C2&filter[name]=rex")).json()] == [1]
    unknown_field = await client.get("/pets/search?filter[colour]=red")
    assert problems(unknown_field) == [("query", "filter")]
    nested = await client.get("/pets/search?filter[a][b]=1")
    assert problems(nested) == [("query", "filter")]
    not_ints = await client.get("/pets/search?ids=1|x")
    assert problems(not_ints) == [("query", "ids")]


async def test_path_styles_matrix_label_and_partial_segments(client: httpx.AsyncClient) -> None:
    batch = await client.get("/pets/batch/;ids=1,99")
    assert [pet["id"] for pet in batch.json()] == [1]
    assert (await client.get("/pets/batch/1,2")).status_code == 400  # not matrix style
    assert (await client.get("/calendar/.mon.fri")).json() == {"days": ["mon", "fri"]}
    assert problems(await client.get("/calendar/.mon.someday")) == [("path", "days")]
    assert (await client.get("/files/report.txt")).json() == {"name": "report", "ext": "txt"}
    assert (await client.get("/files/archive.tar.json")).status_code == 400  # name may not hold a dot
    assert sorted(problems(await client.get("/files/Report.exe"))) == [("path", "ext"), ("path", "name")]
    assert problems(await client.get("/pets/abc")) == [("path", "pet_id")]


async def test_header_cookie_and_json_content_parameters(client: httpx.AsyncClient) -> None:
    reply = await client.get(
        "/me/preferences",
        params={"view": '{"compact": true, "page_size": 5}'},
        headers={"x-client-version": "1.2", "cookie": "theme=dark"},
    )
    assert reply.json() == {"theme": "dark", "client_version": "1.2", "view": {"compact": True, "page_size": 5}}
    default = await client.get("/me/preferences", headers={"X-Client-Version": "2.0"})
    assert default.json()["theme"] == "light"
    missing = await client.get("/me/preferences", headers={"cookie": "theme=blue"})
    assert sorted(problems(missing)) == [("cookie", "theme"), ("header", "X-Client-Version")]
    bad_json = await client.get("/me/preferences?view={nope", headers={"x-client-version": "1.0"})
    assert problems(bad_json) == [("query", "view")]


async def test_multipart_upload_and_bytes_back(client: httpx.AsyncClient) -> None:
    image = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    uploaded = await client.post(
        "/pets/1/photos", files={"file": ("rex.png", image, "image/png")}, data={"caption": "at the beach"}
    )
    assert uploaded.status_code == 201
    meta = uploaded.json()
    assert (meta["size"], meta["caption"], meta["content_type"]) == (len(image), "at the beach", "image/png")
    assert (await client.get(uploaded.headers["location"])).json() == meta
    raw = await client.get(uploaded.headers["location"] + "/raw")
    assert (raw.content, raw.headers["content-type"]) == (image, "image/png")
    no_file = await client.post("/pets/1/photos", files={"caption": (None, b"no file")})
    assert problems(no_file) == [("body", "")]
    wrong_type = await client.post("/pets/1/photos", files={"file": ("rex.txt", b"text", "text/plain")})
    assert wrong_type.status_code == 400
    assert wrong_type.json()["errors"][0]["detail"] == "part 'file' is text/plain; it must be image/png, image/jpeg"
    assert (await client.delete("/pets/1", headers={"x-api-key": API_KEY})).status_code == 204
    assert (await client.get(uploaded.headers["location"])).status_code == 404  # photos go with their pet
    broken = await client.post(
        "/pets/1/photos", content=b"--x\r\nno headers", headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert broken.status_code == 400 and "multipart" in broken.json()["errors"][0]["detail"]


async def test_unknown_paths_methods_and_automatic_options(client: httpx.AsyncClient) -> None:
    assert (await client.get("/nope")).status_code == 404
    wrong = await client.post("/pets/1")
    assert (wrong.status_code, wrong.headers["allow"]) == (405, "DELETE, GET, HEAD, OPTIONS, PATCH, PUT")
    options = await client.options("/pets")
    assert (options.status_code, options.headers["allow"]) == (204, "GET, HEAD, OPTIONS, POST")


async def test_the_api_key_and_bearer_protected_operations(client: httpx.AsyncClient) -> None:
    anonymous = await client.delete("/pets/1")
    assert anonymous.status_code == 401
    assert anonymous.headers.get_list("www-authenticate") == [
        'ApiKey realm="api", in="header", name="X-API-Key"',
        'Bearer realm="api"',
    ]
    assert (await client.delete("/pets/1", headers={"x-api-key": "guess"})).status_code == 401
    reader = {"authorization": f"Bearer {token('stats:read')}"}
    assert (await client.delete("/pets/1", headers=reader)).status_code == 403  # valid, but not pets:write
    writer = {"authorization": f"Bearer {token('pets:write stats:read')}"}
    assert (await client.delete("/pets/1", headers=writer)).status_code == 204
    stats = await client.get("/admin/stats", headers=reader)
    assert stats.json() == {"pets": 0, "owners": 0, "photos": 0, "caller": "alice"}
    expired = await client.get("/admin/stats", headers={"authorization": f"Bearer {token('stats:read', -120)}"})
    assert (expired.status_code, expired.json()["detail"]) == (401, "the token has expired")
    forged = await client.get(
        "/admin/stats", headers={"authorization": f"Bearer {token('stats:read', secret='x' * 40)}"}
    )
    assert forged.status_code == 401
    assert (await client.get("/admin/stats", headers={"x-api-key": API_KEY})).status_code == 401  # not its scheme


async def test_refused_requests_are_counted_by_operation_and_reason(client: httpx.AsyncClient) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    await client.get("/pets?limit=0&species=fish")  # two query errors: one invalid_query rejection
    await client.get("/me/preferences", headers={"cookie": "theme=blue"})  # cookie and missing header
    await client.post("/pets", content=b"x", headers={"content-type": "text/plain"})
    await client.delete("/pets/1")
    await client.delete("/pets/1", headers={"authorization": f"Bearer {token('stats:read')}"})
    metrics = await client.get("/metrics")
    counted = {
        (sample.labels["operation"], sample.labels["reason"]): sample.value
        for family in text_string_to_metric_families(metrics.text)
        for sample in family.samples
        if sample.name == "trio_router_request_rejections_total"
    }
    assert counted == {
        ("list_pets", "invalid_query"): 1,
        ("get_preferences", "invalid_cookie"): 1,
        ("get_preferences", "invalid_header"): 1,
        ("create_pet", "unsupported_media_type"): 1,
        ("delete_pet", "unauthenticated"): 1,
        ("delete_pet", "forbidden"): 1,
    }


async def test_pet_events_stream_as_server_sent_events(client: httpx.AsyncClient) -> None:
    await client.post("/pets", json={"kind": "cat", "name": "Tom"})
    async with client.stream("GET", "/pets/events?limit=5") as reply:
        assert reply.headers["content-type"] == "text/event-stream"
        assert reply.headers["transfer-encoding"] == "chunked"
        text = (await reply.aread()).decode()
    events = [block.split("\n") for block in text.strip().split("\n\n")]
    assert [lines[:2] for lines in events] == [["id: 1", "event: pet"], ["id: 2", "event: pet"]]
    assert events[1][2] == 'data: {"id":2,"kind":"cat","name":"Tom"}'
    resumed = await client.get("/pets/events", headers={"last-event-id": "1"})
    assert resumed.text.startswith("id: 2\nevent: pet\n")


async def test_pet_events_pass_through_the_guardrails(client: httpx.AsyncClient) -> None:
    await client.post("/pets", json={"kind": "cat", "name": "Tom", "tag": "owner: tom.owner@example.com"})
    await client.post("/pets", json={"kind": "dog", "name": "Leak", "tag": "key AKIAABCDEFGHIJKLMNOP"})
    await client.post("/pets", json={"kind": "dog", "name": "Never sent"})
    text = (await client.get("/pets/events")).text
    events = [block.split("\n") for block in text.strip().split("\n\n")]
    assert events[1][2] == 'data: {"id":2,"kind":"cat","name":"Tom","tag":"owner: [REDACTED:email]"}'
    # The blocked pattern severs the stream: pet 3's event is never sent, nor any after it.
    assert events[2:] == [
        [
            "event: error",
            'data: {"error":"guardrail","rule":"blocked.aws-access-key","kind":"aws-access-key","action":"truncate"}',
        ]
    ]
    metrics = (await client.get("/metrics")).text
    assert (
        'trio_router_guardrail_verdicts_total{action="redact",operation="stream_pet_events",rule="pii.email"} 1.0'
        in metrics
    )
    assert 'trio_router_stream_severs_total{operation="stream_pet_events",reason="guardrail"} 1.0' in metrics


async def test_a_form_with_more_fields_than_max_form_fields_is_refused_before_parsing(
    client: httpx.AsyncClient,
) -> None:
    """1,000 fields (the default limit) are parsed and validated; one more is a 413, urlencoded
    or multipart, and the server keeps serving."""
    form = {"content-type": "application/x-www-form-urlencoded"}
    at_limit = await client.post("/owners", content=b"&".join([b"name=Ann"] + [b"x=1"] * 999), headers=form)
    assert at_limit.status_code == 201  # parsed and accepted (the unknown field x is ignored)
    over = await client.post("/owners", content=b"&".join([b"name=Ann"] + [b"x=1"] * 1000), headers=form)
    assert over.status_code == 413 and over.json()["detail"] == "the form has 1001 fields; at most 1000 are accepted"
    part = b'--b\r\ncontent-disposition: form-data; name="x"\r\n\r\n1\r\n'
    multipart = await client.post(
        "/owners", content=part * 1001 + b"--b--\r\n", headers={"content-type": "multipart/form-data; boundary=b"}
    )
    assert multipart.status_code == 413
    assert (await client.get("/pets")).status_code == 200


async def test_a_form_field_given_twice_is_refused_unless_it_is_an_array(client: httpx.AsyncClient) -> None:
    """As a query parameter: a declared non-array field given twice is a 400 (no value silently
    wins); an array field collects its values."""
    form = {"content-type": "application/x-www-form-urlencoded"}
    twice = await client.post("/owners", content=b"name=Ann&name=Bob", headers=form)
    assert twice.status_code == 400
    assert (
        twice.json()["errors"][0]["detail"] == "the form field 'name' is given more than once, and it is not an array"
    )
    pets = [(await client.post("/pets", json={"kind": "cat", "name": n})).json()["id"] for n in ("A", "B")]
    collected = await client.post("/owners", content=f"name=Ann&pet_ids={pets[0]}&pet_ids={pets[1]}", headers=form)
    assert collected.status_code == 201 and collected.json()["pet_ids"] == pets
