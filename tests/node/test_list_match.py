"""`libra node list match` from the persisted index (issue 17): the same hits as a full index
built from the database, a stale or tampered index file rebuilt with a clear message, and
entry details read from the database for the hits only."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from typer.testing import CliRunner, Result

from node.config import load_settings
from node.db import make_engine
from node.keys.list_encryption import load_list_key
from node.lists import ImportedRecord, import_records
from node.matching.index import persist
from node.matching.matcher import MatchIndex
from node.models import ListEntry, ListVersion
from protocol.hashes import HashFamily
from tests.node.conftest import flip_bits, rand_hex

runner = CliRunner()


def cli(*args: str) -> Result:
    from node.cli.main import app

    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


class Node:
    """A node made by `libra node init`, with two lists imported through the CLI."""

    def __init__(self, tmp_path: Path) -> None:
        directory = tmp_path / "node"
        cli("init", "--dir", str(directory), "--node-id", "n-test", "--country", "DE")
        self.config = ["--config", str(directory / "node.toml")]
        self.settings = load_settings(directory / "node.toml")
        self.key = load_list_key(self.settings.list_key_path)
        self.tmp = tmp_path
        rng = random.Random(17)
        self.pdq = [rand_hex(rng, 256) for _ in range(40)]
        self.md5 = [rand_hex(rng, 128) for _ in range(20)]
        self.import_list("a.txt", "pdq", self.pdq[:25], "A1")
        self.import_list("b.txt", "pdq", self.pdq[25:], "B2")
        self.import_list("c.txt", "md5", self.md5, "A2")

    def import_list(self, name: str, family: str, values: list[str], category: str) -> None:
        path = self.tmp / name
        path.write_text("\n".join(values) + "\n")
        args = ["list", "import", str(path), "--algorithm", family, "--category", category]
        cli(*args, *self.config)

    def engine(self) -> Engine:
        return make_engine(self.settings.effective_database_url, self.key)

    def match(self, lines: list[str]) -> tuple[list[dict[str, Any]], str]:
        """(one JSON record per query line, stderr) of `libra node list match`."""
        queries = self.tmp / "queries.txt"
        queries.write_text("\n".join(lines) + "\n")
        result = cli("list", "match", str(queries), *self.config)
        records = [json.loads(line) for line in result.stdout.splitlines()]
        return records, result.stderr


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return Node(tmp_path)


def queries_for(node: Node) -> list[str]:
    """Hits at several distances (two near copies of list a, one of list b), exact hits, and
    misses."""
    return [
        f"pdq {flip_bits(node.pdq[3], list(range(0, 40, 4)))}",  # 10 bits from a list-a entry
        f"pdq {flip_bits(node.pdq[30], list(range(1, 61, 2)))}",  # 30 bits from list b
        f"pdq {node.pdq[7]}",
        f"md5 {node.md5[5]}",
        f"md5 {'0' * 32}",
        f"pdq {rand_hex(random.Random(99), 256)}",
    ]


def full_index_answer(engine: Engine, lines: list[str]) -> list[list[tuple[Any, ...]]]:
    """The reference: a full MatchIndex built from the database and every entry's details
    (what the command did before issue 17)."""
    index = MatchIndex.from_db(engine)
    with Session(engine) as session:
        sources = {v.id: v.source for v in session.exec(select(ListVersion)).all()}
        entries = {
            e.id: (sources[e.list_version_id], e.category, e.label)
            for e in session.exec(select(ListEntry).where(col(ListEntry.retired).is_(False)))
        }
    out = []
    for line in lines:
        family, value = line.split()
        hits = index.lookup(HashFamily(family), [value])[0]
        out.append([(*entries[m.entry_id], m.entry_id, m.distance) for m in hits])
    return out


def answer(records: list[dict[str, Any]]) -> list[list[tuple[Any, ...]]]:
    keys = ("source", "category", "label", "entry_id", "distance")
    return [[tuple(m[k] for k in keys) for m in r["matches"]] for r in records]


def test_same_hits_as_the_full_index(node: Node) -> None:
    lines = queries_for(node)
    records, stderr = node.match(lines)
    assert "rebuild" not in stderr and "building" not in stderr  # the import kept it current
    expected = full_index_answer(node.engine(), lines)
    assert answer(records) == expected
    # The reference itself is not vacuous: hits at 10 and 30 bits, exact hits, misses.
    assert [[hit[4] for hit in hits] for hits in expected] == [[10], [30], [0], [0], [], []]
    assert [hits[0][:2] for hits in expected[:4]] == [
        ("a.txt", "A1"),
        ("b.txt", "B2"),
        ("a.txt", "A1"),
        ("c.txt", "A2"),
    ]


def test_stale_index_is_rebuilt_with_a_message(node: Node) -> None:
    engine = node.engine()
    extra = rand_hex(random.Random(5), 256)
    # Entries added behind the CLI's back: the saved index's stamp no longer matches.
    import_records(
        engine, [ImportedRecord(HashFamily.PDQ, extra, 1)], source="d", version="1", format_name="t"
    )
    records, stderr = node.match([f"pdq {extra}"])
    assert "the lists changed since the match index was saved: rebuilding it" in stderr
    assert "match index saved to" in stderr
    assert records[0]["matches"][0]["source"] == "d" and records[0]["matches"][0]["distance"] == 0
    loaded = persist.load(node.settings.index_dir, node.key)
    assert loaded is not None and loaded[1] == persist.db_stamp(engine)  # saved, current
    _, again = node.match([f"pdq {extra}"])
    assert "rebuild" not in again


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_tampered_index_is_refused_and_rebuilt(node: Node, damage: str) -> None:
    path = node.settings.index_dir / persist.INDEX_FILE
    blob = bytearray(path.read_bytes())
    if damage == "flip":
        blob[len(blob) // 2] ^= 0x01  # one bit of the ciphertext
    else:
        del blob[len(blob) // 2 :]
    path.write_bytes(bytes(blob))
    lines = queries_for(node)
    records, stderr = node.match(lines)
    assert "match index file refused: it fails its integrity check" in stderr
    assert "Traceback" not in stderr
    assert answer(records) == full_index_answer(node.engine(), lines)
    assert persist.load(node.settings.index_dir, node.key) is not None  # rewritten, sound


@pytest.fixture
def statements() -> Iterator[list[tuple[str, Any]]]:
    """Every SQL statement any engine runs (the command opens its own), with parameters."""
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, *args: Any) -> None:
        seen.append((statement, params))

    event.listen(Engine, "before_cursor_execute", record)
    yield seen
    event.remove(Engine, "before_cursor_execute", record)


def test_details_are_read_for_the_hits_only(node: Node, statements: list[tuple[str, Any]]) -> None:
    lines = queries_for(node)
    records, _ = node.match(lines)
    hit_ids = {m["entry_id"] for r in records for m in r["matches"]}
    assert len(hit_ids) == 4
    reads = [(s, p) for s, p in statements if re.search(r"FROM list_entry\b", s)]
    # The saved index was current: no list value was read from the database ...
    assert not [s for s, _ in reads if "list_entry.value" in s]
    # ... and entry details were read once, for exactly the hits' ids.
    details = [(s, p) for s, p in reads if "list_entry.label" in s]
    assert len(details) == 1 and " IN (" in details[0][0]
    assert set(details[0][1]) == hit_ids


def test_no_hits_reads_no_details(node: Node, statements: list[tuple[str, Any]]) -> None:
    node.match([f"md5 {'f' * 32}"])
    assert not [s for s, _ in statements if "list_entry.label" in s]


def test_a_node_without_entries_answers_no_match(tmp_path: Path) -> None:
    # The rebuild display must cope with an empty list store (no total to show).
    directory = tmp_path / "empty"
    cli("init", "--dir", str(directory), "--node-id", "n-empty", "--country", "DE")
    queries = tmp_path / "q.txt"
    queries.write_text(f"md5 {'a' * 32}\n")
    result = cli("list", "match", str(queries), "--config", str(directory / "node.toml"))
    [record] = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["matches"] == []
    assert "(0 entries)" in result.stderr
