"""The ranges of OpenAI's API reference hold at the gateway: a client outside them gets a 400 in
OpenAI's error shape naming the parameter (what the openai SDK raises as BadRequestError),
before any backend is asked or any cost reserved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import trio

from tests.conftest import serve_gateway_config

HELLO = [{"role": "user", "content": "hello"}]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"temperature": 5}, "/temperature"),
        ({"top_p": 1.5}, "/top_p"),
        ({"n": 0}, "/n"),
        ({"n": 1000}, "/n"),
        ({"max_tokens": -1}, "/max_tokens"),
        ({"presence_penalty": -3}, "/presence_penalty"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "/stop"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "/messages/0/role"),
    ],
)
async def test_a_parameter_outside_openais_range_is_a_400_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: dict[str, Any], param: str
) -> None:
    config = {"embedded_mock": True, "usage": {"sink": "none"}}
    async with serve_gateway_config(tmp_path, monkeypatch, config) as (running, _):

        def ask() -> openai.BadRequestError:
            client = openai.OpenAI(base_url=f"{running.url}/v1", api_key="unused", max_retries=0)
            with pytest.raises(openai.BadRequestError) as refused:
                client.chat.completions.create(model="mock-small", **{"messages": HELLO, **extra})
            return refused.value

        error = await trio.to_thread.run_sync(ask)
        async with httpx.AsyncClient() as http:
            backends = (await http.get(f"{running.url}/stats")).json()["backends"]
            answered = await http.post(
                f"{running.url}/v1/chat/completions",
                json={"model": "mock-small", "messages": HELLO, "temperature": 2, "n": 1, "max_tokens": 8},
            )
    assert error.status_code == 400
    body: Any = error.body
    assert body["param"] == param and body["type"] == "invalid_request_error"
    assert all(backend["requests"] == 0 for backend in backends)  # refused before any backend
    assert answered.status_code == 200  # the bounds themselves are accepted


async def test_n_choices_arrive_plain_and_streamed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = {"embedded_mock": True, "usage": {"sink": "none"}}
    async with serve_gateway_config(tmp_path, monkeypatch, config) as (running, _):

        def ask() -> tuple[list[int], set[int]]:
            client = openai.OpenAI(base_url=f"{running.url}/v1", api_key="unused", max_retries=0)
            plain = client.chat.completions.create(model="mock-small", messages=HELLO, n=3)  # type: ignore[arg-type]
            stream = client.chat.completions.create(model="mock-small", messages=HELLO, n=3, stream=True)  # type: ignore[arg-type]
            return [choice.index for choice in plain.choices], {c.index for chunk in stream for c in chunk.choices}

        plain, streamed = await trio.to_thread.run_sync(ask)
    assert plain == [0, 1, 2] and streamed == {0, 1, 2}
