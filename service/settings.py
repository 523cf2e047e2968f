"""Service settings: one pydantic-settings object, read from ``XENT_*`` environment variables.

Built once (in ``create_app`` or the CLI) and passed down; nothing reads it at import time.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]
#: How answers may be compressed (XENT_COMPRESSION); what each means is in ``service/api/transport/answer.py``.
Compression = Literal["off", "zstd", "auto"]


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
    max_groups: int = Field(
        10_000,
        ge=1,
        description="Most distinct `groups` per request (each is a block of the answer and of its state); 413 past it.",
    )
    max_merge_states: int = Field(
        10_000,
        ge=1,
        description="Most states one `POST /v1/merge` request may merge; 413 past it (merge in a tree of requests).",
    )
    max_concurrent_scoring: int = Field(
        64,
        ge=1,
        description=(
            "Scoring requests decoding or scoring at once per worker process (their bodies have arrived; queued "
            "for or in one of the 40 scoring threads); past it, 503 with Retry-After at once, not an unbounded queue."
        ),
    )
    body_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description="Longest time a client may take to send its body; a slower one gets 408 and frees the worker.",
    )
    body_min_bytes_per_second: int = Field(
        1024,
        ge=0,
        description=(
            "After the grace period, the slowest a body may arrive: it must have arrived within grace + bytes "
            "received ÷ this rate seconds, or it gets 408 (a trickling client frees its memory share). 0: no minimum."
        ),
    )
    body_min_rate_grace_seconds: float = Field(
        5.0,
        ge=0,
        description="How long a body may take to start arriving before XENT_BODY_MIN_BYTES_PER_SECOND applies.",
    )
    memory_budget_bytes: int | None = Field(
        None,
        ge=0,
        description=(
            "Memory that one worker's requests in flight may hold, charged by each request's expected peak; "
            "a request that does not fit waits up to 2 s, then gets 503 with Retry-After. Unset: the container's "
            "cgroup memory limit (else the machine's memory) ÷ workers − 150 MB. 0: no budget."
        ),
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
    compression: Compression = Field(
        "off",
        description=(
            "Whether answers are compressed: off (never; on loopback or a cluster network sending the bytes costs "
            "less than compressing them), zstd (zstd level 1 when the client accepts zstd), or auto (zstd when "
            "accepted, else gzip level 1). NPZ answers never are (float64 arrays do not compress). See the README."
        ),
    )
    compression_min_bytes: int = Field(
        64 * 1024,
        ge=0,
        description="When XENT_COMPRESSION allows it, JSON answers at least this large are compressed.",
    )
    gzip_min_bytes: int | None = Field(
        None,
        ge=0,
        description=(
            "Deprecated: read as XENT_COMPRESSION_MIN_BYTES when that is unset (with a FutureWarning); it no "
            "longer turns compression on, XENT_COMPRESSION does."
        ),
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

    @model_validator(mode="before")
    @classmethod
    def _gzip_min_bytes_is_deprecated(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("gzip_min_bytes") is not None:
            warnings.warn(
                "XENT_GZIP_MIN_BYTES is deprecated: it is read as XENT_COMPRESSION_MIN_BYTES, and answers are "
                "compressed only when XENT_COMPRESSION is zstd or auto (the default is off)",
                FutureWarning,
                stacklevel=2,
            )
            data = {"compression_min_bytes": data["gzip_min_bytes"], **data}
        return data

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_case_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value
