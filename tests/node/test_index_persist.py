"""The persisted match index: encrypted, stamped, incremental, rebuilt when stale or damaged."""

from __future__ import annotations

import json
import logging
import random
import struct
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from node.db import make_engine
from node.keys.list_encryption import ListKey, ListKeyError, create_list_key
from node.lists import ImportedRecord, import_records, remove_version
from node.matching.index import IndexFormatError, persist
from protocol.hashes import HashFamily
from tests.node.conftest import rand_hex


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Engine, ListKey, Path]:
    key = create_list_key(tmp_path / "lists.key")
    return make_engine(f"sqlite:///{tmp_path / 'n.sqlite3'}", key), key, tmp_path / "index"


def add(engine: Engine, values: list[str], family: HashFamily = HashFamily.PDQ) -> int:
    records = [ImportedRecord(family, v, n + 1) for n, v in enumerate(values)]
    return import_records(engine, records, source="t", version="1", format_name="t").list_version_id


def test_round_trip_and_encryption(setup: tuple[Engine, ListKey, Path]) -> None:
    engine, key, directory = setup
    rng = random.Random(1)
    pdq = [rand_hex(rng, 256) for _ in range(30)]
    md5 = [rand_hex(rng, 128) for _ in range(5)]
    add(engine, pdq)
    add(engine, md5, HashFamily.MD5)
    built = persist.current(engine, directory, key)
    blob = (directory / persist.INDEX_FILE).read_bytes()
    assert bytes.fromhex(pdq[0]) not in blob and bytes.fromhex(md5[0]) not in blob
    loaded = persist.load(directory, key)
    assert loaded is not None and loaded[1] == persist.db_stamp(engine)
    index = loaded[0]
    assert index.counts() == built.counts()
    assert index.lookup(HashFamily.MD5, [md5[2]])[0][0].entry_id == 33
    assert index.lookup(HashFamily.PDQ, [pdq[4]])[0][0].entry_id == 5
    with pytest.raises(ListKeyError):
        persist.load(directory, ListKey(b"\x09" * 32))


def test_incremental_update_after_import_and_remove(setup: tuple[Engine, ListKey, Path]) -> None:
    engine, key, directory = setup
    rng = random.Random(2)
    first = [rand_hex(rng, 256) for _ in range(10)]
    add(engine, first)
    persist.current(engine, directory, key)
    before = persist.load(directory, key)
    stamp = persist.db_stamp(engine)
    second = [rand_hex(rng, 256) for _ in range(4)]
    version = add(engine, second)
    index = persist.apply_change(
        engine, directory, key, before, stamp, added=persist.version_entries(engine, version)
    )
    assert index.lookup(HashFamily.PDQ, [second[0]])[0][0].entry_id == 11
    loaded = persist.load(directory, key)
    assert loaded is not None and loaded[1] == persist.db_stamp(engine)
    before, stamp = loaded, persist.db_stamp(engine)
    ids = [i for i, _, _ in persist.version_entries(engine, version)]
    remove_version(engine, version)
    index = persist.apply_change(engine, directory, key, before, stamp, removed=ids)
    assert index.lookup(HashFamily.PDQ, [second[0]]) == [[]]
    assert persist.current(engine, directory, key).counts()[HashFamily.PDQ] == 10


def test_stale_or_damaged_file_is_rebuilt(setup: tuple[Engine, ListKey, Path]) -> None:
    engine, key, directory = setup
    rng = random.Random(3)
    add(engine, [rand_hex(rng, 256) for _ in range(5)])
    persist.current(engine, directory, key)
    extra = rand_hex(rng, 256)
    add(engine, [extra])  # the file is now stale
    assert persist.current(engine, directory, key).lookup(HashFamily.PDQ, [extra])[0]
    path = directory / persist.INDEX_FILE
    path.write_bytes(key.encrypt_blob(b"LIBRAIDX garbage", persist.CONTEXT))
    assert persist.current(engine, directory, key).counts()[HashFamily.PDQ] == 6


def test_older_format_is_rebuilt_with_a_warning(
    setup: tuple[Engine, ListKey, Path], caplog: pytest.LogCaptureFixture
) -> None:
    engine, key, directory = setup
    rng = random.Random(4)
    values = [rand_hex(rng, 256) for _ in range(8)]
    add(engine, values)
    stamp = persist.db_stamp(engine)
    head = json.dumps({"version": 1, "stamp": stamp, "sections": []}).encode()
    old = persist.MAGIC + struct.pack("<I", len(head)) + head  # a format-1 file, same stamp
    directory.mkdir(parents=True)
    (directory / persist.INDEX_FILE).write_bytes(key.encrypt_blob(old, persist.CONTEXT))
    with caplog.at_level(logging.WARNING):
        index = persist.current(engine, directory, key)
    expected = f"not used (match index format 1 (expected {persist.FORMAT_VERSION})): rebuilding"
    assert expected in caplog.text
    assert index.lookup(HashFamily.PDQ, [values[3]])[0][0].entry_id == 4
    loaded = persist.load(directory, key)  # rewritten in the current format
    assert loaded is not None and loaded[0].counts()[HashFamily.PDQ] == 8


