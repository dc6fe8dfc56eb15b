"""`libra node list ...` end to end on a node directory made by `libra node init`."""

from __future__ import annotations

import json
import random
import stat
from pathlib import Path

from typer.testing import CliRunner

from node.cli.main import app
from node.config import load_settings
from node.matching.index.persist import INDEX_FILE
from tests.node.conftest import flip_bits, rand_hex

runner = CliRunner()
FIXTURES = Path(__file__).parent / "fixtures" / "lists"
EXPECTED: list[dict[str, str]] = json.loads((FIXTURES / "expected.json").read_text())


def node_dir(tmp_path: Path) -> list[str]:
    directory = tmp_path / "node"
    result = runner.invoke(
        app, ["init", "--dir", str(directory), "--node-id", "n-test", "--country", "DE"]
    )
    assert result.exit_code == 0, result.output
    key = directory / "lists.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    return ["--config", str(directory / "node.toml")]


def run(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def match_lines(output: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_import_match_export_remove(tmp_path: Path) -> None:
    config = node_dir(tmp_path)
    out = run("list", "import", str(FIXTURES / "vics2_case.json"), "--format", "vics", *config)
    assert "list version 1: imported 24" in out
    # The persisted index exists, encrypted (no plaintext hash inside).
    settings = load_settings(Path(config[1]))
    blob = (settings.index_dir / INDEX_FILE).read_bytes()
    assert blob.startswith(b"LIBRAENC1") and bytes.fromhex(EXPECTED[0]["pdq"]) not in blob
    near = flip_bits(EXPECTED[1]["pdq"], list(range(0, 60, 2)))  # 30 bits away
    far = flip_bits(EXPECTED[1]["pdq"], list(range(0, 64, 2)))  # 32 bits away
    queries = tmp_path / "q.txt"
    queries.write_text(f"pdq {near}\npdq {far}\n{EXPECTED[2]['md5']}\nnonsense\n")
    lines = match_lines(run("list", "match", str(queries), *config))
    assert [len(line.get("matches", [])) for line in lines[:3]] == [1, 0, 1]  # type: ignore[arg-type]
    first = lines[0]["matches"][0]  # type: ignore[index]
    assert (
        first["distance"] == 30 and first["source"] == "vics2_case.json" and first["label"] == "2"
    )
    assert "error" in lines[3]
    exported = tmp_path / "out.json"
    run("list", "export", str(exported), "--format", "vics", *config)
    assert len(json.loads(exported.read_text())["value"]) == 6
    out = run("list", "remove", "1", "--reason", "withdrawn", *config)
    assert "24 entries deleted" in out
    assert all(
        not line["matches"] for line in match_lines(run("list", "match", str(queries), *config))[:3]
    )
    audit = run("list", "audit", *config)
    assert "list.remove" in audit and "list.import" in audit and "list.export" in audit


def test_broken_file_changes_nothing(tmp_path: Path) -> None:
    config = node_dir(tmp_path)
    result = runner.invoke(
        app, ["list", "import", str(FIXTURES / "ncmec_broken.xml"), "--format", "ncmec", *config]
    )
    assert result.exit_code == 1
    assert "line" in result.output and "unchanged" in result.output
    assert "no list entries" in run("list", "show", *config)


def test_rotate_key_and_refuse_without_key(tmp_path: Path) -> None:
    config = node_dir(tmp_path)
    rng = random.Random(5)
    values = [rand_hex(rng, 256) for _ in range(20)]
    listfile = tmp_path / "p.txt"
    listfile.write_text("\n".join(values) + "\n")
    run("list", "import", str(listfile), "--algorithm", "pdq", *config)
    key_file = Path(config[1]).parent / "lists.key"
    old_key = key_file.read_text()
    out = run("list", "rotate-key", "--reason", "yearly", *config)
    assert "re-encrypted 20 list values" in out
    assert key_file.read_text() != old_key
    queries = tmp_path / "q.txt"
    queries.write_text(f"pdq {values[3]}\n")
    assert match_lines(run("list", "match", str(queries), *config))[0]["matches"]
    # The old key no longer opens the node; no key at all refuses with a clear message.
    key_file.write_text(old_key)
    refused = runner.invoke(app, ["list", "show", *config])
    assert refused.exit_code == 2 and "does not decrypt" in refused.output
    key_file.unlink()
    refused = runner.invoke(app, ["list", "show", *config])
    assert refused.exit_code == 2 and "no list key" in refused.output
    assert "LIBRA_NODE_LIST_KEY" in refused.output
