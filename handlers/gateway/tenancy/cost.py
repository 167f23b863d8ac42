"""Cost prediction before a request goes upstream, and its actual cost after (sans-IO).

Input tokens are estimated at ~4 characters per token over the messages (or prompt, or input)
plus the tool schemas; output tokens are ``max_tokens`` when given, else the input times the
tenant's running ratio of output to input tokens (an EWMA, alpha 0.1, starting at 1.0). Money is
counted in integer micro-units of the pricing's currency (prices are per million tokens, so a
token costs ``price`` micro-units): sums never drift.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from .config import Price

CHARS_PER_TOKEN = 4
MICRO = 1_000_000


@dataclass(frozen=True, slots=True)
class Tokens:
    input: int
    output: int

    @property
    def total(self) -> int:
        return self.input + self.output


def estimate_input(body: dict[str, Any]) -> int:
    chars = 0
    for message in body.get("messages") or ():
        if isinstance(message, dict):
            chars += _text_chars(message.get("content")) + _text_chars(message.get("name"))
    chars += _text_chars(body.get("prompt")) + _text_chars(body.get("input"))
    for schemas in (body.get("tools"), body.get("functions")):
        if schemas:
            chars += len(json.dumps(schemas, separators=(",", ":")))
    return math.ceil(chars / CHARS_PER_TOKEN)


def _text_chars(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):  # a prompt list, or content parts ({"type": "text", "text": ...})
        return sum(_text_chars(item.get("text") if isinstance(item, dict) else item) for item in value)
    return 0


_TOKENS_PER_MESSAGE = 16  # a chat template's role and separator tokens, generously
_TOKENS_PER_MEDIA_PART = 100_000  # an image, audio or file part: its tokens are not in its text


def ceiling(body: dict[str, Any], path: str, unbounded_output: int) -> Tokens:
    """The most tokens a request could have produced: a token covers at least one character of
    the prompt (plus each message's template tokens, and a generous allowance per non-text
    part); the output at most ``max_tokens`` times ``n``, else ``unbounded_output``. A backend
    reporting more (or less than 0) is not believed (``clamp``)."""
    chars = estimate_input(body) * CHARS_PER_TOKEN
    listed = body.get("messages")
    messages: list[Any] = listed if isinstance(listed, list) else []
    media = sum(
        1
        for message in messages
        if isinstance(message, dict) and isinstance(message.get("content"), list)
        for part in message["content"]
        if isinstance(part, dict) and part.get("type") not in (None, "text")
    )
    tokens_in = chars + _TOKENS_PER_MESSAGE * (len(messages) + 1) + _TOKENS_PER_MEDIA_PART * media
    if path.endswith("/embeddings"):
        return Tokens(tokens_in, 0)
    asked = body.get("max_completion_tokens", body.get("max_tokens"))
    choices = body.get("n", 1)
    choices = choices if isinstance(choices, int) and not isinstance(choices, bool) and choices >= 1 else 1
    if isinstance(asked, int) and not isinstance(asked, bool) and asked >= 0:
        return Tokens(tokens_in, asked * choices)
    return Tokens(tokens_in, unbounded_output)


def clamp(reported: Tokens, most: Tokens) -> tuple[Tokens, bool]:
    """``reported`` moved into [0, most] on each side, and whether it had to be."""
    tokens = Tokens(min(max(reported.input, 0), most.input), min(max(reported.output, 0), most.output))
    return tokens, tokens != reported


def predict(body: dict[str, Any], path: str, output_ratio: float) -> Tokens:
    tokens_in = estimate_input(body)
    if path.endswith("/embeddings"):
        return Tokens(tokens_in, 0)
    asked = body.get("max_completion_tokens", body.get("max_tokens"))
    if isinstance(asked, int) and not isinstance(asked, bool) and asked >= 0:
        return Tokens(tokens_in, asked)
    return Tokens(tokens_in, math.ceil(tokens_in * output_ratio))


def cost(price: Price | None, tokens: Tokens) -> int:
    """Micro-units; 0 for a model without a price."""
    if price is None:
        return 0
    return math.ceil(price.input * tokens.input + price.output * tokens.output)


def from_usage(usage: Any) -> Tokens | None:
    """The tokens an OpenAI ``usage`` object reports, or None if it is not one."""
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens", 0)
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    return Tokens(prompt, completion)


def money(micro: int) -> float:
    return micro / MICRO


class OutputRatios:
    """Per tenant, the EWMA of observed output/input tokens (this process's observations)."""

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha
        self._ratios: dict[str, float] = {}

    def get(self, tenant: str) -> float:
        return self._ratios.get(tenant, 1.0)

    def observe(self, tenant: str, tokens: Tokens) -> None:
        if tokens.input <= 0:
            return
        ratio = tokens.output / tokens.input
        self._ratios[tenant] = self.alpha * ratio + (1 - self.alpha) * self.get(tenant)