def test_sections_are_aligned_so_loading_copies_nothing(
    setup: tuple[Engine, ListKey, Path],
) -> None:
    engine, key, directory = setup
    rng = random.Random(5)
    add(engine, [rand_hex(rng, 64) for _ in range(7)], HashFamily.PHASH)
    add(engine, [rand_hex(rng, 128) for _ in range(3)], HashFamily.MD5)
    add(engine, [rand_hex(rng, 256) for _ in range(5)])
    persist.current(engine, directory, key)
    plain = key.decrypt_blob((directory / persist.INDEX_FILE).read_bytes(), persist.CONTEXT)
    index, _ = persist.decode(plain)
    for table in index.hamming_tables.values():
        if table.codes.shape[0]:
            # Read-only: views on the decrypted bytes (an aligned copy would be writeable).
            assert not table.codes.flags.writeable and not table.fps.flags.writeable
            assert not table.offsets.flags.writeable and not table.rows.flags.writeable


def test_exact_digests_are_searched_in_place(setup: tuple[Engine, ListKey, Path]) -> None:
    """Exact sections load as views on the decrypted file (no per-entry dict), and digests
    with leading or trailing zero bytes (which numpy's bytes dtype pads with) still match
    exactly."""
    engine, key, directory = setup
    rng = random.Random(6)
    md5 = ["00" * 16, "00" * 15 + "01", "01" + "00" * 15, "ff" * 16]
    md5 += [rand_hex(rng, 128) for _ in range(20)]
    sha1 = [rand_hex(rng, 160) for _ in range(7)]  # 20 bytes: the ids come first, aligned
    add(engine, md5, HashFamily.MD5)
    add(engine, sha1, HashFamily.SHA1)
    persist.current(engine, directory, key)
    loaded = persist.load(directory, key)
    assert loaded is not None
    index = loaded[0]
    for table in index.exact_tables.values():
        assert not table.digests.flags.writeable and not table.ids.flags.writeable
        assert table.ids.flags.aligned
    found = index.lookup(HashFamily.MD5, [*md5[:4], "00" * 14 + "0100", "ff" * 15 + "fe"])
    assert [[m.entry_id for m in hits] for hits in found] == [[1], [2], [3], [4], [], []]
    assert index.lookup(HashFamily.SHA1, [sha1[6]])[0][0].entry_id == 25 + 6
    assert index.counts()[HashFamily.MD5] == 24 and index.counts()[HashFamily.SHA1] == 7


def test_changes_to_a_loaded_exact_table_persist(setup: tuple[Engine, ListKey, Path]) -> None:
    engine, key, directory = setup
    rng = random.Random(7)
    first = [rand_hex(rng, 128) for _ in range(6)]
    add(engine, first, HashFamily.MD5)
    persist.current(engine, directory, key)
    before, stamp = persist.load(directory, key), persist.db_stamp(engine)
    second = [rand_hex(rng, 128) for _ in range(3)]
    version = add(engine, second, HashFamily.MD5)
    persist.apply_change(
        engine, directory, key, before, stamp, added=persist.version_entries(engine, version)
    )
    before, stamp = persist.load(directory, key), persist.db_stamp(engine)
    remove_version(engine, 1)
    index = persist.apply_change(engine, directory, key, before, stamp, removed=[1, 2, 3, 4, 5, 6])
    found = index.lookup(HashFamily.MD5, [first[0], second[0]])
    assert [[m.entry_id for m in hits] for hits in found] == [[], [7]]
    loaded = persist.load(directory, key)
    assert loaded is not None
    table = loaded[0].exact_tables[HashFamily.MD5]
    assert sorted(table.items()) == sorted(zip(second, [7, 8, 9], strict=True))
    assert loaded[0].lookup(HashFamily.MD5, [first[1]]) == [[]]


def test_tampered_file_is_refused_and_rebuilt(
    setup: tuple[Engine, ListKey, Path], caplog: pytest.LogCaptureFixture
) -> None:
    engine, key, directory = setup
    rng = random.Random(8)
    values = [rand_hex(rng, 256) for _ in range(5)]
    add(engine, values)
    persist.current(engine, directory, key)
    path = directory / persist.INDEX_FILE
    blob = bytearray(path.read_bytes())
    blob[-20] ^= 0x80
    path.write_bytes(bytes(blob))
    with pytest.raises(ListKeyError):
        persist.load(directory, key)
    with caplog.at_level(logging.WARNING):
        index = persist.current(engine, directory, key)
    assert "match index file refused: it fails its integrity check" in caplog.text
    assert index.lookup(HashFamily.PDQ, [values[2]])[0][0].entry_id == 3
    assert persist.load(directory, key) is not None  # rewritten


def test_an_unsorted_exact_section_is_refused(setup: tuple[Engine, ListKey, Path]) -> None:
    """Only our own key can write the file, but a bug must not become wrong answers: the
    binary search needs sorted digests, so a section that is not is an IndexFormatError."""
    engine, key, directory = setup
    add(engine, ["11" * 16, "22" * 16], HashFamily.MD5)
    index = persist.current(engine, directory, key)
    plain = persist.encode(index, persist.db_stamp(engine))
    ids = struct.pack("<qq", 1, 2)
    good = ids + bytes.fromhex("11" * 16 + "22" * 16)
    assert plain.count(good) == 1
    bad = plain.replace(good, ids + bytes.fromhex("22" * 16 + "11" * 16))
    with pytest.raises(IndexFormatError, match="md5 section: exact digests are not strictly"):
        persist.decode(bad)
