"""Who is calling: tenant API keys (stored as SHA-256 only) and optional request signatures.

``Authorization: Bearer <key>``. A key marked ``signed`` must also send ``X-Router-Signature:
t=<unix seconds>, sig=<hex>``, where ``sig`` is HMAC-SHA256 keyed by the API key over
``"<t>\\n<METHOD>\\n<target>\\n<hex sha256 of the body>"`` (``trio_router.security.verifiers.sign``).
A timestamp more than ``signature_window`` away is refused and a signature is accepted once, so
a request seen in transit or in a log can be neither altered nor replayed.

Keys come from the config file (always at hand, even with Redis down) and from the state (made
through the admin API; read through a cache of ``state.cache_ttl`` seconds, whose entries keep
serving while the state is unreachable). The key store never fails open: a key that cannot be
looked up gets a 503.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from trio_router import HTTPError, InvalidCredentials, Principal, Request
from trio_router.security.verifiers import bearer_token, sign, unix_timestamp

from .config import KeyRecord, TenancyConfig, TenantLimits
from .state import State, StateUnavailable

SCHEME = "GatewayKey"
ANONYMOUS = "anonymous"
T = TypeVar("T")


def new_key() -> str:
    return "sk-tr-" + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


class _Cache:
    """Answers read from the state, reused for ``ttl``; an expired answer still serves while
    the state cannot be reached."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[Any, float]] = {}

    async def get(self, name: str, read: Callable[[], Awaitable[T]]) -> T:
        entry = self._entries.get(name)
        now = time.monotonic()
        if entry is not None and entry[1] > now:
            return entry[0]  # type: ignore[no-any-return]
        try:
            value = await read()
        except StateUnavailable:
            if entry is None:
                raise
            return entry[0]  # type: ignore[no-any-return]
        if self.ttl > 0:
            if len(self._entries) > 100_000:
                self._entries.clear()
            self._entries[name] = (value, now + self.ttl)
        return value

    def forget(self, name: str) -> None:
        self._entries.pop(name, None)


class Identities:
    """Keys and tenants: from the config first, then the state."""

    def __init__(self, config: TenancyConfig, state: State) -> None:
        self.config = config
        self.state = state
        self.config_tenants = {
            t.name: TenantLimits.model_validate(t.model_dump(exclude={"keys"})) for t in config.tenants
        }
        self.config_keys = {
            key.sha256: KeyRecord(**key.model_dump(), tenant=tenant.name)
            for tenant in config.tenants
            for key in tenant.keys
        }
        ttl = config.state.cache_ttl if config.state.backend == "redis" else 0.0
        self._keys = _Cache(ttl)
        self._tenants = _Cache(ttl)
        self.anonymous = (
            TenantLimits(name=ANONYMOUS),
            KeyRecord(id=ANONYMOUS, tenant=ANONYMOUS, sha256="0" * 64),
        )

    async def key(self, digest: str) -> KeyRecord | None:
        found = self.config_keys.get(digest)
        if found is not None:
            return found
        return await self._keys.get(digest, lambda: self.state.find_key(digest))

    async def tenant(self, name: str) -> TenantLimits | None:
        found = self.config_tenants.get(name)
        if found is not None:
            return found
        return await self._tenants.get(name, lambda: self.state.tenant(name))

    def forget(self, key_hash: str | None = None, tenant: str | None = None) -> None:
        """This process's cache entries after an admin change (other replicas: within cache_ttl)."""
        if key_hash is not None:
            self._keys.forget(key_hash)
        if tenant is not None:
            self._tenants.forget(tenant)

    async def verify(self, request: Request) -> Principal | None:
        """The GatewayKey security scheme: the caller's key, tenant and limits in the claims."""
        token = bearer_token(request)
        if token is None:
            return None if self.config.keys_required else self._anonymous()
        try:
            record = await self.key(key_hash(token))
            limits = await self.tenant(record.tenant) if record is not None else None
        except StateUnavailable:
            raise HTTPError(503, "the key store cannot be reached; try again shortly", close=False) from None
        if record is None:
            if not self.config.keys_required:  # open: SDKs always send some key
                return self._anonymous()
            raise InvalidCredentials("the API key is not valid")
        if limits is None:
            raise InvalidCredentials(f"the key's tenant {record.tenant!r} is not configured")
        signature = request.header("x-router-signature")
        if record.signed or signature is not None:
            await self._check_signature(request, token, record, signature)
        return Principal(SCHEME, record.id, claims={"tenant": limits, "key": record})

    def _anonymous(self) -> Principal:
        tenant, key = self.anonymous
        return Principal(SCHEME, ANONYMOUS, claims={"tenant": tenant, "key": key})

    async def _check_signature(self, request: Request, token: str, record: KeyRecord, header: str | None) -> None:
        if header is None:
            raise InvalidCredentials("this key must sign its requests (X-Router-Signature)")
        fields = dict(part.strip().partition("=")[::2] for part in header.split(","))
        stamp, signature = unix_timestamp(fields.get("t", "")), fields.get("sig", "").lower()
        if stamp is None or not signature:
            raise InvalidCredentials("X-Router-Signature needs t=<unix seconds> and sig=<hex>")
        window = self.config.signature_window
        if abs(time.time() - stamp) > window:
            raise InvalidCredentials(f"the signature's timestamp is more than {window:g} s away")
        body = await request.receive()
        expected = sign(token.encode(), stamp, request.method, request.target.decode("latin-1"), body)
        if not secrets.compare_digest(expected, signature):
            raise InvalidCredentials("the request signature does not match")
        try:
            fresh = await self.state.first_use(record.tenant, signature, 2 * window)
        except StateUnavailable:
            raise HTTPError(
                503, "signatures cannot be checked for replay now; try again shortly", close=False
            ) from None
        if not fresh:
            raise InvalidCredentials("this signature was already used (a replayed request)")
