"""Coordinator settings: a TOML file, overridden by ``LIBRA_COORDINATOR_*`` environment variables.

Every setting is documented in docs/operations-coordinator.md; keep the two in step.
"""

from __future__ import annotations

import os
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .defaults import CONFIG_ENV_VAR, DEFAULT_CONFIG_FILE, DEFAULT_DATA_DIR

__all__ = ["CONFIG_ENV_VAR", "DEFAULT_CONFIG_FILE", "DEFAULT_DATA_DIR"]  # re-exported

ENV_PREFIX = "LIBRA_COORDINATOR_"
SQLITE_FILE_NAME = "coordinator.db"
SIGNING_KEY_FILE_NAME = "coordinator-signing.key"


# Environment variables that by themselves say where the database is (a container sets these
# instead of writing a file): with one of them set, a configuration counts as found.
LOCATION_ENV_VARS = (f"{ENV_PREFIX}DATABASE_URL", f"{ENV_PREFIX}DATA_DIR")


class ConfigError(Exception):
    """The configuration file is missing, unreadable or holds invalid values."""


class NoConfigFound(ConfigError):
    """No configuration anywhere: the built-in defaults would open a new, empty database."""


class ViewerSettings(BaseModel):
    """``[viewer]``: how the viewer tier's picture protects small numbers (issue 15)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    privacy: Literal["suppression", "dp"] = Field(
        default="suppression",
        description="suppression: exact counts, small cells withheld (picture_min_count, "
        "picture_min_nodes); dp: counts with discrete Laplace noise (differential privacy).",
    )
    epsilon: float = Field(
        default=1.0, gt=0, le=10, description="dp: privacy loss (epsilon) of each release."
    )
    budget: float = Field(
        default=20.0,
        gt=0,
        description="dp: total epsilon all releases may spend on one window of report periods.",
    )
    budget_window: timedelta = Field(
        default=timedelta(days=7),
        description="dp: length of the windows report periods are cut into for the budget.",
    )
    refresh: timedelta = Field(
        default=timedelta(days=1),
        description="dp: a query asked again within this long of its newest release gets "
        "that release, even if reports arrived since (0: a new release for new data).",
    )

    @model_validator(mode="after")
    def _budget_fits(self) -> ViewerSettings:
        if self.budget < self.epsilon:
            raise ValueError("viewer.budget must be at least viewer.epsilon (one release)")
        if self.budget_window <= timedelta(0):
            raise ValueError("viewer.budget_window must be a positive duration")
        if self.refresh < timedelta(0):
            raise ValueError("viewer.refresh must not be negative")
        return self


class CoordinatorSettings(BaseSettings):
    """All coordinator settings. Sources, strongest first: init arguments, environment, TOML."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        # A typo in the TOML file must fail loudly rather than silently use a default.
        extra="forbid",
        frozen=True,
    )

    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; empty means SQLite at <data_dir>/coordinator.db.",
    )
    data_dir: Path = Field(
        default=DEFAULT_DATA_DIR,
        description="Directory for the coordinator's own files (the default SQLite database).",
    )
    max_report_age: timedelta = Field(
        default=timedelta(days=7),
        description="Reports whose created_at is older than this are refused (stale_timestamp).",
    )
    max_future_skew: timedelta = Field(
        default=timedelta(minutes=5),
        description="Allowed clock skew: created_at may be at most this far in the future.",
    )
    max_body_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=1024,
        description="Largest accepted POST /v1/reports body; larger bodies get 413 too_large.",
    )
    max_batch_reports: int = Field(
        default=500, ge=1, le=10_000, description="Most envelopes in one POST /v1/reports:batch."
    )
    max_batch_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        description="Largest accepted POST /v1/reports:batch body (413 too_large above).",
    )
    rate_limit_per_node: float = Field(
        default=100.0,
        ge=0,
        description="Sustained reports per second accepted from one node (0: no limit); "
        "above it 429 rate_limited, which a node's outbox retries later.",
    )
    rate_limit_burst: int = Field(
        default=1000, ge=1, description="Reports one node may send at once before the rate applies."
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis for state shared by several coordinator processes (the per-node "
        "rate-limit buckets), e.g. redis://127.0.0.1:6379/0; unset: in-process state.",
    )
    anonymous_role: Literal["none", "viewer"] = Field(
        default="none",
        description="Role of requests without a token: none (401) or viewer (aggregates only).",
    )
    token_ttl: timedelta = Field(
        default=timedelta(days=90), description="Default lifetime of `token create` tokens."
    )
    node_token_ttl: timedelta = Field(
        default=timedelta(days=365), description="Lifetime of the node token issued at enrollment."
    )
    invitation_ttl: timedelta = Field(
        default=timedelta(days=7), description="Default lifetime of an enrollment invitation."
    )
    key_overlap: timedelta = Field(
        default=timedelta(days=7),
        description="After a key rotation, reports created up to this long after it may still be "
        "signed with the old key.",
    )
    picture_min_count: int = Field(
        default=0,
        ge=0,
        description="Viewer tier: country/hoster rows with fewer matches are suppressed (0: off).",
    )
    picture_min_nodes: int = Field(
        default=1,
        ge=1,
        description="Viewer tier: rows reported by fewer distinct nodes are suppressed (1: off).",
    )
    viewer_node_detail: bool = Field(
        default=False,
        description="Federation policy: may viewers see the per-node breakdown of the picture?",
    )
    viewer: ViewerSettings = Field(
        default_factory=ViewerSettings,
        description="[viewer]: suppression or differential privacy for the viewer tier.",
    )
    oidc_issuer: str | None = Field(
        default=None,
        description="OIDC bearer mode: the identity provider's issuer (`iss`); empty = off.",
    )
    oidc_audience: str | None = Field(
        default=None, description="OIDC: the audience (`aud`) tokens must be issued for."
    )
    oidc_jwks_url: str | None = Field(
        default=None, description="OIDC: the provider's JWKS URL (signing keys)."
    )
    oidc_role_claim: str = Field(
        default="libra_role",
        description="OIDC: claim naming the role (admin, viewer or auditor; string or list).",
    )
    oidc_algorithms: list[str] = Field(
        default_factory=lambda: ["RS256", "ES256", "EdDSA"],
        description="OIDC: accepted JWT signature algorithms.",
    )
    signing_key_file: Path | None = Field(
        default=None,
        description="Coordinator Ed25519 seed for signed picture snapshots; empty means "
        "<data_dir>/coordinator-signing.key (created on first use, mode 0600).",
    )
    host: str = Field(default="127.0.0.1", description="Address `serve` listens on.")
    port: int = Field(default=8700, ge=1, le=65535, description="Port `serve` listens on.")
    # issue 8: observability (coordinator/telemetry.py, coordinator/metrics.py)
    tracing: Literal["off", "console", "otlp"] = Field(
        default="off", description="Trace export: off, console (stderr) or otlp (OTLP/HTTP)."
    )
    otlp_endpoint: str = Field(
        default="http://127.0.0.1:4318/v1/traces", description="OTLP/HTTP traces endpoint."
    )
    metrics: bool = Field(default=True, description="Serve Prometheus metrics at GET /metrics.")

    @field_validator(
        "max_report_age", "max_future_skew", "token_ttl", "node_token_ttl", "invitation_ttl"
    )
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be a positive duration")
        return value

    @model_validator(mode="after")
    def _oidc_complete(self) -> CoordinatorSettings:
        oidc = (self.oidc_issuer, self.oidc_audience, self.oidc_jwks_url)
        if any(oidc) and not all(oidc):
            raise ValueError("OIDC needs oidc_issuer, oidc_audience and oidc_jwks_url together")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # No .env or secrets directory: one file plus the environment keeps deployments legible.
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / SQLITE_FILE_NAME).as_posix()}"

    @property
    def effective_signing_key_file(self) -> Path:
        return self.signing_key_file or self.data_dir / SIGNING_KEY_FILE_NAME


