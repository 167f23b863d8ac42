"""The reference app, served by a bare ``trio-router run``.

specs/petstore.yaml is the source of truth: each function here is bound to the operation whose
operationId is its name. Parameters and bodies arrive decoded, typed and validated, so the
handlers hold only the store's logic. Some take the request, most declare keyword parameters.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterator
from itertools import count
from typing import Any

from trio_router import App, Event, HTTPError, Request, Response, UploadedFile, WebSocket

Pet = dict[str, Any]
log = logging.getLogger(__name__)

# How the spec's security schemes are verified: the secrets come from the environment. Without
# them (a first `trio-router run`) this run makes its own, in the environment so that --workers
# processes share them: one API key, logged at startup so the secured operations can be tried,
# and a random JWT secret (no token passes until you set one).
_RUN_KEY = None
if "PETSTORE_API_KEYS" not in os.environ:
    _RUN_KEY = os.environ["PETSTORE_API_KEYS"] = secrets.token_urlsafe(18)
_RANDOM_JWT_SECRET = "PETSTORE_JWT_SECRET" not in os.environ
if _RANDOM_JWT_SECRET:
    os.environ["PETSTORE_JWT_SECRET"] = secrets.token_hex(32)
SECURITY = {
    "ApiKeyAuth": {"keys_env": "PETSTORE_API_KEYS"},
    "BearerAuth": {"secret_env": "PETSTORE_JWT_SECRET", "algorithms": ["HS256"]},
}


def setup(app: App) -> None:
    if _RUN_KEY is not None:
        log.info("PETSTORE_API_KEYS is not set: this run accepts the API key %s (X-API-Key)", _RUN_KEY)
    if _RANDOM_JWT_SECRET:
        log.info("PETSTORE_JWT_SECRET is not set: no bearer token is accepted until it is")


_pets: dict[int, Pet] = {1: {"id": 1, "kind": "dog", "name": "Rex", "tag": "good", "good_boy": True}}
_photos: dict[int, tuple[dict[str, Any], bytes]] = {}
_owners: dict[int, dict[str, Any]] = {}
_pet_ids = count(2)
_photo_ids = count(1)
_owner_ids = count(1)


def _pet(pet_id: int) -> Pet:
    pet = _pets.get(pet_id)
    if pet is None:
        raise HTTPError(404, f"no pet {pet_id}", close=False)
    return pet


def health(request: Request) -> dict[str, str]:
    return {"status": "ok"}


def list_pets(
    limit: int = 20, offset: int = 0, species: list[str] | None = None, tags: list[str] | None = None
) -> Response:
    found = [
        pet
        for pet in _pets.values()
        if (not species or pet["kind"] in species) and (not tags or pet.get("tag") in tags)
    ]
    page = found[offset : offset + limit]
    return Response.json(page, headers=[("x-total-count", str(len(found)))])


def create_pet(body: dict[str, Any]) -> Response:
    pet_id = next(_pet_ids)
    _pets[pet_id] = {"id": pet_id, **body}
    return Response.json(_pets[pet_id], status=201, headers=[("location", f"/pets/{pet_id}")])


def search_pets(
    filter: dict[str, Any] | None = None,
    ids: list[int] | None = None,
    words: list[str] | None = None,
    limit: int = 20,
) -> list[Pet]:
    criteria = filter or {}
    found = []
    for pet in _pets.values():
        if ids is not None and pet["id"] not in ids:
            continue
        if "species" in criteria and pet["kind"] != criteria["species"]:
            continue
        if "name" in criteria and criteria["name"].lower() not in pet["name"].lower():
            continue
        if words and not all(word.lower() in pet["name"].lower() for word in words):
            continue
        found.append(pet)
    return found[:limit]


def stream_pet_events(request: Request) -> Iterator[Event]:
    """One `pet` event per pet, resuming after the client's Last-Event-ID when it reconnects."""
    limit = request.params.get("limit", 10)
    last_seen = request.last_event_id or ""
    after = int(last_seen) if last_seen.isdigit() else 0
    for pet in [pet for pet in _pets.values() if pet["id"] > after][:limit]:
        yield Event(pet, event="pet", id=str(pet["id"]))


