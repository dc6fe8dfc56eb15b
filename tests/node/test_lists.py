from __future__ import annotations

import io
import random
from collections.abc import Iterator
from typing import BinaryIO, TextIO

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from node.lists import (
    ImportedRecord,
    Record,
    RejectedRecord,
    UnknownFormat,
    entry_count,
    formats,
    get_importer,
    import_list,
    import_records,
    register,
)
from node.lists.base import text_stream
from node.models import ListEntry, ListVersion
from protocol.hashes import HashFamily
from tests.node.conftest import rand_hex

RNG = random.Random(7)
MD5 = rand_hex(RNG, 128)
SHA1 = rand_hex(RNG, 160)
SHA256 = rand_hex(RNG, 256)
PDQ = rand_hex(RNG, 256)


def records(text: str, algorithm: HashFamily | None = None) -> list[Record]:
    return list(get_importer("plain", algorithm).records(io.StringIO(text)))


def test_plain_reads_families_from_length_and_skips_comments() -> None:
    text = f"# a comment\n\n{MD5.upper()}\n  {SHA1}  # trailing note\n"
    out = records(text)
    assert out == [
        ImportedRecord(HashFamily.MD5, MD5, 3),
        ImportedRecord(HashFamily.SHA1, SHA1, 4),
    ]


def test_plain_rejects_bad_lines_with_line_numbers() -> None:
    text = f"{MD5}\nnot-a-hash\n{SHA1}\n12345\n"
    out = records(text)
    rejected = [r for r in out if isinstance(r, RejectedRecord)]
    assert [r.line for r in rejected] == [2, 4]
    assert rejected[0].text == "not-a-hash"
    assert "hex" in rejected[0].reason
    assert [r.line for r in out if isinstance(r, ImportedRecord)] == [1, 3]


def test_plain_refuses_ambiguous_64_hex_without_algorithm() -> None:
    (only,) = records(SHA256 + "\n")
    assert isinstance(only, RejectedRecord)
    assert only.line == 1
    assert "--algorithm" in only.reason
    (pdq,) = records(PDQ + "\n", HashFamily.PDQ)
    assert pdq == ImportedRecord(HashFamily.PDQ, PDQ, 1)


def test_plain_forced_algorithm_rejects_wrong_length() -> None:
    out = records(f"{PDQ}\n{MD5}\n", HashFamily.SHA256)
    assert isinstance(out[0], ImportedRecord) and out[0].family is HashFamily.SHA256
    assert isinstance(out[1], RejectedRecord) and out[1].line == 2


def test_import_counts_duplicates_within_file_and_across_imports(engine: Engine) -> None:
    text = f"{MD5}\n{MD5}\n{SHA1}\nbad line\n"
    first = import_list(
        engine, get_importer("plain"), io.StringIO(text), source="a.txt", version="1"
    )
    assert (first.imported, first.duplicates, first.rejected) == (2, 1, 1)
    assert [r.line for r in first.first_rejected] == [4]
    second = import_list(
        engine,
        get_importer("plain"),
        io.StringIO(f"{SHA1}\n{rand_hex(RNG, 128)}\n"),
        source="b.txt",
        version="1",
        label="set-b",
    )
    assert (second.imported, second.duplicates, second.rejected) == (1, 1, 0)
    assert entry_count(engine) == {"md5": 2, "sha1": 1}
    with Session(engine) as session:
        versions = session.exec(select(ListVersion).order_by(col(ListVersion.id))).all()
        assert [(v.source, v.imported, v.duplicates, v.rejected) for v in versions] == [
            ("a.txt", 2, 1, 1),
            ("b.txt", 1, 1, 0),
        ]
        labelled = session.exec(select(ListEntry).where(ListEntry.label == "set-b")).all()
        assert len(labelled) == 1 and labelled[0].list_version_id == versions[1].id


def test_import_is_one_transaction(engine: Engine) -> None:
    def exploding() -> Iterator[ImportedRecord | RejectedRecord]:
        for i in range(2500):  # more than one insert batch goes to the database first
            yield ImportedRecord(HashFamily.MD5, f"{i:032x}", i + 1)
        raise OSError("disk went away")

    with pytest.raises(OSError, match="disk went away"):
        import_records(engine, exploding(), source="x", version="1", format_name="plain")
    assert entry_count(engine) == {}
    with Session(engine) as session:
        assert session.exec(select(ListVersion)).all() == []


def test_large_import_in_batches(engine: Engine) -> None:
    values = [f"{i:032x}" for i in range(3000)]
    summary = import_list(
        engine,
        get_importer("plain"),
        io.StringIO("\n".join(values + values[:10])),
        source="big",
        version="1",
    )
    assert (summary.imported, summary.duplicates) == (3000, 10)
    assert entry_count(engine) == {"md5": 3000}


def test_registry_plugins() -> None:
    assert "plain" in formats()
    with pytest.raises(UnknownFormat):
        get_importer("nope")

    class Upper:
        name = "test-upper"

        def records(self, stream: BinaryIO | TextIO) -> Iterator[ImportedRecord | RejectedRecord]:
            for n, line in enumerate(text_stream(stream), 1):
                yield ImportedRecord(HashFamily.MD5, line.strip().lower(), n)

    register("test-upper", lambda algorithm: Upper())
    with pytest.raises(ValueError, match="already registered"):
        register("test-upper", lambda algorithm: Upper())
    assert list(get_importer("test-upper").records(io.StringIO(MD5.upper()))) == [
        ImportedRecord(HashFamily.MD5, MD5, 1)
    ]
