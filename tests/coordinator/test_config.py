"""Settings: TOML file, environment overrides, defaults, and clear errors."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from coordinator.config import ConfigError, CoordinatorSettings, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("LIBRA_COORDINATOR_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray ./coordinator.toml


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_any_file() -> None:
    settings = load_settings()
    assert settings.database_url is None
    assert settings.effective_database_url == "sqlite:///var/coordinator/coordinator.db"
    assert settings.max_report_age == timedelta(days=7)
    assert settings.max_future_skew == timedelta(minutes=5)
    assert settings.max_body_bytes == 8 * 1024 * 1024
    assert (settings.host, settings.port) == ("127.0.0.1", 8700)


def test_toml_values(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.toml",
        'database_url = "postgresql+psycopg://postgres@127.0.0.1:5432/test"\n'
        'data_dir = "/srv/libra"\n'
        'max_report_age = "P3D"\n'
        "max_future_skew = 60\n"
        "max_body_bytes = 1048576\n"
        'host = "127.0.0.2"\n'
        "port = 9100\n",
    )
    settings = load_settings(path)
    assert settings.effective_database_url.startswith("postgresql+psycopg://")
    assert settings.data_dir == Path("/srv/libra")
    assert settings.max_report_age == timedelta(days=3)
    assert settings.max_future_skew == timedelta(seconds=60)
    assert (settings.max_body_bytes, settings.host, settings.port) == (1048576, "127.0.0.2", 9100)


def test_environment_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "c.toml", "port = 9100\nmax_body_bytes = 4096\n")
    monkeypatch.setenv("LIBRA_COORDINATOR_PORT", "9200")
    monkeypatch.setenv("LIBRA_COORDINATOR_MAX_REPORT_AGE", "PT12H")
    settings = load_settings(path)
    assert (settings.port, settings.max_body_bytes) == (9200, 4096)
    assert settings.max_report_age == timedelta(hours=12)


def test_config_path_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "elsewhere.toml", "port = 9300\n")
    monkeypatch.setenv("LIBRA_COORDINATOR_CONFIG", str(path))
    assert load_settings().port == 9300


def test_default_file_in_working_directory(tmp_path: Path) -> None:
    write(tmp_path / "coordinator.toml", "port = 9400\n")
    assert load_settings().port == 9400


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("prot = 1\n", "prot"),  # typo: unknown keys are refused
        ("port = 0\n", "port"),
        ("max_body_bytes = 10\n", "max_body_bytes"),
        ('max_report_age = "-P1D"\n', "max_report_age"),
        ("port = [\n", "not valid TOML"),
    ],
)
def test_bad_files(tmp_path: Path, text: str, fragment: str) -> None:
    path = write(tmp_path / "bad.toml", text)
    with pytest.raises(ConfigError, match=fragment):
        load_settings(path)


def test_sqlite_url_follows_data_dir() -> None:
    settings = CoordinatorSettings(data_dir=Path("/tmp/x"))
    assert settings.effective_database_url == "sqlite:////tmp/x/coordinator.db"
