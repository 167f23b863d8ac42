"""The gateway under backend faults, against a backend we did not build on our own stack
(tests/independent_backend.py: Starlette on uvicorn, from OpenAI's API reference), with the
openai SDK as the client. Each model has two backends, the faulty one tried first (weight
1000 to 1) and a good one: every fault must end in a failover or a clear error, never in a
hang, a 500 or an unbounded buffer."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import trio

import handlers.gateway as gateway
from tests.conftest import Running, serve_gateway_config
from tests.test_gateway_tenancy import records
from tests.test_mock_backend import free_port_pair

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "gateway.yaml"
HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def independent() -> Iterator[str]:
    """The independent backend's base URL (one process serves every fault)."""
    port = free_port_pair()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "independent_backend.py"), str(port)], stderr=subprocess.PIPE
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{base}/good/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "the independent backend did not start"
            time.sleep(0.05)
        yield base
    finally:
        process.kill()  # uvicorn's graceful stop would wait for the hanging requests
        process.wait(10)


def backends(base: str, *faults: str) -> list[dict[str, Any]]:
    """One backend per fault for model m, the first tried first; health checked on /good."""
    return [
        {
            "name": fault,
            "url": f"{base}/{fault}",
            "models": ["m"],
            "weight": 1000 if index == 0 else 1,
            "health_url": f"{base}/good/health",
        }
        for index, fault in enumerate(faults)
    ]


@asynccontextmanager
async def gateway_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, listed: list[dict[str, Any]], **config: Any
) -> AsyncIterator[Running]:
    settings = {
        "backends": listed,
        "retry_delay": 0,
        "first_byte_timeout": 0.5,
        "stream_idle_timeout": 0.5,
        "health_interval": 3600,
        "pricing": {"*": {"input": 1.0, "output": 1.0}},
        "usage": {"path": "usage.jsonl", "spool_dir": "spool", "flush_interval": 0.05},
        **config,
    }
    async with serve_gateway_config(tmp_path, monkeypatch, settings) as (running, _):
        yield running


def sdk(running: Running) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{running.url}/v1", api_key="unused", max_retries=0)


def stats() -> dict[str, dict[str, Any]]:
    return {backend.name: backend.stats() for backend in gateway.REGISTRY.backends.values()}


def ask(running: Running, **extra: Any) -> Any:
    """One chat completion through the SDK, with the raw response (its headers) kept."""
    raw = sdk(running).chat.completions.with_raw_response.create(model="m", messages=HELLO, **extra)  # type: ignore[arg-type]
    return raw


async def post_chat(running: Running) -> httpx.Response:
    """A plain chat completion with httpx (to read the error's attempts as they are)."""
    async with httpx.AsyncClient(base_url=running.url, timeout=10) as client:
        return await client.post("/v1/chat/completions", json={"model": "m", "messages": HELLO})


def stream_text(running: Running) -> tuple[str, Exception | None]:
    """A streamed chat completion's text as the SDK read it, and the error it raised if any."""
    received: list[str] = []
    try:
        for chunk in sdk(running).chat.completions.create(model="m", messages=HELLO, stream=True):  # type: ignore[arg-type]
            received.extend(choice.delta.content or "" for choice in chunk.choices)
    except openai.APIError as exc:
        return "".join(received), exc
    return "".join(received), None


async def test_a_backend_that_never_answers_is_left_after_first_byte_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, independent: str
) -> None:
    async with gateway_over(tmp_path, monkeypatch, backends(independent, "hang", "good")) as running:

        def talk() -> tuple[list[Any], tuple[str, Exception | None], float]:
            started = time.monotonic()
            plain = [ask(running) for _ in range(2)]
            return plain, stream_text(running), time.monotonic() - started

        plain, (streamed, error), elapsed = await trio.to_thread.run_sync(talk)
        hang = stats()["hang"]
    for raw in plain:
        assert raw.headers["x-router-backend"] == "good" and raw.headers["x-router-attempts"] == "2"
        assert raw.parse().choices[0].message.content.startswith("the quick")
    assert error is None and streamed.startswith("the quick")
    assert elapsed < 10  # three waits of 0.5 s, not three request deadlines (30 s each)
    assert hang["failures"] == 3 and hang["outstanding"] == 0  # the breaker counted each


