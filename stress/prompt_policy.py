"""Cost of the gateway's prompt policy on a 4k-token prompt (target: < 5 ms at p95).

    python stress/prompt_policy.py [--calls 500]

A chat request of ~16,000 characters (~4,000 tokens at 4 characters a token: chat-like text in
8 messages, with an email, a phone number and a card number in it), screened by a policy that
redacts every PII kind (the most work: every rule active), against copying the messages alone
(the anchor: what any rewrite of the request costs). Verdicts go nowhere (no sinks).
"""

from __future__ import annotations

import argparse
import statistics
import time
from types import SimpleNamespace
from typing import Any

from guardrails import token_stream

from handlers.gateway.tenancy.config import PromptPolicy
from handlers.gateway.tenancy.prompt import PromptScreen, compile_prompt_policy
from trio_router.streaming.guardrails.rules import PII_KINDS

REQUEST: Any = SimpleNamespace(server=SimpleNamespace(verdicts=None), id="bench", operation="chat", tenant=None)


def prompt(chars: int = 16_000) -> dict[str, Any]:
    text = "".join(token_stream(chars // 3))[:chars]
    pieces = [text[i : i + chars // 8] for i in range(0, chars, chars // 8)]
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": p} for i, p in enumerate(pieces)]
    return {"model": "m", "messages": messages}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    config = PromptPolicy(pii=dict.fromkeys(PII_KINDS, "redact"))
    policy = compile_prompt_policy(config)
    assert policy is not None
    screen = PromptScreen(config)
    body = prompt()
    chars = sum(len(m["content"]) for m in body["messages"])
    timings: dict[str, list[float]] = {"anchor: copy the messages": [], "prompt policy, every kind redacted": []}
    for _ in range(args.calls):
        fresh = {**body, "messages": [dict(m) for m in body["messages"]]}
        start = time.perf_counter()
        _ = [dict(m) for m in fresh["messages"]]
        timings["anchor: copy the messages"].append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        screen.screen(REQUEST, policy, fresh, {})
        timings["prompt policy, every kind redacted"].append((time.perf_counter() - start) * 1000)
    print(f"{chars} characters (~{chars // 4} tokens) in {len(body['messages'])} messages, {args.calls} calls")
    print(f"{'case':40} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for name, values in timings.items():
        p50, p95, p99 = statistics.median(values), percentile(values, 0.95), percentile(values, 0.99)
        print(f"{name:40} {p50:8.3f} {p95:8.3f} {p99:8.3f}")


if __name__ == "__main__":
    main()
