"""Import rules of issue 12: video rows of HMA/pytx CSV, files with nothing usable change
nothing, the CLI prints the rejected records it says it prints, memory stays flat."""

from __future__ import annotations

import io
import random
import sqlite3
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from node.cli.main import app
from node.config import load_settings
from node.lists import (
    ImportedRecord,
    Media,
    NothingToImport,
    Record,
    RejectedRecord,
    formats,
    get_importer,
    import_list,
    import_records,
    list_versions,
)
from node.lists.base import VideoFamily
from node.lists.csv_formats import HMA_REFUSED
from protocol.hashes import HashFamily
from tests.node.conftest import rand_hex
from tests.node.test_lists_cli import FIXTURES, node_dir

runner = CliRunner()
RNG = random.Random(13)
MD5, SHA256, PDQ = rand_hex(RNG, 128), rand_hex(RNG, 256), rand_hex(RNG, 256)


def test_hma_video_rows_are_video_entries_and_vpdq_is_read() -> None:
    signal = f'"[""{PDQ},100,0.000"",""{PDQ},90,1.000""]"'  # pytx's string, CSV-quoted
    text = (
        "signal_type,signal_str,collab,category,tags\n"
        f"video_md5,{MD5},c,adult,\n"
        f"video_sha256,{SHA256},c,adult,\n"
        f"pdq,{PDQ},c,adult,\n"
        f"vpdq,{signal},c,adult,\n"
        f"vpdq,{PDQ},c,adult,\n"
        "whirlpool,00,c,adult,\n"
    )
    out = list(get_importer("hma").records(io.StringIO(text)))
    assert out[:3] == [
        ImportedRecord(HashFamily.MD5, MD5, 2, "c", "adult", Media.VIDEO),
        ImportedRecord(HashFamily.SHA256, SHA256, 3, "c", "adult", Media.VIDEO),
        ImportedRecord(HashFamily.PDQ, PDQ, 4, "c", "adult", Media.IMAGE),
    ]
    canonical = f'["{PDQ},100,0.000", "{PDQ},90,1.000"]'
    assert out[3] == ImportedRecord(VideoFamily.VPDQ, canonical, 5, "c", "adult", Media.VIDEO)
    bad, unknown = out[4:]
    assert isinstance(bad, RejectedRecord) and bad.line == 6 and bad.reason.startswith("vpdq:")
    assert isinstance(unknown, RejectedRecord) and "unknown signal type" in unknown.reason
    assert "vpdq" not in HMA_REFUSED


def test_video_entries_are_stored_as_video(engine: Engine) -> None:
    text = f"video_sha256,{SHA256},c,adult,\n"
    import_list(engine, get_importer("hma"), io.StringIO(text), source="h", version="1")
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT family, media, label FROM list_entry").all()
    assert [tuple(r) for r in rows] == [("sha256", "video", "c")]


def _db_counts(config: list[str]) -> tuple[int, int]:
    settings = load_settings(Path(config[1]))
    with sqlite3.connect(settings.data_dir / "node.sqlite3") as conn:
        versions = conn.execute("SELECT count(*) FROM list_version").fetchone()[0]
        events = conn.execute("SELECT count(*) FROM audit_event").fetchone()[0]
    return int(versions), int(events)


SHIPPED = sorted(name for name in formats() if not name.startswith("test-"))  # every plug-in


@pytest.mark.parametrize("format_name", SHIPPED)
def test_empty_file_changes_nothing(tmp_path: Path, format_name: str) -> None:
    config = node_dir(tmp_path)
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    result = runner.invoke(app, ["list", "import", str(empty), "--format", format_name, *config])
    assert result.exit_code == 1, result.output
    assert "nothing to import: the file holds no records" in result.output
    assert "the lists are unchanged" in result.output
    assert _db_counts(config) == (0, 0)  # no list version, no audit event


def test_ncmec_status_document_changes_nothing(tmp_path: Path) -> None:
    config = node_dir(tmp_path)
    status = str(FIXTURES / "ncmec_status.xml")
    result = runner.invoke(app, ["list", "import", status, "--format", "ncmec", *config])
    assert result.exit_code == 1
    assert "status document" in result.output and "nothing to import" in result.output
    assert _db_counts(config) == (0, 0)


def test_all_records_bad_changes_nothing_and_prints_every_kept_reason(tmp_path: Path) -> None:
    config = node_dir(tmp_path)
    bad = tmp_path / "bad.txt"
    bad.write_text("".join(f"not-a-hash-{n}\n" for n in range(25)))
    result = runner.invoke(app, ["list", "import", str(bad), *config])
    assert result.exit_code == 1
    assert "all 25 records were rejected" in result.output
    assert "rejected records (first 20 of 25):" in result.output
    shown = [line for line in result.output.splitlines() if line.startswith("  line ")]
    assert [line.split(":")[0] for line in shown] == [f"  line {n}" for n in range(1, 21)]
    assert all("hex" in line for line in shown)  # the reason is printed with each record
    assert _db_counts(config) == (0, 0)


def test_some_bad_records_import_and_print_them_all(tmp_path: Path) -> None:
    config = node_dir(tmp_path)
    mixed = tmp_path / "mixed.csv"
    mixed.write_text(f"video_sha256,{SHA256}\nvpdq,{PDQ}\nmd5,xyz\n")
    result = runner.invoke(app, ["list", "import", str(mixed), "--format", "hma", *config])
    assert result.exit_code == 0, result.output
    assert "imported 1, duplicate 0, rejected 2" in result.output
    assert "rejected records (all):" in result.output
    # A bare PDQ is no vPDQ hash: refused with the parser's reason.
    assert "frame,quality,pdq,timestamp" in result.output and "line 3" in result.output


def test_store_refuses_a_file_of_rejects(engine: Engine) -> None:
    records: list[Record] = [RejectedRecord(1, "x", "bad")]
    with pytest.raises(NothingToImport) as info:
        import_records(engine, records, source="s", version="1", format_name="plain")
    assert info.value.summary.rejected == 1
    assert list_versions(engine) == []


def test_the_empty_file_test_covers_the_issue_12_formats() -> None:
    assert {"plain", "csv", "hma", "icse", "vics", "ncmec", "stopncii", "tcap"} <= set(SHIPPED)


def _generated(n: int, offset: int) -> Iterator[Record]:
    for i in range(n):
        yield ImportedRecord(HashFamily.MD5, f"{i + offset:032x}", i + 1, "label", "1")


def _peak_import(engine: Engine, n: int, source: str) -> int:
    tracemalloc.start()
    try:
        summary = import_records(
            engine, _generated(n, n * 10**6), source=source, version="1", format_name="plain"
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary.imported == n
    return peak


def test_store_memory_does_not_grow_with_the_file(engine: Engine) -> None:
    """Allocation peaks (not timings). 10x the records: a set of every value seen would
    cost ~5x the peak; SQLAlchemy's statement cache and the garbage collector's rhythm
    leave some growth (measured 1.6x), so the bound is 3x."""
    _peak_import(engine, 2_000, "warm-up")  # first-use caches (SQL compilation) out of the way
    small = _peak_import(engine, 4_000, "small")
    big = _peak_import(engine, 40_000, "big")
    assert big < small * 3, (small, big)
