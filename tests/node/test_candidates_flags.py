"""Flagged list entries: disabling one stops it matching (database index, persisted index,
video index); enabling brings it back; both audited; wrong states refused."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlmodel import Session

from node import audit
from node.discovery.flags import (
    FlagError,
    disable,
    enable,
    entry_row,
    list_flags,
    record_rejected_hits,
)
from node.discovery.models import EntryFlag
from node.lists import ImportedRecord, import_records
from node.lists.base import Media, VideoFamily
from node.matching.index import persist
from node.matching.matcher import MatchIndex
from node.matching.video_lists import video_index_from_db
from node.matching.vpdq import Frame
from node.matching.vpdq_text import format_pytx
from tests.node.candidates_kit import T0, add_entries, keyed_engine
from tests.node.conftest import flip_bits, image_hashes, rand_hex


def test_disable_stops_matching_and_enable_restores_it(tmp_path: Path) -> None:
    engine, key = keyed_engine(tmp_path)
    rng = random.Random(20)
    pdq = [rand_hex(rng, 256) for _ in range(3)]
    ids = add_entries(engine, "pdq", pdq)
    directory = tmp_path / "index"
    persist.current(engine, directory, key)
    stamp = persist.db_stamp(engine)
    near = image_hashes(rng, pdq=flip_bits(pdq[1], [3, 9]))
    assert MatchIndex.from_db(engine).best(near).entry_id == ids[1]  # type: ignore[union-attr]

    disable(engine, ids[1], "ana", "matches holiday photos", now=T0)
    assert MatchIndex.from_db(engine).best(near) is None
    assert persist.db_stamp(engine) != stamp
    # The persisted index sees the change: rebuilt from the lists, without the entry.
    assert persist.current(engine, directory, key).best(near) is None
    loaded = persist.load(directory, key)
    assert loaded is not None and loaded[1] == persist.db_stamp(engine)
    other = image_hashes(rng, pdq=pdq[0])
    assert loaded[0].best(other).entry_id == ids[0]  # type: ignore[union-attr]

    disabled_stamp = persist.db_stamp(engine)
    before = persist.load(directory, key)
    enable(engine, ids[1], "bob", "fixed upstream")
    assert persist.db_stamp(engine) not in (disabled_stamp, "")
    row = entry_row(engine, ids[1])
    assert row is not None
    index = persist.apply_change(engine, directory, key, before, disabled_stamp, added=[row])
    assert index.best(near).entry_id == ids[1]  # type: ignore[union-attr]
    assert MatchIndex.from_db(engine).best(near).entry_id == ids[1]  # type: ignore[union-attr]

    # Disabling the same entry again is a new change: the stamp differs once more.
    enabled_stamp = persist.db_stamp(engine)
    disable(engine, ids[1], "ana", "again")
    assert persist.db_stamp(engine) not in (enabled_stamp, disabled_stamp)

    actions = [(e.action, e.actor, e.subject) for e in audit.entries(engine, "entry.")]
    assert actions == [
        ("entry.disable", "ana", f"list_entry:{ids[1]}"),
        ("entry.enable", "bob", f"list_entry:{ids[1]}"),
        ("entry.disable", "ana", f"list_entry:{ids[1]}"),
    ]


def test_a_disabled_video_entry_is_not_in_the_video_index(tmp_path: Path) -> None:
    engine, _ = keyed_engine(tmp_path)
    rng = random.Random(21)
    frames = [Frame(n, float(n), rand_hex(rng, 256), 90) for n in range(3)]
    import_records(
        engine,
        [ImportedRecord(VideoFamily.VPDQ, format_pytx(frames), 1, media=Media.VIDEO)],
        source="videos",
        version="1",
        format_name="vpdq",
    )
    assert video_index_from_db(engine) is not None
    disable(engine, 1, "ana", "bad video entry")
    assert video_index_from_db(engine) is None
    enable(engine, 1, "ana", "checked")
    assert video_index_from_db(engine) is not None


def test_wrong_states_and_unknown_entries_are_refused(tmp_path: Path) -> None:
    engine, _ = keyed_engine(tmp_path)
    (entry,) = add_entries(engine, "md5", ["0" * 32])
    calls: tuple[tuple[Callable[[], object], str], ...] = (
        (lambda: enable(engine, entry, "ana", "why"), "wrong_state"),
        (lambda: disable(engine, 999, "ana", "why"), "not_found"),
        (lambda: disable(engine, entry, "ana", " "), "reason_required"),
    )
    for call, code in calls:
        with pytest.raises(FlagError) as info:
            call()
        assert info.value.code == code
    disable(engine, entry, "ana", "why")
    with pytest.raises(FlagError, match="already disabled"):
        disable(engine, entry, "ana", "why")
    assert len(audit.entries(engine, "entry.")) == 1


def test_rejected_hits_flag_at_the_threshold_and_list(tmp_path: Path) -> None:
    engine, _ = keyed_engine(tmp_path)
    a, b = add_entries(engine, "md5", ["1" * 32, "2" * 32])
    with Session(engine) as session, session.begin():
        assert record_rejected_hits(session, {a: 1, b: 1}, flag_after=2, actor="x", why="t") == []
    with Session(engine) as session, session.begin():
        flagged = record_rejected_hits(session, {a: 1, 999: 4}, flag_after=2, actor="x", why="t")
    assert flagged == [a]  # an unknown entry id is ignored
    rows = list_flags(engine)
    assert [(r.entry_id, r.rejected_hits, r.family, r.source) for r in rows] == [
        (a, 2, "md5", "known")
    ]
    assert [r.entry_id for r in list_flags(engine, everything=True)] == [a, b]
    with Session(engine) as session, session.begin():
        record_rejected_hits(session, {a: 5}, flag_after=2, actor="x", why="t")
    # Flagged once: later hits count, no second flag event.
    with Session(engine) as session:
        flag = session.get(EntryFlag, a)
    assert flag is not None and flag.rejected_hits == 7
    assert len(audit.entries(engine, "entry.flag")) == 1
