"""One settings model for the whole server.

Precedence: defaults < config file (TOML or YAML, ``--config``) < ``TRIO_ROUTER_*``
environment variables < CLI flags. The CLI flags are generated from this model (see
``cli.py``), so a setting cannot exist in one place and be missing in the other.
"""

from __future__ import annotations

import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, Field, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .streaming.guardrails.policy import GuardrailConfig
from .streaming.guardrails.sinks import check_sink_spec

Seconds = Annotated[float, Field(gt=0)]
Bytes = Annotated[int, Field(ge=1)]


class ConfigFileError(Exception):
    """The config file cannot be read; the message is meant for a human."""


def read_config_file(path: Path) -> dict[str, Any]:
    """Settings from a TOML (``.toml``) or YAML (``.yaml``/``.yml``) file: a flat table of setting names."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigFileError(f"config file {path} is not valid {path.suffix.lstrip('.').upper()}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigFileError(f"config file {path} must hold a table of settings")
    return {str(key).replace("-", "_"): value for key, value in data.items()}


_config_values: ContextVar[dict[str, Any] | None] = ContextVar("trio_router_config_values", default=None)


class _ConfigFileSource(PydanticBaseSettingsSource):
    """The config file's values, ranked below the environment (see ``settings_customise_sources``)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return (_config_values.get() or {}).get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_config_values.get() or {})


