"""Retention of discovery records: decided candidates after their verdict, pending ones after
they were last seen, clusters as one, unreported cycles kept, negative entries kept (their link
to the candidate cleared), decided flood-guard holds; each erasure audited."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

from sqlmodel import Session, col, select

from node import audit
from node.config import RetentionSettings
from node.discovery.models import (
    CONFIRMED,
    DISCARDED,
    HELD,
    REJECTED,
    Candidate,
    HeldSighting,
    NegativeEntry,
)
from node.models import Sighting
from node.retention import RULES, run_retention
from tests.node.candidates_kit import (
    T0,
    add_candidate,
    add_cycle,
    add_entries,
    add_sightings,
    keyed_engine,
)

NOW = T0 + timedelta(days=1000)
SETTINGS = RetentionSettings(candidates_days=180, pending_candidates_days=365)
RULE_NAMES = ["candidates_decided", "candidates_pending", "held_sightings"]


def _ids(engine: object) -> set[int]:
    from sqlalchemy.engine import Engine

    assert isinstance(engine, Engine)
    with Session(engine) as session:
        return {int(i) for i in session.exec(select(Candidate.id)) if i is not None}


def test_rules_are_registered() -> None:
    assert set(RULE_NAMES) <= set(RULES)


def test_candidates_are_erased_after_their_times(tmp_path: Path) -> None:
    engine, _ = keyed_engine(tmp_path)
    rng = random.Random(40)
    reported = add_cycle(engine, T0, reported=True)
    unreported = add_cycle(engine, T0 + timedelta(hours=1))
    old = NOW - timedelta(days=400)
    recent = NOW - timedelta(days=10)
    # Pending: last seen 400 days ago (past 365) -> erased; recently seen -> kept.
    stale = add_candidate(engine, reported, rng, seen=old)
    fresh = add_candidate(engine, reported, rng, seen=recent)
    # A pending cluster whose member was seen recently is kept whole.
    head = add_candidate(engine, reported, rng, seen=old, members=2)
    member = add_candidate(engine, reported, rng, seen=recent, cluster_id=head.id)
    # Decided 200 days ago (past 180) -> erased with its member; decided recently -> kept.
    gone = add_candidate(
        engine, reported, rng, state=REJECTED, decided_at=NOW - timedelta(days=200), seen=recent
    )
    gone_member = add_candidate(
        engine,
        reported,
        rng,
        state=REJECTED,
        decided_at=NOW - timedelta(days=200),
        cluster_id=gone.id,
    )
    kept = add_candidate(engine, reported, rng, state=CONFIRMED, decided_at=recent, seen=old)
    # Its first cycle was never reported: kept whatever its age.
    waiting = add_candidate(engine, unreported, rng, seen=old)
    with Session(engine) as session:
        for c in (gone, gone_member):
            session.add(
                NegativeEntry(family="sha256", value=c.sha256, candidate_id=c.id, actor="a")
            )
        session.commit()

    dry = run_retention(engine, SETTINGS, now=NOW, dry_run=True, only=RULE_NAMES)
    assert {r.rule: r.count for r in dry} == {
        "candidates_decided": 2,
        "candidates_pending": 1,
        "held_sightings": 0,
    }
    assert len(_ids(engine)) == 8

    run_retention(engine, SETTINGS, now=NOW, actor="ops", only=RULE_NAMES)

    assert _ids(engine) == {c.id for c in (fresh, head, member, kept, waiting)}
    assert stale.id not in _ids(engine)
    with Session(engine) as session:
        negative = session.exec(select(NegativeEntry)).all()
    # The rejected hashes stay on the negative list; only the link to the candidate goes.
    assert sorted(n.value for n in negative) == sorted([gone.sha256, gone_member.sha256])
    assert {n.candidate_id for n in negative} == {None}
    events = {e.subject: e for e in audit.entries(engine, "retention.erase")}
    assert events["candidates_decided"].details["count"] == 2
    assert events["candidates_pending"].details["count"] == 1
    assert events["candidates_decided"].actor == "ops"
    assert gone.url not in str(events["candidates_decided"].details)


def test_zero_days_keeps_candidates_forever(tmp_path: Path) -> None:
    engine, _ = keyed_engine(tmp_path)
    rng = random.Random(41)
    cycle = add_cycle(engine, T0, reported=True)
    add_candidate(engine, cycle, rng, seen=T0)
    forever = RetentionSettings(candidates_days=0, pending_candidates_days=0)
    results = run_retention(engine, forever, now=NOW, only=RULE_NAMES[:2])
    assert [r.count for r in results] == [0, 0] and len(_ids(engine)) == 1


def test_decided_holds_are_erased_and_their_sightings_follow(tmp_path: Path) -> None:
    engine, _ = keyed_engine(tmp_path)
    (entry,) = add_entries(engine, "md5", ["3" * 32])
    cycle = add_cycle(engine, T0, reported=True)
    decided, waiting = add_sightings(engine, cycle, entry, 2)
    with Session(engine) as session:
        session.add(
            HeldSighting(
                sighting_id=decided,
                entry_id=entry,
                state=DISCARDED,
                held_at=T0,
                decided_at=T0 + timedelta(days=1),
                decided_by="ana",
            )
        )
        session.add(HeldSighting(sighting_id=waiting, entry_id=entry, state=HELD, held_at=T0))
        session.commit()
    # Sightings are kept 365 days; the holds as long. A sighting a hold refers to waits for it.
    first = run_retention(
        engine, RetentionSettings(), now=NOW, only=["sightings", "held_sightings"]
    )
    assert {r.rule: r.count for r in first} == {"sightings": 0, "held_sightings": 1}
    second = run_retention(engine, RetentionSettings(), now=NOW, only=["sightings"])
    assert second[0].count == 1
    with Session(engine) as session:
        left = session.exec(select(Sighting.id)).all()
        holds = session.exec(select(HeldSighting.sighting_id)).all()
        candidates_left = session.exec(select(Candidate).where(col(Candidate.id) > 0)).all()
    # The still-held sighting stays until an analyst decides.
    assert list(left) == [waiting] and list(holds) == [waiting] and candidates_left == []
