"""Credential verifiers, one per kind of security scheme. Each looks at a request, returns the
``Principal`` its credentials prove, ``None`` if the request carries none, or raises
``InvalidCredentials``. Secrets are compared in constant time; nothing here has a default secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import unquote_plus

import trio

from ..http.request import Request

log = logging.getLogger("trio_router.security")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who the credentials of one scheme prove the caller to be."""

    scheme: str
    subject: str
    scopes: frozenset[str] = frozenset()
    claims: dict[str, Any] = field(default_factory=dict)


class InvalidCredentials(Exception):
    """Credentials were presented and are wrong; the message is safe to show the client."""


class Verifier(Protocol):
    scheme: str
    challenge: str  # the WWW-Authenticate challenge a 401 carries for this scheme

    async def verify(self, request: Request) -> Principal | None: ...


def _constant_time_find(presented: bytes, candidates: list[tuple[bytes, Any]]) -> Any:
    """The value of the candidate equal to ``presented``, comparing against every one of them
    so the time taken says nothing about which (if any) matched."""
    found = None
    for secret, value in candidates:
        if hmac.compare_digest(presented, secret):
            found = value
    return found


def bearer_token(request: Request, scheme_word: str = "bearer") -> str | None:
    header = request.header("authorization")
    if header is None:
        return None
    word, _, token = header.strip().partition(" ")
    if word.lower() != scheme_word:
        return None
    return token.strip() or None


class ApiKeyVerifier:
    """``type: apiKey`` in a header, query parameter or cookie; each key may carry scopes."""

    def __init__(self, scheme: str, location: str, name: str, keys: dict[str, list[str]]) -> None:
        self.scheme = scheme
        self.location = location
        self.name = name
        self._keys = [(key.encode(), (label, frozenset(scopes))) for label, (key, scopes) in _labelled(keys)]
        self.challenge = f'ApiKey realm="api", in="{location}", name="{name}"'

    async def verify(self, request: Request) -> Principal | None:
        if self.location == "header":
            presented = request.header(self.name)
        elif self.location == "cookie":
            presented = request.cookies.get(self.name)
        else:
            presented = _query_value(request.query_string, self.name)
        if not presented:
            return None
        match = _constant_time_find(presented.encode("utf-8", "surrogateescape"), self._keys)
        if match is None:
            raise InvalidCredentials(f"the {self.location} {self.name!r} holds no valid API key")
        label, scopes = match
        return Principal(self.scheme, label, scopes)


def _labelled(keys: dict[str, list[str]]) -> list[tuple[str, tuple[str, list[str]]]]:
    """Keys are secrets: the principal is named after the key's position, never the key itself."""
    return [(f"key-{index + 1}", (key, scopes)) for index, (key, scopes) in enumerate(keys.items())]


def _query_value(query_string: bytes, name: str) -> str | None:
    for field_ in query_string.decode("latin-1").split("&"):
        key, _, value = field_.partition("=")
        if unquote_plus(key) == name:
            return unquote_plus(value)
    return None


class BasicVerifier:
    """``type: http, scheme: basic``. Passwords are stored as ``pbkdf2_sha256$<iterations>$<salt
    b64>$<hash b64>`` (what ``hash_password`` makes), or plain text for development.

    A PBKDF2 check (50 ms at 200,000 iterations) runs in a worker thread, at most
    ``HASHING_THREADS`` at a time (hashlib releases the GIL): on the event loop, 30 wrong
    passwords stalled every request for 1.5 s. An unknown user is checked against a dummy of
    the users' own cost, so the time taken does not tell whether a user exists."""

    def __init__(self, scheme: str, users: dict[str, str]) -> None:
        self.scheme = scheme
        self._users = dict(users)
        self.challenge = 'Basic realm="api", charset="UTF-8"'
        costs = [
            int(part[1])
            for stored in users.values()
            if (part := stored.split("$"))[0] == "pbkdf2_sha256" and len(part) == 4 and part[1].isdigit()
        ]
        self.dummy = hash_password("not a password", iterations=max(costs)) if costs else "not a password"

    async def verify(self, request: Request) -> Principal | None:
        encoded = bearer_token(request, "basic")
        if encoded is None:
            return None
        try:  # ValueError: base64 that is not valid, or not ASCII (binascii.Error is one too)
            user, colon, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
        except ValueError:
            raise InvalidCredentials("malformed Basic credentials (base64 of UTF-8 user:password)") from None
        stored = self._users.get(user)
        against = stored if stored is not None else self.dummy  # an unknown user costs what a known one does
        if against.startswith("pbkdf2_sha256$"):
            request.about_to_wait()
            matches = await trio.to_thread.run_sync(_password_matches, password, against, limiter=_hashing_threads())
        else:
            matches = _password_matches(password, against)
        ok = matches and stored is not None
        if not colon or not ok:
            raise InvalidCredentials("wrong user name or password")
        return Principal(self.scheme, user)


