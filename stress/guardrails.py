"""Cost per token of the streaming guardrails with the default policy.

    python stress/guardrails.py [--tokens 200000] [--rounds 5]

The token stream is chat-like text cut into LLM-sized tokens (a word with its leading space, long
words in pieces of at most 4 characters), with an email, a phone number or a card number in
about one sentence in twenty. Reported per token, median of the rounds:

- anchor: one ``re.search`` of a short pattern over the token: what any regex-based filter pays;
- evaluator: ``StreamGuard.feed`` alone (the sans-IO core; target <= 5 us);
- openai chunks: ``GuardedEvents.process`` on chat-completion chunks given as dicts (what a
  handler yields), the JSON encoding of the rewritten chunk included;
- buffered answers: ``check_answer`` on non-streamed chat completions of ``ANSWER_TOKENS``
  tokens each, re-encoded (what a guarded buffered answer costs), against encoding them alone.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import time
from collections.abc import Callable

from trio_router.streaming.guardrails import GuardrailConfig, StreamGuard, compile_policy
from trio_router.streaming.guardrails.answers import check_answer
from trio_router.streaming.guardrails.events import GuardedEvents
from trio_router.streaming.sse import Event, encode

_TEXT = (
    "the a of to and in is it you that he was for on are with as I his they be at one have this from or "
    "had by word but what some we can out other were all there when up use your how said an each she "
    "which do their time if will way about many then them write would like so these her long make thing "
    "see him two has look more day could go come did number sound no most people my over know water than "
    "call first who may down side been now find any new work part take get place made live where after "
    "back little only round man year came show every good me give our under name very through just form "
    "sentence great think say help low line differ turn cause much mean before move right boy old too "
    "same tell does set three want air well also play small end put home read hand port large spell add "
    "even land here must big high such follow act configuration infrastructure documentation "
    "approximately responsibility "
)
WORDS = _TEXT.split()
ANSWER_TOKENS = 250  # about 1 KB of text: a typical chat answer
PII = ["alice.smith@example.com", "(555) 123-4567", "4111 1111 1111 1111", "+44 20 7946 0958"]


def token_stream(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    tokens: list[str] = []
    while len(tokens) < count:
        sentence = [rng.choice(WORDS) for _ in range(rng.randint(6, 18))]
        if rng.random() < 0.05:
            sentence.insert(rng.randrange(len(sentence)), rng.choice(PII))
        for word in sentence:
            text = " " + word
            tokens += [text[i : i + 4] for i in range(0, len(text), 4)] if len(word) > 6 else [text]
        tokens[-1] += rng.choice([".", ",", "?", "."])
    return tokens[:count]


def per_token(tokens: list[str], run: Callable[[list[str]], None]) -> float:
    start = time.perf_counter()
    run(tokens)
    return (time.perf_counter() - start) / len(tokens) * 1e6


def anchor(tokens: list[str]) -> None:
    pattern = re.compile(r"[0-9]{3}-[0-9]{4}")
    for token in tokens:
        pattern.search(token)


def evaluator(tokens: list[str]) -> None:
    policy = compile_policy(GuardrailConfig())
    assert policy is not None
    guard = StreamGuard(policy)
    for token in tokens:
        guard.feed(token, 0.0)
    guard.finish()


def openai_chunks(tokens: list[str]) -> None:
    policy = compile_policy(GuardrailConfig())
    assert policy is not None
    events = GuardedEvents(policy)
    for token in tokens:
        data = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"index": 0, "delta": {"content": token}, "finish_reason": None}]}  # fmt: skip
        for event in events.process(Event(data), 0.0):
            encode(event)
        events.take_verdicts()


def unguarded_chunks(tokens: list[str]) -> None:
    for token in tokens:
        data = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"index": 0, "delta": {"content": token}, "finish_reason": None}]}  # fmt: skip
        encode(Event(data))


def answers(tokens: list[str]) -> list[dict[str, object]]:
    texts = ["".join(tokens[i : i + ANSWER_TOKENS]) for i in range(0, len(tokens), ANSWER_TOKENS)]
    return [{"id": "c", "object": "chat.completion", "created": 1, "model": "m",
             "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}
            for text in texts]  # fmt: skip


def unguarded_answers(tokens: list[str]) -> None:
    for answer in answers(tokens):
        json.dumps(answer)


def buffered_answers(tokens: list[str]) -> None:
    policy = compile_policy(GuardrailConfig())
    assert policy is not None
    for answer in answers(tokens):
        json.dumps(check_answer(policy, answer).value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    tokens = token_stream(args.tokens)
    cases = {
        "anchor: one re.search per token": anchor,
        "evaluator (StreamGuard.feed), default policy": evaluator,
        "openai chunk, encoded, no guardrails": unguarded_chunks,
        "openai chunk, encoded, default policy": openai_chunks,
        f"buffered answer ({ANSWER_TOKENS} tokens), encoded alone": unguarded_answers,
        f"buffered answer ({ANSWER_TOKENS} tokens), default policy": buffered_answers,
    }
    results = {
        name: statistics.median(per_token(tokens, run) for _ in range(args.rounds)) for name, run in cases.items()
    }
    base = results["anchor: one re.search per token"]
    print(f"{args.tokens} tokens, median of {args.rounds} rounds")
    print(f"{'case':48} {'us/token':>9} {'x anchor':>9}")
    for name, value in results.items():
        print(f"{name:48} {value:9.2f} {value / base:9.1f}")
    per_answer = results[f"buffered answer ({ANSWER_TOKENS} tokens), default policy"] * ANSWER_TOKENS
    print(f"a guarded buffered answer of {ANSWER_TOKENS} tokens: {per_answer:.0f} us")


if __name__ == "__main__":
    main()
