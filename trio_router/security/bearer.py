"""Bearer JWTs (``type: http, scheme: bearer``, and ``oauth2``/``openIdConnect`` access tokens),
verified with PyJWT against a shared secret (HS*), a public key (RS*/ES*/PS*/EdDSA) or a JWKS URL.

JWKS documents are fetched with the server's shared async httpx client (never a blocking call
on the event loop), cached for ``jwks_ttl`` seconds, and refetched early when a token names a
key id the cache does not hold, at most once per ``jwks_min_refetch`` seconds so that tokens with
made-up key ids cannot turn the server into a JWKS flood.
"""

from __future__ import annotations

from typing import Any

import jwt
import trio

from ..http.request import Request
from ..runtime.http_client import shared_async_client
from .verifiers import InvalidCredentials, Principal, bearer_token


class JWKSCache:
    def __init__(self, url: str, ttl: float, min_refetch: float) -> None:
        self.url = url
        self.ttl = ttl
        self.min_refetch = min_refetch
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = -float("inf")
        self._lock = trio.Lock()

    async def key(self, kid: str | None) -> jwt.PyJWK:
        now = trio.current_time()
        stale = now - self._fetched_at > self.ttl
        unknown = kid not in self._keys if kid is not None else not self._keys
        if stale or (unknown and now - self._fetched_at > self.min_refetch):
            await self._refresh()
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        found = self._keys.get(kid or "")
        if found is None:
            raise InvalidCredentials("the token is signed with an unknown key")
        return found

    async def _refresh(self) -> None:
        async with self._lock:
            try:
                reply = await shared_async_client().get(self.url, timeout=5)
                reply.raise_for_status()
                key_set = jwt.PyJWKSet.from_dict(reply.json())
            except Exception as exc:  # an unreachable JWKS fails closed: the token cannot be verified
                if not self._keys:
                    raise InvalidCredentials("the signing keys cannot be fetched right now") from exc
                return  # keep serving with the keys we had
            self._keys = {key.key_id or "": key for key in key_set.keys}
            self._fetched_at = trio.current_time()


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
        key = self._static_key if self._jwks is None else await self._jwks.key(header.get("kid"))
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
