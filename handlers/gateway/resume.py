"""Continuing a cut chat stream on another backend (``stream_resume``, opt-in per model).

When a backend's stream dies after part of the answer reached the client (one of relay.py's
``StreamError``), the request goes to the plan's next candidate with the text already sent as
a final assistant message the backend is asked to continue (``ResumeConfig``: vLLM's and
SGLang's ``continue_final_message`` by default), and that stream is spliced into the client's:
every chunk carries the first stream's ``id``, ``created`` and ``model``, no second ``role``
is sent, so the client reads one answer. The framework's guardrails evaluate the events this
yields, after the splice, so a value cut at the seam is still matched whole.

Unsafe, so never resumed (the stream ends with its error, as without the setting, and the
error says why it was not continued):
- ``tools`` or ``functions``: a half-sent tool call cannot be finished by another run;
- ``n`` > 1: the choices are interleaved, each would need its own prefix;
- ``logprobs``: the continuation's probabilities are conditioned on text it did not sample;
- a ``response_format`` other than text: a constrained decoder restarts its grammar at the
  prefix and would produce a second document.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from typing import Any

from trio_router import Event, StreamError

from .config import ResumeConfig

# A continuation: the text the client has so far and the cut -> the next stream, or None.
Continue = Callable[[str, StreamError], Iterator[Event] | None]
_IDENTITY = ("id", "created", "model", "system_fingerprint")
_CHARS_PER_TOKEN = 4  # as the cost estimate counts; only to shrink max_tokens by what was sent


def unsafe(body: dict[str, Any]) -> str | None:
    """Why a request's stream must not be continued elsewhere, or None when it may be."""
    if body.get("tools") or body.get("functions"):
        return "the request uses tools"
    if isinstance(body.get("n"), int) and body["n"] > 1:
        return "the request asks for n > 1 choices"
    if body.get("logprobs") or body.get("top_logprobs"):
        return "the request asks for logprobs"
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type", "text") != "text":
        return "the request constrains the answer's format"
    return None


def continuation(body: dict[str, Any], model: str, prefix: str, settings: ResumeConfig) -> dict[str, Any]:
    """The request that asks a backend to go on from ``prefix`` (the whole request again when
    nothing was sent yet)."""
    payload = {**body, "model": model}
    if not prefix:
        return payload
    messages = list(body.get("messages") or ())
    messages.append({"role": "assistant", "content": prefix, **settings.message_fields})
    payload.update(settings.extra, messages=messages)
    sent = math.ceil(len(prefix) / _CHARS_PER_TOKEN)
    for limit in ("max_tokens", "max_completion_tokens"):
        if isinstance(body.get(limit), int):
            payload[limit] = max(1, body[limit] - sent)
    return payload


def resumable(events: Iterator[Event], go_on: Continue, max_resumes: int) -> Iterator[Event]:
    """``events``, and when they end in a ``StreamError``, what ``go_on`` continues them with
    (up to ``max_resumes`` times); closing this closes whichever stream is current."""
    seam = _Seam()
    current, mend = events, seam.first
    resumes = 0
    try:
        while True:
            try:
                for event in current:
                    yield mend(event)
                return
            except StreamError as cut:
                if resumes == max_resumes:
                    raise
                following = go_on(seam.text(), cut)
                if following is None:
                    raise StreamError(f"{cut.detail}; no other backend could continue it", code=cut.code) from None
            close = getattr(current, "close", None)
            if close is not None:
                close()
            current, mend = following, seam.continued
            resumes += 1
    finally:
        close = getattr(current, "close", None)
        if close is not None:
            close()


class _Seam:
    """What the client has read of the answer: the first chunk's identity, whether a role was
    sent, and the text; a continuation's chunks are rewritten to match."""

    def __init__(self) -> None:
        self.identity: dict[str, Any] | None = None
        self.role_sent = False
        self.pieces: list[str] = []

    def text(self) -> str:
        return "".join(self.pieces)

    def first(self, event: Event) -> Event:
        chunk = _chunk(event)
        if chunk is not None:
            self._keep(chunk)
        return event

    def continued(self, event: Event) -> Event:
        chunk = _chunk(event)
        if chunk is None:
            return event
        if self.identity is None:  # the first stream was cut before its first chunk
            self._keep(chunk)
            return event
        chunk.update(self.identity)
        for delta in _deltas(chunk):
            if self.role_sent:
                delta.pop("role", None)
        self._keep(chunk)
        return Event(chunk, event=event.event, id=event.id)

    def _keep(self, chunk: dict[str, Any]) -> None:
        if self.identity is None:
            self.identity = {key: chunk[key] for key in _IDENTITY if key in chunk}
        for delta in _deltas(chunk):
            self.role_sent = self.role_sent or "role" in delta
            content = delta.get("content")
            if isinstance(content, str):
                self.pieces.append(content)


def _chunk(event: Event) -> dict[str, Any] | None:
    if not isinstance(event.data, str) or event.data == "[DONE]":
        return None
    try:
        chunk = json.loads(event.data)
    except (ValueError, RecursionError):
        return None
    return chunk if isinstance(chunk, dict) else None


def _deltas(chunk: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for choice in chunk.get("choices") or ():
        if isinstance(choice, dict) and isinstance(choice.get("delta"), dict):
            yield choice["delta"]