async def test_a_429_moves_on_and_cools_the_backend_down_without_tripping_its_breaker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, independent: str
) -> None:
    async with gateway_over(tmp_path, monkeypatch, backends(independent, "ratelimit-60", "good")) as running:
        first, second = await trio.to_thread.run_sync(lambda: (ask(running), ask(running)))
        limited = stats()["ratelimit-60"]
    assert (first.headers["x-router-backend"], first.headers["x-router-attempts"]) == ("good", "2")
    assert (second.headers["x-router-backend"], second.headers["x-router-attempts"]) == ("good", "1")  # cooling
    assert limited["rate_limited"] == 1 and limited["failures"] == 0 and limited["breaker"] == "closed"


async def test_the_client_sees_429_only_when_every_backend_is_rate_limited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, independent: str
) -> None:
    listed = backends(independent, "ratelimit-40", "ratelimit-7")
    async with gateway_over(tmp_path, monkeypatch, listed) as running:

        def talk() -> list[openai.RateLimitError]:
            errors = []
            for _ in range(2):  # the second finds both cooling: answered at once, no attempt
                try:
                    ask(running)
                except openai.RateLimitError as exc:
                    errors.append(exc)
            return errors

        errors = await trio.to_thread.run_sync(talk)
        counts = [backend["rate_limited"] for backend in stats().values()]
    assert len(errors) == 2 and counts == [1, 1]
    assert errors[0].response.headers["retry-after"] == "7"  # the soonest of the two
    assert 1 <= int(errors[1].response.headers["retry-after"]) <= 7
    assert errors[0].code == "rate_limit_exceeded" and "rate-limited" in errors[0].message


async def test_a_200_that_is_not_json_is_a_failed_attempt_then_502(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, independent: str
) -> None:
    async with gateway_over(tmp_path, monkeypatch, backends(independent, "html", "good")) as running:
        answered = await trio.to_thread.run_sync(ask, running)
        html = stats()["html"]
    assert answered.headers["x-router-backend"] == "good" and html["failures"] == 1

    async with gateway_over(tmp_path, monkeypatch, backends(independent, "html")) as running:
        with pytest.raises(openai.APIStatusError) as caught:
            await trio.to_thread.run_sync(ask, running)
    assert caught.value.status_code == 502 and caught.value.code == "backends_failed"
    body: Any = caught.value.body
    assert body["attempts"] == [{"backend": "html", "error": "answered HTTP 200 with text/html, not JSON"}]


@pytest.mark.parametrize(
    ("fault", "code", "message"),
    [
        ("stall-2", "upstream_stalled", "backend 'stall-2' sent no event for 0.5 s after 3 chunks"),
        (
            "truncate-2",
            "upstream_truncated",
            "backend 'truncate-2' ended the stream after 3 chunks without finishing the answer",
        ),
    ],
)
async def test_a_stalled_or_unfinished_stream_ends_in_band_naming_the_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, independent: str, fault: str, code: str, message: str
) -> None:
    async with gateway_over(tmp_path, monkeypatch, backends(independent, fault, "good")) as running:
        streamed, error = await trio.to_thread.run_sync(stream_text, running)
        failed = stats()[fault]
        (record,) = await records(tmp_path / "usage.jsonl", 1)
    assert streamed == "the quick"  # what came before the fault got through
    assert isinstance(error, openai.APIError) and (error.message, error.code) == (message, code)
    assert failed["failures"] == 1 and failed["outstanding"] == 0
    assert record["outcome"] == code and record["backend"] == fault
    assert record["tokens_out"] >= 1  # what was relayed before the fault is recorded


async def test_a_good_stream_is_complete_in_the_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, independent: str
) -> None:
    async with gateway_over(tmp_path, monkeypatch, backends(independent, "good")) as running:
        streamed, error = await trio.to_thread.run_sync(stream_text, running)
        (record,) = await records(tmp_path / "usage.jsonl", 1)
    assert error is None and streamed == "the quick brown fox jumps over"
    assert record["outcome"] == "ok" and stats()["good"]["failures"] == 0


