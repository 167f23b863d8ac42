"""The reference app, served by a bare ``trio-router run``.

Until the OpenAPI compiler lands, its routes are registered in code; afterwards
specs/petstore.yaml becomes their source of truth and these functions bind by operationId.
"""

from __future__ import annotations

import json
from itertools import count

from trio_router import App, HTTPError, Request, Response

app = App()

_pets: dict[int, dict[str, object]] = {1: {"id": 1, "name": "Rex", "tag": "dog"}}
_ids = count(2)


@app.route("GET", "/health")
def health(request: Request) -> dict[str, str]:
    return {"status": "ok"}


@app.route("GET", "/pets")
def list_pets(request: Request) -> list[dict[str, object]]:
    return list(_pets.values())


@app.route("POST", "/pets")
async def create_pet(request: Request) -> Response:
    try:
        pet = json.loads(await request.body())
    except ValueError:
        raise HTTPError(400, "the body is not JSON", close=False) from None
    if not isinstance(pet, dict) or not isinstance(pet.get("name"), str):
        raise HTTPError(400, "a pet needs a string `name`", close=False)
    pet_id = next(_ids)
    _pets[pet_id] = {"id": pet_id, "name": pet["name"], "tag": pet.get("tag")}
    return Response.json(_pets[pet_id], status=201, headers=[("location", f"/pets/{pet_id}")])


@app.route("GET", "/pets/{pet_id}")
def get_pet(request: Request) -> dict[str, object]:
    try:
        pet = _pets.get(int(request.path_params["pet_id"]))
    except ValueError:
        raise HTTPError(400, "pet_id must be an integer", close=False) from None
    if pet is None:
        raise HTTPError(404, f"no pet {request.path_params['pet_id']}", close=False)
    return pet
