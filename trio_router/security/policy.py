"""Security requirements of an operation, enforced fail closed.

Verifiers are built at startup from the spec's ``securitySchemes`` and the configuration of each
scheme (the handlers module's ``SECURITY`` dict, overridden per scheme by the ``security``
setting). A scheme the spec uses with no configuration stops startup: there is no default key.
At request time: OR across requirement objects, AND within one; no or bad credentials -> 401 with
a ``WWW-Authenticate`` challenge per scheme; valid credentials lacking a scope -> 403.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import HTTPError
from ..http.request import Request
from .bearer import BearerJWTVerifier
from .verifiers import ApiKeyVerifier, BasicVerifier, HMACVerifier, InvalidCredentials, Principal, Verifier

log = logging.getLogger("trio_router.security")

_JWT_OPTIONS = {"algorithms", "audience", "issuer", "leeway", "require", "scopes_claim", "jwks_ttl", "jwks_min_refetch"}


class RefusingVerifier:
    """A configured scheme whose secrets are missing (an unset environment variable): every
    credential is refused, so the operation is reachable by nobody rather than by everybody."""

    def __init__(self, scheme: str, challenge: str, why: str) -> None:
        self.scheme = scheme
        self.challenge = challenge
        self.why = why

    async def verify(self, request: Request) -> Principal | None:
        raise InvalidCredentials(f"scheme {self.scheme!r} accepts no credentials: {self.why}")


def build_verifier(name: str, scheme: dict[str, Any], config: dict[str, Any] | None) -> Verifier:
    """The verifier for the spec's scheme ``name`` with its configuration; ValueError if impossible."""
    if config is None:
        raise ValueError(
            f"security scheme {name!r} has no verifier configured (set security.{name} in the config file or "
            "SECURITY in the handlers module); refusing to serve it open"
        )
    kind = scheme.get("type")
    http_scheme = str(scheme.get("scheme", "")).lower()
    config = dict(config)
    if "verify" in config:
        return _custom(name, kind, http_scheme, config)
    missing: str | None = None
    if kind == "apiKey":
        keys, missing = _secrets(config, "keys", list_ok=True)
        verifier: Verifier = ApiKeyVerifier(name, scheme["in"], scheme["name"], keys)
    elif kind in ("oauth2", "openIdConnect") or (kind == "http" and http_scheme == "bearer"):
        verifier, missing = _bearer(name, config)
    elif kind == "http" and http_scheme == "basic":
        users, missing = _secrets(config, "users")
        verifier = BasicVerifier(name, {user: value[0] for user, value in users.items()})
    elif kind == "http" and http_scheme == "hmac-sha256":
        max_skew = float(config.pop("max_skew", 300))
        secrets, missing = _secrets(config, "secrets")
        verifier = HMACVerifier(name, {key: value[0] for key, value in secrets.items()}, max_skew)
    else:
        raise ValueError(f"security scheme {name!r}: type {kind!r} {http_scheme!r} has no verifier in trio-router")
    if config:
        raise ValueError(f"security scheme {name!r}: unknown settings {sorted(config)}")
    if missing:
        log.warning(
            "security scheme %r: environment variable %s is not set; the scheme refuses everyone", name, missing
        )
        return RefusingVerifier(name, verifier.challenge, f"{missing} is not set")
    return verifier


class CustomVerifier:
    """A scheme the app verifies itself (``{"verify": async_fn}``), for credentials that live in
    the app's own store: ``verify(request)`` returns a Principal, None (no credentials) or
    raises InvalidCredentials, like the built-in verifiers."""

    def __init__(self, scheme: str, verify: Callable[[Request], Awaitable[Principal | None]], challenge: str) -> None:
        self.scheme = scheme
        self._verify = verify
        self.challenge = challenge

    async def verify(self, request: Request) -> Principal | None:
        return await self._verify(request)


def _custom(name: str, kind: object, http_scheme: str, config: dict[str, Any]) -> Verifier:
    verify = config.pop("verify")
    if not inspect.iscoroutinefunction(verify):
        raise ValueError(f"security scheme {name!r}: verify must be an async function of the request")
    default = (
        f'{http_scheme.capitalize() or "ApiKey"} realm="api"' if kind in ("http", "apiKey") else 'Bearer realm="api"'
    )
    challenge = str(config.pop("challenge", default))
    if config:
        raise ValueError(f"security scheme {name!r}: unknown settings {sorted(config)} beside verify")
    return CustomVerifier(name, verify, challenge)


