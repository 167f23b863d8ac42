"""Hostile input to the spec-driven decoders: whatever a client puts in a query string, a cookie,
a form, a multipart or a JSON body, the answer is a precise 4xx (or success), never a 5xx, and
the connection keeps serving."""

from __future__ import annotations

import importlib
from pathlib import Path
from urllib.parse import quote_from_bytes

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers import petstore
from trio_router import App
from trio_router.testing import TestClient

SPEC = Path(__file__).resolve().parent.parent / "specs" / "petstore.yaml"
APP: list[App] = []
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
QUERY_CHARS = st.sampled_from(
    [b"&", b"=", b"|", b"+", b"%", b",", b"[", b"]", b"%7C", b"%2C", b"%ff", b"%", b"a", b"1"]
)


def app() -> App:
    if not APP:
        APP.append(App.from_spec(SPEC, importlib.reload(petstore)))
    return APP[0]


def percent_encoded(data: bytes) -> str:
    return quote_from_bytes(data, safe="")


async def answer(method: str, url: str, **kwargs: object) -> int:
    async with TestClient(app()) as client:
        status = (await client.request(method, url, **kwargs)).status_code
        assert (await client.get("/health")).status_code == 200  # still serving
    return status


@FUZZ
@given(pieces=st.lists(QUERY_CHARS | st.binary(max_size=4).map(percent_encoded).map(str.encode), max_size=20))
async def test_any_query_string(pieces: list[bytes]) -> None:
    query = b"".join(pieces).decode("latin-1")
    for path in ("/pets", "/pets/search", "/me/preferences"):
        assert await answer("GET", f"{path}?{query}", headers={"x-client-version": "1.0"}) < 500


@FUZZ
@given(cookie=st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40))
async def test_any_cookie_header(cookie: str) -> None:
    cookie = cookie.strip() or "x"  # a header value cannot start or end with whitespace on the wire
    assert await answer("GET", "/me/preferences", headers={"cookie": cookie, "x-client-version": "1.0"}) < 500


@FUZZ
@given(body=st.binary(max_size=200), kind=st.sampled_from(["application/json", "application/x-www-form-urlencoded"]))
async def test_any_json_or_form_body(body: bytes, kind: str) -> None:
    assert await answer("POST", "/pets", content=body, headers={"content-type": kind}) in (201, 400)
    assert await answer("POST", "/owners", content=body, headers={"content-type": kind}) in (201, 400, 404, 415)


part_headers = st.lists(
    st.sampled_from(
        [
            b'Content-Disposition: form-data; name="file"; filename="a.png"',
            b'Content-Disposition: form-data; name="caption"',
            b"Content-Disposition: form-data",
            b"Content-Type: image/png",
            b"Content-Type: text/plain",
            b"no colon here",
        ]
    ),
    max_size=3,
)


@FUZZ
@given(
    parts=st.lists(st.tuples(part_headers, st.binary(max_size=30)), max_size=4),
    closing=st.sampled_from([b"--x--\r\n", b"--x--", b"", b"--x"]),
    noise=st.binary(max_size=10),
)
async def test_any_multipart_body(parts: list[tuple[list[bytes], bytes]], closing: bytes, noise: bytes) -> None:
    body = noise
    for headers, data in parts:
        body += b"--x\r\n" + b"\r\n".join(headers) + b"\r\n\r\n" + data + b"\r\n"
    body += closing
    status = await answer(
        "POST", "/pets/1/photos", content=body, headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert status in (201, 400)
