"""The prompt policy: PII in a request's messages flagged, redacted before the backend sees it,
or refused, per tenant or key, through the gateway with the openai SDK against the independent
backend's ``echo`` (it answers with the user message as it arrived)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import openai
import pytest
import trio

import handlers.gateway as gateway
from tests.conftest import GATEWAY_SPEC as SPEC
from tests.conftest import Running
from tests.test_cli import running
from tests.test_gateway_faults import backends, gateway_over, independent
from tests.test_gateway_tenancy import records

pytestmark = pytest.mark.slow
__all__ = ["independent"]
PROMPT = "ping 10.1.2.3 and mail ann@example.com"


def echoed(running: Running, key: str = "unused", content: Any = PROMPT) -> str:
    client = openai.OpenAI(base_url=f"{running.url}/v1", api_key=key, max_retries=0)
    answer = client.chat.completions.create(model="m", messages=[{"role": "user", "content": content}])
    return answer.choices[0].message.content or ""


async def test_redacted_prompt_values_never_reach_the_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, independent: str
) -> None:
    """ipv4 is only flagged in answers, so the echo shows what the backend received."""
    policy = {"prompt_policy": {"pii": {"ipv4": "redact"}}}
    async with gateway_over(tmp_path, monkeypatch, backends(independent, "echo"), **policy) as running:
        plain = await trio.to_thread.run_sync(echoed, running)
        parts = [{"type": "text", "text": "host 10.1.2.3"}, {"type": "text", "text": "fine"}]
        multipart = await trio.to_thread.run_sync(echoed, running, "unused", parts)
        first, _ = await records(tmp_path / "usage.jsonl", 2)
    assert plain == "ping [REDACTED:ipv4] and mail [REDACTED:email]"  # the email: the answer's guardrails
    assert "10.1.2.3" not in multipart and "[REDACTED:ipv4]" in multipart
    assert first["guardrails"]["prompt_redact"] == 1


async def test_a_blocked_kind_refuses_the_request_in_openais_shape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, independent: str
) -> None:
    policy = {"prompt_policy": {"pii": {"email": "block", "ipv4": "flag"}}}
    async with gateway_over(tmp_path, monkeypatch, backends(independent, "echo"), **policy) as running:
        with pytest.raises(openai.BadRequestError) as refused:
            await trio.to_thread.run_sync(echoed, running)
        flagged = await trio.to_thread.run_sync(echoed, running, "unused", "ping 10.1.2.3")
        blocked, passed = await records(tmp_path / "usage.jsonl", 2)
        served = gateway.REGISTRY.backends["echo"].stats()["requests"]
    assert refused.value.code == "content_policy_violation"
    body: Any = refused.value.body
    assert body["message"] == "the request contains email data, which this key's policy does not let through"
    assert "ann@example.com" not in json.dumps(refused.value.body)
    assert flagged == "ping 10.1.2.3"  # flag: a verdict, the text as it was
    assert (blocked["status"], blocked["outcome"], blocked["guardrails"]["prompt_block"]) == (400, "refused", 1)
    assert passed["guardrails"]["prompt_flag"] == 1
    assert served == 1  # the blocked request never reached the backend


async def test_a_keys_policy_overrides_its_tenants(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, independent: str
) -> None:
    keys = {"strict": "sk-strict-" + "0" * 32, "lax": "sk-lax-" + "0" * 32}
    tenant = {
        "name": "acme",
        "prompt_policy": {"pii": {"ipv4": "redact"}},
        "keys": [
            {"id": "strict", "sha256": hashlib.sha256(keys["strict"].encode()).hexdigest(),
             "prompt_policy": {"pii": {"ipv4": "block"}}},
            {"id": "lax", "sha256": hashlib.sha256(keys["lax"].encode()).hexdigest()},
        ],
    }  # fmt: skip
    async with gateway_over(tmp_path, monkeypatch, backends(independent, "echo"), tenants=[tenant]) as running:
        lax = await trio.to_thread.run_sync(echoed, running, keys["lax"], "ping 10.1.2.3")
        with pytest.raises(openai.BadRequestError):
            await trio.to_thread.run_sync(echoed, running, keys["strict"], "ping 10.1.2.3")
    assert lax == "ping [REDACTED:ipv4]"  # the tenant's policy


def test_an_unknown_pii_kind_stops_startup() -> None:
    from handlers.gateway.tenancy.config import PromptPolicy

    with pytest.raises(ValueError, match=r"unknown PII kinds \['passport'\]"):
        PromptPolicy.model_validate({"pii": {"passport": "block"}})


def test_through_trio_router_run_answers_are_redacted_alike_and_prompts_screened(
    tmp_path: Path, independent: str
) -> None:
    """The issue's acceptance path: `trio-router run --handlers handlers.gateway --spec
    specs/gateway.yaml` with a config file, the openai SDK as the client."""
    config = {
        "backends": backends(independent, "pii"),
        "prompt_policy": {"pii": {"ssn": "block"}},
        "usage": {"sink": "none"},
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    with running("--handlers", "handlers.gateway", "--spec", str(SPEC), env={"GATEWAY_CONFIG": str(path)}) as server:
        client = openai.OpenAI(base_url=f"{server.url()}/v1", api_key="unused", max_retries=0)
        hello = [{"role": "user", "content": "hello"}]
        plain = client.chat.completions.create(model="m", messages=hello).choices[0].message.content  # type: ignore[arg-type]
        chunks = client.chat.completions.create(model="m", messages=hello, stream=True)  # type: ignore[arg-type]
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "my SSN is 123-45-6789"}])
    assert plain == streamed == "Mail [REDACTED:email], SSN [REDACTED:ssn]."
    assert refused.value.code == "content_policy_violation"


async def test_the_completions_prompt_is_screened_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, independent: str
) -> None:
    """The legacy endpoint is no way around the policy."""
    policy = {"prompt_policy": {"pii": {"ssn": "block"}}}
    async with gateway_over(tmp_path, monkeypatch, backends(independent, "echo"), **policy) as running:
        client = openai.OpenAI(base_url=f"{running.url}/v1", api_key="unused", max_retries=0)

        def complete(prompt: Any) -> None:
            client.completions.create(model="m", prompt=prompt)

        for prompt in ("my SSN is 123-45-6789", ["fine", "my SSN is 123-45-6789"]):
            with pytest.raises(openai.BadRequestError) as refused:
                await trio.to_thread.run_sync(complete, prompt)
            assert refused.value.code == "content_policy_violation"