def pet_echo(ws: WebSocket) -> None:
    """Runs for the whole session in a greenlet: each ``receive`` suspends only this handler."""
    for message in ws:
        ws.send(str(len(_pets)) if message == "count" else message)


def get_pets_batch(ids: list[int]) -> list[Pet]:
    return [_pets[pet_id] for pet_id in ids if pet_id in _pets]


def get_pet(pet_id: int) -> Pet:
    return _pet(pet_id)


def replace_pet(pet_id: int, body: dict[str, Any]) -> Pet:
    owner = _pet(pet_id).get("owner_id")
    _pets[pet_id] = {"id": pet_id, **body} | ({"owner_id": owner} if owner is not None else {})
    return _pets[pet_id]


def rename_pet(pet_id: int, body: dict[str, str]) -> Pet:
    pet = _pet(pet_id)
    pet["name"] = body["name"]
    return pet


def delete_pet(pet_id: int) -> None:
    _pet(pet_id)
    del _pets[pet_id]
    for photo_id in [photo_id for photo_id, (meta, _) in _photos.items() if meta["pet_id"] == pet_id]:
        del _photos[photo_id]


def upload_photo(pet_id: int, body: dict[str, Any]) -> Response:
    _pet(pet_id)
    upload: UploadedFile = body["file"]  # a binary field: always an UploadedFile, even from a text part
    photo_id = next(_photo_ids)
    meta = {
        "id": photo_id,
        "pet_id": pet_id,
        "size": len(upload.data),
        "content_type": upload.content_type,
        "caption": body.get("caption"),
    }
    _photos[photo_id] = (meta, upload.data)
    return Response.json(meta, status=201, headers=[("location", f"/pets/{pet_id}/photos/{photo_id}")])


def _photo(pet_id: int, photo_id: int) -> tuple[dict[str, Any], bytes]:
    found = _photos.get(photo_id)
    if found is None or found[0]["pet_id"] != pet_id:
        raise HTTPError(404, f"pet {pet_id} has no photo {photo_id}", close=False)
    return found


def get_photo(pet_id: int, photo_id: int) -> dict[str, Any]:
    return _photo(pet_id, photo_id)[0]


def get_photo_bytes(pet_id: int, photo_id: int) -> Response:
    meta, data = _photo(pet_id, photo_id)
    return Response(data, headers=[("content-type", meta["content_type"])])


def get_file(name: str, ext: str) -> dict[str, str]:
    return {"name": name, "ext": ext}


def get_calendar(days: list[str]) -> dict[str, list[str]]:
    return {"days": days}


def get_preferences(request: Request) -> dict[str, Any]:
    params = request.params
    return {
        "theme": params.get("theme", "light"),
        "client_version": params["x_client_version"],
        "view": params.get("view"),
    }


def create_owner(body: dict[str, Any]) -> Response:
    missing = [pet_id for pet_id in body.get("pet_ids", []) if pet_id not in _pets]
    if missing:
        raise HTTPError(404, f"no pets {missing}", close=False)
    owner_id = next(_owner_ids)
    owner = {"id": owner_id, "name": body["name"], "pet_ids": body.get("pet_ids", []), "newsletter": False}
    owner["newsletter"] = bool(body.get("newsletter", False))
    for pet_id in owner["pet_ids"]:
        _pets[pet_id]["owner_id"] = owner_id
    _owners[owner_id] = owner
    return Response.json(owner, status=201, headers=[("location", f"/owners/{owner_id}")])


def _owner(owner_id: int) -> dict[str, Any]:
    owner = _owners.get(owner_id)
    if owner is None:
        raise HTTPError(404, f"no owner {owner_id}", close=False)
    return owner


def get_owner(owner_id: int) -> dict[str, Any]:
    return _owner(owner_id)


def list_owner_pets(owner_id: int) -> list[Pet]:
    _owner(owner_id)
    return [pet for pet in _pets.values() if pet.get("owner_id") == owner_id]


def get_stats(request: Request) -> dict[str, Any]:
    return {"pets": len(_pets), "owners": len(_owners), "photos": len(_photos), "caller": request.principal.subject}
