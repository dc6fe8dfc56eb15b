"""Issue 14 in the node's reports: discovery rows from the candidate table, counted once, and
the flood guard's held sightings kept out of the cells (node/federation/report_discovery.py)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from node.discovery.models import (
    CONFIRMED,
    DISCARDED,
    HELD,
    PENDING,
    REJECTED,
    RELEASED,
    Candidate,
    HeldSighting,
)
from node.federation.report_discovery import verdict_cycle
from node.federation.reporter import queue_report
from node.models import ListEntry, Sighting
from protocol.conformance_check import check_report
from protocol.keys import NodeKey
from protocol.models import HosterDiscovery, Report
from tests.node.test_reporter import DAY, FED_KEY, T0, add_cycle

_DE = ("DE", 64500, "Hoster A")
_NL = ("NL", 64501, "Hoster B")


def _candidate(
    engine: Engine,
    cycle_id: int,
    n: int,
    where: tuple[str, int, str] = _DE,
    *,
    state: str = PENDING,
    decided_at: datetime | None = None,
    cluster_id: int | None = None,
) -> int:
    with Session(engine) as session, session.begin():
        row = Candidate(
            state=state,
            cluster_id=cluster_id,
            first_cycle_id=cycle_id,
            last_cycle_id=cycle_id,
            url=f"http://a.test/new{n}.jpg",
            final_url=f"http://a.test/new{n}.jpg",
            page_url="http://a.test/gallery",
            host="a.test",
            country=where[0],
            asn=where[1],
            hoster=where[2],
            sha256=f"{n:064x}",
            decided_at=decided_at,
        )
        session.add(row)
        session.flush()
        assert row.id is not None
        return row.id


def _decide(engine: Engine, candidate_id: int, state: str, at: datetime) -> None:
    with Session(engine) as session, session.begin():
        row = session.get(Candidate, candidate_id)
        assert row is not None
        row.state, row.decided_at = state, at


def _report(engine: Engine, period: object = DAY, now: datetime | None = None) -> Report:
    queued = queue_report(
        engine,
        node_id="node-a",
        key=NodeKey.generate(),
        federation_key=FED_KEY,
        period=period,  # type: ignore[arg-type]
        now=now or T0 + timedelta(hours=20),
    )
    # What is signed is what the coordinator reads back, and passes the conformance checker.
    payload = queued.report.to_payload()
    assert Report.from_payload(payload) == queued.report
    check_report(json.loads(payload), queued.report.key_id)
    return queued.report


def _row(where: tuple[str, int, str], found: int, confirmed: int, rejected: int) -> HosterDiscovery:
    return HosterDiscovery(
        country=where[0],
        asn=where[1],
        hoster=where[2],
        candidates=found,
        confirmed=confirmed,
        rejected=rejected,
    )


def test_candidates_are_counted_once_with_the_cycle_that_found_them(engine: Engine) -> None:
    first = add_cycle(engine, T0, [])
    representative = _candidate(engine, first, 1)
    _candidate(engine, first, 2, cluster_id=representative)  # a near-duplicate: an image too
    _candidate(engine, first, 3, _NL)
    report = _report(engine)
    assert report.discovery == [_row(_DE, 2, 0, 0), _row(_NL, 1, 0, 0)]
    # Found again in a later cycle: the same row (times_seen), never counted again.
    second = add_cycle(engine, T0 + timedelta(hours=2), [])
    with Session(engine) as session, session.begin():
        for row in session.exec(select(Candidate)).all():
            row.last_cycle_id, row.times_seen = second, 2
    assert _report(engine).discovery == []


def test_verdicts_are_reported_with_the_first_cycle_started_after_them(engine: Engine) -> None:
    first = add_cycle(engine, T0, [])
    a = _candidate(engine, first, 1)
    b = _candidate(engine, first, 2)
    c = _candidate(engine, first, 3, _NL)
    assert _report(engine).discovery == [_row(_DE, 2, 0, 0), _row(_NL, 1, 0, 0)]
    # Verdicts after the first cycle started: no later cycle yet, so no report carries them,
    # however often the running period is reported.
    _decide(engine, a, CONFIRMED, T0 + timedelta(hours=1))
    _decide(engine, c, REJECTED, T0 + timedelta(hours=1, minutes=5))
    with Session(engine) as session:
        assert verdict_cycle(session, T0 + timedelta(hours=1)) is None
    assert _report(engine).discovery == []
    second = add_cycle(engine, T0 + timedelta(hours=3), [])
    with Session(engine) as session:
        assert verdict_cycle(session, T0 + timedelta(hours=1)) == second
    assert _report(engine).discovery == [_row(_DE, 0, 1, 0), _row(_NL, 0, 0, 1)]
    # A verdict after the second cycle started goes with the third; the report of the same
    # period built in between carries nothing twice.
    _decide(engine, b, REJECTED, T0 + timedelta(hours=4))
    assert _report(engine).discovery == []
    add_cycle(engine, T0 + timedelta(hours=5), [])
    assert _report(engine).discovery == [_row(_DE, 0, 0, 1)]
    assert _report(engine).discovery == []


def test_a_verdict_counts_where_the_candidate_was_found_and_in_its_own_row(engine: Engine) -> None:
    first = add_cycle(engine, T0, [])
    old = _candidate(engine, first, 1, _NL)
    _report(engine)
    _decide(engine, old, CONFIRMED, T0 + timedelta(minutes=30))
    second = add_cycle(engine, T0 + timedelta(hours=1), [])
    _candidate(engine, second, 2)
    # The NL row has a verdict but no new candidate; the DE row a candidate but no verdict.
    assert _report(engine).discovery == [_row(_DE, 1, 0, 0), _row(_NL, 0, 1, 0)]


def test_held_and_discarded_sightings_stay_out_of_the_cells(engine: Engine) -> None:
    urls = [f"http://a.test/{n}.png" for n in range(5)]
    add_cycle(engine, T0, [(url, *_DE, "md5") for url in urls])
    with Session(engine) as session, session.begin():
        entry = session.exec(select(ListEntry.id)).one()
        assert entry is not None
        ids = {s.final_url: s.id for s in session.exec(select(Sighting)).all()}
        for url, state in ((urls[0], HELD), (urls[1], DISCARDED), (urls[2], RELEASED)):
            sighting_id = ids[url]
            assert sighting_id is not None
            session.add(HeldSighting(sighting_id=sighting_id, entry_id=entry, state=state))
    report = _report(engine)
    (cell,) = report.cells
    # urls 2 (released), 3 and 4 are reported; the held one and the discarded one are not.
    assert (cell.matches, cell.distinct) == (3, 3)
    assert cell.methods is not None and cell.methods.direct == 3
    # Released after its cycle was reported: it stays out (the documented choice).
    with Session(engine) as session, session.begin():
        held = session.get(HeldSighting, ids[urls[0]])
        assert held is not None
        held.state = RELEASED
    add_cycle(engine, T0 + timedelta(hours=1), [])
    assert _report(engine).cells == []


def test_a_report_without_discovery_keeps_its_bytes(engine: Engine) -> None:
    add_cycle(engine, T0, [("http://a.test/1.png", *_DE, "md5")])
    report = _report(engine)
    assert report.discovery == []
    assert "discovery" not in json.loads(report.to_payload())