def resolve_config_path(explicit: Path | None) -> Path | None:
    """The config file to read: explicit path, else $LIBRA_COORDINATOR_CONFIG, else
    ./coordinator.toml if it exists, else None (defaults and environment only).

    A path that was asked for explicitly (argument or variable) must exist.
    """
    if explicit is None:
        from_env = os.environ.get(CONFIG_ENV_VAR)
        explicit = Path(from_env) if from_env else None
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"config file {explicit} does not exist")
        return explicit
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def no_config_message() -> str:
    return (
        "no coordinator configuration found: give --config PATH, set "
        f"{CONFIG_ENV_VAR}, run in the folder that holds {DEFAULT_CONFIG_FILE}, or set "
        f"{' or '.join(LOCATION_ENV_VARS)}. Refusing to use the built-in defaults, which would "
        f"open a new, empty database under ./{DEFAULT_DATA_DIR.as_posix()} that no running "
        "coordinator uses. `libra coordinator init` writes a configuration and creates the "
        "database."
    )


def load_settings(
    config_path: Path | None = None, *, require_config: bool = False
) -> CoordinatorSettings:
    """Load settings from the resolved TOML file (if any) with environment overrides.

    ``require_config``: raise NoConfigFound when there is neither a file (argument,
    $LIBRA_COORDINATOR_CONFIG, ./coordinator.toml) nor a database location in the environment:
    commands that open the database must not silently open one of their own making.
    """
    path = resolve_config_path(config_path)
    if require_config and path is None and not any(os.environ.get(v) for v in LOCATION_ENV_VARS):
        raise NoConfigFound(no_config_message())

    class _FromFile(CoordinatorSettings):
        model_config = SettingsConfigDict(toml_file=path)

    try:
        return _FromFile()
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(
            f"invalid coordinator settings ({path or 'defaults'}): {problems}"
        ) from exc
