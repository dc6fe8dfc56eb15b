"""The candidate queue: ordering, filters, one candidate's evidence (hashes only on request)."""

from __future__ import annotations

import json
import random
from datetime import timedelta
from pathlib import Path

import pytest

from node import audit
from node.discovery.models import CONFIRMED
from node.discovery.queue import (
    Filters,
    QueueError,
    candidate_detail,
    consulted,
    list_candidates,
)
from tests.node.candidates_kit import T0, add_candidate, add_cycle, keyed_engine


def test_ordering_and_filters(tmp_path: Path) -> None:
    engine, _ = keyed_engine(tmp_path)
    rng = random.Random(1)
    cycle = add_cycle(engine)
    low = add_candidate(engine, cycle, rng, score=45)
    old_top = add_candidate(engine, cycle, rng, score=80, seen=T0)
    new_top = add_candidate(engine, cycle, rng, score=80, seen=T0 + timedelta(hours=1))
    other = add_candidate(
        engine, cycle, rng, score=70, host="b.test", hoster="Hoster B", country="NL"
    )
    member = add_candidate(engine, cycle, rng, score=90, cluster_id=new_top.id)
    done = add_candidate(engine, cycle, rng, score=99, state=CONFIRMED, decided_at=T0)

    ids = [r["id"] for r in list_candidates(engine)]
    # Score first, then the most recently seen; members and decided ones left out.
    assert ids == [new_top.id, old_top.id, other.id, low.id]
    assert next(r["id"] for r in list_candidates(engine, Filters(members=True))) == member.id
    assert next(r["id"] for r in list_candidates(engine, Filters(state=None))) == done.id
    assert [r["id"] for r in list_candidates(engine, Filters(state=CONFIRMED))] == [done.id]
    assert [r["id"] for r in list_candidates(engine, Filters(host="B.test"))] == [other.id]
    assert [r["id"] for r in list_candidates(engine, Filters(hoster="Hoster B"))] == [other.id]
    assert [r["id"] for r in list_candidates(engine, Filters(country="nl"))] == [other.id]
    assert [r["id"] for r in list_candidates(engine, Filters(min_score=75))] == [
        new_top.id,
        old_top.id,
    ]
    assert [r["id"] for r in list_candidates(engine, Filters(limit=2, offset=1))] == [
        old_top.id,
        other.id,
    ]
    # Queue rows carry no hash value.
    row = list_candidates(engine)[0]
    assert not {"sha256", "md5", "sha1", "pdq", "hashes"} & set(row)


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        (Filters(state="maybe"), "state must be one of"),
        (Filters(limit=0), "limit must be"),
        (Filters(offset=-1), "offset"),
        (Filters(min_score=101), "min score"),
    ],
)
def test_bad_filters_are_named(tmp_path: Path, filters: Filters, message: str) -> None:
    engine, _ = keyed_engine(tmp_path)
    with pytest.raises(QueueError, match=message) as info:
        list_candidates(engine, filters)
    assert info.value.code == "invalid_filter"


def test_show_gives_evidence_and_hashes_only_on_request(tmp_path: Path) -> None:
    engine, _ = keyed_engine(tmp_path)
    rng = random.Random(2)
    cycle = add_cycle(engine)
    head = add_candidate(engine, cycle, rng, score=70, members=2)
    member = add_candidate(engine, cycle, rng, score=50, cluster_id=head.id)
    assert head.id is not None and member.id is not None

    plain = candidate_detail(engine, head.id)
    text = json.dumps(plain)
    for value in (head.sha256, head.md5, head.sha1, head.pdq, member.sha256):
        assert value is not None and value not in text
    assert plain["url"] == head.url and plain["page_url"] == head.page_url
    assert plain["final_url"] == head.final_url and plain["host"] == "a.test"
    assert (plain["hoster"], plain["asn"], plain["country"]) == ("Hoster A", 64500, "DE")
    assert (plain["width"], plain["height"], plain["format"]) == (640, 480, "JPEG")
    assert plain["pdq_quality"] == 90 and plain["times_seen"] == 1
    assert plain["reasons"][0]["signal"] == "same_page"
    assert [m["url"] for m in plain["cluster"]] == [head.url, member.url]
    assert "hashes" not in plain

    full = candidate_detail(engine, head.id, hashes=True)
    assert full["hashes"]["sha256"] == head.sha256
    assert full["cluster"][1]["hashes"]["pdq"] == member.pdq
    # A member shows its representative and the same cluster.
    of_member = candidate_detail(engine, member.id)
    assert of_member["representative_id"] == head.id
    assert len(of_member["cluster"]) == 2

    with pytest.raises(QueueError, match="does not exist") as info:
        candidate_detail(engine, 999)
    assert info.value.code == "not_found"


def test_consultation_is_audited(tmp_path: Path) -> None:
    engine, _ = keyed_engine(tmp_path)
    consulted(engine, "candidate:4", actor="ana", via="show CLI", details={"hashes": True})
    event = audit.entries(engine, "candidate.consult")[0]
    assert (event.actor, event.subject, event.details) == ("ana", "candidate:4", {"hashes": True})
