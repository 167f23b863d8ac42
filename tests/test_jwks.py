"""JWKS refresh against an identity provider that hangs: a real server plays the provider, the
clock is trio's MockClock. Valid tokens never wait behind a refresh; an unknown key id waits for
one fetch at most; a request that must wait is bounded by its own deadline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
import trio.testing

from tests.conftest import Running, serve
from tests.test_security import HANDLERS, PRIVATE, ROTATED, jwk, rs256, write_spec
from trio_router import App, Request


class Provider:
    """An identity provider's JWKS endpoint that counts its requests and can hang."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {"keys": [jwk(PRIVATE, "k1")]}
        self.hang = False
        self.requests = 0

    def app(self) -> App:
        app = App()

        @app.route("GET", "/jwks", timeout=3600)
        async def jwks(request: Request) -> dict[str, Any]:
            self.requests += 1
            if self.hang:
                await trio.sleep_forever()
            return self.keys

        return app


def jwt_app(tmp_path: Path, provider: Running, **options: Any) -> App:
    security = {"Jwt": {"jwks_url": provider.url + "/jwks", "algorithms": ["RS256"], "audience": "pets", **options}}
    return App.from_spec(write_spec(tmp_path, {"/jwt-admin": [{"Jwt": []}]}), HANDLERS, security=security)


def bearer(key: Any = PRIVATE, kid: str = "k1") -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {rs256(key, kid, 'admin')}")]


async def arrived(idp: Provider, requests: int) -> None:
    """Wait (a second at most) until the provider has seen ``requests`` requests: a refresh runs
    behind the request that started it, so it may not have reached the provider yet."""
    with trio.fail_after(1):
        while idp.requests < requests:  # noqa: ASYNC110
            await trio.sleep(0.01)
    assert idp.requests == requests


async def post(running: Running, headers: list[tuple[str, str]]) -> tuple[int, float, str]:
    """Status, seconds taken (MockClock) and the problem's detail, if any."""
    client = await running.connect()
    started = trio.current_time()
    reply = await client.request("POST", "/jwt-admin", headers=headers)
    detail = reply.json().get("detail", "") if reply.status != 200 else ""
    return reply.status, trio.current_time() - started, detail


async def test_stale_keys_are_served_while_one_refresh_runs_behind(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    idp = Provider()
    async with serve(idp.app()) as provider, serve(jwt_app(tmp_path, provider, jwks_ttl=60)) as running:
        assert (await post(running, bearer()))[0] == 200
        assert idp.requests == 1
        idp.hang = True
        await trio.sleep(61)  # the keys are stale now, and the provider hangs
        results: list[tuple[int, float, str]] = []

        async def one() -> None:
            results.append(await post(running, bearer()))

        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(one)
        assert [status for status, _, _ in results] == [200] * 5
        assert max(seconds for _, seconds, _ in results) < 0.1  # none waited for the refresh
        await arrived(idp, 2)  # one refresh for all five
        await trio.sleep(5.5)  # the refresh timed out; it backs off before trying again
        assert (await post(running, bearer()))[0] == 200
        assert idp.requests == 2
        idp.hang = False
        await trio.sleep(10)  # the backoff (jwks_min_refetch, 10 s) is over
        assert (await post(running, bearer()))[0] == 200
        await arrived(idp, 3)


async def test_an_unknown_key_id_waits_for_one_fetch_and_others_do_not_wait(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    idp = Provider()
    async with serve(idp.app()) as provider, serve(jwt_app(tmp_path, provider)) as running:
        assert (await post(running, bearer()))[0] == 200
        await trio.sleep(11)  # past jwks_min_refetch
        idp.hang = True
        results: dict[str, tuple[int, float, str]] = {}

        async def rotated() -> None:
            results["rotated"] = await post(running, bearer(ROTATED, "k2"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(rotated)
            await trio.sleep(1)
            results["known"] = await post(running, bearer())
        assert results["known"][:2] == (200, 0.0)  # answered while the fetch for k2 hangs
        status, seconds, detail = results["rotated"]
        assert (status, detail) == (401, "the token is signed with an unknown key")
        assert 4.9 <= seconds <= 5.1  # the fetch's own timeout
        assert idp.requests == 2
        # Made-up key ids do not turn into fetches: the failure backs off, then the rate limit.
        for kid in ("k3", "k4", "k5"):
            assert (await post(running, bearer(ROTATED, kid)))[:2] == (401, 0.0)
        assert idp.requests == 2
        idp.hang = False
        idp.keys["keys"].append(jwk(ROTATED, "k2"))
        await trio.sleep(10)
        assert (await post(running, bearer(ROTATED, "k2")))[0] == 200  # rotated in: fetched on sight
        assert idp.requests == 3


async def test_a_cold_start_against_a_hanging_provider_is_bounded_by_the_request_deadline(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    idp = Provider()
    idp.hang = True
    async with serve(idp.app()) as provider:
        async with serve(jwt_app(tmp_path, provider), request_timeout=2) as running:
            status, seconds, _ = await post(running, bearer())
            assert (status, round(seconds, 1)) == (504, 2.0)  # the request's deadline, not the header timeout's
        async with serve(jwt_app(tmp_path, provider)) as running:
            status, seconds, detail = await post(running, bearer())
            assert (status, detail) == (401, "the signing keys cannot be fetched right now")
            assert 4.9 <= seconds <= 5.1
            # Backing off: the next token fails at once instead of hanging for another 5 s.
            assert (await post(running, bearer()))[:2] == (401, 0.0)
