"""The lending library's handlers, written as a newcomer from Flask, Connexion or FastAPI would
write them: each answer convention those frameworks teach appears at least once."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from trio_router import Event, HTTPError, Request, Response

SECURITY = {
    "apiKey": {"keys": ["library-key"]},
    "jwt": {"secret": "library-jwt-secret-long-enough-for-hs256"},
}


class MemberOut(BaseModel):  # FastAPI's response_model habit
    id: int
    name: str
    email: str
    joined: datetime


@dataclass
class Reservation:
    reserved: bool


MEMBERS: dict[int, dict[str, Any]] = {}
ITEMS: dict[int, dict[str, Any]] = {}
RESERVED: set[int] = set()
SEEN_BODIES: list[dict[str, Any]] = []  # what create_member was handed, for the tests
_ids = itertools.count(1)


def _public(record: dict[str, Any]) -> MemberOut:
    return MemberOut(**{key: value for key, value in record.items() if key != "password"})


def list_members() -> list[MemberOut]:  # a list of pydantic models
    return [_public(record) for record in MEMBERS.values()]


def create_member(body: dict[str, Any]) -> Any:
    SEEN_BODIES.append(dict(body))
    if any(record["name"] == body["name"] for record in MEMBERS.values()):
        raise HTTPError(409, f"the name {body['name']} is taken")  # Flask's abort(409)
    member_id = next(_ids)
    MEMBERS[member_id] = {**body, "id": member_id, "joined": datetime(2026, 12, 3, tzinfo=UTC)}
    return _public(MEMBERS[member_id]), 201, {"Location": f"/members/{member_id}"}  # Connexion's tuple


def get_member(memberId: int) -> Any:
    record = MEMBERS.get(memberId)
    if record is None:
        return {"type": "about:blank", "title": "Not Found", "status": 404, "detail": "no such member"}, 404
    return _public(record)


def update_member(memberId: int, body: dict[str, Any]) -> Response:
    record = MEMBERS[memberId]
    record.update(body)
    return Response.json(_public(record), 200, headers={"ETag": f'"{memberId}-{len(record)}"'})  # dict headers


def delete_member(memberId: int) -> Any:
    MEMBERS.pop(memberId, None)
    return "", 204  # Flask's empty answer


def debug_member(memberId: int) -> dict[str, Any]:
    return MEMBERS[memberId]  # the password too: response validation must stop it


def add_item(body: dict[str, Any]) -> Response:
    item_id = next(_ids)
    ITEMS[item_id] = {**body, "id": item_id}
    return Response(status=201, body=ITEMS[item_id])  # a dict body, keywords in any order


def get_item(itemId: int) -> dict[str, Any]:
    return ITEMS[itemId]


def reserve_item(itemId: int) -> Reservation:
    if itemId in RESERVED:
        raise HTTPError(409, "already reserved", headers=[("Retry-After", "5")])  # str headers
    RESERVED.add(itemId)
    return Reservation(reserved=True)  # a dataclass


def whoami(request: Request) -> tuple[dict[str, Any], int]:
    return {"sub": request.principal.subject}, 200


def events() -> Any:
    for item_id, item in list(ITEMS.items()):
        yield Event({"id": item_id, "title": item["title"]}, event="item")
