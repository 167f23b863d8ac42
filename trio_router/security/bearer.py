"""Bearer JWTs (``type: http, scheme: bearer``, and ``oauth2``/``openIdConnect`` access tokens),
verified with PyJWT against a shared secret (HS*), a public key (RS*/ES*/PS*/EdDSA) or a JWKS URL.

A JWKS is fetched with the server's shared async httpx client (never a blocking call on the event
loop) in a helper task, one fetch at a time however many requests need it. Requests never queue
behind an identity provider that is slow or down while there are keys to verify with:

- keys older than ``jwks_ttl`` are still used; the first request to see them stale starts a
  refresh behind it;
- a token naming a key id we do not hold (perhaps just rotated in) waits for a fetch, at most one
  per ``jwks_min_refetch`` seconds, so tokens with made-up key ids cannot flood the provider;
- only with no keys at all (start-up) must every request wait for the fetch.

A failed fetch keeps the old keys and backs off (doubling from ``jwks_min_refetch``, at least 1 s,
up to ``jwks_ttl``). A request that waits is bounded by its own deadline and cancelled when its
client hangs up; the fetch itself by ``JWKS_FETCH_TIMEOUT``.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import jwt
import trio

from ..client.http_client import shared_async_client
from ..http.request import Request
from .verifiers import InvalidCredentials, Principal, bearer_token

log = logging.getLogger("trio_router.security")

JWKS_FETCH_TIMEOUT = 5.0


class JWKSCache:
    def __init__(self, url: str, ttl: float, min_refetch: float) -> None:
        self.url = url
        self.ttl = ttl
        self.min_refetch = min_refetch
        self._keys: dict[str, jwt.PyJWK] = {}
        self._stale_at = -math.inf  # after this, the next request starts a refresh
        self._next_fetch = -math.inf  # no fetch before this (the rate limit, or the backoff)
        self._failures = 0
        self._fetch_done: trio.Event | None = None  # set when the fetch in flight ends

    async def key(self, kid: str | None, request: Request) -> jwt.PyJWK:
        now = trio.current_time()
        known = bool(self._keys) and (kid is None or kid in self._keys)
        if known:
            if now >= self._stale_at and now >= self._next_fetch:
                self._start_fetch(request)  # serve these keys now, newer ones for later requests
        elif self._fetch_done is not None or now >= self._next_fetch:
            await self._fetched(request)
        if not self._keys:
            raise InvalidCredentials("the signing keys cannot be fetched right now")
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        found = self._keys.get(kid or "")
        if found is None:
            raise InvalidCredentials("the token is signed with an unknown key")
        return found

    async def _fetched(self, request: Request) -> None:
        """Wait for a fetch (the one in flight, or a new one) under the request's own deadline."""
        done = self._start_fetch(request)
        request.about_to_wait()
        await done.wait()

    def _start_fetch(self, request: Request) -> trio.Event:
        if self._fetch_done is None:
            self._fetch_done = trio.Event()
            request.spawn(self._fetch)  # in a helper task: a waiter's cancellation must not cancel it
        return self._fetch_done

    async def _fetch(self) -> None:
        try:
            with trio.fail_after(JWKS_FETCH_TIMEOUT):
                reply = await shared_async_client().get(self.url)
            reply.raise_for_status()
            key_set = jwt.PyJWKSet.from_dict(reply.json())
        except Exception as exc:  # a failure keeps the keys we had; with none, tokens fail closed
            self._failures += 1
            backoff = min(max(self.ttl, 1.0), max(self.min_refetch, 1.0) * 2.0 ** min(self._failures - 1, 20))
            self._next_fetch = trio.current_time() + backoff
            log.warning("fetching the JWKS at %s failed (%r); next attempt in %.0f s", self.url, exc, backoff)
        else:
            now = trio.current_time()
            self._keys = {key.key_id or "": key for key in key_set.keys}
            self._failures = 0
            self._stale_at = now + self.ttl
            self._next_fetch = now + self.min_refetch
        finally:
            assert self._fetch_done is not None
            self._fetch_done.set()
            self._fetch_done = None


class BearerJWTVerifier:
    def __init__(
        self,
        scheme: str,
        *,
        algorithms: list[str],
        secret: str | None = None,
        public_key: str | None = None,
        jwks_url: str | None = None,
        audience: str | list[str] | None = None,
        issuer: str | None = None,
        leeway: float = 30.0,
        require: list[str] | None = None,
        scopes_claim: str = "scope",
        jwks_ttl: float = 300.0,
        jwks_min_refetch: float = 10.0,
    ) -> None:
        if sum(option is not None for option in (secret, public_key, jwks_url)) != 1:
            raise ValueError("give exactly one of secret, public_key or jwks_url")
        if not algorithms:
            raise ValueError('list the accepted algorithms (for example ["RS256"])')
        self.scheme = scheme
        self.algorithms = algorithms
        self._static_key: Any = secret if secret is not None else public_key
        self._jwks = JWKSCache(jwks_url, jwks_ttl, jwks_min_refetch) if jwks_url else None
        self.audience = audience
        self.issuer = issuer
        self.leeway = leeway
        self.require = require if require is not None else ["exp"]
        self.scopes_claim = scopes_claim
        self.challenge = 'Bearer realm="api"'

    async def verify(self, request: Request) -> Principal | None:
        token = bearer_token(request)
        if token is None:
            return None
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise InvalidCredentials("the bearer token is not a JWT") from None
        key = self._static_key if self._jwks is None else await self._jwks.key(header.get("kid"), request)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": self.require, "verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidCredentials("the token has expired") from None
        except jwt.InvalidTokenError as exc:
            raise InvalidCredentials(f"the token is not valid: {exc}") from None
        return Principal(self.scheme, str(claims.get("sub", "")), _scopes(claims.get(self.scopes_claim)), claims)


def _scopes(value: Any) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list):
        return frozenset(str(item) for item in value)
    return frozenset()
