"""The reference app: what `trio-router run` serves with no arguments, checked against its spec."""

from __future__ import annotations

from pathlib import Path

import yaml

from handlers import petstore
from tests.conftest import serve

SPEC = Path(__file__).resolve().parent.parent / "specs" / "petstore.yaml"


def test_code_routes_match_the_spec_operations() -> None:
    spec = yaml.safe_load(SPEC.read_text())
    declared = {
        (method.upper(), path, operation["operationId"])
        for path, item in spec["paths"].items()
        for method, operation in item.items()
    }
    registered = {(route.method, route.path, route.handler.__name__) for route in petstore.app.routes}
    assert registered == declared


async def test_pets_can_be_listed_and_created() -> None:
    async with serve(petstore.app) as running:
        client = await running.connect()
        created = await client.request("POST", "/pets", b'{"name": "Tom", "tag": "cat"}')
        assert created.status == 201
        pet = created.json()
        assert created.headers["location"] == f"/pets/{pet['id']}"
        listed = await client.request("GET", "/pets")
        assert pet in listed.json()
        assert (await client.request("GET", created.headers["location"])).json() == pet
        assert (await client.request("GET", "/pets/999999")).status == 404
        assert (await client.request("GET", "/pets/rex")).status == 400
        bad = await client.request("POST", "/pets", b'{"tag": "no name"}')
        assert bad.status == 400
        assert bad.headers["content-type"] == "application/problem+json"
        assert (await client.request("POST", "/pets", b"not json")).status == 400
