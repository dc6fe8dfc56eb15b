from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from datasketches import hll_sketch, hll_union
from nacl.signing import VerifyKey
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from node.db import make_engine
from node.federation import reporter
from node.federation.reporter import pending_periods, period_containing, queue_report
from node.models import (
    CrawlCycle,
    HostPages,
    ListEntry,
    ListVersion,
    NodeState,
    OutboxItem,
    Sighting,
)
from protocol import REPORT_PAYLOAD_TYPE
from protocol.dsse import parse_envelope, verify
from protocol.errors import UnknownKey
from protocol.hashes import HashFamily
from protocol.keys import NodeKey
from protocol.models import Period, Report

FED_KEY = bytes(range(32))
DAY = Period(start=datetime(2026, 3, 1, tzinfo=UTC), end=datetime(2026, 3, 2, tzinfo=UTC))
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def _entry(session: Session) -> int:
    version = ListVersion(source="t", version="1", format="plain")
    session.add(version)
    session.flush()
    assert version.id is not None
    entry = ListEntry(family="md5", value="0" * 32, list_version_id=version.id)
    session.add(entry)
    session.flush()
    assert entry.id is not None
    return entry.id


def add_cycle(
    engine: Engine,
    started: datetime,
    sightings: list[tuple[str, str, int, str, str]],  # final_url, country, asn, hoster, family
    *,
    pages: dict[str, int] | None = None,
    images: int = 10,
    status: str = "done",
    methods: list[str] | None = None,  # per sighting; default "direct"
    seen_after: timedelta = timedelta(minutes=1),
) -> int:
    with Session(engine) as session, session.begin():
        existing = session.exec(select(ListEntry.id)).first()
        entry_id = existing if existing is not None else _entry(session)
        pages = pages or {"a.test": 3}
        cycle = CrawlCycle(
            started_at=started,
            finished_at=started + timedelta(minutes=5),
            status=status,
            pages_fetched=sum(pages.values()),
            images_hashed=images,
        )
        session.add(cycle)
        session.flush()
        assert cycle.id is not None
        for host, count in pages.items():
            session.add(HostPages(cycle_id=cycle.id, host=host, pages_fetched=count))
        for n, (final_url, country, asn, hoster, family) in enumerate(sightings):
            session.add(
                Sighting(
                    cycle_id=cycle.id,
                    url=f"{final_url}?found={n}",
                    final_url=final_url,
                    server_ip="127.0.1.1",
                    country=country,
                    asn=asn,
                    hoster=hoster,
                    family=family,
                    entry_id=entry_id,
                    distance=0,
                    method=methods[n] if methods else "direct",
                    seen_at=started + seen_after,
                )
            )
        return cycle.id


def estimate(sketch_b64: str) -> float:
    return float(hll_sketch.deserialize(base64.b64decode(sketch_b64)).get_estimate())


def test_cells_and_denominators(engine: Engine) -> None:
    key = NodeKey.generate()
    add_cycle(
        engine,
        T0,
        [
            ("http://a.test/1.png", "DE", 64500, "Hoster A", "md5"),
            ("http://a.test/2.png", "DE", 64500, "Hoster A", "md5"),
            ("http://a.test/1.png", "DE", 64500, "Hoster A", "pdq"),
            ("http://b.test/1.png", "ZZ", 0, "unknown", "md5"),
        ],
        pages={"a.test": 3, "b.test": 2},
        images=20,
    )
    add_cycle(
        engine,
        T0 + timedelta(hours=6),
        [("http://a.test/1.png", "DE", 64500, "Hoster A", "md5")],
        pages={"a.test": 4, "c.test": 0},
        images=7,
        status="failed",
    )
    add_cycle(engine, T0 - timedelta(days=1), [("http://old.test/x", "DE", 1, "x", "md5")])
    add_cycle(
        engine,
        T0 + timedelta(hours=1),
        [("http://run.test/x", "DE", 1, "x", "md5")],
        status="running",
    )

    queued = queue_report(engine, node_id="node-a", key=key, federation_key=FED_KEY, period=DAY)
    report = queued.report
    assert len(queued.cycle_ids) == 2
    cells = {(c.country, c.asn, c.hoster, c.hash_family): c for c in report.cells}
    assert set(cells) == {
        ("DE", 64500, "Hoster A", HashFamily.MD5),
        ("DE", 64500, "Hoster A", HashFamily.PDQ),
        ("ZZ", 0, "unknown", HashFamily.MD5),
    }
    md5 = cells[("DE", 64500, "Hoster A", HashFamily.MD5)]
    assert (md5.matches, md5.distinct) == (3, 2)
    assert md5.sketch is not None and round(estimate(md5.sketch)) == 2
    assert (cells[("ZZ", 0, "unknown", HashFamily.MD5)].matches) == 1
    d = report.denominators
    # hosts: a.test and b.test (c.test had no fetched page); the running cycle is not counted.
    assert (d.pages_fetched, d.images_hashed, d.hosts_seen) == (9, 27, 2)
    assert report.node_id == "node-a" and report.key_id == key.key_id and report.period == DAY


