"""The gateway against real mock backends (`trio-router mock-backend` processes), driven by the
openai SDK: plain and streamed completions through the guardrails, weighted distribution,
retries onto the next backend, every backend failing, a backend killed, and a client that
hangs up mid-stream."""

from __future__ import annotations

import collections
import importlib
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import openai
import pytest
import trio
import yaml

import handlers.gateway as gateway
from tests.conftest import Running, raw_request, serve, serve_gateway_config
from tests.test_cli import ServerProcess
from tests.test_mock_backend import free_port_pair
from trio_router import App

pytestmark = pytest.mark.slow
SPEC = Path(__file__).resolve().parent.parent / "specs" / "gateway.yaml"


class Backends:
    def __init__(self) -> None:
        self.processes: dict[str, ServerProcess] = {}
        self.urls: dict[str, str] = {}

    def start(self, name: str, models: str, *extra: str) -> None:
        port = free_port_pair()
        args = ("--port", str(port), "--name", name, "--models", models, "--tokens-per-second", "0", *extra)
        self.processes[name] = ServerProcess(*args, command=("mock-backend",))
        self.processes[name].wait_for_log(rf"listening on http://127.0.0.1:{port + 1}")
        self.urls[name] = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        for process in self.processes.values():
            process.stop()


@pytest.fixture(scope="module")
def backends() -> Iterator[Backends]:
    running = Backends()
    try:
        running.start("b1", "m1,m2")
        running.start("b2", "m1")
        running.start("broken", "m3", "--fail-rate", "1")
        running.start("slow", "m4", "--tokens-per-second", "5")
        running.start("dropper", "m6", "--fault", "drop")
        running.start("pre", "m8", "--role", "prefill")
        running.start("dec", "m8", "--role", "decode")
        running.start("uni8", "m8")
        yield running
    finally:
        running.stop()


@asynccontextmanager
async def serve_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backends: Backends, **config: object
) -> AsyncIterator[Running]:
    weights = {"b1": 3, "b2": 1}
    listed = [
        {"name": name, "url": url, "models": models, "weight": weights.get(name, 1)}
        for name, url, models in (
            ("b1", backends.urls["b1"], ["m1", "m2"]),
            ("b2", backends.urls["b2"], ["m1"]),
            ("broken", backends.urls["broken"], ["m3", "m5"]),
            ("slow", backends.urls["slow"], ["m4"]),
            ("dropper", backends.urls["dropper"], ["m6"]),
            ("uni8", backends.urls["uni8"], ["m8"]),
        )
    ]
    listed += [
        {"name": name, "url": backends.urls[name], "models": ["m8"], "role": role}
        for name, role in (("pre", "prefill"), ("dec", "decode"))
    ]
    document = {"backends": listed, "retry_delay": 0.05, **config}
    async with serve_gateway_config(tmp_path, monkeypatch, document) as (running, _):
        yield running


def sdk(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


async def test_completions_plain_and_streamed_through_the_guardrails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backends: Backends
) -> None:
    async with serve_gateway(tmp_path, monkeypatch, backends) as running:

        def talk() -> tuple[str, str, list[str], str, int]:
            client = sdk(running.url)
            messages = [{"role": "user", "content": "mail ann@example.com"}]
            plain = client.chat.completions.create(model="m2", messages=messages)  # type: ignore[arg-type]
            stream = client.chat.completions.create(model="m2", messages=messages, stream=True)  # type: ignore[arg-type]
            streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            models = [model.id for model in client.models.list()]
            legacy = client.completions.create(model="m2", prompt="hi").choices[0].text
            dims = len(client.embeddings.create(model="m2", input="x").data[0].embedding)
            return plain.choices[0].message.content or "", streamed, models, legacy, dims

        plain, streamed, models, legacy, dims = await trio.to_thread.run_sync(talk)
    assert plain == "b1 answers: mail [REDACTED:email]"  # buffered answers are guarded like streams
    assert streamed == "b1 answers: mail [REDACTED:email]"  # streams go through the guardrails
    assert models == ["m1", "m2", "m3", "m5", "m4", "m6", "m8"]
    assert (legacy, dims) == ("b1 answers: hi", 8)


async def test_weighted_distribution_retries_and_total_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backends: Backends
) -> None:
    body = {"model": "m1", "messages": [{"role": "user", "content": "hi"}]}
    async with serve_gateway(tmp_path, monkeypatch, backends) as running, httpx.AsyncClient() as http:
        served = collections.Counter()
        for _ in range(40):
            reply = await http.post(f"{running.url}/v1/chat/completions", json=body)
            served[reply.headers["x-router-backend"]] += 1
        assert served == {"b1": 30, "b2": 10}  # smooth weighted round-robin, weights 3:1
        failing = await http.post(f"{running.url}/v1/chat/completions", json={**body, "model": "m3"})
        assert failing.status_code == 502
        error = failing.json()["error"]
        assert error["code"] == "backends_failed" and error["attempts"][0]["backend"] == "broken"
        assert "HTTP 500" in error["attempts"][0]["error"]
        unknown = await http.post(f"{running.url}/v1/chat/completions", json={**body, "model": "nope"})
        assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "model_not_found")
        stats = {b["name"]: b for b in (await http.get(f"{running.url}/stats")).json()["backends"]}
        assert stats["broken"]["failures"] == 1 and stats["b1"]["requests"] == 30


