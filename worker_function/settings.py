"""Configuration: a TOML file, overridden by ``LIBRA_FUNCTION_*`` environment variables.

Priority (highest first): explicit arguments (CLI flags) > environment > TOML file > defaults.
Every setting is documented in docs/operations-function.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from protocol.models import MAX_BATCH_ITEMS

from .auth import parse_authorized_keys
from .fetch import FetchLimits
from .hashing import DecodeLimits
from .isolation import WorkerLimits
from .video.settings import VideoSettings

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Pre-authentication allowance per batch item: an 8192-character URL plus its JSON.
BATCH_ITEM_BYTES = 9 * 1024


class ConfigFileError(ValueError):
    """The configuration file named on the command line is missing or unreadable."""


class FunctionSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LIBRA_FUNCTION_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    # Lab network file (protocol.lab format). Set = lab mode: loopback only, static host map.
    lab: Path | None = None
    # Largest body accepted, counted on raw bytes and on decoded bytes.
    max_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    # Deadline for the whole fetch (DNS, connects, redirects, body), in seconds.
    deadline_seconds: float = Field(default=20.0, gt=0)
    # Redirects followed per analysis; one more is too_many_redirects.
    max_redirects: int = Field(default=5, ge=0, le=20)
    # Largest image (first frame, width * height) decoded.
    max_pixels: int = Field(default=50_000_000, ge=1)
    # Ports allowed besides 80 and 443 in production (lab ports come from the lab file).
    extra_ports: list[int] = Field(default_factory=list)
    # Images decoded at the same time: the number of decode worker processes.
    max_concurrent_decodes: int = Field(default=4, ge=1)
    # "process": decode in worker processes under resource limits (production). "thread": in
    # this process (only for trusted input, e.g. benchmarks).
    decode_isolation: Literal["process", "thread"] = "process"
    # Address-space limit (RLIMIT_AS) of each decode worker, in MiB.
    decode_memory_mb: int = Field(default=2048, ge=256)
    # CPU seconds one image may use (RLIMIT_CPU); over it the worker dies: decoder_crashed.
    decode_cpu_seconds: int = Field(default=10, ge=1)
    # Wall-clock seconds one decode may take before its worker is killed: decode_timeout.
    decode_timeout_seconds: float = Field(default=15.0, gt=0)
    # A decode worker whose resident memory is above this is replaced before its next image
    # (isolation.py: heap growth left by what it decoded), and after this many tasks anyway.
    decode_recycle_rss_mb: int = Field(default=512, ge=128)
    decode_recycle_tasks: int = Field(default=20_000, ge=1)
    # Analyses (fetch + decode) in progress at once; one more is answered 503 + Retry-After.
    max_in_flight: int = Field(default=64, ge=1)
    # Retry-After (seconds) sent with 503 overloaded.
    overload_retry_after_seconds: int = Field(default=2, ge=1)
    # Callers and their Ed25519 public keys (base64): {"node-a" = "..."}.
    authorized_keys: dict[str, str] = Field(default_factory=dict)
    # Refuse to start without authorized_keys (production). Lab mode without keys is open.
    require_auth: bool = True
    # Largest accepted difference between a request's timestamp and our clock, in seconds.
    auth_max_skew_seconds: float = Field(default=300.0, gt=0)
    # Accepted (caller, nonce) pairs remembered for replay refusal (~250 bytes each); when full,
    # new requests get 503 overloaded until entries expire with the skew window.
    auth_max_nonces: int = Field(default=100_000, ge=1)
    # Largest POST /v1/analyze body read before authentication; larger: 413 request_too_large.
    max_request_bytes: int = Field(default=64 * 1024, ge=1024)
    # Batched analysis, POST /v1/analyze:batch (issue 17): most items per batch (each costs one
    # rate-limit token, so at most rate_limit_burst), items analysed at once within one batch,
    # and the most bytes (fetched or inline) one batch may bring in, all items together.
    max_batch_items: int = Field(default=64, ge=1, le=MAX_BATCH_ITEMS)
    batch_concurrency: int = Field(default=16, ge=1)
    max_batch_bytes: int = Field(default=256 * 1024 * 1024, ge=1)
    # Largest batch body read before authentication; unset: max_batch_items x 9 KiB (an item
    # is at most an 8192-character URL and its JSON around it).
    max_batch_request_bytes: int | None = Field(default=None, ge=1024)
    # Per-caller token bucket: sustained analyses per second and burst size. A node crawling at
    # full speed asks for several hundred images a second (issue 17: 50 capped `libra node
    # crawl` at 50 pages/s, 500 still refused 1.6 % of a 530 images/s crawl); the bucket bounds
    # what a stolen key can ask for, max_in_flight bounds the work done at once.
    rate_limit_per_second: float = Field(default=1000.0, gt=0)
    rate_limit_burst: int = Field(default=2000, ge=1)
    # User-Agent sent upstream.
    user_agent: str = "LIBRA-remote-hash/0.1"
    # Python logging level of the worker_function logger and of uvicorn (`serve`): one line per
    # analysis at INFO, none per request at WARNING and above; uvicorn's access lines at DEBUG.
    log_level: str = "INFO"
    # Issue 8 (worker_function/telemetry.py, metrics.py): trace export off, console (stderr) or
    # otlp (OTLP/HTTP to otlp_endpoint).
    tracing: Literal["off", "console", "otlp"] = "off"
    otlp_endpoint: str = "http://127.0.0.1:4318/v1/traces"
    # Issue 12: what the function exposes besides /v1/analyze and /healthz. GET /metrics
    # (Prometheus) and the API description (/openapi.json, /docs, /redoc): unset = open in lab
    # mode only, closed in production; true/false decide explicitly.
    metrics: bool | None = None
    api_docs: bool | None = None
    # Issue 13: video hashing ([video] table, LIBRA_FUNCTION_VIDEO__*; worker_function/video/).
    # Videos share max_bytes with images: raise it for longer videos.
    video: VideoSettings = Field(default_factory=VideoSettings)

    @model_validator(mode="after")
    def _batch_fits_the_bucket(self) -> FunctionSettings:
        # A batch takes one token per item at once: a larger batch could never be served. Only
        # an explicit max_batch_items is refused; the default shrinks to a small bucket
        # (batch_items_limit), so older configurations keep starting.
        if "max_batch_items" in self.model_fields_set and (
            self.max_batch_items > self.rate_limit_burst
        ):
            raise ValueError(
                f"max_batch_items ({self.max_batch_items}) must not exceed rate_limit_burst "
                f"({self.rate_limit_burst}): a batch spends one token per item"
            )
        return self

    def batch_items_limit(self) -> int:
        """Most items per batch: max_batch_items, at most one bucket's worth of tokens."""
        return min(self.max_batch_items, self.rate_limit_burst)

    def batch_request_bytes(self) -> int:
        """The pre-authentication body limit of POST /v1/analyze:batch."""
        if self.max_batch_request_bytes is not None:
            return self.max_batch_request_bytes
        return max(self.max_request_bytes, self.batch_items_limit() * BATCH_ITEM_BYTES)

    def metrics_enabled(self, lab_mode: bool) -> bool:
        return lab_mode if self.metrics is None else self.metrics

    def api_docs_enabled(self, lab_mode: bool) -> bool:
        return lab_mode if self.api_docs is None else self.api_docs

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}")
        return value.upper()

    @field_validator("authorized_keys")
    @classmethod
    def _valid_keys(cls, value: dict[str, str]) -> dict[str, str]:
        parse_authorized_keys(value)  # raises ValueError naming the bad entry
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # toml_file is only set on the per-file subclass made by load_settings.
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    def fetch_limits(self) -> FetchLimits:
        return FetchLimits(
            max_bytes=self.max_bytes,
            deadline_seconds=self.deadline_seconds,
            max_redirects=self.max_redirects,
        )

    def decode_limits(self) -> DecodeLimits:
        return DecodeLimits(max_pixels=self.max_pixels)

    def worker_limits(self) -> WorkerLimits:
        return WorkerLimits(
            memory_bytes=self.decode_memory_mb * 1024 * 1024,
            cpu_seconds=self.decode_cpu_seconds,
            wall_seconds=self.decode_timeout_seconds,
            recycle_rss_bytes=self.decode_recycle_rss_mb * 1024 * 1024,
            recycle_tasks=self.decode_recycle_tasks,
        )


def load_settings(config: Path | None = None, **overrides: object) -> FunctionSettings:
    """Settings from ``config`` (TOML, optional), the environment and explicit overrides."""
    given = {key: value for key, value in overrides.items() if value is not None}
    if config is None:
        return FunctionSettings(**given)  # type: ignore[arg-type]
    if not config.is_file():
        raise ConfigFileError(f"config file {config} does not exist")

    class _FromFile(FunctionSettings):
        model_config = SettingsConfigDict(toml_file=config)

    return _FromFile(**given)  # type: ignore[arg-type]