def test_cells_count_matches_by_method_from_the_reported_cycles(engine: Engine) -> None:
    key = NodeKey.generate()
    a, b = ("DE", 64500, "Hoster A", "pdq"), ("NL", 64501, "Hoster B", "pdq")
    add_cycle(
        engine,
        T0,
        [("http://a.test/1.png", *a), ("http://a.test/2.png", *a), ("http://b.test/1.png", *b)],
        methods=["dihedral", "trimmed", "region"],
    )
    # Started in the period, sighted after it ended: still this report's (cycles, not seen_at).
    add_cycle(
        engine,
        DAY.end - timedelta(minutes=2),
        [("http://a.test/3.png", *a), ("http://a.test/4.png", *a)],
        methods=["direct", "dihedral"],
        seen_after=timedelta(minutes=5),
    )
    # Sighted in the period, but its cycle started the day before: not this report's.
    add_cycle(
        engine,
        DAY.start - timedelta(minutes=2),
        [("http://a.test/5.png", *a)],
        methods=["region"],
        seen_after=timedelta(minutes=5),
    )
    report = queue_report(
        engine, node_id="node-a", key=key, federation_key=FED_KEY, period=DAY
    ).report
    got = {c.hoster: c for c in report.cells}
    assert got["Hoster A"].methods is not None and got["Hoster B"].methods is not None
    assert got["Hoster A"].methods.model_dump() == {
        "direct": 1,
        "dihedral": 2,
        "trimmed": 1,
        "region": 0,
    }
    assert got["Hoster B"].methods.model_dump() == {
        "direct": 0,
        "dihedral": 0,
        "trimmed": 0,
        "region": 1,
    }
    for cell in report.cells:
        assert cell.methods is not None and cell.methods.total() == cell.matches
    # The breakdown travels in the signed payload.
    cells = json.loads(report.to_payload())["cells"]
    assert [c["methods"]["dihedral"] for c in cells] == [2, 0]


def test_signed_envelope_verifies_and_matches_outbox(engine: Engine) -> None:
    key = NodeKey.generate()
    add_cycle(engine, T0, [("http://a.test/1.png", "DE", 64500, "Hoster A", "md5")])
    queued = queue_report(engine, node_id="node-a", key=key, federation_key=FED_KEY, period=DAY)
    with Session(engine) as session:
        item = session.exec(select(OutboxItem)).one()
    envelope = parse_envelope(item.envelope)

    def resolve(key_id: str) -> VerifyKey:
        if key_id != key.key_id:
            raise UnknownKey(key_id)
        return key.verify_key

    key_id, payload = verify(envelope, REPORT_PAYLOAD_TYPE, resolve)
    assert key_id == key.key_id
    assert Report.from_payload(payload) == queued.report
    assert (item.report_id, item.sequence) == (queued.report.report_id, queued.report.sequence)
    # Nothing that identifies an image or a hash travels: only the keyed sketch.
    text = payload.decode()
    assert "a.test" not in text and "0" * 32 not in text


