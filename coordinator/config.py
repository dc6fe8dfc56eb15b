"""Coordinator settings: a TOML file, overridden by ``LIBRA_COORDINATOR_*`` environment variables.

Every setting is documented in docs/operations-coordinator.md; keep the two in step.
"""

from __future__ import annotations

import os
import tomllib
from datetime import timedelta
from pathlib import Path

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

ENV_PREFIX = "LIBRA_COORDINATOR_"
CONFIG_ENV_VAR = "LIBRA_COORDINATOR_CONFIG"
DEFAULT_CONFIG_FILE = Path("coordinator.toml")
DEFAULT_DATA_DIR = Path("var/coordinator")
SQLITE_FILE_NAME = "coordinator.db"


class ConfigError(Exception):
    """The configuration file is missing, unreadable or holds invalid values."""


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
    host: str = Field(default="127.0.0.1", description="Address `serve` listens on.")
    port: int = Field(default=8700, ge=1, le=65535, description="Port `serve` listens on.")

    @field_validator("max_report_age", "max_future_skew")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be a positive duration")
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
        # No .env or secrets directory: one file plus the environment keeps deployments legible.
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / SQLITE_FILE_NAME).as_posix()}"


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


def load_settings(config_path: Path | None = None) -> CoordinatorSettings:
    """Load settings from the resolved TOML file (if any) with environment overrides."""
    path = resolve_config_path(config_path)

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
