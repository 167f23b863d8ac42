"""Handlers of the mock model backend (specs/mock_backend.yaml), an OpenAI-compatible model
server for testing gateways, built with trio-router itself: `trio-router mock-backend`.

Replies are deterministic: the completion says which backend answered and what it was asked,
then counts, one token per word, until ``max_tokens``. Streams go at ``tokens_per_second``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from trio_router import DropConnection, Event, HTTPError, Request, sleep

from . import spec_path


@dataclass
class MockConfig:
    name: str = "mock"
    models: list[str] = field(default_factory=lambda: ["mock-small", "mock-large"])
    role: str = "unified"  # unified | prefill | decode
    tokens_per_second: float = 50.0
    first_token_delay: float = 0.0
    latency: float = 0.0  # before every answer
    fail_rate: float = 0.0  # share of requests answered 500
    default_max_tokens: int = 16
    fault: str | None = None  # applied to every request without its own X-Mock-Fault


SPEC = spec_path("mock_backend.yaml")
CONFIG = MockConfig()
_ids = itertools.count(1)


def configure(config: MockConfig) -> None:
    global CONFIG
    CONFIG = config


def health() -> dict[str, Any]:
    return {"status": "ok", "name": CONFIG.name, "models": CONFIG.models, "role": CONFIG.role}


def list_models() -> dict[str, Any]:
    data = [{"id": model, "object": "model", "created": 0, "owned_by": CONFIG.name} for model in CONFIG.models]
    return {"object": "list", "data": data}


def chat_completions(request: Request, body: dict[str, Any]) -> Any:
    asked = next((_text(m.get("content")) for m in reversed(body["messages"]) if m.get("role") == "user"), "")
    prompt_chars = sum(len(_text(m.get("content"))) for m in body["messages"])
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if CONFIG.role == "prefill":
        return _prefill(request, body, asked)
    if CONFIG.role == "decode":
        handle = body.get("kv_handle")
        if not handle:
            raise HTTPError(400, f"{CONFIG.name} decodes only: send the kv_handle of a prefill", close=False,
                            code="kv_handle_required")  # fmt: skip
        asked = f"({handle}) {asked}"
    return _complete(request, body, asked, prompt_chars, limit, chat=True)


def _prefill(request: Request, body: dict[str, Any], asked: str) -> dict[str, Any]:
    """A prefill backend's answer: the opaque handle of the KV cache it built (here: a digest)."""
    _admit(request, body["model"])
    digest = hashlib.sha256(asked.encode()).hexdigest()[:12]
    return {"object": "prefill", "model": body["model"], "kv_handle": f"kv-{CONFIG.name}-{digest}"}


def completions(request: Request, body: dict[str, Any]) -> Any:
    prompt = body["prompt"] if isinstance(body["prompt"], str) else " ".join(map(str, body["prompt"]))
    return _complete(request, body, prompt, len(prompt), body.get("max_tokens"), chat=False)


def embeddings(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    _admit(request, body["model"])
    inputs = [body["input"]] if isinstance(body["input"], str) else body["input"]
    data = [{"object": "embedding", "index": i, "embedding": _vector(text)} for i, text in enumerate(inputs)]
    tokens = sum(math.ceil(len(text) / 4) for text in inputs)
    return {
        "object": "list",
        "data": data,
        "model": body["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _complete(
    request: Request, body: dict[str, Any], asked: str, prompt_chars: int, limit: int | None, chat: bool
) -> Any:
    fault = _admit(request, body["model"])
    words = f"{CONFIG.name} answers: {asked}".split()
    # An explicit max_tokens is filled (counting on: long answers for benchmarks); else a short answer.
    tokens = [(" " if i else "") + word for i, word in enumerate(words)]
    tokens += [f" {n}" for n in range(len(tokens) + 1, (limit or 0) + 1)]
    cap = limit or CONFIG.default_max_tokens
    finish = "length" if len(tokens) > cap or (limit is not None and len(tokens) >= limit) else "stop"
    tokens = tokens[:cap]
    choices = body.get("n") or 1  # OpenAI's n: that many answers (here the same one, indexed)
    usage = {"prompt_tokens": math.ceil(prompt_chars / 4), "completion_tokens": len(tokens) * choices}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    reply = _Reply(f"{'chatcmpl' if chat else 'cmpl'}-{CONFIG.name}-{next(_ids)}", body["model"], chat)
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return _stream(reply, tokens, finish, usage if include_usage else None, fault, choices)
    if fault == "drop":
        raise DropConnection
    sleep(len(tokens) / CONFIG.tokens_per_second if CONFIG.tokens_per_second else 0)
    text = "".join(tokens)
    answer = {"message": {"role": "assistant", "content": text}} if chat else {"text": text}
    listed = [{"index": index, "finish_reason": finish, **answer} for index in range(choices)]
    return {**reply.head("chat.completion" if chat else "text_completion"), "choices": listed, "usage": usage}


@dataclass
class _Reply:
    id: str
    model: str
    chat: bool
    created: int = field(default_factory=lambda: int(time.time()))

    def head(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def chunk(self, text: str | None, finish: str | None = None, index: int = 0) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": index, "finish_reason": finish}
        if self.chat:
            choice["delta"] = {} if text is None else {"content": text}
        else:
            choice["text"] = text or ""
        return {**self.head("chat.completion.chunk" if self.chat else "text_completion"), "choices": [choice]}


def _stream(
    reply: _Reply, tokens: list[str], finish: str, usage: dict[str, int] | None, fault: str | None, choices: int = 1
) -> Iterator[Event]:
    first_delay = CONFIG.first_token_delay
    if fault and fault.startswith("slow-first-token="):
        first_delay = float(fault.partition("=")[2])
    gap = 1 / CONFIG.tokens_per_second if CONFIG.tokens_per_second else 0
    indexes = range(choices)
    if reply.chat:
        for index in indexes:
            opening = reply.chunk(None, index=index)
            opening["choices"][0]["delta"] = {"role": "assistant"}
            yield Event(_json(opening))
    for n, token in enumerate(tokens):
        sleep(first_delay if n == 0 else gap)
        if fault == "drop" and n == min(3, len(tokens) - 1):  # cut before the answer is complete
            raise DropConnection
        for index in indexes:
            yield Event(_json(reply.chunk(token, index=index)))
    for index in indexes:
        yield Event(_json(reply.chunk(None, finish, index)))
    if usage is not None:
        yield Event(_json({**reply.head("chat.completion.chunk"), "choices": [], "usage": usage}))
    yield Event("[DONE]")


def _admit(request: Request, model: str) -> str | None:
    """The request's fault (after applying latency, errors and hangs), or None."""
    fault = request.params.get("x_mock_fault") or CONFIG.fault
    delay = CONFIG.latency + (float(fault.partition("=")[2]) if fault and fault.startswith("latency=") else 0)
    if delay:
        sleep(delay)
    if fault == "hang":
        sleep(math.inf)
    if fault == "error" or (CONFIG.fail_rate and random.random() < CONFIG.fail_rate):
        raise HTTPError(500, f"{CONFIG.name}: injected failure", close=False, code="mock_failure")
    if fault == "rate-limit":
        raise HTTPError(429, f"{CONFIG.name}: injected rate limit", close=False, code="rate_limit_exceeded")
    if model not in CONFIG.models:
        raise HTTPError(
            404, f"the model {model!r} does not exist on {CONFIG.name}", close=False, code="model_not_found"
        )
    return fault


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: keep the text ones
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _vector(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round(byte / 255, 6) for byte in digest[:8]]
