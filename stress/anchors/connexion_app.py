"""Connexion 3 anchor: GET /pets/{pet_id} from an OpenAPI spec, with request and response
validation on (as trio-router's petstore runs), served by uvicorn.

    uvicorn stress.anchors.connexion_app:app --port 8002
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from connexion import AsyncApp

PETS: dict[int, dict[str, Any]] = {1: {"id": 1, "kind": "dog", "name": "Rex", "tag": "good", "good_boy": True}}


async def get_pet(pet_id: int) -> Any:
    pet = PETS.get(pet_id)
    if pet is None:
        return {"detail": f"no pet {pet_id}"}, 404
    return pet


async def create_pet(body: dict[str, Any]) -> Any:
    created = {"id": len(PETS) + 1, **body}
    PETS[created["id"]] = created
    return created, 201


app = AsyncApp(__name__, specification_dir=str(Path(__file__).parent))
app.add_api("connexion_spec.yaml", validate_responses=True)
