"""Starlette on hypercorn's trio worker: GET /pets/{pet_id} with the checks the petstore's spec
makes (an integer >= 1, the answer validated against the Pet model), by hand, as Starlette has
no validation of its own. The trio anchor: the same event loop as trio-router, another server.

    hypercorn --worker-class trio --bind 127.0.0.1:8001 stress.anchors.starlette_app:app
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from stress.anchors.fastapi_app import PETS, Pet


async def get_pet(request: Request) -> JSONResponse:
    try:
        pet_id = int(request.path_params["pet_id"])
    except ValueError:
        return JSONResponse({"detail": "pet_id must be an integer"}, status_code=400)
    if pet_id < 1:
        return JSONResponse({"detail": "pet_id must be >= 1"}, status_code=400)
    pet = PETS.get(pet_id)
    if pet is None:
        return JSONResponse({"detail": f"no pet {pet_id}"}, status_code=404)
    return JSONResponse(Pet.model_validate(pet).model_dump(exclude_unset=True))


app = Starlette(routes=[Route("/pets/{pet_id}", get_pet)])