@pytest.mark.parametrize("fault", ["endless-body", "endless-error"])
async def test_a_body_that_never_ends_is_cut_at_the_bound_and_the_next_backend_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, independent: str, fault: str
) -> None:
    async with gateway_over(
        tmp_path, monkeypatch, backends(independent, fault, "good"), max_response_bytes=1 << 20
    ) as running:
        endless = await post_chat(running)
        failed = stats()[fault]
    assert endless.status_code == 200 and endless.headers["x-router-backend"] == "good"
    assert failed["failures"] == 1 and failed["outstanding"] == 0

    async with gateway_over(tmp_path, monkeypatch, backends(independent, fault), max_response_bytes=1 << 20) as running:
        reply = await post_chat(running)
    (attempt,) = reply.json()["error"]["attempts"]
    assert reply.status_code == 502
    if fault == "endless-body":
        assert attempt["error"] == (
            "answered with more than the gateway accepts (the upstream's body is over 1048576 bytes)"
        )
    else:  # an error page is quoted, 200 characters at most, and the rest never read
        assert attempt["error"].startswith("HTTP 500: <html>xxx") and len(attempt["error"]) < 240


@pytest.mark.parametrize("fault", ["endless-line", "endless-event"])
async def test_an_event_that_never_ends_ends_the_stream_at_the_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, independent: str, fault: str
) -> None:
    async with gateway_over(tmp_path, monkeypatch, backends(independent, fault), max_event_bytes=65536) as running:

        async def health_meanwhile() -> list[int]:
            async with httpx.AsyncClient(base_url=running.url, timeout=5) as client:
                return [(await client.get("/health")).status_code for _ in range(5)]

        async with trio.open_nursery() as nursery:
            outcome: dict[str, Any] = {}

            async def relay() -> None:
                outcome["stream"] = await trio.to_thread.run_sync(stream_text, running)

            nursery.start_soon(relay)
            outcome["health"] = await health_meanwhile()
        failed = stats()[fault]
    _, error = outcome["stream"]
    assert outcome["health"] == [200] * 5
    assert isinstance(error, openai.APIError) and error.code == "upstream_oversized"
    assert error.message == f"backend {fault!r} sent an event over 65536 bytes after 0 chunks"
    assert failed["failures"] == 1 and failed["outstanding"] == 0


@pytest.mark.parametrize("reported", [-1_000_000, 10**12])
async def test_usage_a_backend_reports_is_clamped_to_what_the_request_could_produce(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, independent: str, reported: int
) -> None:
    fault = f"usage-{reported}" if reported >= 0 else f"usage--{-reported}"
    async with gateway_over(tmp_path, monkeypatch, backends(independent, fault)) as running:
        raw = await trio.to_thread.run_sync(lambda: ask(running, max_tokens=6))
        (record,) = await records(tmp_path / "usage.jsonl", 1)
    assert raw.parse().choices[0].message.content  # the answer itself goes through
    assert record["usage_clamped"] is True and record["cost"] >= 0
    if reported < 0:
        assert (record["tokens_in"], record["tokens_out"]) == (0, 0)
    else:  # at most every prompt character as a token plus the template's; at most max_tokens out
        assert 0 < record["tokens_in"] <= len(json.dumps(HELLO)) + 64 and record["tokens_out"] == 6


async def test_503_without_an_available_backend_says_when_to_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, independent: str
) -> None:
    breaker = {"failure_streak": 1, "base_backoff": 20}
    async with gateway_over(tmp_path, monkeypatch, backends(independent, "html"), breaker=breaker) as running:
        failed, refused = await post_chat(running), await post_chat(running)
    assert failed.status_code == 502 and refused.status_code == 503
    assert refused.json()["error"]["code"] == "no_backend_available"
    assert 19 <= int(refused.headers["retry-after"]) <= 20  # when the open breaker lets a probe through


async def test_guardrails_apply_to_buffered_answers_as_to_streams(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, independent: str
) -> None:
    """The backend answers "Mail ann@example.com, SSN 123-45-6789.": redacted both ways, and
    the usage record of the plain answer counts the verdicts."""
    async with gateway_over(tmp_path, monkeypatch, backends(independent, "pii")) as running:
        plain = await trio.to_thread.run_sync(ask, running)
        streamed, error = await trio.to_thread.run_sync(stream_text, running)
        first, _ = await records(tmp_path / "usage.jsonl", 2)
    redacted = "Mail [REDACTED:email], SSN [REDACTED:ssn]."
    assert plain.parse().choices[0].message.content == redacted
    assert error is None and streamed == redacted
    assert first["stream"] is False and first["guardrails"] == {"redact": 2, "flag": 0, "truncate": 0}
