from __future__ import annotations

import stat
from pathlib import Path

import pytest

from node.config import ConfigError, load_settings
from node.keys.files import (
    KeyFileError,
    create_federation_key,
    create_signing_key,
    load_federation_key,
    load_signing_key,
)

MINIMAL = 'node_id = "node-a"\ncountry = "DE"\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_and_derived_paths(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, MINIMAL))
    assert settings.data_dir == tmp_path
    assert settings.effective_database_url == f"sqlite:///{tmp_path}/node.sqlite3"
    assert settings.signing_key_path == tmp_path / "node.key"
    assert settings.federation_key_path == tmp_path / "federation.key"
    assert settings.match.pdq_max_distance == 31 and settings.match.pdq_min_quality == 50
    assert settings.match.phash_max_distance == 8 and settings.match.dhash_max_distance == 8
    assert settings.report.period == "day" and settings.crawl.max_pages == 2000


def test_relative_paths_are_anchored_at_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = MINIMAL + 'data_dir = "data"\nlab = "lab.toml"\n[geoip]\ncountry_db = "geo/c.mmdb"\n'
    path = write(tmp_path, text)
    monkeypatch.chdir("/")
    settings = load_settings(path)
    assert settings.data_dir == tmp_path / "data"
    assert settings.lab == tmp_path / "lab.toml"
    assert settings.geoip.country_db == tmp_path / "geo" / "c.mmdb"
    assert settings.geoip.asn_db is None


def test_environment_overrides_nested_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, MINIMAL + "[match]\npdq_max_distance = 20\n")
    monkeypatch.setenv("LIBRA_NODE_MATCH__PDQ_MAX_DISTANCE", "12")
    monkeypatch.setenv("LIBRA_NODE_COORDINATOR_URL", "http://127.0.0.1:9999/")
    monkeypatch.setenv("LIBRA_NODE_SEEDS", '["http://a.test/"]')
    settings = load_settings(path)
    assert settings.match.pdq_max_distance == 12
    assert settings.coordinator_url == "http://127.0.0.1:9999"
    assert settings.seeds == ["http://a.test/"]


def test_config_file_from_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, MINIMAL)
    monkeypatch.setenv("LIBRA_NODE_CONFIG", str(path))
    assert load_settings().node_id == "node-a"
    monkeypatch.setenv("LIBRA_NODE_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings()


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (MINIMAL + "unknown_setting = 1\n", "unknown_setting"),
        (MINIMAL + "[match]\npdq_max_distanse = 3\n", "match.pdq_max_distanse"),
        ('node_id = "Node A"\ncountry = "DE"\n', "node_id"),
        ('node_id = "node-a"\ncountry = "de"\n', "country"),
        (MINIMAL + 'seeds = ["ftp://x.test/"]\n', "seeds"),
        (MINIMAL + '[report]\nperiod = "week"\n', "report.period"),
        ("node_id = ", "TOML"),
    ],
)
def test_invalid_settings_fail_loudly(tmp_path: Path, text: str, where: str) -> None:
    with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
        load_settings(write(tmp_path, text))


def test_signing_key_file_roundtrip_mode_and_no_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "node.key"
    key = create_signing_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_signing_key(path).key_id == key.key_id
    before = path.read_bytes()
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        create_signing_key(path)
    assert path.read_bytes() == before


def test_federation_key_file(tmp_path: Path) -> None:
    path = tmp_path / "federation.key"
    key = create_federation_key(path)
    assert len(key) == 32 and load_federation_key(path) == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("c2hvcnQ=\n")  # "short"
    with pytest.raises(KeyFileError, match="32 bytes"):
        load_federation_key(path)
    path.write_text("%%%")
    with pytest.raises(KeyFileError, match="base64"):
        load_federation_key(path)
    with pytest.raises(KeyFileError, match="does not exist"):
        load_signing_key(tmp_path / "nope.key")
    (tmp_path / "bad.key").write_text("AAAA")
    with pytest.raises(KeyFileError):
        load_signing_key(tmp_path / "bad.key")