def test_sequence_strictly_increases_and_cycles_are_reported_once(engine: Engine) -> None:
    key = NodeKey.generate()
    add_cycle(engine, T0, [("http://a.test/1.png", "DE", 64500, "Hoster A", "md5")])
    first = queue_report(engine, node_id="node-a", key=key, federation_key=FED_KEY, period=DAY)
    second = queue_report(engine, node_id="node-a", key=key, federation_key=FED_KEY, period=DAY)
    add_cycle(
        engine, T0 + timedelta(hours=2), [("http://a.test/9.png", "DE", 64500, "Hoster A", "md5")]
    )
    third = queue_report(engine, node_id="node-a", key=key, federation_key=FED_KEY, period=DAY)
    sequences = [q.report.sequence for q in (first, second, third)]
    assert sequences == [1, 2, 3]
    assert sum(c.matches for c in first.report.cells) == 1
    assert second.report.cells == [] and second.report.denominators.pages_fetched == 0
    assert sum(c.matches for c in third.report.cells) == 1
    with Session(engine) as session:
        assert session.get(NodeState, 1).next_sequence == 4  # type: ignore[union-attr]
        ids = {r.report_id for r in session.exec(select(CrawlCycle)).all()}
    assert ids == {first.report.report_id, third.report.report_id}


def test_failure_while_signing_changes_nothing(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_cycle(engine, T0, [("http://a.test/1.png", "DE", 64500, "Hoster A", "md5")])

    def broken(*args: object) -> None:
        raise RuntimeError("hsm unavailable")

    monkeypatch.setattr(reporter, "sign", broken)
    with pytest.raises(RuntimeError):
        queue_report(
            engine, node_id="node-a", key=NodeKey.generate(), federation_key=FED_KEY, period=DAY
        )
    with Session(engine) as session:
        assert session.get(NodeState, 1).next_sequence == 1  # type: ignore[union-attr]
        assert session.exec(select(OutboxItem)).all() == []
        assert all(c.report_id is None for c in session.exec(select(CrawlCycle)).all())


def test_two_nodes_sketches_merge_to_the_distinct_union(tmp_path: Path) -> None:
    urls_a = [f"http://h{i % 3}.test/img{i}.png" for i in range(0, 40)]
    urls_b = [f"http://h{i % 3}.test/img{i}.png" for i in range(25, 70)]
    sketches = []
    for name, urls in (("a", urls_a), ("b", urls_b)):
        engine = make_engine(f"sqlite:///{tmp_path / name}.sqlite3")
        add_cycle(engine, T0, [(u, "DE", 64500, "Hoster A", "pdq") for u in urls])
        report = queue_report(
            engine,
            node_id=f"node-{name}",
            key=NodeKey.generate(),
            federation_key=FED_KEY,
            period=DAY,
        ).report
        (cell,) = report.cells
        assert cell.distinct == len(set(urls))
        assert cell.sketch is not None
        sketches.append(cell.sketch)
        engine.dispose()
    union = hll_union(12)
    for sketch in sketches:
        union.update(hll_sketch.deserialize(base64.b64decode(sketch)))
    assert round(union.get_result().get_estimate()) == len(set(urls_a) | set(urls_b)) == 70
    # The same URLs under another federation key are different items: no accidental overlap.
    other = reporter.make_sketch(bytes(32), urls_a)
    mixed = hll_union(12)
    mixed.update(hll_sketch.deserialize(base64.b64decode(other)))
    mixed.update(hll_sketch.deserialize(base64.b64decode(sketches[0])))
    assert round(mixed.get_result().get_estimate()) == 80


def test_pending_periods_and_period_alignment(engine: Engine) -> None:
    add_cycle(engine, T0, [])
    add_cycle(engine, T0 + timedelta(days=2, hours=3), [])
    add_cycle(engine, T0 + timedelta(days=5), [], status="running")
    days = pending_periods(engine, "day")
    assert [p.start.day for p in days] == [1, 3]
    assert pending_periods(engine, "day", until=datetime(2026, 3, 2, tzinfo=UTC)) == [DAY]
    hour = period_containing(datetime(2026, 3, 1, 10, 42, 7, tzinfo=UTC), "hour")
    assert (hour.start.hour, hour.end.hour, hour.start.minute) == (10, 11, 0)
    assert period_containing(T0, "day") == DAY


def test_envelope_json_is_plain_dsse(engine: Engine) -> None:
    queue_report(
        engine, node_id="node-a", key=NodeKey.generate(), federation_key=FED_KEY, period=DAY
    )
    with Session(engine) as session:
        raw = json.loads(session.exec(select(OutboxItem)).one().envelope)
    assert set(raw) == {"payloadType", "payload", "signatures"}
