"""`libra function key create --out PATH`: a request key pair, the private key created 0600 and
exclusively (never overwriting), the authorized_keys line printed."""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path

from typer.testing import CliRunner

from protocol.keys import NodeKey
from worker_function.auth import parse_authorized_keys
from worker_function.cli import app

runner = CliRunner()


def test_creates_a_0600_key_and_prints_the_authorized_keys_line(tmp_path: Path) -> None:
    out = tmp_path / "function.key"
    result = runner.invoke(app, ["key", "create", "--out", str(out), "--caller", "node-a"])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    key = NodeKey.from_seed_b64(out.read_text(encoding="ascii"))
    line = result.stdout.strip().splitlines()[-1]
    # The line is valid TOML for the function's [authorized_keys] table, naming this key.
    entry = tomllib.loads(line)
    assert entry == {"node-a": key.public_key_b64}
    assert set(parse_authorized_keys(entry)) == {"node-a"}


def test_refuses_to_overwrite_an_existing_file(tmp_path: Path) -> None:
    out = tmp_path / "function.key"
    out.write_text("precious\n")
    out.chmod(0o644)
    result = runner.invoke(app, ["key", "create", "--out", str(out)])
    assert result.exit_code == 1
    assert "refusing to overwrite" in result.output
    assert out.read_text() == "precious\n"  # untouched, mode too
    assert stat.S_IMODE(out.stat().st_mode) == 0o644


def test_two_keys_differ_and_a_bad_caller_is_refused(tmp_path: Path) -> None:
    first, second = tmp_path / "a.key", tmp_path / "b.key"
    assert runner.invoke(app, ["key", "create", "--out", str(first)]).exit_code == 0
    assert runner.invoke(app, ["key", "create", "--out", str(second)]).exit_code == 0
    assert first.read_text() != second.read_text()
    bad = runner.invoke(app, ["key", "create", "--out", str(tmp_path / "c.key"), "--caller", "a b"])
    assert bad.exit_code == 2
    assert not (tmp_path / "c.key").exists()


def test_the_placeholder_line_says_what_to_replace(tmp_path: Path) -> None:
    result = runner.invoke(app, ["key", "create", "--out", str(tmp_path / "k")])
    assert result.stdout.strip().splitlines()[-1].startswith('"NODE_ID" = "')
