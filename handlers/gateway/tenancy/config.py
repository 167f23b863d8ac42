"""The tenancy part of the gateway's configuration: tenants and their keys, limits, prices,
where shared state lives, and where usage records go (docs/gateway.md, "Tenants")."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from trio_router.streaming.guardrails.rules import PII_KINDS

_NAME = r"^[A-Za-z0-9_.-]{1,64}$"


class PromptPolicy(BaseModel):
    """What the gateway does with PII it finds in a request's messages (prompt.py): ``flag``
    (a verdict only), ``redact`` (the backend never sees the value) or ``block`` (400
    ``content_policy_violation``); kinds not named are not looked for."""

    model_config = ConfigDict(extra="forbid")
    pii: dict[str, Literal["flag", "redact", "block", "off"]] = Field(default_factory=dict)
    _compiled: Any = PrivateAttr(default=None)  # prompt.py's compiled policy, once

    @field_validator("pii")
    @classmethod
    def _known(cls, pii: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(pii) - set(PII_KINDS))
        if unknown:
            raise ValueError(f"unknown PII kinds {unknown}; known: {', '.join(PII_KINDS)}")
        return pii


class Limits(BaseModel):
    """Limits of one tenant or one key (a key is held to its own and its tenant's). None: no limit."""

    model_config = ConfigDict(extra="forbid")
    # The prompt policy for this tenant's (or key's) requests, over the configuration's.
    prompt_policy: PromptPolicy | None = None
    budget: float | None = Field(default=None, ge=0, description="spend per budget_period, in the pricing's currency")
    budget_period: Literal["day", "month", "total"] = "month"
    rpm: int | None = Field(default=None, ge=0, description="requests per minute")
    tpm: int | None = Field(default=None, ge=0, description="tokens (estimated in + out) per minute")


class KeyConfig(Limits):
    """An API key, known only by its SHA-256 (keys are 256-bit random tokens, so a fast hash
    is as strong as a slow one and keeps the lookup cheap)."""

    id: str = Field(pattern=_NAME)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    signed: bool = Field(default=False, description="every request must carry a valid X-Router-Signature")


class KeyRecord(KeyConfig):
    """A key as the state stores it: with its tenant."""

    tenant: str = Field(pattern=_NAME)


class TenantLimits(Limits):
    name: str = Field(pattern=_NAME)


class TenantConfig(TenantLimits):
    keys: list[KeyConfig] = Field(default_factory=list)


class Price(BaseModel):
    """Per million tokens."""

    model_config = ConfigDict(extra="forbid")
    input: float = Field(ge=0)
    output: float = Field(ge=0)


class StateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    backend: Literal["memory", "redis"] = "memory"
    redis_url: str | None = None  # redis://host:port/db, or unix:///path/to/redis.sock
    on_error: Literal["open", "closed"] = "open"  # when Redis cannot be reached
    timeout: float = Field(default=0.5, gt=0)  # per Redis call
    cache_ttl: float = Field(default=5.0, ge=0)  # keys and tenants read from Redis are reused this long

    @model_validator(mode="after")
    def _url(self) -> StateConfig:
        if self.backend == "redis" and not self.redis_url:
            raise ValueError("state.backend redis needs state.redis_url")
        return self


class UsageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sink: Literal["jsonl", "redis", "none"] = "jsonl"
    path: str = "gateway-usage.jsonl"  # the jsonl sink's file
    stream: str = "trio-router:usage"  # the redis sink's stream (under the {trio-router} hash tag)
    spool_dir: str = "gateway-usage-spool"  # records wait here (on disk) until exported
    flush_interval: float = Field(default=1.0, gt=0)
    max_backoff: float = Field(default=30.0, gt=0)  # between retries while the sink is down
    fsync: bool = False  # fsync each record: survives power loss too, not just a killed process


class TenancyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tenants: list[TenantConfig] = Field(default_factory=list)
    # Keys required on /v1: by default whenever any tenant is configured. Without tenants and
    # with this unset, /v1 is open (one tenant, "anonymous", no limits): the newcomer's default.
    require_keys: bool | None = None
    pricing: dict[str, Price] = Field(default_factory=dict)  # model -> price; "*" for the rest
    state: StateConfig = Field(default_factory=StateConfig)
    usage: UsageConfig = Field(default_factory=UsageConfig)
    idempotency_ttl: float = Field(default=86400.0, gt=0)
    # In memory, per tenant: at most this many stored answers and bytes (the oldest go first).
    idempotency_max_entries: int = Field(default=10_000, ge=1)
    idempotency_max_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    idempotency_max_answer_bytes: int = Field(default=1024 * 1024, ge=1024)  # a larger answer is not kept
    signature_window: float = Field(default=300.0, gt=0)  # seconds a signature's timestamp may be off
    output_ratio_alpha: float = Field(default=0.1, gt=0, le=1)  # EWMA of output/input tokens
    # Reported output tokens believed at most (a request without max_tokens); usage beyond is clamped.
    max_output_tokens: int = Field(default=1_000_000, ge=1)
    prompt_policy: PromptPolicy | None = None  # every tenant's, unless its own or its key's says otherwise

    @property
    def keys_required(self) -> bool:
        return self.require_keys if self.require_keys is not None else bool(self.tenants)

    def price(self, model: str) -> Price | None:
        return self.pricing.get(model) or self.pricing.get("*")
