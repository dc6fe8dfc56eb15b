from __future__ import annotations

import random
import re
import stat
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from node.cli.main import EX_TEMPFAIL, app
from node.config import load_settings
from node.keys.files import load_signing_key
from tests.node.conftest import rand_hex
from tests.node.fake_coordinator import CoordinatorState, RunningCoordinator, free_port

runner = CliRunner()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIBRA_NODE_CONFIG", raising=False)


def init_node(tmp_path: Path, *extra: str) -> Path:
    directory = tmp_path / "node"
    result = runner.invoke(
        app,
        ["init", "--dir", str(directory), "--node-id", "node-de", "--country", "de", *extra],
    )
    assert result.exit_code == 0, result.output
    return directory


def test_init_writes_config_and_keys(tmp_path: Path) -> None:
    port = free_port()
    directory = init_node(
        tmp_path,
        "--coordinator-url",
        f"http://127.0.0.1:{port}",
        "--seed",
        "http://a.test/",
        "--seed",
        "http://b.test/",
    )
    config = tomllib.loads((directory / "node.toml").read_text())
    assert config["node_id"] == "node-de" and config["country"] == "DE"
    assert config["seeds"] == ["http://a.test/", "http://b.test/"]
    assert config["match"]["pdq_max_distance"] == 31
    for name in ("node.key", "federation.key"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600
    assert len(load_signing_key(directory / "node.key").key_id) == 64
    settings = load_settings(directory / "node.toml")
    assert settings.signing_key_path == directory.resolve() / "node.key"
    assert settings.coordinator_url == f"http://127.0.0.1:{port}"
    assert (directory / "node.sqlite3").exists()


def test_init_prints_identity_and_refuses_to_overwrite(tmp_path: Path) -> None:
    directory = tmp_path / "node"
    args = ["init", "--dir", str(directory), "--node-id", "node-de", "--country", "DE"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    key = load_signing_key(directory / "node.key")
    assert key.key_id in first.output and key.public_key_b64 in first.output
    assert "node-de" in first.output
    again = runner.invoke(app, args)
    assert again.exit_code == 1
    assert "refusing to overwrite" in again.output
    assert load_signing_key(directory / "node.key").key_id == key.key_id


def test_init_with_shared_federation_key_and_bad_input(tmp_path: Path) -> None:
    first = init_node(tmp_path)
    shared = first / "federation.key"
    second = tmp_path / "other"
    result = runner.invoke(
        app,
        [
            "init",
            "--dir",
            str(second),
            "--node-id",
            "node-nl",
            "--country",
            "NL",
            "--federation-key-file",
            str(shared),
        ],
    )
    assert result.exit_code == 0, result.output
    assert not (second / "federation.key").exists()
    assert load_settings(second / "node.toml").federation_key_path == shared.resolve()
    bad = runner.invoke(
        app, ["init", "--dir", str(tmp_path / "x"), "--node-id", "X!", "--country", "DE"]
    )
    assert bad.exit_code == 2 and "node_id" in bad.output
    assert not (tmp_path / "x" / "node.key").exists()


def test_init_sets_the_function_request_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from node.dispatch import load_request_signer
    from protocol.keys import NodeKey

    key = NodeKey.generate()
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "function.key").write_text(key.seed_b64() + "\n", encoding="ascii")
    monkeypatch.chdir(tmp_path)  # a relative path is written resolved
    directory = init_node(tmp_path, "--function-key-file", "keys/function.key")
    settings = load_settings(directory / "node.toml")
    assert settings.function_key_file == (tmp_path / "keys" / "function.key").resolve()
    # The public half, for the function's authorized_keys, is printed.
    other = ["--dir", str(tmp_path / "n2"), "--node-id", "node-x", "--country", "DE"]
    listed = runner.invoke(app, ["init", *other, "--function-key-file", "keys/function.key"])
    assert listed.exit_code == 0, listed.output
    assert f"function key    {key.public_key_b64}" in listed.output
    # The dispatch signs with exactly that key.
    signer = load_request_signer(settings.node_id, settings.function_key_file)
    assert signer is not None


def test_init_function_key_made_later_or_broken(tmp_path: Path) -> None:
    later = tmp_path / "function.key"
    directory = init_node(tmp_path, "--function-key-file", str(later))
    assert load_settings(directory / "node.toml").function_key_file == later.resolve()
    assert not later.exists()  # init never writes it: `libra function key create` does
    noted = runner.invoke(app, ["init", "--dir", str(tmp_path / "n3"), "--node-id", "node-y",
                                "--country", "DE", "--function-key-file", str(later)])  # fmt: skip
    assert noted.exit_code == 0 and "does not exist yet" in noted.output
    assert "libra function key create" in noted.output

    broken = tmp_path / "broken.key"
    broken.write_text("not a key\n", encoding="ascii")
    bad = runner.invoke(app, ["init", "--dir", str(tmp_path / "n4"), "--node-id", "node-z",
                              "--country", "DE", "--function-key-file", str(broken)])  # fmt: skip
    assert bad.exit_code == 1 and "not a function request key" in bad.output
    assert not (tmp_path / "n4").exists()


def test_list_import_reports_counts_and_rejected_lines(tmp_path: Path) -> None:
    directory = init_node(tmp_path)
    rng = random.Random(3)
    md5 = rand_hex(rng, 128)
    ambiguous = rand_hex(rng, 256)
    listfile = tmp_path / "list.txt"
    listfile.write_text(f"# test list\n{md5}\n{md5}\n{ambiguous}\nzzz\n")
    config = ["--config", str(directory / "node.toml")]
    result = runner.invoke(app, ["list", "import", str(listfile), *config])
    assert result.exit_code == 0, result.output
    assert "imported 1, duplicate 1, rejected 2" in result.output
    assert re.search(r"line 4: .*--algorithm", result.output)
    assert re.search(r"line 5: .zzz.", result.output)
    pdq_file = tmp_path / "pdq.txt"
    pdq_file.write_text(ambiguous + "\n")
    result = runner.invoke(app, ["list", "import", str(pdq_file), "--algorithm", "pdq", *config])
    assert "imported 1, duplicate 0, rejected 0" in result.output
    shown = runner.invoke(app, ["list", "show", *config])
    assert "md5" in shown.output and "pdq" in shown.output
    only_bad = tmp_path / "bad.txt"
    only_bad.write_text("nope\n")
    assert runner.invoke(app, ["list", "import", str(only_bad), *config]).exit_code == 1
    unknown = runner.invoke(app, ["list", "import", str(only_bad), "--format", "nosuch", *config])
    assert unknown.exit_code == 2


def test_report_exit_codes_and_store_and_forward(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    directory = init_node(tmp_path, "--coordinator-url", f"http://127.0.0.1:{port}")
    monkeypatch.chdir(directory)  # default ./node.toml
    key = load_signing_key(directory / "node.key")

    down = runner.invoke(app, ["report"])
    assert down.exit_code == EX_TEMPFAIL, down.output
    assert "still queued" in down.output
    assert "1 report(s)" in down.output

    state = CoordinatorState(keys={key.key_id: key.verify_key})
    with RunningCoordinator(state, port):
        up = runner.invoke(
            app,
            ["report", "--period-start", "2026-03-01T00:00:00Z", "--period-end", "2026-03-02"],
        )
        assert up.exit_code == 0, up.output
        assert up.output.count("delivered") == 2
        assert [r.sequence for r in state.received] == [1, 2]
        assert str(state.received[1].period.start) == "2026-03-01 00:00:00+00:00"
        empty = runner.invoke(app, ["outbox", "show"])
        assert "outbox is empty" in empty.output

        state.keys.clear()  # the coordinator revoked/forgot the key: 401 unknown_key
        refused = runner.invoke(app, ["report"])
        assert refused.exit_code == 1
        assert "REJECTED" in refused.output and "unknown_key" in refused.output
        shown = runner.invoke(app, ["outbox", "show"])
        assert "unknown_key" in shown.output
        state.keys[key.key_id] = key.verify_key
        assert "1 report(s)" in runner.invoke(app, ["outbox", "retry"]).output
        flushed = runner.invoke(app, ["outbox", "flush"])
        assert flushed.exit_code == 0, flushed.output
    assert [r.sequence for r in state.received] == [1, 2, 3]


def test_report_rejects_bad_period_and_crawl_needs_seeds(tmp_path: Path) -> None:
    directory = init_node(tmp_path)
    config = ["--config", str(directory / "node.toml")]
    half = runner.invoke(app, ["report", "--period-start", "2026-03-01", *config])
    assert half.exit_code == 2
    backwards = runner.invoke(
        app, ["report", "--period-start", "2026-03-02", "--period-end", "2026-03-01", *config]
    )
    assert backwards.exit_code == 2
    assert runner.invoke(app, ["crawl", *config]).exit_code == 2
    missing = runner.invoke(app, ["crawl", "--config", str(tmp_path / "nope.toml")])
    assert missing.exit_code == 2 and "does not exist" in missing.output


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["init"],
        ["list"],
        ["list", "import"],
        ["crawl"],
        ["report"],
        ["serve"],
        ["outbox"],
        ["outbox", "retry"],
    ],
)
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output
