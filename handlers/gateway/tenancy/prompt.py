"""The prompt policy: PII in a request's messages (and a completion's ``prompt``, an
embedding's ``input``) found before anything is forwarded, with the framework's evaluator (the
same rules as the answers' guardrails), per tenant or key.

``flag`` leaves the text as it is (the verdict is exported and counted), ``redact`` replaces the
value before the backend sees it, ``block`` refuses the request with 400
``content_policy_violation`` naming the kind (never the value). The policy is the key's if it
has one, else its tenant's, else the configuration's; each distinct policy is compiled once.
"""

from __future__ import annotations

from typing import Any

from trio_router import HTTPError, Request, export_verdicts
from trio_router.streaming.guardrails import GuardrailConfig, GuardrailPolicy, compile_policy
from trio_router.streaming.guardrails.evaluator import Verdict, check_whole
from trio_router.streaming.guardrails.rules import PII_KINDS

from .config import KeyRecord, PromptPolicy, TenantLimits

_ACTIONS = {"flag": "flag", "redact": "redact", "block": "truncate", "off": "off"}  # the evaluator's names


class PromptScreen:
    def __init__(self, default: PromptPolicy | None) -> None:
        self.default = default
        self._compiled: dict[str, GuardrailPolicy | None] = {}

    def policy(self, tenant: TenantLimits, key: KeyRecord) -> GuardrailPolicy | None:
        chosen = key.prompt_policy or tenant.prompt_policy or self.default
        if chosen is None:
            return None
        return self.compile(chosen)

    def compile(self, config: PromptPolicy) -> GuardrailPolicy | None:
        """Once per policy object (a tenant read again from the state is a new one: compiled
        again only if its policy is one not seen before)."""
        if config._compiled is None:
            name = config.model_dump_json()
            if name not in self._compiled:
                self._compiled[name] = compile_prompt_policy(config)
            config._compiled = self._compiled[name]
        policy: GuardrailPolicy | None = config._compiled
        return policy

    def screen(self, request: Request, policy: GuardrailPolicy, body: dict[str, Any], counts: dict[str, int]) -> None:
        """Verdicts counted by action into ``counts``; redacted text written back into
        ``body["messages"]`` (a copy of each message changed). Raises the 400 when a ``block``
        kind is found."""
        counts.update(prompt_flag=0, prompt_redact=0, prompt_block=0)
        verdicts: list[Verdict] = []

        def checked(text: str) -> str:
            step = check_whole(policy, text)
            verdicts.extend(step.verdicts)
            if step.severed is not None:
                counts["prompt_block"] += 1
                export_verdicts(request, verdicts)
                raise HTTPError(
                    400,
                    f"the request contains {step.severed.kind.replace('_', ' ')} data, which this key's policy "
                    "does not let through",
                    close=False,
                    code="content_policy_violation",
                )
            return step.text

        messages = body.get("messages")
        screened = []
        for message in messages if isinstance(messages, list) else ():
            texts = _texts(message)
            changed = dict(message) if texts else message
            for holder, slot, text in texts:
                if (new := checked(text)) != text:
                    _put(changed, holder, slot, new)
            screened.append(changed)
        # The completions prompt and the embeddings input: a string or a list of strings.
        others: dict[str, Any] = {field: body[field] for field in ("prompt", "input") if field in body}
        for field, value in others.items():
            if isinstance(value, str):
                others[field] = checked(value)
            elif isinstance(value, list):
                others[field] = [checked(item) if isinstance(item, str) else item for item in value]
        for verdict in verdicts:
            counts[f"prompt_{verdict.action}"] += 1
        export_verdicts(request, verdicts)
        if counts["prompt_redact"]:
            if isinstance(messages, list):
                body["messages"] = screened
            body.update(others)


def compile_prompt_policy(config: PromptPolicy) -> GuardrailPolicy | None:
    pii = {kind: "off" for kind in PII_KINDS} | {kind: _ACTIONS[action] for kind, action in config.pii.items()}
    return compile_policy(GuardrailConfig.model_validate({"blocked": [], "governance": [], "pii": pii}))


def _texts(message: Any) -> list[tuple[int | None, str, str]]:
    """Where a message's text is: its ``content`` string, or each text part of a content list."""
    if not isinstance(message, dict):
        return []
    content = message.get("content")
    if isinstance(content, str):
        return [(None, "content", content)]
    if isinstance(content, list):
        return [
            (index, "text", part["text"])
            for index, part in enumerate(content)
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
        ]
    return []


def _put(message: dict[str, Any], part: int | None, slot: str, text: str) -> None:
    if part is None:
        message[slot] = text
        return
    parts = message["content"] = list(message["content"])
    parts[part] = {**parts[part], slot: text}
