"""The CLI (hash_command, serve --help) and settings loading (TOML + environment)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tests.function import helpers as h
from worker_function.cli import app, hash_command
from worker_function.hashing import hash_image
from worker_function.settings import ConfigFileError, FunctionSettings, load_settings


def run_hash(args: list[str]) -> tuple[int, list[dict[str, object]]]:
    wrapper = typer.Typer()
    wrapper.command("hash")(hash_command)
    wrapper.command("other")(lambda: None)  # keep "hash" a named sub-command
    result = CliRunner().invoke(wrapper, ["hash", *args])
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return result.exit_code, lines


def test_hash_command_prints_one_line_per_file(tmp_path: Path) -> None:
    jpeg = tmp_path / "a.jpg"
    jpeg.write_bytes(h.encode(h.generated_image(1), "JPEG"))
    png = tmp_path / "b.png"
    png.write_bytes(h.encode(h.generated_image(2), "PNG"))
    before = sorted(tmp_path.iterdir())
    code, lines = run_hash([str(jpeg), str(png)])
    assert code == 0
    assert [line["path"] for line in lines] == [str(jpeg), str(png)]
    first = lines[0]
    assert set(first) == {"path", "format", "width", "height", "bytes", "animated", "hashes"}
    assert (first["format"], first["width"], first["height"]) == ("JPEG", 320, 240)
    assert first["bytes"] == jpeg.stat().st_size
    expected = hash_image(jpeg.read_bytes()).hashes.model_dump(exclude_none=True)
    assert first["hashes"] == expected
    assert sorted(tmp_path.iterdir()) == before  # wrote nothing


def test_hash_command_dihedral(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(h.encode(h.generated_image(3), "PNG"))
    code, lines = run_hash(["--dihedral", str(path)])
    hashes = lines[0]["hashes"]
    assert code == 0 and isinstance(hashes, dict) and len(hashes["pdq_dihedral"]) == 8


def test_hash_command_reports_failures_and_exits_1(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    good.write_bytes(h.encode(h.generated_image(4), "PNG"))
    html = tmp_path / "page.jpg"
    html.write_bytes(b"<html>no</html>")
    missing = tmp_path / "missing.png"
    code, lines = run_hash([str(html), str(good), str(missing)])
    assert code == 1
    assert [line["path"] for line in lines] == [str(html), str(good), str(missing)]
    assert set(lines[0]) == {"path", "error"} and set(lines[2]) == {"path", "error"}
    errors = [line["error"] for line in (lines[0], lines[2])]
    assert [e["code"] for e in errors if isinstance(e, dict)] == ["not_an_image", "read_failed"]
    hashes = lines[1]["hashes"]
    assert isinstance(hashes, dict)
    assert hashes["sha256"] == hashlib.sha256(good.read_bytes()).hexdigest()


def test_cli_help_texts() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "serve" in result.stdout
    result = runner.invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--lab", "--config"):
        assert option in result.stdout


def test_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LAB", "MAX_BYTES", "DEADLINE_SECONDS"):
        monkeypatch.delenv(f"LIBRA_FUNCTION_{name}", raising=False)
    settings = load_settings()
    assert settings.max_bytes == 20 * 1024 * 1024
    assert settings.deadline_seconds == 20.0
    assert settings.max_redirects == 5
    assert settings.lab is None


def test_settings_toml_then_env_then_arguments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "function.toml"
    config.write_text(
        'max_bytes = 1000\ndeadline_seconds = 3.5\nextra_ports = [8080]\nuser_agent = "ua-file"\n'
    )
    monkeypatch.setenv("LIBRA_FUNCTION_DEADLINE_SECONDS", "7")
    monkeypatch.setenv("LIBRA_FUNCTION_USER_AGENT", "ua-env")
    settings = load_settings(config, user_agent="ua-flag", lab=None)
    assert settings.max_bytes == 1000  # file
    assert settings.deadline_seconds == 7.0  # env beats file
    assert settings.user_agent == "ua-flag"  # explicit beats env
    assert settings.extra_ports == [8080]
    assert settings.fetch_limits().max_bytes == 1000
    assert isinstance(settings, FunctionSettings)


def test_settings_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError):
        load_settings(tmp_path / "absent.toml")
    config = tmp_path / "bad.toml"
    config.write_text("no_such_setting = 1\n")
    with pytest.raises(ValueError):
        load_settings(config)
