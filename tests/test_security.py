"""Security schemes against a real server: API keys in every location, Basic, HMAC signatures,
JWTs from a JWKS URL (served by a second real server), OR/AND requirements, fail-closed startup."""

from __future__ import annotations

import base64
import os
import time
import types
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import trio
import trio.lowlevel
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.conftest import serve
from trio_router import App, Request, SpecError
from trio_router.security.verifiers import hash_password, sign

OK = {"200": {"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}}}
SCHEMES = {
    "HeaderKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "QueryKey": {"type": "apiKey", "in": "query", "name": "api_key"},
    "CookieKey": {"type": "apiKey", "in": "cookie", "name": "session"},
    "Basic": {"type": "http", "scheme": "basic"},
    "Signed": {"type": "http", "scheme": "hmac-sha256"},
    "Jwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
}
OPERATIONS: dict[str, list[dict[str, list[str]]]] = {
    "/any-key": [{"HeaderKey": []}, {"QueryKey": []}, {"CookieKey": []}],
    "/key-and-basic": [{"HeaderKey": [], "Basic": []}],
    "/signed": [{"Signed": []}],
    "/jwt-admin": [{"Jwt": ["admin"]}],
    "/optional": [{}, {"HeaderKey": []}],
}


def write_spec(directory: Path, operations: dict[str, list[dict[str, list[str]]]] = OPERATIONS) -> Path:
    paths = {
        path: {"post": {"operationId": path.strip("/").replace("-", "_"), "security": security, "responses": OK}}
        for path, security in operations.items()
    }
    spec = {
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1"},
        "paths": paths,
        "components": {"securitySchemes": SCHEMES},
    }
    path = directory / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def whoami(request: Request) -> dict[str, Any]:
    return {name: principal.subject for name, principal in request.auth.items()}


HANDLERS = types.ModuleType("security_handlers")
for _name in ("any_key", "basic", "key_and_basic", "signed", "jwt_admin", "optional", "cookie", "a", "b", "c"):
    setattr(HANDLERS, _name, whoami)
PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ROTATED = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    return {**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, "alg": "RS256", "use": "sig"}


def rs256(key: rsa.RSAPrivateKey, kid: str, scope: str, **claims: Any) -> str:
    body = {"sub": "carol", "scope": scope, "exp": int(time.time()) + 60, "aud": "pets", **claims}
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": kid})


def config(jwks_url: str) -> dict[str, dict[str, Any]]:
    return {
        "HeaderKey": {"keys": {"header-secret": ["admin"]}},
        "QueryKey": {"keys": ["query-secret"]},
        "CookieKey": {"keys_env": "TEST_COOKIE_KEYS"},
        "Basic": {"users": {"ann": hash_password("correct horse", iterations=1000), "bob": "plain-text"}},
        "Signed": {"secrets": {"tenant-1": "hmac-secret"}, "max_skew": 60},
        "Jwt": {"jwks_url": jwks_url, "algorithms": ["RS256"], "audience": "pets", "jwks_min_refetch": 0},
    }


async def test_every_scheme_or_and_and(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_COOKIE_KEYS", "cookie-secret")
    keys = {"keys": [jwk(PRIVATE, "k1")]}
    jwks_app = App()
    jwks_app.route("GET", "/jwks")(lambda request: keys)
    async with serve(jwks_app) as jwks_server:
        app = App.from_spec(write_spec(tmp_path), HANDLERS, security=config(jwks_server.url + "/jwks"))
        async with serve(app) as running, httpx.AsyncClient(base_url=running.url) as client:
            # OR across requirement objects: any one location of a key will do.
            assert (await client.post("/any-key", headers={"x-api-key": "header-secret"})).json() == {
                "HeaderKey": "key-1"
            }
            assert (await client.post("/any-key?api_key=query-secret")).status_code == 200
            assert (await client.post("/any-key", headers={"cookie": "session=cookie-secret"})).status_code == 200
            refused = await client.post("/any-key?api_key=wrong")
            assert refused.status_code == 401
            assert refused.json()["detail"] == "the query 'api_key' holds no valid API key"
            assert len(refused.headers.get_list("www-authenticate")) == 3

            # AND within one: the key alone is not enough.
            basic = "Basic " + base64.b64encode(b"ann:correct horse").decode()
            both = {"x-api-key": "header-secret", "authorization": basic}
            assert (await client.post("/key-and-basic", headers=both)).json() == {"HeaderKey": "key-1", "Basic": "ann"}
            assert (await client.post("/key-and-basic", headers={"x-api-key": "header-secret"})).status_code == 401
            wrong = {"x-api-key": "header-secret", "authorization": "Basic " + base64.b64encode(b"ann:nope").decode()}
            assert (await client.post("/key-and-basic", headers=wrong)).status_code == 401
            plain = {
                "x-api-key": "header-secret",
                "authorization": "Basic " + base64.b64encode(b"bob:plain-text").decode(),
            }
            assert (await client.post("/key-and-basic", headers=plain)).status_code == 200
            assert (
                await client.post("/key-and-basic", headers={**both, "authorization": "Basic !!"})
            ).status_code == 401

            # HMAC: the signature covers method, target and body; stale timestamps are refused.
            body = b'{"amount": 3}'
            now = int(time.time())
            signature = sign(b"hmac-secret", now, "POST", "/signed?x=1", body)
            signed = {"authorization": f"HMAC-SHA256 key=tenant-1, ts={now}, sig={signature}"}
            assert (await client.post("/signed?x=1", content=body, headers=signed)).json() == {"Signed": "tenant-1"}
            assert (await client.post("/signed?x=2", content=body, headers=signed)).status_code == 401
            assert (await client.post("/signed?x=1", content=b"{}", headers=signed)).status_code == 401
            old = now - 120
            old_signature = sign(b"hmac-secret", old, "POST", "/signed", body)
            stale = {"authorization": f"HMAC-SHA256 key=tenant-1, ts={old}, sig={old_signature}"}
            assert "more than 60 s away" in (await client.post("/signed", content=body, headers=stale)).json()["detail"]

            # JWT from a JWKS: scopes give 403, a rotated key is fetched when its kid appears.
            admin = {"authorization": f"Bearer {rs256(PRIVATE, 'k1', 'admin read')}"}
            assert (await client.post("/jwt-admin", headers=admin)).json() == {"Jwt": "carol"}
            reader = {"authorization": f"Bearer {rs256(PRIVATE, 'k1', 'read')}"}
            insufficient = await client.post("/jwt-admin", headers=reader)
            assert insufficient.status_code == 403 and "lacks scope admin" in insufficient.json()["detail"]
            other_audience = {"authorization": f"Bearer {rs256(PRIVATE, 'k1', 'admin', aud='cats')}"}
            assert (await client.post("/jwt-admin", headers=other_audience)).status_code == 401
            rotated = {"authorization": f"Bearer {rs256(ROTATED, 'k2', 'admin')}"}
            assert (await client.post("/jwt-admin", headers=rotated)).status_code == 401  # not published yet
            keys["keys"].append(jwk(ROTATED, "k2"))
            assert (await client.post("/jwt-admin", headers=rotated)).status_code == 200
            forged = {"authorization": f"Bearer {rs256(ROTATED, 'k1', 'admin')}"}  # k1's id, another key
            assert (await client.post("/jwt-admin", headers=forged)).status_code == 401
            assert (await client.post("/jwt-admin", headers={"authorization": "Bearer not.a.jwt"})).status_code == 401

            # An empty requirement object makes credentials optional.
            assert (await client.post("/optional")).json() == {}


async def test_an_unset_secret_variable_refuses_everyone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_COOKIE_KEYS", raising=False)
    spec = write_spec(tmp_path, {"/cookie": [{"CookieKey": []}]})
    app = App.from_spec(spec, HANDLERS, security={"CookieKey": {"keys_env": "TEST_COOKIE_KEYS"}})
    async with serve(app) as running, httpx.AsyncClient(base_url=running.url) as client:
        reply = await client.post("/cookie", headers={"cookie": "session=anything"})
        assert reply.status_code == 401
        assert "TEST_COOKIE_KEYS is not set" in reply.json()["detail"]


def test_unconfigured_or_misconfigured_schemes_stop_startup(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, {"/a": [{"HeaderKey": []}], "/b": [{"Jwt": []}], "/c": [{"Nowhere": []}]})
    with pytest.raises(SpecError) as caught:
        App.from_spec(spec, HANDLERS, security={"Jwt": {"secret": "s", "algorithms": ["HS256"], "colour": "red"}})
    assert [str(problem) for problem in caught.value.problems] == [
        "#/paths/~1a/post: security scheme 'HeaderKey' has no verifier configured (set security.HeaderKey in the "
        "config file or SECURITY in the handlers module); refusing to serve it open",
        "#/paths/~1b/post: security scheme 'Jwt': unknown settings ['colour']",
        "#/paths/~1c/post: security scheme 'Nowhere' is not declared in components/securitySchemes",
    ]


async def test_cors_preflight_comes_before_authentication(tmp_path: Path) -> None:
    from trio_router import Settings
    from trio_router.cors import CorsPolicy

    app = App.from_spec(write_spec(tmp_path), HANDLERS, security=config("http://127.0.0.1:1/jwks"))
    app.cors = CorsPolicy.from_settings(
        Settings(cors_allow_origins=["https://app.example"], cors_allow_headers=["x-api-key"])
    )
    async with serve(app) as running, httpx.AsyncClient(base_url=running.url) as client:
        preflight = await client.options(
            "/any-key",
            headers={
                "origin": "https://app.example",
                "access-control-request-method": "POST",
                "access-control-request-headers": "X-API-Key, X-Other",
            },
        )
        assert preflight.status_code == 204  # no credentials, yet not a 401
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        assert preflight.headers["access-control-allow-methods"] == "OPTIONS, POST"
        assert preflight.headers["access-control-allow-headers"] == "x-api-key"
        actual = await client.post("/any-key", headers={"origin": "https://app.example", "x-api-key": "header-secret"})
        assert actual.headers["access-control-allow-origin"] == "https://app.example"
        assert actual.headers["access-control-expose-headers"] == "x-request-id"
        denied = await client.post("/any-key", headers={"origin": "https://app.example"})
        assert denied.status_code == 401 and denied.headers["access-control-allow-origin"] == "https://app.example"
        stranger = await client.options(
            "/any-key", headers={"origin": "https://evil.example", "access-control-request-method": "POST"}
        )
        assert "access-control-allow-origin" not in stranger.headers


def test_trio_router_run_wires_cors_from_the_settings() -> None:
    from trio_router import Settings
    from trio_router.runner import load_app

    assert load_app(Settings()).cors is None
    app = load_app(Settings(cors_allow_origins=["*"]))
    assert app.cors is not None and app.cors.allows("https://anywhere.example")


async def test_pbkdf2_runs_off_the_event_loop_and_an_unknown_user_costs_as_much(tmp_path: Path) -> None:
    """Checking a 200,000-iteration hash (tens of ms) in a worker thread lets other tasks run
    meanwhile (hashed on the event loop, a wrong password froze every request); the dummy an
    unknown user is checked against has the users' own cost (it had 1,000 iterations)."""
    from trio_router.security.verifiers import BasicVerifier

    users = {"ann": hash_password("right", iterations=200_000)}
    assert BasicVerifier("Basic", users).dummy.split("$")[1] == "200000"
    spec = write_spec(tmp_path, {"/basic": [{"Basic": []}]})
    app = App.from_spec(spec, HANDLERS, security={"Basic": {"users": users}})
    async with serve(app) as running:
        for user in ("ann", "nobody"):
            credentials = base64.b64encode(f"{user}:wrong".encode()).decode()
            client = await running.connect()
            ticks = [0]

            async def tick(ticks: list[int] = ticks) -> None:
                while True:
                    await trio.lowlevel.checkpoint()
                    ticks[0] += 1

            async with trio.open_nursery() as nursery:
                nursery.start_soon(tick)
                await trio.lowlevel.checkpoint()  # the ticker is running
                before = ticks[0]
                reply = await client.request("POST", "/basic", headers=[("authorization", f"Basic {credentials}")])
                nursery.cancel_scope.cancel()
            assert reply.status == 401
            assert ticks[0] - before > 100, user  # other tasks ran while the hash was computed


async def test_odd_credentials_get_a_401_and_replayed_signatures_are_refused(tmp_path: Path) -> None:
    app = App.from_spec(write_spec(tmp_path), HANDLERS, security=config("http://127.0.0.1:1/jwks"))
    async with serve(app) as running, httpx.AsyncClient(base_url=running.url) as client:
        # Basic credentials that are not ASCII base64 (bytes a browser may send) were a 500.
        raw = await running.connect()
        reply = await raw.request("POST", "/key-and-basic", headers=[("x-api-key", "header-secret"),
                                                                     ("authorization", "Basic é")])  # fmt: skip
        assert reply.status == 401 and "malformed Basic credentials" in reply.json()["detail"]
        # Timestamps int() refuses, or that overflow a float, were 500s.
        for stamp in ("\u00b2", "9" * 400, "9" * 5000):
            header = f"HMAC-SHA256 key=tenant-1, ts={stamp}, sig=0".encode()  # UTF-8 on the wire
            odd = await client.post("/signed", headers={"authorization": header})
            assert odd.status_code == 401 and "ts=<unix seconds>" in odd.json()["detail"]
        # The same signed request twice: the second is a replay, within the skew window.
        now = int(time.time())
        signature = sign(b"hmac-secret", now, "POST", "/signed", b"{}")
        signed = {"authorization": f"HMAC-SHA256 key=tenant-1, ts={now}, sig={signature}"}
        assert (await client.post("/signed", content=b"{}", headers=signed)).status_code == 200
        replayed = await client.post("/signed", content=b"{}", headers=signed)
        assert replayed.status_code == 401 and "already used" in replayed.json()["detail"]
        other = sign(b"hmac-secret", now, "POST", "/signed", b'{"a": 1}')  # another request, same second
        fresh = {"authorization": f"HMAC-SHA256 key=tenant-1, ts={now}, sig={other}"}
        assert (await client.post("/signed", content=b'{"a": 1}', headers=fresh)).status_code == 200


def test_the_replay_memory_is_bounded_and_forgets_after_its_window() -> None:
    from trio_router.security.verifiers import ReplayGuard

    guard = ReplayGuard(ttl=0.05, capacity=3)
    signatures = [f"{index:x}" * 64 for index in range(1, 5)]
    assert [guard.first_use(signature) for signature in signatures[:3]] == [True] * 3
    assert guard.first_use(signatures[0]) is False
    assert guard.first_use(signatures[3]) is True  # full: the oldest is forgotten
    assert guard.first_use(signatures[0]) is True
    time.sleep(0.06)
    assert guard.first_use(signatures[1]) is True  # its window is over


@pytest.mark.parametrize(
    ("scheme", "settings", "environment", "message"),
    [
        ("Jwt", {"secret_env": "TEST_JWT_SECRET", "algorithms": ["HS256"]}, {"TEST_JWT_SECRET": ""},
         "TEST_JWT_SECRET is set but empty"),
        ("Jwt", {"secret": " ", "algorithms": ["HS256"]}, {}, "the secret is empty"),
        ("Signed", {"secrets_env": "TEST_HMAC_SECRETS"}, {"TEST_HMAC_SECRETS": "tenant-1:"},
         "TEST_HMAC_SECRETS gives 'tenant-1' an empty secret"),
        ("Basic", {"users": {"ann": ""}}, {}, "users gives 'ann' an empty secret"),
    ],
)  # fmt: skip
def test_an_empty_secret_stops_startup_with_its_name(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    scheme: str,
    settings: dict[str, Any],
    environment: dict[str, str],
    message: str,
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    path = {"Jwt": "/jwt-admin", "Signed": "/signed", "Basic": "/key-and-basic"}[scheme]
    spec = write_spec(tmp_path, {path: [{scheme: []}]})
    with pytest.raises(SpecError, match=message):
        App.from_spec(spec, HANDLERS, security={scheme: settings})


def test_cors_wildcard_with_credentials_stops_startup(tmp_path: Path) -> None:
    """It reflected every origin, "null" (sandboxed iframes, file: pages) included, with
    Access-Control-Allow-Credentials: true. Refused, through `trio-router run` as in code."""
    import subprocess
    import sys

    from pydantic import ValidationError

    from trio_router import Settings

    with pytest.raises(ValidationError, match="the Fetch standard forbids the wildcard with credentials"):
        Settings(cors_allow_origins=["*"], cors_allow_credentials=True)
    assert Settings(cors_allow_origins=["https://app.example"], cors_allow_credentials=True).cors_allow_credentials
    run = subprocess.run(
        [sys.executable, "-m", "trio_router", "run", "--port", "0"],
        env={**os.environ, "TRIO_ROUTER_CORS_ALLOW_ORIGINS": '["*"]', "TRIO_ROUTER_CORS_ALLOW_CREDENTIALS": "true"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0
    assert "forbids the wildcard with credentials" in run.stderr
