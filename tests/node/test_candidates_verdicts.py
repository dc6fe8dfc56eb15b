"""Verdicts: a confirmation becomes list entries the next cycle matches; a rejection becomes
negative entries; a second verdict is refused and changes nothing; audit events."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlmodel import Session, col, select

from node import audit
from node.discovery.models import (
    CONFIRMED,
    PENDING,
    REJECTED,
    Candidate,
    EntryFlag,
    NegativeEntry,
)
from node.discovery.verdicts import SOURCE, VerdictError, confirm, reject
from node.matching.index import persist
from node.matching.matcher import MatchIndex
from node.models import ListEntry, ListVersion
from protocol.hashes import HashFamily
from tests.node.candidates_kit import add_candidate, add_cycle, add_entries, keyed_engine
from tests.node.conftest import flip_bits, image_hashes


def test_confirm_lists_the_cluster_and_the_next_index_matches_it(tmp_path: Path) -> None:
    engine, key = keyed_engine(tmp_path)
    rng = random.Random(3)
    cycle = add_cycle(engine)
    head = add_candidate(engine, cycle, rng, members=2)
    assert head.id is not None and head.pdq is not None
    member = add_candidate(
        engine, cycle, rng, cluster_id=head.id, pdq=flip_bits(head.pdq, [1, 2, 3])
    )
    directory = tmp_path / "index"
    persist.current(engine, directory, key)  # the index a cycle used before the verdict
    stale = persist.db_stamp(engine)

    verdict = confirm(engine, member.id or 0, "ana", "A1", "clearly material")

    assert verdict.candidate_id == head.id and verdict.state == CONFIRMED
    assert verdict.member_ids == [head.id, member.id]
    assert len(verdict.entry_ids) == 8  # 4 families x 2 images, none known before
    with Session(engine) as session:
        version = session.exec(select(ListVersion)).one()
        entries = session.exec(select(ListEntry).order_by(col(ListEntry.id))).all()
        rows = {c.id: c for c in session.exec(select(Candidate)).all()}
    assert (version.source, version.format, version.actor) == (SOURCE, SOURCE, "ana")
    assert version.version.endswith(f"-candidate-{head.id}") and version.imported == 8
    assert {e.label for e in entries} == {f"candidate:{head.id}"}
    assert {e.category for e in entries} == {"A1"} and {e.media for e in entries} == {"image"}
    assert {e.record for e in entries} == {1, 2}  # one record per image
    for row in rows.values():
        assert (row.state, row.decided_by, row.category) == (CONFIRMED, "ana", "A1")
        assert row.decision_reason == "clearly material" and row.decided_at is not None
        assert len(json.loads(row.entry_ids or "[]")) == 4
    # Encrypted at rest like any imported list.
    with engine.connect() as conn:
        stored = [r[0] for r in conn.exec_driver_sql("SELECT value FROM list_entry")]
    assert head.sha256 not in stored

    # The next cycle's index (from the database, and the persisted one) matches the image.
    probe = image_hashes(rng, sha256=head.sha256)
    assert MatchIndex.from_db(engine).best(probe).entry_id in verdict.entry_ids  # type: ignore[union-attr]
    near = image_hashes(rng, pdq=flip_bits(head.pdq, [40, 41]), pdq_quality=90)
    found = MatchIndex.from_db(engine).best(near)
    assert found is not None and found.family is HashFamily.PDQ
    assert persist.db_stamp(engine) != stale
    rebuilt = persist.current(engine, directory, key)
    assert rebuilt.best(near) is not None and rebuilt.best(probe) is not None

    events = [e for e in audit.entries(engine) if e.action in ("candidate.confirm", "list.import")]
    assert {e.action for e in events} == {"candidate.confirm", "list.import"}
    event = next(e for e in events if e.action == "candidate.confirm")
    assert event.subject == f"candidate:{head.id}" and event.actor == "ana"
    assert event.details["list_version_id"] == version.id and event.details["entries"] == 8


def test_confirm_updates_the_persisted_index_in_place(tmp_path: Path) -> None:
    engine, key = keyed_engine(tmp_path)
    rng = random.Random(4)
    cycle = add_cycle(engine)
    c = add_candidate(engine, cycle, rng)
    directory = tmp_path / "index"
    persist.current(engine, directory, key)
    before, stamp = persist.load(directory, key), persist.db_stamp(engine)
    verdict = confirm(engine, c.id or 0, "ana", "A1")
    persist.apply_change(engine, directory, key, before, stamp, added=verdict.added)
    loaded = persist.load(directory, key)
    assert loaded is not None and loaded[1] == persist.db_stamp(engine)
    assert loaded[0].best(image_hashes(rng, md5=c.md5)) is not None


def test_confirm_dedupes_known_hashes_and_skips_low_quality_pdq(tmp_path: Path) -> None:
    engine, _ = keyed_engine(tmp_path)
    rng = random.Random(5)
    cycle = add_cycle(engine)
    c = add_candidate(engine, cycle, rng, pdq_quality=20)
    known = add_entries(engine, "md5", [c.md5 or ""])
    verdict = confirm(engine, c.id or 0, "ana", "A2")
    assert verdict.duplicates == 1 and len(verdict.entry_ids) == 2  # sha256 + sha1
    with Session(engine) as session:
        families = session.exec(
            select(ListEntry.family).where(col(ListEntry.id).in_(verdict.entry_ids))
        ).all()
    assert sorted(families) == ["sha1", "sha256"] and known[0] not in verdict.entry_ids


def test_reject_adds_negative_entries_and_skips_known_ones(tmp_path: Path) -> None:
    engine, _ = keyed_engine(tmp_path)
    rng = random.Random(6)
    cycle = add_cycle(engine)
    head = add_candidate(engine, cycle, rng, members=2)
    member = add_candidate(engine, cycle, rng, cluster_id=head.id)
    with Session(engine) as session:
        session.add(NegativeEntry(family="md5", value=member.md5 or "", actor="bob"))
        session.commit()

    verdict = reject(engine, head.id or 0, "ana", "a holiday photo")

    assert verdict.state == REJECTED and verdict.negative_known == 1
    assert verdict.negative_added == 7
    with Session(engine) as session:
        negative = session.exec(select(NegativeEntry)).all()
        states = {c.state for c in session.exec(select(Candidate)).all()}
        entries = session.exec(select(ListEntry)).all()
    assert len(negative) == 8 and states == {REJECTED} and entries == []
    by_value: dict[tuple[str, str | None], NegativeEntry] = {
        (n.family, n.value): n for n in negative
    }
    assert by_value[("sha256", head.sha256)].candidate_id == head.id
    assert by_value[("pdq", member.pdq)].candidate_id == member.id
    assert by_value[("pdq", member.pdq)].reason == "a holiday photo"
    event = audit.entries(engine, "candidate.reject")[0]
    assert event.details["negative_added"] == 7 and event.reason == "a holiday photo"


def test_a_second_verdict_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    engine, _ = keyed_engine(tmp_path)
    rng = random.Random(7)
    cycle = add_cycle(engine)
    c = add_candidate(engine, cycle, rng)
    confirm(engine, c.id or 0, "ana", "A1")
    counts_before = _counts(engine)
    with pytest.raises(VerdictError, match="already confirmed by ana") as info:
        reject(engine, c.id or 0, "bob", "no")
    assert info.value.code == "already_decided"
    with pytest.raises(VerdictError) as again:
        confirm(engine, c.id or 0, "bob", "A2")
    assert again.value.code == "already_decided"
    assert _counts(engine) == counts_before
    with Session(engine) as session:
        row = session.get(Candidate, c.id)
    assert row is not None and (row.state, row.decided_by, row.category) == (
        CONFIRMED,
        "ana",
        "A1",
    )


def _counts(engine: object) -> tuple[int, int, int, int]:
    from sqlalchemy.engine import Engine

    assert isinstance(engine, Engine)
    with Session(engine) as session:
        return (
            len(session.exec(select(ListEntry)).all()),
            len(session.exec(select(ListVersion)).all()),
            len(session.exec(select(NegativeEntry)).all()),
            len(audit.entries(engine, "candidate.")),
        )


def test_bad_input_is_refused(tmp_path: Path) -> None:
    engine, _ = keyed_engine(tmp_path)
    rng = random.Random(8)
    c = add_candidate(engine, add_cycle(engine), rng)
    calls: tuple[tuple[Callable[[], object], str], ...] = (
        (lambda: confirm(engine, c.id or 0, "ana", "  "), "category_required"),
        (lambda: confirm(engine, c.id or 0, "ana", "x" * 101), "invalid"),
        (lambda: reject(engine, c.id or 0, "ana", ""), "reason_required"),
        (lambda: confirm(engine, 999, "ana", "A1"), "not_found"),
    )
    for call, code in calls:
        with pytest.raises(VerdictError) as info:
            call()
        assert info.value.code == code
    with Session(engine) as session:
        row = session.get(Candidate, c.id)
    assert row is not None and row.state == PENDING


def test_confirm_withdraws_an_older_rejection_of_the_same_hash(tmp_path: Path) -> None:
    engine, _ = keyed_engine(tmp_path)
    rng = random.Random(9)
    c = add_candidate(engine, add_cycle(engine), rng)
    with Session(engine) as session:
        session.add(NegativeEntry(family="sha256", value=c.sha256, actor="bob"))
        session.commit()
    verdict = confirm(engine, c.id or 0, "ana", "A1")
    assert verdict.negative_removed == 1
    with Session(engine) as session:
        assert session.exec(select(NegativeEntry)).all() == []


def test_reject_counts_against_matching_entries_and_flags_them(tmp_path: Path) -> None:
    engine, _ = keyed_engine(tmp_path)
    rng = random.Random(10)
    cycle = add_cycle(engine)
    pdq = f"{rng.getrandbits(256):064x}"
    (entry,) = add_entries(engine, "pdq", [pdq])
    index = MatchIndex.from_db(engine)
    flagged_on = []
    for n in range(3):
        c = add_candidate(engine, cycle, rng, pdq=flip_bits(pdq, [n, n + 10]))
        verdict = reject(engine, c.id or 0, "ana", "benign", flag_after=3, index=index)
        assert verdict.matched_entries == {entry: 1}
        flagged_on.append(verdict.flagged)
    assert flagged_on == [[], [], [entry]]
    # Without an index, PDQ is looked up by equal value only.
    c = add_candidate(engine, cycle, rng, pdq=flip_bits(pdq, [7]))
    assert reject(engine, c.id or 0, "ana", "benign").matched_entries == {}
    with Session(engine) as session:
        flag = session.get(EntryFlag, entry)
    assert flag is not None and flag.rejected_hits == 3 and flag.flagged_at is not None
    event = audit.entries(engine, "entry.flag")[0]
    assert event.subject == f"list_entry:{entry}" and event.details["rejected_hits"] == 3


def test_a_verdict_given_meanwhile_wins_and_the_later_one_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two analysts at once: the second read the cluster as pending before the first wrote.
    The state change is conditional, so the second is refused and rolled back whole."""
    from node.discovery import verdicts

    engine, _ = keyed_engine(tmp_path)
    rng = random.Random(11)
    c = add_candidate(engine, add_cycle(engine), rng)
    read = verdicts._pending_cluster
    raced: list[bool] = []

    def read_then_race(session: Session, candidate_id: int) -> list[Candidate]:
        rows = read(session, candidate_id)
        if not raced:
            raced.append(True)
            confirm(engine, candidate_id, "ana", "A1")  # another connection, committed
        return rows

    monkeypatch.setattr(verdicts, "_pending_cluster", read_then_race)
    with pytest.raises(VerdictError, match="decided meanwhile") as info:
        reject(engine, c.id or 0, "bob", "no")
    assert info.value.code == "already_decided"
    with Session(engine) as session:
        row = session.get(Candidate, c.id)
        negative = session.exec(select(NegativeEntry)).all()
    assert row is not None and (row.state, row.decided_by) == (CONFIRMED, "ana")
    assert negative == [] and len(audit.entries(engine, "candidate.")) == 1
