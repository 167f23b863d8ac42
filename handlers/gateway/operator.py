"""Who may read the gateway's operational endpoints (/stats, /services, /metrics) on the public
port. They list every backend with its internal URL, breaker and counters: fine on a laptop,
not for every tenant of a shared gateway. ``operations_access``:

- ``public``: anyone;
- ``token``: only with an admin token (the admin section's ``token_env``, by default
  ``GATEWAY_ADMIN_TOKEN``; comma-separated for several), as ``Authorization: Bearer <token>``
  (what Prometheus scrapers send) or ``X-Admin-Token``; with the variable unset, nobody;
- ``auto`` (the default): ``token`` when tenants or an admin section are configured, else
  ``public`` (the newcomer's gateway with one embedded mock stays open).
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable

from trio_router import HTTPError, Request
from trio_router.security.verifiers import bearer_token

from .config import GatewayConfig

DEFAULT_TOKEN_ENV = "GATEWAY_ADMIN_TOKEN"


def operator_check(config: GatewayConfig) -> Callable[[Request], bool] | None:
    """The check an operational request must pass, or None when they are public."""
    access = config.operations_access
    if access == "public" or (access == "auto" and not config.tenants and config.admin is None):
        return None
    token_env = config.admin.token_env if config.admin is not None else DEFAULT_TOKEN_ENV
    tokens = [token.strip().encode() for token in os.environ.get(token_env, "").split(",") if token.strip()]

    def allowed(request: Request) -> bool:
        given = bearer_token(request) or request.header("x-admin-token")
        if given is None:
            return False
        offered = given.encode("utf-8", "replace")
        # compare_digest with every token, so the time taken does not tell which one nearly matched
        return sum(hmac.compare_digest(offered, token) for token in tokens) > 0

    return allowed


def require_operator(check: Callable[[Request], bool] | None, request: Request) -> None:
    if check is not None and not check(request):
        raise HTTPError(
            401,
            "this endpoint needs an admin token (Authorization: Bearer or X-Admin-Token)",
            close=False,
            headers=[(b"www-authenticate", b'Bearer realm="gateway-operations"')],
        )
