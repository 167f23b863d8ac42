"""``Idempotency-Key``: a request repeated within the key's time to live gets the first one's
stored answer (non-stream answers below 500), or 409 while the first is still in flight. Keys
are per tenant. A failed first attempt (5xx, or no answer) is forgotten, so the client's retry
runs; a streamed answer is not stored, and its key answers 409 for the rest of its life."""

from __future__ import annotations

import base64
import json
import re

from trio_router import HTTPError, Response, await_

from .state import PENDING, State, shielded

_KEY = re.compile(r"[\x21-\x7e]{1,255}")
_KEPT_HEADERS = (b"content-type", b"x-router-backend", b"x-router-attempts")


class Idempotency:
    def __init__(self, state: State, ttl: float) -> None:
        self.state = state
        self.ttl = ttl

    def begin(self, tenant: str, key: str | None) -> Response | None:
        """None: go on (this request now holds the key). Else the stored answer to send again.
        StateUnavailable propagates: the caller decides."""
        if key is None:
            return None
        if not _KEY.fullmatch(key):
            raise HTTPError(400, "Idempotency-Key must be 1 to 255 visible ASCII characters", close=False)
        found = await_(self.state.idempotency_begin(tenant, key, self.ttl))
        if found is None:
            return None
        if found == PENDING:
            raise HTTPError(
                409,
                "a request with this Idempotency-Key is still in flight",
                close=False,
                code="idempotency_key_in_use",
            )
        stored = json.loads(found)
        if stored.get("stream"):
            raise HTTPError(
                409,
                "this Idempotency-Key was used for a streamed request, whose answer is not stored",
                close=False,
                code="idempotency_key_used",
            )
        headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in stored["headers"]]
        headers.append((b"idempotent-replayed", b"true"))
        return Response(base64.b64decode(stored["body"]), stored["status"], headers)

    def finish(self, tenant: str, key: str | None, answer: Response) -> None:
        if key is None:
            return
        if answer.status >= 500:
            self.abandon(tenant, key)
            return
        kept = [
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in answer.headers if name in _KEPT_HEADERS
        ]
        stored = {"status": answer.status, "headers": kept, "body": base64.b64encode(answer.body).decode()}
        await_(shielded(self.state.idempotency_store(tenant, key, json.dumps(stored), self.ttl)))

    def finish_stream(self, tenant: str, key: str | None) -> None:
        if key is not None:
            await_(shielded(self.state.idempotency_store(tenant, key, '{"stream": true}', self.ttl)))

    def abandon(self, tenant: str, key: str | None) -> None:
        if key is not None:
            await_(shielded(self.state.idempotency_forget(tenant, key)))
