"""An OpenAI-compatible backend on another stack (Starlette on uvicorn, asyncio), written from
OpenAI's public API reference and not from our mock (handlers/mock_backend.py), so the gateway's
tests cannot pass through a misunderstanding the two share.

One process serves every fault: the first path segment names it, so a gateway backend with
``url: http://127.0.0.1:PORT/stall-2`` gets streams that stall after two chunks. A number after
the last dash is the fault's parameter.

| prefix            | what the backend does                                                   |
|-------------------|-------------------------------------------------------------------------|
| good              | answers (JSON or SSE ending in a finish_reason and ``[DONE]``)          |
| hang              | reads the request, never answers                                        |
| ratelimit-N       | 429, ``Retry-After: N``, OpenAI's error object                          |
| html              | 200 with an HTML error page                                             |
| stall-N           | a stream: N content chunks, then silence with the connection open       |
| truncate-N        | a stream: N content chunks, then a clean end (no finish_reason, no DONE)|
| drop-N            | a stream: N content chunks, then the connection is cut mid-body         |
| endless-body      | 200 JSON whose body never ends                                          |
| endless-error     | 500 whose body never ends                                               |
| endless-line      | a stream whose ``data:`` line never ends                                |
| endless-event     | a stream of short ``data:`` lines and never the blank line              |
| usage-N, usage--N | answers reporting N (or -N) prompt and completion tokens                |
| pii               | answers "Mail ann@example.com, SSN 123-45-6789."                        |
| echo              | answers with the last user message, as it arrived                       |

A prompt whose last user message says ``say pii`` gets that text from any backend, streamed in
5-character pieces (so a value spans chunks). A request ending in an assistant message with
``continue_final_message`` (vLLM's parameter) is answered with the rest of the answer after
that message, as a model continuing its own prefix would.

Run: ``python tests/independent_backend.py PORT``; ``GET /<prefix>/health`` answers 200.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog"]
PII_TEXT = "Mail ann@example.com, SSN 123-45-6789."
_FOREVER = 3600.0
_counter = 0


def _id(prefix: str) -> str:
    global _counter
    _counter += 1
    return f"{prefix}-{_counter:08d}"


def _fault(request: Request) -> tuple[str, int]:
    name = request.path_params["fault"]
    head, _, tail = name.rpartition("-")
    if head and tail.isdigit():  # usage--5: a negative parameter
        return (head[:-1], -int(tail)) if head.endswith("-") else (head, int(tail))
    return name, 0


def _error(status: int, message: str, kind: str, code: str | None, headers: dict[str, str] | None = None) -> Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _content(fault: str, body: dict[str, Any]) -> str:
    messages = body.get("messages") or []
    continued = bool(body.get("continue_final_message")) and messages and messages[-1].get("role") == "assistant"
    prefix = messages[-1].get("content", "") if continued else ""
    users = [m.get("content") for m in messages if m.get("role") == "user"]
    if fault == "echo":
        return str(users[-1]) if users else ""
    if fault == "pii" or (users and "say pii" in str(users[-1])):
        text = PII_TEXT
    else:  # max_tokens words (a continuation's limit counts what is left)
        limit = int(body.get("max_completion_tokens") or body.get("max_tokens") or 6)
        words = len(prefix.split()) + limit if prefix else limit
        text = " ".join(WORDS[i % len(WORDS)] for i in range(words))
    return text[len(prefix) :] if text.startswith(prefix) else text


def _pieces(text: str) -> list[str]:
    """Words with their leading space; the PII text in 5-character pieces."""
    if PII_TEXT.endswith(text):
        return [text[i : i + 5] for i in range(0, len(text), 5)]
    return re.findall(r"\s*\S+", text)


def _usage(fault: str, amount: int, text: str) -> dict[str, int]:
    if fault == "usage":
        return {"prompt_tokens": amount, "completion_tokens": amount, "total_tokens": 2 * amount}
    words = len(text.split())
    return {"prompt_tokens": 5, "completion_tokens": words, "total_tokens": 5 + words}


async def chat_completions(request: Request) -> Response:
    body = await request.json()
    if not isinstance(body.get("messages"), list) or not body.get("model"):
        return _error(400, "'messages' and 'model' are required", "invalid_request_error", None)
    return await _answer(request, body, chat=True)


async def completions(request: Request) -> Response:
    body = await request.json()
    if "prompt" not in body or not body.get("model"):
        return _error(400, "'prompt' and 'model' are required", "invalid_request_error", None)
    return await _answer(request, body, chat=False)


async def embeddings(request: Request) -> Response:
    body = await request.json()
    inputs = body["input"] if isinstance(body.get("input"), list) else [body.get("input", "")]
    data = [{"object": "embedding", "index": i, "embedding": [0.25] * 4} for i in range(len(inputs))]
    usage = {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}
    return JSONResponse({"object": "list", "data": data, "model": body.get("model"), "usage": usage})


async def _answer(request: Request, body: dict[str, Any], *, chat: bool) -> Response:
    fault, amount = _fault(request)
    if fault == "hang":
        await asyncio.sleep(_FOREVER)
    if fault == "ratelimit":
        headers = {"retry-after": str(amount)}
        return _error(429, "Rate limit reached for requests", "requests", "rate_limit_exceeded", headers)
    if fault == "html":
        return HTMLResponse("<html><body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>")
    if fault == "endless-body":
        return StreamingResponse(_endless(b'{"choices": [' + b" " * 65536), media_type="application/json")
    if fault == "endless-error":
        return StreamingResponse(_endless(b"<html>" + b"x" * 65536), status_code=500, media_type="text/html")
    if fault == "endless-line":
        return StreamingResponse(_endless(b"data: " + b"x" * 65536), media_type="text/event-stream")
    if fault == "endless-event":
        return StreamingResponse(_endless(b"data: " + b"x" * 1000 + b"\n"), media_type="text/event-stream")
    text = _content(fault, body)
    if body.get("stream"):
        return StreamingResponse(_stream(fault, amount, body, text, chat), media_type="text/event-stream")
    created = int(time.time())
    usage = _usage(fault, amount, text)
    if chat:
        message = {"role": "assistant", "content": text, "refusal": None}
        choice: dict[str, Any] = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
        answer = {"id": _id("chatcmpl"), "object": "chat.completion", "created": created, "model": body["model"]}
    else:
        choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": "stop"}
        answer = {"id": _id("cmpl"), "object": "text_completion", "created": created, "model": body["model"]}
    return JSONResponse({**answer, "choices": [choice], "usage": usage, "system_fingerprint": "fp_independent"})


async def _endless(piece: bytes) -> AsyncIterator[bytes]:
    while True:
        yield piece
        await asyncio.sleep(0)


async def _stream(fault: str, amount: int, body: dict[str, Any], text: str, chat: bool) -> AsyncIterator[bytes]:
    ident, created, model = _id("chatcmpl" if chat else "cmpl"), int(time.time()), body["model"]
    kind = "chat.completion.chunk" if chat else "text_completion"

    def chunk(delta: dict[str, Any] | str, finish: str | None) -> bytes:
        if chat:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": delta, "logprobs": None, "finish_reason": finish}
        payload = {"id": ident, "object": kind, "created": created, "model": model, "choices": [choice]}
        return f"data: {json.dumps(payload)}\n\n".encode()

    if chat:
        yield chunk({"role": "assistant", "content": ""}, None)
    for index, piece in enumerate(_pieces(text)):
        if fault in ("stall", "truncate", "drop") and index == amount:
            if fault == "stall":
                await asyncio.sleep(_FOREVER)
            if fault == "drop":
                raise ConnectionAbortedError("the backend process died mid-stream")
            return
        yield chunk({"content": piece} if chat else piece, None)
        await asyncio.sleep(0.001)
    yield chunk({} if chat else "", "stop")
    if (body.get("stream_options") or {}).get("include_usage"):
        usage = _usage(fault, amount, text)
        final = {"id": ident, "object": kind, "created": created, "model": model, "choices": [], "usage": usage}
        yield f"data: {json.dumps(final)}\n\n".encode()
    yield b"data: [DONE]\n\n"


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def models(request: Request) -> Response:
    return JSONResponse({"object": "list", "data": [{"id": "m", "object": "model", "created": 0, "owned_by": "x"}]})


app = Starlette(
    routes=[
        Route("/{fault}/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/{fault}/v1/completions", completions, methods=["POST"]),
        Route("/{fault}/v1/embeddings", embeddings, methods=["POST"]),
        Route("/{fault}/v1/models", models),
        Route("/{fault}/health", health),
    ]
)

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", lifespan="off")
