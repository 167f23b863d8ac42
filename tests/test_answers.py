"""http/answers.py and Response, sans-IO: every convention a handler may return reads as its
author meant, and what cannot be read fails where it was written, naming the call that works."""

from __future__ import annotations

import dataclasses
import uuid
from http import HTTPStatus

import pytest
from pydantic import BaseModel

from trio_router import HTTPError, Response
from trio_router.http.answers import answer


class Pet(BaseModel):
    id: int
    name: str


@dataclasses.dataclass
class Point:
    x: int


JSON = (b"content-type", b"application/json")
TEXT = (b"content-type", b"text/plain; charset=utf-8")


def vendor_json(status: int) -> bytes | None:
    return b"application/vnd.pets+json" if status < 300 else b"application/problem+json"


@pytest.mark.parametrize(
    ("result", "status", "headers", "body"),
    [
        (({"a": 1}, 201), 201, [JSON], b'{"a":1}'),
        (({"a": 1}, 201, {"Location": "/a/1"}), 201, [(b"location", b"/a/1"), JSON], b'{"a":1}'),
        (({"a": 1}, [("X-One", "1")]), 200, [(b"x-one", b"1"), JSON], b'{"a":1}'),
        (([Pet(id=1, name="rex")], HTTPStatus.OK), 200, [JSON], b'[{"id":1,"name":"rex"}]'),
        ({"p": Point(3), "u": uuid.UUID(int=1)}, 200, [JSON],
         b'{"p":{"x":3},"u":"00000000-0000-0000-0000-000000000001"}'),
        (("", 204), 204, [], b""),
        ((None, 202), 202, [], b""),
        ("hi", 200, [TEXT], b"hi"),
        (b"\x00", 200, [(b"content-type", b"application/octet-stream")], b"\x00"),
        (Response(status=201, body={"a": 1}), 201, [JSON], b'{"a":1}'),
        ((Response.text("x"), 202, {"X-Two": "2"}), 202, [(b"x-two", b"2"), TEXT], b"x"),
        (Response("<b>x</b>", headers={"Content-Type": "text/html"}), 200, [(b"content-type", b"text/html")], b"<b>x</b>"),  # noqa: E501
    ],
)  # fmt: skip
def test_each_convention_gives_the_status_headers_and_body_its_author_meant(
    result: object, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    response = answer(result)
    assert (response.status, response.headers, response.body) == (status, headers, body)


def test_none_is_204_without_a_spec_and_json_null_where_the_success_answer_has_a_body() -> None:
    assert answer(None).status == 204
    assert (answer(None, 204).status, answer(None, 204).body) == (204, b"")
    assert (answer(None, 200).status, answer(None, 200).body) == (200, b"null")


def test_json_is_typed_with_the_operations_own_media_type_for_its_status() -> None:
    assert answer({"a": 1}, 200, vendor_json).headers == [(b"content-type", b"application/vnd.pets+json")]
    assert answer(({"a": 1}, 409), 200, vendor_json).headers == [(b"content-type", b"application/problem+json")]
    shared = Response.json({"a": 1})
    answer(shared, 200, vendor_json)
    assert shared.headers == [JSON]  # a Response returned twice is not changed
    typed = Response(b"{}", headers={"content-type": "application/json"})
    assert answer(typed, 200, vendor_json).headers == [JSON]  # the author's


@pytest.mark.parametrize(
    ("make", "names"),
    [
        (
            lambda: Response({"a": 1}, {"Location": "/a"}),
            "Response(body, status, headers)",
        ),  # headers where status goes
        (lambda: Response(object()), "cannot send object as JSON"),
        (lambda: Response(b"", 200, headers=[("X", 1)]), '{"Location": "/pets/1"}'),
        (lambda: answer(({"a": 1}, 201, {}, "extra")), "(body, status, headers), as in Flask"),
        (lambda: answer(({"a": 1}, "201")), "Response(body, status, headers)"),
        (lambda: HTTPError(409, "taken", headers=5), "a dict or (name, value) pairs"),
    ],
)
def test_what_cannot_be_read_is_a_type_error_naming_the_call_that_works(make: object, names: str) -> None:
    with pytest.raises(TypeError, match=None) as raised:
        make()  # type: ignore[operator]
    assert names in str(raised.value)


def test_an_apps_http_error_keeps_the_connection_and_takes_any_header_shape() -> None:
    error = HTTPError(409, "taken", headers={"Retry-After": "5"})
    assert not error.close
    assert error.headers == [(b"retry-after", b"5")]
    assert HTTPError(429, "slow down", headers=[("Retry-After", b"1")]).headers == [(b"retry-after", b"1")]
