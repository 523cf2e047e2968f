"""Service settings: one pydantic-settings object, read from ``XENT_*`` environment variables.

Built once (in ``create_app`` or the CLI) and passed down; nothing reads it at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]


class Settings(BaseSettings):
    """Everything an operator can set, with its default."""

    model_config = SettingsConfigDict(env_prefix="XENT_", extra="ignore", frozen=True)

    host: str = Field("127.0.0.1", description="Interface to bind (0.0.0.0 in a container).")
    port: int = Field(8000, ge=1, le=65535, description="TCP port to listen on.")
    workers: int = Field(1, ge=1, le=64, description="Number of uvicorn worker processes.")
    log_level: LogLevel = Field("info", description="Log level: critical, error, warning, info, debug or trace.")
    max_body_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        description="Largest request body accepted, in bytes; a larger one gets 413 before it is read.",
    )
    graceful_shutdown_seconds: int = Field(
        25,
        ge=1,
        description=(
            "On SIGTERM, how long in-flight requests may still run before they are cancelled and the process "
            "exits 0; keep it below the orchestrator's stop grace period (compose: 30 s, Kubernetes: 35 s)."
        ),
    )

    fast_json_min_bytes: int = Field(
        64 * 1024,
        ge=0,
        description=(
            "JSON bodies of at least this many bytes are parsed straight into arrays (simdjson); smaller ones, "
            "and any body the fast path cannot prove well-formed, take the reference Pydantic path. Same answers."
        ),
    )

    # --- limits (see README "Limits" for how the defaults were chosen) ---
    max_rows: int = Field(2_000_000, ge=1, description="Most rows (samples) one request may score; more get 413.")
    max_classes: int = Field(100_000, ge=2, description="Most classes (or labels per sample) per request; 413 past it.")
    max_cells: int = Field(
        8_000_000,
        ge=1,
        description="Most rows × classes per request (each N×C float64 copy is 8 bytes a cell); 413 past it.",
    )
    max_concurrent_scoring: int = Field(
        64,
        ge=1,
        description=(
            "Scoring requests in progress at once per worker process (reading, queued for or in one of the "
            "40 scoring threads); past it, 503 with Retry-After at once rather than an unbounded queue."
        ),
    )
    body_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description="Longest time a client may take to send its body; a slower one gets 408 and frees the worker.",
    )
    max_header_bytes: int = Field(
        16 * 1024,
        ge=1024,
        description="Largest request head (request line and header lines), in bytes; a larger one gets 431 unread.",
    )
    max_headers: int = Field(100, ge=1, description="Most header fields in one request; more get 431.")
    header_timeout_seconds: float = Field(
        20.0,
        gt=0,
        description=(
            "Longest time from a connection's start (or the end of the previous response) to the end of a "
            "request's headers; then the connection is closed, whether bytes are still arriving or not."
        ),
    )
    gzip_min_bytes: int = Field(
        64 * 1024,
        ge=0,
        description="Responses at least this large are gzip-compressed when the client sends Accept-Encoding: gzip.",
    )

    # --- access control ---
    api_keys: str | None = Field(
        None,
        description=(
            "Comma-separated API keys. When set (or api_keys_file is), scoring endpoints need "
            "Authorization: Bearer <key> or X-API-Key: <key>."
        ),
    )
    api_keys_file: Path | None = Field(None, description="A file of API keys, one per line (container secrets).")

    # --- metrics and logs ---
    metrics_require_key: bool = Field(
        False,
        description="Whether GET /metrics needs an API key (the same check as the scoring endpoints); open by default.",
    )
    metrics_dir: Path | None = Field(
        None,
        description=(
            "Writable directory where worker processes share their Prometheus metrics (multiprocess mode). "
            "Unset: `xent serve` makes a temporary one under $TMPDIR when workers > 1 and removes it on exit."
        ),
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_case_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value