def _secrets(config: dict[str, Any], field: str, list_ok: bool = False) -> tuple[dict[str, list[str]], str | None]:
    """``field`` given inline, or ``<field>_env`` naming an environment variable holding
    ``a,b`` (keys) or ``name:secret,name2:secret2`` (users, HMAC key ids). Also returns the
    name of that variable if it is unset and nothing was given inline."""
    inline = config.pop(field, None)
    env_name = config.pop(f"{field}_env", None)
    found: dict[str, list[str]] = {}
    missing = None
    if isinstance(inline, list) and list_ok:
        found.update({str(key): [] for key in inline})
    elif isinstance(inline, dict):
        for key, value in inline.items():
            if not list_ok:
                _refuse_empty(str(value), field, str(key))
            found[str(key)] = [str(item) for item in value] if isinstance(value, list) else [str(value)]
    elif inline is not None:
        raise ValueError(f"{field} must be a {'list or ' if list_ok else ''}mapping")
    if env_name is not None:
        text = os.environ.get(str(env_name))
        if text is None and not found:
            missing = str(env_name)
        for item in (text or "").split(","):
            item = item.strip()
            if not item:
                continue
            if list_ok:
                found[item] = []
            else:
                key, colon, secret = item.partition(":")
                if not colon:
                    raise ValueError(f"{env_name} must hold name:secret pairs separated by commas")
                _refuse_empty(secret, str(env_name), key)
                found[key] = [secret]
    if inline is None and env_name is None:
        raise ValueError(f"configure {field} or {field}_env")
    return found, missing


def _refuse_empty(secret: str, source: str, name: str) -> None:
    if not secret.strip():
        raise ValueError(f"{source} gives {name!r} an empty secret (anyone could sign with it)")


def _bearer(name: str, config: dict[str, Any]) -> tuple[Verifier, str | None]:
    options = {key: config.pop(key) for key in list(config) if key in _JWT_OPTIONS}
    secret = config.pop("secret", None)
    secret_env = config.pop("secret_env", None)
    public_key = config.pop("public_key", None)
    public_key_file = config.pop("public_key_file", None)
    jwks_url = config.pop("jwks_url", None)
    missing = None
    if secret is not None and not str(secret).strip():
        raise ValueError(f"security scheme {name!r}: the secret is empty (anyone could sign tokens with it)")
    if secret_env is not None:
        secret = os.environ.get(secret_env)
        if secret is None:
            secret, missing = "", str(secret_env)  # a placeholder: the scheme is replaced by a refusing one
        elif not secret.strip():
            raise ValueError(
                f"security scheme {name!r}: {secret_env} is set but empty (anyone could sign tokens with an empty"
                " secret); set it to a long random secret, or unset it to refuse every token"
            )
    if public_key_file is not None:
        try:
            with open(public_key_file, encoding="utf-8") as file:
                public_key = file.read()
        except OSError as exc:
            raise ValueError(f"security scheme {name!r}: cannot read {public_key_file}: {exc.strerror}") from None
    if "algorithms" not in options:
        if secret is None:
            raise ValueError(
                f'security scheme {name!r}: say which algorithms its tokens may use (algorithms = ["RS256"], say);'
                " with a public key or JWKS they are never guessed, nor taken from the token"
            )
        options["algorithms"] = ["HS256"]  # a shared secret only signs HMAC tokens; the token's alg is still checked
    try:
        return BearerJWTVerifier(name, secret=secret, public_key=public_key, jwks_url=jwks_url, **options), missing
    except (TypeError, ValueError) as exc:
        raise ValueError(f"security scheme {name!r}: {exc}") from None


@dataclass(frozen=True, slots=True)
class SecurityPolicy:
    """One operation's requirements: any one of ``alternatives`` must be met in full."""

    alternatives: tuple[tuple[tuple[Verifier, frozenset[str]], ...], ...]
    challenges: tuple[tuple[bytes, bytes], ...]

    @classmethod
    def of(cls, alternatives: Sequence[Sequence[tuple[Verifier, frozenset[str]]]]) -> SecurityPolicy:
        seen: dict[str, bytes] = {}
        for requirement in alternatives:
            for verifier, _ in requirement:
                seen.setdefault(verifier.scheme, verifier.challenge.encode())
        return cls(
            tuple(tuple(requirement) for requirement in alternatives),
            tuple((b"www-authenticate", challenge) for challenge in seen.values()),
        )

    async def authorize(self, request: Request) -> None:
        verified: dict[str, Principal | InvalidCredentials | None] = {}
        lacking: list[str] = []
        for requirement in self.alternatives:
            principals: dict[str, Principal] = {}
            for verifier, scopes in requirement:
                outcome = verified.get(verifier.scheme, _UNSEEN)
                if outcome is _UNSEEN:
                    try:
                        outcome = await verifier.verify(request)
                    except InvalidCredentials as exc:
                        outcome = exc
                    verified[verifier.scheme] = outcome
                if not isinstance(outcome, Principal):
                    break
                missing = scopes - outcome.scopes
                if missing:
                    lacking.append(f"{verifier.scheme} lacks scope {', '.join(sorted(missing))}")
                    break
                principals[verifier.scheme] = outcome
            else:
                request.auth = principals
                return
        if lacking:
            raise HTTPError(403, "the credentials are valid but not sufficient: " + "; ".join(lacking), close=False)
        failures = [str(outcome) for outcome in verified.values() if isinstance(outcome, InvalidCredentials)]
        detail = "; ".join(failures) if failures else "this operation needs credentials"
        raise HTTPError(401, detail, close=False, headers=list(self.challenges))


_UNSEEN: Any = object()
