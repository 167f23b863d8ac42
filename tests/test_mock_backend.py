"""`trio-router mock-backend`, the OpenAI-compatible model server gateways are tested against,
driven by the openai SDK: completions (plain and streamed, chat and legacy), embeddings, the
model list, the babysitter health port, and each injected fault."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.test_cli import ServerProcess

pytestmark = pytest.mark.slow


def free_port_pair() -> int:
    """A port p with p + 1 free too (the health port)."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return int(port)
    raise AssertionError("no two adjacent free ports")


@pytest.fixture(scope="module")
def backend() -> Iterator[str]:
    port = free_port_pair()
    args = ("--port", str(port), "--name", "b1", "--models", "m1,m2", "--tokens-per-second", "0")
    server = ServerProcess(*args, command=("mock-backend",))
    try:
        server.wait_for_log(rf"listening on http://127.0.0.1:{port + 1}")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def client(backend: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{backend}/v1", api_key="unused", max_retries=0) as sdk:
        yield sdk


def test_chat_completions_plain_and_streamed(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "hello there"}]
    plain = client.chat.completions.create(model="m1", messages=messages)  # type: ignore[arg-type]
    assert plain.choices[0].message.content == "b1 answers: hello there"
    assert plain.choices[0].finish_reason == "stop" and plain.usage is not None
    assert plain.usage.completion_tokens == 4 and plain.usage.prompt_tokens == 3
    stream = client.chat.completions.create(
        model="m2",
        messages=messages,
        stream=True,
        max_tokens=6,
        stream_options={"include_usage": True},  # type: ignore[arg-type]
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "b1 answers: hello there 5 6"  # an explicit max_tokens is filled
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6


def test_completions_embeddings_and_models(client: openai.OpenAI, backend: str) -> None:
    completion = client.completions.create(model="m1", prompt="say hi")
    assert completion.choices[0].text == "b1 answers: say hi"
    streamed = "".join(c.choices[0].text for c in client.completions.create(model="m1", prompt="x", stream=True))
    assert streamed == "b1 answers: x"
    vectors = client.embeddings.create(model="m1", input=["a", "b", "a"]).data
    assert len(vectors[0].embedding) == 8 and vectors[0].embedding == vectors[2].embedding != vectors[1].embedding
    assert [model.id for model in client.models.list()] == ["m1", "m2"]
    port = int(backend.rsplit(":", 1)[1])
    health = httpx.get(f"http://127.0.0.1:{port + 1}/health").json()  # the babysitter port
    assert health == {"status": "ok", "name": "b1", "models": ["m1", "m2"], "role": "unified"}


def test_errors_and_faults(client: openai.OpenAI, backend: str) -> None:
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="m9", messages=messages)  # type: ignore[arg-type]
    assert missing.value.code == "model_not_found"
    for fault, error in (("error", openai.InternalServerError), ("rate-limit", openai.RateLimitError)):
        with pytest.raises(error):
            client.chat.completions.create(model="m1", messages=messages, extra_headers={"x-mock-fault": fault})  # type: ignore[arg-type]
    with pytest.raises(openai.APIConnectionError):  # cut before any response
        client.chat.completions.create(model="m1", messages=messages, extra_headers={"x-mock-fault": "drop"})  # type: ignore[arg-type]
    received = []
    with pytest.raises((openai.APIError, httpx.RemoteProtocolError)):  # cut mid-stream: no [DONE], no finish
        stream = client.chat.completions.create(
            model="m1",
            messages=messages,
            stream=True,
            max_tokens=10,
            extra_headers={"x-mock-fault": "drop"},  # type: ignore[arg-type]
        )
        received.extend(c.choices[0].delta.content for c in stream if c.choices)
    assert 1 <= len([r for r in received if r]) <= 3
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.5).chat.completions.create(
            model="m1",
            messages=messages,
            extra_headers={"x-mock-fault": "hang"},  # type: ignore[arg-type]
        )
    bad = httpx.post(f"{backend}/v1/chat/completions", json={"model": "m1", "messages": "nope"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "/messages"
