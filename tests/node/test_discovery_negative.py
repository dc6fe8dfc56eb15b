"""The negative list in memory (node.discovery.negative): exact digests, PDQ within the
cluster distance (quality >= 50), loaded from NegativeEntry rows through the list key."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from sqlmodel import Session

from node.db import make_engine
from node.discovery import negative
from node.discovery.models import NegativeEntry
from node.discovery.negative import NegativeIndex
from node.keys.list_encryption import ListKey

from .conftest import flip_bits, image_hashes, rand_hex


def test_exact_families_suppress() -> None:
    rng = random.Random(1)
    listed = image_hashes(rng)
    index = NegativeIndex(
        [("sha256", listed.sha256.upper()), ("md5", "aa" * 16), ("sha1", "bb" * 20)]
    )
    assert len(index) == 3
    assert index.suppresses(listed)
    assert index.suppresses(image_hashes(rng, md5="AA" * 16))
    assert index.suppresses(image_hashes(rng, sha1="bb" * 20))
    assert not index.suppresses(image_hashes(rng))


@pytest.mark.parametrize("index_from", [0, 4096], ids=["index", "numpy"])
def test_pdq_within_the_cluster_distance_and_good_quality(
    index_from: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(negative, "INDEX_FROM", index_from)
    rng = random.Random(2)
    pdq = rand_hex(rng, 256)
    index = NegativeIndex([("pdq", pdq), ("phash", rand_hex(rng, 64))], max_distance=16)
    near = flip_bits(pdq, list(range(16)))
    far = flip_bits(pdq, list(range(17)))
    batch = [
        image_hashes(rng, pdq=near),
        image_hashes(rng, pdq=far),
        image_hashes(rng, pdq=near, pdq_quality=49),  # low quality: never by PDQ
        image_hashes(rng, pdq=pdq),
    ]
    assert index.suppressed_many(batch) == [True, False, False, True]
    assert NegativeIndex([("pdq", pdq)], max_distance=20).suppresses(batch[1])


def test_empty_index_suppresses_nothing() -> None:
    index = NegativeIndex([])
    assert len(index) == 0
    assert index.suppressed_many([image_hashes(random.Random(3))]) == [False]
    assert index.suppressed_many([]) == []


def test_bad_values_and_distance_are_refused() -> None:
    with pytest.raises(ValueError, match="64 hex digits"):
        NegativeIndex([("pdq", "abc")])
    with pytest.raises(ValueError, match=r"a PDQ distance is 0\.\.256"):
        NegativeIndex([], max_distance=-1)


def test_from_db_reads_encrypted_rows(tmp_path: Path) -> None:
    key = ListKey(b"\x07" * 32)
    engine = make_engine(f"sqlite:///{tmp_path / 'node.sqlite3'}", key)
    rng = random.Random(4)
    rejected = image_hashes(rng)
    try:
        with Session(engine) as session, session.begin():
            session.add(NegativeEntry(family="sha256", value=rejected.sha256, actor="analyst"))
            session.add(NegativeEntry(family="pdq", value=rejected.pdq, actor="analyst"))
        with engine.connect() as conn:  # stored encrypted, not in clear
            stored = [r[0] for r in conn.exec_driver_sql("SELECT value FROM negative_entry")]
        assert rejected.sha256 not in stored and rejected.pdq not in stored
        index = NegativeIndex.from_db(engine, max_distance=8)
        assert len(index) == 2
        assert index.suppresses(image_hashes(rng, sha256=rejected.sha256))
        assert index.suppresses(image_hashes(rng, pdq=flip_bits(rejected.pdq, [1, 2, 3])))
        assert not index.suppresses(image_hashes(rng))
    finally:
        engine.dispose()