def hash_password(password: str, iterations: int = 200_000) -> str:
    """A stored form of ``password`` for a Basic scheme's ``users``."""
    salt = os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def _password_matches(password: str, stored: str) -> bool:
    if stored.startswith("pbkdf2_sha256$"):
        _, iterations, salt, expected = stored.split("$", 3)
        digest = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
        return hmac.compare_digest(digest, base64.b64decode(expected))
    return hmac.compare_digest(password.encode(), stored.encode())


HASHING_THREADS = 2  # the cores these machines have: more threads would only queue in the kernel
_HASHING: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar("trio_router_hashing")


def _hashing_threads() -> trio.CapacityLimiter:
    try:
        return _HASHING.get()
    except LookupError:
        limiter = trio.CapacityLimiter(HASHING_THREADS)
        _HASHING.set(limiter)
        return limiter


def unix_timestamp(text: str) -> int | None:
    """``text`` as whole Unix seconds, or None. Only ASCII digits, at most 12 of them: ``"²"``
    passes ``str.isdigit`` but not ``int``, 5,000 digits exceed what ``int`` converts, and 400
    make ``time.time() - stamp`` overflow a float."""
    if not (0 < len(text) <= 12 and text.isascii() and text.isdigit()):
        return None
    return int(text)


class ReplayGuard:
    """The signatures accepted in the last ``ttl`` seconds (twice the skew a timestamp may have:
    a signature cannot be replayed while its timestamp is still accepted). At most ``capacity``
    are remembered, the oldest forgotten first (and a warning logged): memory stays bounded
    under any load. Per process: with ``--workers``, each worker remembers its own."""

    __slots__ = ("_seen", "_warned", "capacity", "ttl")

    def __init__(self, ttl: float, capacity: int = 100_000) -> None:
        self.ttl = ttl
        self.capacity = capacity
        self._seen: OrderedDict[int, float] = OrderedDict()  # O(1) from the oldest end
        self._warned = False

    def first_use(self, signature_hex: str) -> bool:
        now = time.monotonic()
        seen = self._seen
        while seen and next(iter(seen.values())) <= now:
            seen.popitem(last=False)
        key = int(signature_hex[:16], 16)  # 64 bits of a MAC: a collision is a 1-in-10^13 refusal
        if key in seen:
            return False
        if len(seen) >= self.capacity:
            seen.popitem(last=False)
            if not self._warned:
                self._warned = True
                log.warning(
                    "more than %d signatures within %g s: the oldest are forgotten early", self.capacity, self.ttl
                )
        seen[key] = now + self.ttl
        return True


class HMACVerifier:
    """``type: http, scheme: hmac-sha256``: a signed request, for machine clients (the gateway's
    tenants). ``Authorization: HMAC-SHA256 key=<id>, ts=<unix seconds>, sig=<hex>`` where
    ``sig = HMAC-SHA256(secret, "<ts>\\n<METHOD>\\n<target>\\n<hex sha256 of the body>")``.
    A signature older or newer than ``max_skew`` seconds is refused, and one already accepted
    within twice that is a replay."""

    def __init__(self, scheme: str, secrets: dict[str, str], max_skew: float = 300.0) -> None:
        self.scheme = scheme
        self._secrets = {key_id: secret.encode() for key_id, secret in secrets.items()}
        self.max_skew = max_skew
        self.challenge = 'HMAC-SHA256 realm="api"'
        self._replays = ReplayGuard(2 * max_skew)

    async def verify(self, request: Request) -> Principal | None:
        header = request.header("authorization")
        if header is None or not header.lower().startswith("hmac-sha256 "):
            return None
        fields = dict(part.strip().partition("=")[::2] for part in header[12:].split(","))
        key_id, signature = fields.get("key", ""), fields.get("sig", "").lower()
        stamp = unix_timestamp(fields.get("ts", ""))
        if not (key_id and stamp is not None and signature):
            raise InvalidCredentials("HMAC-SHA256 needs key=, ts=<unix seconds> and sig=")
        if abs(time.time() - stamp) > self.max_skew:
            raise InvalidCredentials(f"the signature's timestamp is more than {self.max_skew:g} s away")
        body = await request.receive()
        secret = self._secrets.get(key_id, b"\0" * 32)  # an unknown key costs the same as a wrong one
        expected = sign(secret, stamp, request.method, request.target.decode("latin-1"), body)
        if not hmac.compare_digest(expected.encode(), signature.encode()) or key_id not in self._secrets:
            raise InvalidCredentials("the request signature does not match")
        if not self._replays.first_use(expected):
            raise InvalidCredentials("this signature was already used (a replayed request)")
        return Principal(self.scheme, key_id)


def sign(secret: bytes, timestamp: int, method: str, target: str, body: bytes) -> str:
    """The hex signature an HMAC-SHA256 client sends (see ``HMACVerifier``)."""
    message = f"{timestamp}\n{method.upper()}\n{target}\n{hashlib.sha256(body).hexdigest()}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()