class Settings(BaseSettings):
    """Everything the server can be told. Field descriptions feed ``--help`` and the docs."""

    model_config = SettingsConfigDict(env_prefix="TRIO_ROUTER_", extra="forbid", frozen=True)

    # Application
    app: Literal["petstore", "gateway", "mock-backend"] | None = Field(
        None,
        description="A shipped app, spec and handlers from the installed package: petstore (the default when"
        " neither spec nor handlers is given), gateway or mock-backend.",
    )
    spec: str | None = Field(
        None,
        description="OpenAPI 3.0/3.1 document (YAML or JSON) whose operations are served, with --handlers; not"
        " used when the handlers module builds its own `app`.",
    )
    handlers: str | None = Field(
        None,
        description="Python module holding the handlers (bound to operations by operationId), importable from"
        " the working directory: `mymodule` or `package.module`, not a file name.",
    )

    # Listening
    host: str = Field("127.0.0.1", description="Interface to listen on.")
    port: int = Field(8080, ge=0, le=65535, description="TCP port (0 picks a free one).")
    workers: int = Field(1, ge=1, le=256, description="Worker processes, each with its own SO_REUSEPORT socket.")
    backlog: int = Field(1024, ge=1, description="listen() backlog per socket.")
    reuse_port: bool = Field(
        False, description="Set SO_REUSEPORT so several processes share the port (workers always do)."
    )

    http: Literal["auto", "h11", "httptools"] = Field(
        "auto",
        description="HTTP/1.1 parser: h11 (pure Python, the reference), httptools (llhttp in C, about 2x the"
        " throughput; `pip install 'trio-router[fast]'`), or auto: httptools when it is installed, else h11."
        " Both apply the same rules (docs/architecture.md).",
    )

    # Connection limits
    max_requests_per_connection: int = Field(
        10_000, ge=1, description="Requests served on one connection before `connection: close`."
    )
    max_header_bytes: Bytes = Field(16_384, description="Largest request head (request line + headers) -> 431.")
    max_target_bytes: Bytes = Field(8_192, description="Longest request target (path + query) -> 414.")
    max_body_bytes: Bytes = Field(1_048_576, description="Largest request body -> 413.")
    max_json_depth: int = Field(
        256,
        ge=1,
        le=900,  # Python's parser recurses; beyond the recursion limit a body could only fail late
        description="Arrays and objects a JSON body may nest; deeper is refused with 400 before parsing.",
    )
    max_form_fields: int = Field(
        1_000,
        ge=1,
        description="Most fields of a form body (urlencoded or multipart), as Starlette and Werkzeug -> 413.",
    )
    receive_bytes: Bytes = Field(
        65_536, le=131_072, description="Bytes asked of recv() at once (above 128 KiB glibc mmaps each buffer)."
    )

    # Deadlines
    request_timeout: Seconds = Field(30.0, description="Default deadline of one request (handler included) -> 504.")
    header_timeout: Seconds = Field(
        10.0, description="Deadline for a whole request head, from its first byte; dribbling does not extend it."
    )
    body_timeout: Seconds = Field(30.0, description="Deadline for reading a request body, from its first read -> 408.")
    keepalive_timeout: Seconds = Field(5.0, description="How long an idle keep-alive connection is kept open.")
    send_timeout: Seconds = Field(30.0, description="Deadline of one send to a client that stopped reading.")
    shutdown_timeout: Seconds = Field(
        30.0, description="Grace period for in-flight requests on shutdown before they are cancelled."
    )

    # Handlers
    max_handlers: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto",
        description="Handlers running at once (sync ones each hold a greenlet). auto: what a quarter of the"
        " memory allows at 32 KiB a waiting request, at most the file-descriptor limit (each request holds"
        " a connection): 20,000 on a 24 GiB machine with ulimit -n 20000.",
    )
    handler_overflow: Literal["queue", "shed"] = Field(
        "queue", description="Beyond max_handlers: wait in a bounded queue, or shed at once with 503."
    )
    handler_queue_size: int = Field(1024, ge=0, description="Requests that may wait for a handler slot.")
    handler_queue_timeout: Seconds = Field(5.0, description="How long a request waits for a slot before 503.")
    pool_greenlets: bool = Field(
        True, description="Reuse worker greenlets across requests (off only to measure what pooling saves)."
    )
    retry_after: int = Field(1, ge=0, description="Seconds in the Retry-After header of a shed request's 503.")

    # Streaming
    sse_keepalive_interval: Seconds = Field(
        15.0, description="An idle event stream sends a keep-alive comment this often (proxies drop silent streams)."
    )
    sse_buffer_events: int = Field(
        8, ge=0, description="Events a stream's generator may run ahead of a slow client before it waits."
    )
    websocket_timeout: Seconds = Field(
        3600.0, description="A WebSocket session's deadline (an operation's x-stream-timeout replaces it)."
    )
    max_websockets: int = Field(
        1000, ge=0, description="Open WebSocket sessions at most; beyond, 503 before upgrading."
    )
    websocket_max_message_bytes: Bytes = Field(
        1 << 20, description="A larger incoming WebSocket message closes the session with 1009."
    )
    websocket_max_fragments: int = Field(
        1024,
        ge=1,
        description="Frames one incoming WebSocket message may arrive in; a message in more closes the session"
        " with 1009 (empty fragments count here, not toward the byte limit).",
    )
    websocket_queue_size: int = Field(
        8, ge=0, description="Received WebSocket messages buffered before the server stops reading the socket."
    )
    websocket_ping_interval: Seconds = Field(20.0, description="Seconds between the server's WebSocket pings.")
    websocket_ping_timeout: Seconds = Field(
        20.0, description="A WebSocket client that does not answer a ping within this is dropped."
    )
    websocket_close_timeout: Seconds = Field(
        5.0, description="How long a closing WebSocket waits for the client's close reply."
    )
    guardrails: GuardrailConfig = Field(
        default_factory=lambda: GuardrailConfig(),
        description="The guardrail policy event streams run through (PII redaction, blocked patterns, governance"
        " keywords); an operation's x-guardrails can turn it off or override parts. JSON from flags and the"
        " environment, a table in a config file. See docs/streaming.md.",
    )
    guardrail_sinks: list[Annotated[str, AfterValidator(check_sink_spec)]] = Field(
        default_factory=lambda: ["log"],
        description="Where guardrail verdicts go besides the metrics: log (the structured log), json:<file or ->"
        " and cef:<file or -> (JSON lines or CEF lines for a SIEM, - is stdout).",
    )

    # Observability
    security: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Verifier settings per security scheme of the spec, over the handlers module's SECURITY"
        " (JSON from flags and the environment; a table per scheme in a config file). See docs/security.md.",
    )
    cors_allow_origins: list[str] = Field(
        default_factory=list,
        description='Origins a browser may call the API from (["https://app.example"], or ["*"]); empty: CORS off.',
    )
    cors_allow_headers: list[str] = Field(
        default_factory=lambda: ["*"],
        description='Request headers a preflight may be granted; ["*"] grants what it asks for.',
    )
    cors_allow_credentials: bool = Field(False, description="Let browsers send cookies and credentials cross-origin.")
    cors_max_age: int = Field(600, ge=0, description="Seconds a browser may cache a preflight answer.")
    cors_expose_headers: list[str] = Field(
        default_factory=lambda: ["x-request-id"], description="Response headers scripts on other origins may read."
    )
    response_validation: Literal["strict", "warn", "off"] = Field(
        "strict",
        description="Check responses against the spec: strict answers 500 and logs, warn only logs, off skips the"
        " check (strict suits development; warn or off saves its cost in production).",
    )
    read_only_requests: Literal["refuse", "ignore"] = Field(
        "refuse",
        description="A request body sending a property the spec marks readOnly: refuse answers 400 naming it;"
        " ignore drops it before validation, so the handler never sees it (clients that send back what they got).",
    )
    openapi_path: str = Field(
        "/openapi.json", pattern=r"^(/\S*)?$", description="Where the spec is served as JSON; empty: not served."
    )
    openapi_error_responses: bool = Field(
        True,
        description="Declare the server's own error answers (400, 401/403, 413/415, 500/503/504 in problem+json"
        " or the spec's x-error-format) in the served spec, where the spec does not declare them; the file is"
        " never changed.",
    )
    openapi_yaml_path: str = Field(
        "/openapi.yaml", pattern=r"^(/\S*)?$", description="Where the spec is served as YAML; empty: not served."
    )
    docs_path: str = Field(
        "/docs",
        pattern=r"^(/\S*)?$",
        description="Swagger UI for the spec, served from the installed package (no CDN); empty: off.",
    )
    health_path: str = Field(
        "/health", pattern=r"^(/\S*)?$", description="Liveness: 200 while the process serves; empty: off."
    )
    ready_path: str = Field(
        "/ready", pattern=r"^(/\S*)?$", description="Readiness: 200, or 503 once draining; empty: off."
    )
    metrics_path: str = Field(
        "/metrics", pattern=r"^(/\S*)?$", description="Where Prometheus metrics are served; empty turns them off."
    )
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="Log lines as JSON, or readable console text; auto: JSON unless stderr is a terminal."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Lowest level logged.")
    access_log: bool = Field(True, description="One log line per request.")
    access_log_max_per_second: int = Field(
        100, ge=0, description="Access lines per second before the rest are counted, not logged (5xx always are)."
    )
    log_redact: str = Field(
        "",
        description="Comma-separated extra field names whose values logs show as [REDACTED] "
        "(authorization, cookies and API keys always are).",
    )
    log_redact_pii: bool = Field(
        True,
        description="Run the guardrails' PII scanner over log lines: emails, SSNs, card and phone numbers in"
        " messages, fields and tracebacks are written as [REDACTED:<kind>].",
    )
    otel: bool = Field(
        False,
        description="Export a span per request by OpenTelemetry OTLP/HTTP (needs the otel extra; the exporter"
        " reads OTEL_EXPORTER_OTLP_ENDPOINT and friends).",
    )
    otel_sample_ratio: float = Field(
        1.0, ge=0, le=1, description="Share of new traces exported (a caller's traceparent decides for its own)."
    )
    otel_service_name: str = Field("trio-router", description="service.name of the spans (OTEL_SERVICE_NAME wins).")
    metrics_dir: str | None = Field(
        None, description="Directory where worker processes share metric snapshots (the supervisor sets it)."
    )

    # Closing politely
    linger_timeout: Seconds = Field(
        2.0, description="After an error response, how long unread input is discarded before closing."
    )
    drain_body_bytes: int = Field(
        65_536, ge=0, description="Unread request body drained to keep a connection alive; larger closes it."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Earlier wins: CLI flags (passed as init values), then the environment, then the file.
        return init_settings, env_settings, _ConfigFileSource(settings_cls)

    @classmethod
    def load(cls, config_file: Path | None = None, **overrides: Any) -> Settings:
        """Settings from every layer: defaults < ``config_file`` < environment < ``overrides``."""
        token = _config_values.set(read_config_file(config_file) if config_file else {})
        try:
            return cls(**overrides)
        finally:
            _config_values.reset(token)

    @model_validator(mode="after")
    def _no_credentials_for_every_origin(self) -> Settings:
        if self.cors_allow_credentials and "*" in self.cors_allow_origins:
            raise ValueError(
                'cors_allow_origins ["*"] with cors_allow_credentials would let every site (and the "null" origin)'
                " make credentialed requests as your users; the Fetch standard forbids the wildcard with"
                " credentials: list the origins that may send them"
            )
        return self

    @model_validator(mode="after")
    def _one_app(self) -> Settings:
        if self.app is not None and (self.spec is not None or self.handlers is not None):
            raise ValueError(f"app {self.app} brings its own spec and handlers: give either app, or spec and handlers")
        return self

    @model_validator(mode="after")
    def _target_fits_head(self) -> Settings:
        if self.max_target_bytes >= self.max_header_bytes:
            raise ValueError(
                f"max_target_bytes ({self.max_target_bytes}) must be smaller than "
                f"max_header_bytes ({self.max_header_bytes}): the target is part of the head"
            )
        return self
