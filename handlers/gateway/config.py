"""The gateway's configuration: a YAML file named by ``GATEWAY_CONFIG`` (see docs/gateway.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .tenancy.config import TenancyConfig

Policy = Literal["weighted_round_robin", "least_outstanding", "thompson", "ucb1"]


class BackendConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    url: str  # the OpenAI-compatible base, without /v1: http://10.0.0.5:8000
    models: list[str] = Field(min_length=1)
    weight: int = Field(default=1, ge=1, le=1000)
    role: Literal["unified", "prefill", "decode"] = "unified"
    health_url: str | None = None  # default: the babysitter convention, port + 1, /health

    @field_validator("url")
    @classmethod
    def _http(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"backend url must be http(s)://host[:port], not {url!r}")
        return url.rstrip("/")

    def health(self) -> str:
        if self.health_url is not None:
            return self.health_url
        parts = urlsplit(self.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return urlunsplit((parts.scheme, f"{parts.hostname}:{port + 1}", "/health", "", ""))


class BreakerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    failure_streak: int = Field(default=5, ge=1)
    error_ratio: float = Field(default=0.5, gt=0, le=1)
    min_requests: int = Field(default=10, ge=1)
    window: float = Field(default=60.0, gt=0)
    base_backoff: float = Field(default=30.0, gt=0)
    max_backoff_factor: int = Field(default=16, ge=1)


class ResumeConfig(BaseModel):
    """How to ask a backend to continue an assistant message it did not write (resume.py).
    The defaults are vLLM's and SGLang's parameters; Mistral's API wants
    ``message_fields: {prefix: true}`` and ``extra: {}``."""

    model_config = ConfigDict(extra="forbid")
    extra: dict[str, Any] = Field(
        default_factory=lambda: {"continue_final_message": True, "add_generation_prompt": False}
    )  # request fields added to a continuation
    message_fields: dict[str, Any] = Field(default_factory=dict)  # fields added to the assistant prefix
    max_resumes: int = Field(default=1, ge=1, le=5)  # continuations of one stream


class AdminConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = "127.0.0.1"
    port: int = Field(default=8081, ge=0, le=65535)
    token_env: str = "GATEWAY_ADMIN_TOKEN"  # the environment variable holding the admin token(s)


class GatewayConfig(TenancyConfig):
    """Backends and routing here; tenants, limits, state and usage from TenancyConfig."""

    model_config = ConfigDict(extra="forbid")
    backends: list[BackendConfig] = Field(default_factory=list)
    policy: Policy = "weighted_round_robin"
    model_policies: dict[str, Policy] = Field(default_factory=dict)  # per model, over `policy`
    fallbacks: dict[str, list[str]] = Field(default_factory=dict)  # model -> models to try next
    health_interval: float = Field(default=30.0, gt=0)
    health_timeout: float = Field(default=2.0, gt=0)
    unhealthy_after: int = Field(default=3, ge=1)  # consecutive failed checks
    retry_delay: float = Field(default=0.5, ge=0)  # at least this long between attempts
    connect_timeout: float = Field(default=5.0, gt=0)
    # An attempt whose response head has not come this long after the request was sent fails
    # (next candidate; the breaker counts it). A non-streamed answer's head comes only once it
    # is generated: raise this (and the operation's x-timeout) for long non-streamed answers.
    first_byte_timeout: float = Field(default=10.0, gt=0)
    stream_idle_timeout: float = Field(default=30.0, gt=0)  # the longest wait between a stream's events
    max_response_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)  # a non-streamed answer
    max_event_bytes: int = Field(default=1024 * 1024, ge=1024)  # one line or event of a stream
    rate_limit_cooldown: float = Field(default=1.0, ge=0)  # a 429 without (usable) Retry-After
    max_cooldown: float = Field(default=300.0, gt=0)  # the longest a backend's Retry-After is believed
    # Models whose cut chat streams continue on the next candidate (off for every other model).
    stream_resume: dict[str, ResumeConfig] = Field(default_factory=dict)
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    admin: AdminConfig | None = None  # the admin listener; none without this section
    registry_url: str | None = None  # polled for backends: {"backends": [...]}
    registry_interval: float = Field(default=10.0, gt=0)
    registry_grace: float = Field(default=60.0, ge=0)  # seconds a backend may be missing before removal
    # Who may read /stats, /services and /metrics on the public port: see operator.py.
    operations_access: Literal["auto", "public", "token"] = "auto"
    embedded_mock: bool = Field(default=False, description="serve a mock backend in-process (the no-config default)")

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: object) -> object:
        if isinstance(data, dict) and "total_timeout" in data:
            raise ValueError(
                "total_timeout is gone: set first_byte_timeout (the wait for a backend's answer to begin) "
                "and stream_idle_timeout (the longest silence inside a stream)"
            )
        return data

    @field_validator("backends")
    @classmethod
    def _unique(cls, backends: list[BackendConfig]) -> list[BackendConfig]:
        names = [backend.name for backend in backends]
        if len(set(names)) != len(names):
            raise ValueError(f"backend names must be unique: {names}")
        return backends


def load_config() -> GatewayConfig:
    """From ``GATEWAY_CONFIG`` (a YAML file; relative file paths in it are relative to it);
    without it, one embedded mock backend, open to anyone, no usage records."""
    path = os.environ.get("GATEWAY_CONFIG")
    if not path:
        return GatewayConfig(embedded_mock=True, usage={"sink": "none"})  # type: ignore[arg-type]
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise ValueError(f"gateway config {path}: {exc.strerror}") from None
    config = GatewayConfig.model_validate(data)
    base = Path(path).resolve().parent
    usage = config.usage
    usage.path = str(base / usage.path)
    usage.spool_dir = str(base / usage.spool_dir)
    return config
