"""One settings model for the whole server.

Precedence: defaults < ``TRIO_ROUTER_*`` environment variables < CLI flags. The CLI
flags are generated from this model (see ``cli.py``), so a setting cannot exist in one
place and be missing in the other.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Seconds = Annotated[float, Field(gt=0)]
Bytes = Annotated[int, Field(ge=1)]


class Settings(BaseSettings):
    """Everything the server can be told. Field descriptions feed ``--help`` and the docs."""

    model_config = SettingsConfigDict(env_prefix="TRIO_ROUTER_", extra="forbid", frozen=True)

    # Application
    handlers: str = Field(
        "handlers.petstore",
        description="Python module holding the handlers and the `app` they form.",
    )

    # Listening
    host: str = Field("127.0.0.1", description="Interface to listen on.")
    port: int = Field(8080, ge=0, le=65535, description="TCP port (0 picks a free one).")
    workers: int = Field(1, ge=1, le=256, description="Worker processes, each with its own SO_REUSEPORT socket.")
    backlog: int = Field(1024, ge=1, description="listen() backlog per socket.")
    reuse_port: bool = Field(
        False, description="Set SO_REUSEPORT so several processes share the port (workers always do)."
    )

    # Connection limits
    max_requests_per_connection: int = Field(
        10_000, ge=1, description="Requests served on one connection before `connection: close`."
    )
    max_header_bytes: Bytes = Field(16_384, description="Largest request head (request line + headers) -> 431.")
    max_target_bytes: Bytes = Field(8_192, description="Longest request target (path + query) -> 414.")
    max_body_bytes: Bytes = Field(1_048_576, description="Largest request body -> 413.")
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
    max_handlers: int = Field(
        1024, ge=1, description="Handlers running at once (sync ones each hold a pooled greenlet)."
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

    # Observability
    metrics_path: str = Field(
        "/metrics", pattern=r"^(/\S*)?$", description="Where Prometheus metrics are served; empty turns them off."
    )
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

    @model_validator(mode="after")
    def _target_fits_head(self) -> Settings:
        if self.max_target_bytes >= self.max_header_bytes:
            raise ValueError(
                f"max_target_bytes ({self.max_target_bytes}) must be smaller than "
                f"max_header_bytes ({self.max_header_bytes}): the target is part of the head"
            )
        return self
