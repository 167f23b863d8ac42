"""CORS (the Fetch standard's CORS protocol), sans-IO: which origins may call the API, and the
headers that tell a browser so. Preflights are answered before authentication, because browsers
send them without credentials."""

from __future__ import annotations

from dataclasses import dataclass

from .http.response import Response
from .settings import Settings

Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class CorsPolicy:
    origins: frozenset[str]  # "*" allows any origin
    allow_headers: tuple[str, ...]  # ("*",): whatever the preflight asks for
    allow_credentials: bool
    max_age: int
    expose_headers: tuple[str, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> CorsPolicy | None:
        if not settings.cors_allow_origins:
            return None
        return cls(
            frozenset(origin.rstrip("/") for origin in settings.cors_allow_origins),
            tuple(header.lower() for header in settings.cors_allow_headers),
            settings.cors_allow_credentials,
            settings.cors_max_age,
            tuple(header.lower() for header in settings.cors_expose_headers),
        )

    def allows(self, origin: str) -> bool:
        return "*" in self.origins or origin in self.origins

    def _origin_headers(self, origin: str) -> Headers:
        # With credentials the origin must be echoed, never "*" (browsers refuse the wildcard then);
        # Settings refuses the wildcard with credentials, so echoing happens only for listed origins.
        echoed = origin if self.allow_credentials or "*" not in self.origins else "*"
        headers: Headers = [(b"access-control-allow-origin", echoed.encode("latin-1")), (b"vary", b"Origin")]
        if self.allow_credentials:
            headers.append((b"access-control-allow-credentials", b"true"))
        return headers

    def response_headers(self, origin: str) -> Headers:
        """What an actual (non-preflight) response to an allowed origin carries."""
        headers = self._origin_headers(origin)
        if self.expose_headers:
            headers.append((b"access-control-expose-headers", ", ".join(self.expose_headers).encode()))
        return headers

    def preflight(self, origin: str, allow: str, requested_headers: str | None) -> Response:
        """The 204 answer to a preflight for a path whose methods are ``allow``."""
        headers = self._origin_headers(origin)
        headers.append((b"access-control-allow-methods", allow.encode()))
        if requested_headers:
            if self.allow_headers == ("*",):
                granted = requested_headers
            else:
                asked = [header.strip().lower() for header in requested_headers.split(",")]
                granted = ", ".join(header for header in asked if header in self.allow_headers)
            if granted:
                headers.append((b"access-control-allow-headers", granted.encode("latin-1")))
        headers.append((b"access-control-max-age", str(self.max_age).encode()))
        return Response(status=204, headers=headers)
