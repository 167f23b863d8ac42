"""FastAPI anchors answering GET /health like trio-router's petstore: a sync handler (run in
Starlette's threadpool) and an async one; and GET /pets/{pet_id} with a validated path parameter
and a response model, like the petstore's spec-validated operation.

    uvicorn stress.anchors.fastapi_app:app --port 8001
"""

from __future__ import annotations

from typing import Literal

from fastapi import FastAPI, HTTPException, Path
from pydantic import BaseModel, Field

app = FastAPI()


class Pet(BaseModel):
    id: int
    kind: Literal["dog", "cat", "bird"]
    name: str = Field(min_length=1, max_length=64)
    tag: str | None = None
    good_boy: bool | None = None
    indoor: bool | None = None
    owner_id: int | None = None


PETS = {1: {"id": 1, "kind": "dog", "name": "Rex", "tag": "good", "good_boy": True}}


@app.get("/pets/{pet_id}", response_model=Pet, response_model_exclude_unset=True)
async def get_pet(pet_id: int = Path(ge=1)) -> dict[str, object]:
    pet = PETS.get(pet_id)
    if pet is None:
        raise HTTPException(404, f"no pet {pet_id}")
    return pet


class NewPet(BaseModel):
    kind: Literal["dog", "cat", "bird"]
    name: str = Field(min_length=1, max_length=64)
    tag: str | None = None


@app.post("/pets", response_model=Pet, status_code=201, response_model_exclude_unset=True)
async def create_pet(pet: NewPet) -> dict[str, object]:
    created = {"id": len(PETS) + 1, **pet.model_dump(exclude_unset=True)}
    PETS[created["id"]] = created  # type: ignore[index]
    return created


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/health-async")
async def health_async() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/sync/pets/{pet_id}", response_model=Pet, response_model_exclude_unset=True)
def get_pet_sync(pet_id: int = Path(ge=1)) -> dict[str, object]:
    """The same operation as a sync handler (Starlette runs it in its threadpool)."""
    pet = PETS.get(pet_id)
    if pet is None:
        raise HTTPException(404, f"no pet {pet_id}")
    return pet
