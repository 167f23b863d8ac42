"""``Idempotency-Key``: a request repeated within the key's time to live gets the first one's
stored answer (non-stream answers below 500), or 409 while the first is still in flight. Keys
are per tenant. A failed first attempt (5xx, or no answer) is forgotten, so the client's retry
runs; a streamed answer is not stored, nor one over ``idempotency_max_answer_bytes``, and such
a key answers 409 for the rest of its life. A key names one request: reused with another body
(or endpoint) it is refused with 422, as payment APIs do, never answered with the first
request's result. In memory each tenant has its own bounded table (entries and bytes), so one
tenant's keys never evict another's."""

from __future__ import annotations

import base64
import hashlib
import json
import re

from trio_router import HTTPError, Response, await_

from .state import PENDING, State, shielded

_KEY = re.compile(r"[\x21-\x7e]{1,255}")
_KEPT_HEADERS = (b"content-type", b"x-router-backend", b"x-router-attempts")


def fingerprint(path: str, body: bytes) -> str:
    """What names a request for its Idempotency-Key: the endpoint and the exact body."""
    return hashlib.sha256(path.encode() + b"\0" + body).hexdigest()[:32]


class Idempotency:
    def __init__(self, state: State, ttl: float, max_answer_bytes: int) -> None:
        self.state = state
        self.ttl = ttl
        self.max_answer_bytes = max_answer_bytes

    def begin(self, tenant: str, key: str | None, request: str) -> Response | None:
        """None: go on (this request, fingerprinted ``request``, now holds the key). Else the
        stored answer to send again. StateUnavailable propagates: the caller decides."""
        if key is None:
            return None
        if not _KEY.fullmatch(key):
            raise HTTPError(400, "Idempotency-Key must be 1 to 255 visible ASCII characters", close=False)
        found = await_(self.state.idempotency_begin(tenant, key, self.ttl, f"{PENDING}:{request}"))
        if found is None:
            return None
        if found.startswith(PENDING):
            _same_request(found.partition(":")[2] or request, request)
            raise HTTPError(
                409,
                "a request with this Idempotency-Key is still in flight",
                close=False,
                code="idempotency_key_in_use",
            )
        stored = json.loads(found)
        _same_request(stored.get("fp", request), request)
        if stored.get("unstored"):
            raise HTTPError(
                409,
                "the answer to this Idempotency-Key was too large to keep; use a new key",
                close=False,
                code="idempotency_key_used",
            )
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

    def finish(self, tenant: str, key: str | None, request: str, answer: Response) -> None:
        if key is None:
            return
        if answer.status >= 500:
            self.abandon(tenant, key)
            return
        if len(answer.body) > self.max_answer_bytes:
            self._store(tenant, key, {"unstored": True, "fp": request})
            return
        kept = [
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in answer.headers if name in _KEPT_HEADERS
        ]
        body = base64.b64encode(answer.body).decode()
        self._store(tenant, key, {"status": answer.status, "headers": kept, "body": body, "fp": request})

    def finish_stream(self, tenant: str, key: str | None, request: str) -> None:
        if key is not None:
            self._store(tenant, key, {"stream": True, "fp": request})

    def _store(self, tenant: str, key: str, stored: dict[str, object]) -> None:
        await_(shielded(self.state.idempotency_store(tenant, key, json.dumps(stored), self.ttl)))

    def abandon(self, tenant: str, key: str | None) -> None:
        if key is not None:
            await_(shielded(self.state.idempotency_forget(tenant, key)))


def _same_request(stored: str, request: str) -> None:
    if stored != request:
        raise HTTPError(
            422,
            "this Idempotency-Key was used for a different request; use a new key for a new request",
            close=False,
            code="idempotency_key_reused",
        )
