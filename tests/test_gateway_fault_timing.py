"""The default fault limits in mock time (MockClock): a backend that never answers is left after
``first_byte_timeout`` (10 s), a stream that goes silent ends after ``stream_idle_timeout``
(30 s), both well inside the operation's deadline, and with ``stream_resume`` the silent
stream's answer is finished by the other backend. The hostile backend is an in-process app whose
handlers sleep in mock time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import trio
import trio.testing

import handlers.gateway as gateway
from tests.conftest import serve
from tests.test_gateway_admin import gateway_with
from trio_router import App, Event, EventStream, sleep

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def chunk(text: str | None, finish: str | None = None) -> dict[str, Any]:
    delta = {"content": text} if text is not None else {}
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip


def hostile_backend(text: list[str]) -> App:
    """``/hang`` never answers; ``/stall`` streams two words and goes silent; ``/good`` streams
    the rest of ``text`` after whatever the assistant prefix already holds."""
    app = App()

    @app.route("POST", "/hang/v1/chat/completions")
    def hang(request: Any) -> Any:
        sleep(3600)

    @app.route("POST", "/stall/v1/chat/completions")
    def stall(request: Any) -> EventStream:
        def events() -> Iterator[Event]:
            for word in text[:2]:
                yield Event(chunk(word))
            sleep(3600)

        return EventStream(events())

    @app.route("POST", "/good/v1/chat/completions")
    def good(request: Any) -> Any:
        body = json.loads(request.read())
        if not body.get("stream"):
            return {"id": "c2", "object": "chat.completion", "created": 1, "model": "m",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(text)},
                                 "finish_reason": "stop"}]}  # fmt: skip
        last = body["messages"][-1]
        sent = last["content"] if last["role"] == "assistant" and body.get("continue_final_message") else ""
        rest = "".join(text)[len(sent) :]

        def events() -> Iterator[Event]:
            yield Event(chunk(rest))
            yield Event(chunk(None, "stop"))
            yield Event("[DONE]")

        return EventStream(events())

    return app


def two(url: str, first: str) -> list[dict[str, Any]]:
    return [
        {"name": first, "url": f"{url}/{first}", "models": ["m"], "weight": 1000, "health_url": f"{url}/none"},
        {"name": "good", "url": f"{url}/good", "models": ["m"], "health_url": f"{url}/none"},
    ]


async def test_a_backend_that_never_answers_is_left_after_ten_seconds(
    tmp_path: Any, monkeypatch: Any, autojump_clock: trio.testing.MockClock
) -> None:
    async with serve(hostile_backend(["done"]), request_timeout=3600) as upstream:
        config = {"backends": two(upstream.url, "hang"), "retry_delay": 0}
        async with gateway_with(tmp_path, monkeypatch, **config) as (public, _), httpx.AsyncClient() as http:
            started = trio.current_time()
            reply = await http.post(f"{public}/v1/chat/completions", json=BODY, timeout=None)
            waited = trio.current_time() - started
    assert reply.status_code == 200 and reply.headers["x-router-backend"] == "good"
    assert 10 <= waited < 11  # the default first_byte_timeout, then the good backend at once
    assert gateway.REGISTRY.backends["hang"].stats()["failures"] == 1


async def test_a_silent_stream_ends_after_thirty_seconds_or_is_finished_elsewhere(
    tmp_path: Any, monkeypatch: Any, autojump_clock: trio.testing.MockClock
) -> None:
    text = ["Hello", " there", " and", " goodbye"]
    async with serve(hostile_backend(text), request_timeout=3600) as upstream:  # it must not end first
        for resume in (False, True):
            config: dict[str, Any] = {"backends": two(upstream.url, "stall"), "retry_delay": 0}
            if resume:
                config["stream_resume"] = {"m": {}}
            async with gateway_with(tmp_path, monkeypatch, **config) as (public, _), httpx.AsyncClient() as http:
                started = trio.current_time()
                body = {**BODY, "stream": True}
                reply = await http.post(f"{public}/v1/chat/completions", json=body, timeout=None)
                waited = trio.current_time() - started
            data = [line[6:] for line in reply.text.splitlines() if line.startswith("data: ")]
            content = "".join(
                choice["delta"].get("content") or ""
                for item in data
                if item != "[DONE]"
                for choice in httpx.Response(200, content=item).json().get("choices", [])
                if "delta" in choice
            )
            # The default stream_idle_timeout after the backend's last event, not the deadline:
            # that event came 1 s in (the backend, a trio-router app, held " there" in its own
            # guardrails for 1 s), and its keep-alive comment at 16 s did not reset the limit.
            assert 31 <= waited < 32
            if resume:
                assert content == "Hello there and goodbye" and data[-1] == "[DONE]"
            else:
                assert content == "Hello there" and "upstream_stalled" in data[-1]