async def test_fallback_model_and_a_killed_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backends: Backends
) -> None:
    body = {"model": "m5", "messages": [{"role": "user", "content": "hi"}]}
    fallback = {"m5": ["m2"]}
    async with (
        serve_gateway(tmp_path, monkeypatch, backends, fallbacks=fallback) as running,
        httpx.AsyncClient() as http,
    ):
        reply = await http.post(f"{running.url}/v1/chat/completions", json=body)
        assert reply.status_code == 200  # "broken" failed m5; the fallback model m2 answered on b1
        assert (reply.headers["x-router-backend"], reply.headers["x-router-attempts"]) == ("b1", "2")
        assert reply.json()["model"] == "m2"
    extra = Backends()
    try:
        extra.start("doomed", "m1")
        config = {"backends": [
            {"name": "doomed", "url": extra.urls["doomed"], "models": ["m1"], "weight": 100},
            {"name": "b1", "url": backends.urls["b1"], "models": ["m1"]},
        ]}  # fmt: skip
        path = tmp_path / "two.yaml"
        path.write_text(yaml.safe_dump({**config, "retry_delay": 0}))
        monkeypatch.setenv("GATEWAY_CONFIG", str(path))
        module = importlib.reload(gateway)
        async with serve(App.from_spec(SPEC, module)) as running, httpx.AsyncClient() as http:
            extra.processes["doomed"].process.kill()
            extra.processes["doomed"].process.wait()
            body = {"model": "m1", "messages": [{"role": "user", "content": "hi"}]}
            replies = [await http.post(f"{running.url}/v1/chat/completions", json=body) for _ in range(3)]
            assert [r.status_code for r in replies] == [200, 200, 200]  # never an error for the client
            assert {r.headers["x-router-backend"] for r in replies} == {"b1"}
    finally:
        extra.stop()


async def test_a_client_hanging_up_cancels_the_upstream_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backends: Backends
) -> None:
    body = {"model": "m4", "messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": 50}
    async with serve_gateway(tmp_path, monkeypatch, backends) as running:
        client = await running.connect()
        payload = json.dumps(body).encode()
        headers = [("content-type", "application/json")]
        await client.send(raw_request("POST", "/v1/chat/completions", payload, headers))
        received = b""
        while received.count(b"data:") < 2:  # streaming, at 5 tokens a second: 10 s in all
            received += await client.stream.receive_some(65536)
        await client.aclose()
        outstanding = 1
        with trio.fail_after(3):
            while outstanding:
                await trio.sleep(0.05)
                stats = gateway.REGISTRY.backends["slow"].stats()
                outstanding = int(stats["outstanding"])  # type: ignore[call-overload]


async def test_a_client_hanging_up_before_the_answer_releases_the_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backends: Backends
) -> None:
    """Cancelled while waiting for the upstream's head, the attempt still gives back its
    outstanding slot (least-outstanding selection would otherwise shun the backend for good)."""
    body = {"model": "m4", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50}
    async with serve_gateway(tmp_path, monkeypatch, backends) as running:
        slow = gateway.REGISTRY.backends["slow"]
        client = await running.connect()
        await client.send(
            raw_request(
                "POST", "/v1/chat/completions", json.dumps(body).encode(), [("content-type", "application/json")]
            )
        )
        with trio.fail_after(3):
            while not slow.outstanding:  # noqa: ASYNC110 (polling a counter)
                await trio.sleep(0.01)
        await client.aclose()  # 10 s before the non-streamed answer would come
        with trio.fail_after(3):
            while slow.outstanding:  # noqa: ASYNC110 (polling a counter)
                await trio.sleep(0.02)
        assert slow.stats()["failures"] == 0  # the client left: not the backend's failure


async def test_an_upstream_dying_mid_stream_ends_the_stream_with_an_error_and_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backends: Backends
) -> None:
    async with serve_gateway(tmp_path, monkeypatch, backends) as running:

        def stream() -> tuple[list[str], Exception | None]:
            received: list[str] = []
            messages = [{"role": "user", "content": "hi"}]
            try:
                chunks = sdk(running.url).chat.completions.create(model="m6", messages=messages, stream=True)  # type: ignore[arg-type]
                received.extend(c.choices[0].delta.content or "" for c in chunks if c.choices)
            except openai.APIError as exc:
                return received, exc
            return received, None

        received, error = await trio.to_thread.run_sync(stream)
        stats = {b.name: b.stats() for b in gateway.REGISTRY.backends.values()}
    assert isinstance(error, openai.APIError)  # the SDK read the terminal error event
    assert error.body == {  # in OpenAI's shape: this operation's x-error-format; says what happened
        "message": "backend 'dropper' closed the stream after 3 chunks",
        "type": "server_error",
        "code": "upstream_closed",
    }
    assert "".join(received).startswith("dropper answers")  # what came before the cut got through
    assert stats["dropper"]["failures"] == 1 and stats["dropper"]["outstanding"] == 0


async def test_prefill_then_decode_and_back_to_unified_backends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backends: Backends
) -> None:
    body = {"model": "m8", "messages": [{"role": "user", "content": "hi"}]}
    async with serve_gateway(tmp_path, monkeypatch, backends) as running, httpx.AsyncClient() as http:
        url = f"{running.url}/v1/chat/completions"
        two_phase = await http.post(url, json=body)
        assert (two_phase.headers["x-router-backend"], two_phase.headers["x-router-attempts"]) == ("dec", "2")
        content = two_phase.json()["choices"][0]["message"]["content"]
        assert content.startswith("dec answers: (kv-pre-") and content.endswith(") hi")  # the prefill's handle
        streamed = await http.post(url, json={**body, "stream": True})
        assert streamed.headers["x-router-backend"] == "dec" and "kv-pre-" in streamed.text
        gateway.REGISTRY.backends["pre"].drained = True  # no prefill backend left: unified answers
        unified = await http.post(url, json=body)
        assert (unified.headers["x-router-backend"], unified.json()["choices"][0]["message"]["content"]) == (
            "uni8",
            "uni8 answers: hi",
        )
