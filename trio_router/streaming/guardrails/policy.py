"""Guardrail policy: its configuration format, and the compiled policy streams run with.

One ``GuardrailConfig`` comes from the settings (``guardrails``); an operation's
``x-guardrails`` is ``false`` (no guardrails), ``true`` (the settings' policy) or a mapping
whose keys replace the settings' ones. Each distinct policy is compiled once, at startup.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .evaluator import GuardrailPolicy, Limits
from .rules import PII_KINDS, Action, Rule, keyword_rule, pattern_rule, pii_rule


class KeywordRuleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    keywords: list[str] = Field(min_length=1)
    action: Action = "flag"


class PatternRuleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    pattern: str
    action: Action = "truncate"
    alphabet: str | None = Field(default=None, description="a character class body every match fits in: 'A-Z0-9'")
    max_length: int | None = Field(default=None, ge=1, le=4096)
    trigger: str | None = Field(default=None, min_length=1, description="text every match contains (a prefilter)")


DEFAULT_BLOCKED = [
    PatternRuleConfig(
        name="private-key", pattern=r"-----BEGIN [A-Z ]{0,20}PRIVATE KEY-----", alphabet=r"A-Z \-", max_length=None
    ),
    PatternRuleConfig(
        name="aws-access-key", pattern=r"(?<![A-Z0-9])AKIA[0-9A-Z]{16}(?![A-Z0-9])", alphabet="A-Z0-9", max_length=None
    ),
]
DEFAULT_PII: dict[str, Action | Literal["off"]] = {
    "email": "redact",
    "ssn": "redact",
    "credit_card": "redact",
    "phone": "redact",
    "ipv4": "flag",
    "ipv6": "flag",
}


class GuardrailConfig(BaseModel):
    """The policy every event stream runs through unless its operation says ``x-guardrails: false``."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    window_tokens: int = Field(
        default=64, ge=1, description="chunks that may arrive while one pending match is held back"
    )
    max_hold: float = Field(default=1.0, gt=0, description="seconds text may be held back")
    deadline_margin: float = Field(
        default=0.25, ge=0, description="seconds before a stream's deadline when all goes out"
    )
    governance: list[KeywordRuleConfig] = Field(default_factory=list)
    tool_arguments: bool = Field(
        default=False, description="check the string values of a non-streamed answer's tool-call arguments too"
    )
    blocked: list[PatternRuleConfig] = Field(default_factory=lambda: list(DEFAULT_BLOCKED))
    pii: dict[str, Action | Literal["off"]] = Field(default_factory=lambda: dict(DEFAULT_PII))

    @field_validator("pii")
    @classmethod
    def _known_pii(cls, pii: dict[str, Action | Literal["off"]]) -> dict[str, Action | Literal["off"]]:
        unknown = sorted(set(pii) - set(PII_KINDS))
        if unknown:
            raise ValueError(f"unknown PII kinds {unknown}; the scanner knows {list(PII_KINDS)}")
        return {**DEFAULT_PII, **pii}  # kinds not named keep their default action ("off" turns one off)

    @model_validator(mode="after")
    def _compiles(self) -> GuardrailConfig:
        compile_policy(self)  # a pattern that cannot stream (unbounded, empty, invalid) is a config error
        return self

    def merged(self, override: dict[str, Any]) -> GuardrailConfig:
        """This policy with an operation's ``x-guardrails`` mapping laid over it (key by key)."""
        if isinstance(override.get("pii"), dict):
            override = {**override, "pii": {**self.pii, **override["pii"]}}
        return GuardrailConfig.model_validate({**self.model_dump(), **override})


def compile_policy(config: GuardrailConfig) -> GuardrailPolicy | None:
    """The rules in evaluation order (governance, blocked patterns, PII), or None when disabled.
    Raises ValueError naming the rule at fault."""
    if not config.enabled:
        return None
    rules: list[Rule] = [keyword_rule(rule.name, rule.keywords, rule.action) for rule in config.governance]
    rules += [
        pattern_rule(rule.name, rule.pattern, rule.action, rule.alphabet, rule.max_length, rule.trigger)
        for rule in config.blocked
    ]
    rules += [pii_rule(kind, action) for kind, action in config.pii.items() if action != "off"]
    names = [rule.name for rule in rules]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"guardrail rule names must be unique: {duplicates}")
    limits = Limits(config.window_tokens, config.max_hold, config.deadline_margin)
    return GuardrailPolicy(tuple(rules), limits, tool_arguments=config.tool_arguments)


def operation_policy(
    base: GuardrailConfig, extension: object, cache: dict[str, GuardrailPolicy | None]
) -> GuardrailPolicy | None:
    """The policy for an operation's ``x-guardrails`` value over ``base`` (one cache per base).
    Streams ask for it per request: a known extension costs a dict lookup; merging and
    compiling happen once per distinct extension."""
    if extension is False:
        return None
    if extension is None or extension is True:
        key = ""
    elif isinstance(extension, dict):
        key = json.dumps(extension, sort_keys=True, default=str)
    else:
        raise ValueError(f"x-guardrails must be true, false or a policy mapping, not {extension!r}")
    if key not in cache:
        try:
            config = base.merged(extension) if isinstance(extension, dict) else base
        except ValidationError as exc:
            raise ValueError(f"x-guardrails: {_first_error(exc)}") from None
        cache[key] = compile_policy(config)
    return cache[key]


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    location = ".".join(str(part) for part in error["loc"])
    return f"{location}: {error['msg']}" if location else str(error["msg"])
