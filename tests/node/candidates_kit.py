"""Builders for the candidate-review tests (tests/node/test_candidates_*.py): crawl cycles,
candidate rows as a cycle would write them, list entries, sightings. No image anywhere: the
hashes are random hex from seeded generators."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session

from node.db import make_engine
from node.discovery.models import PENDING, Candidate
from node.keys.list_encryption import ListKey, create_list_key
from node.lists import ImportedRecord, import_records
from node.models import CrawlCycle, Sighting
from tests.node.conftest import rand_hex

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def keyed_engine(tmp_path: Path) -> tuple[Engine, ListKey]:
    """A node database whose list values (and candidate hashes) are encrypted at rest."""
    key = create_list_key(tmp_path / "lists.key")
    return make_engine(f"sqlite:///{tmp_path / 'node.sqlite3'}", key), key


def add_cycle(
    engine: Engine,
    at: datetime = T0,
    *,
    status: str = "done",
    reported: bool = False,
) -> int:
    with Session(engine) as session:
        cycle = CrawlCycle(
            started_at=at,
            finished_at=at + timedelta(minutes=5) if status != "running" else None,
            status=status,
            report_id=f"report-{at.isoformat()}" if reported else None,
        )
        session.add(cycle)
        session.commit()
        assert cycle.id is not None
        return cycle.id


def add_candidate(
    engine: Engine,
    cycle_id: int,
    rng: random.Random,
    *,
    score: float = 60.0,
    host: str = "a.test",
    hoster: str = "Hoster A",
    country: str = "DE",
    asn: int = 64500,
    cluster_id: int | None = None,
    members: int = 1,
    state: str = PENDING,
    pdq: str | None = None,
    pdq_quality: int = 90,
    sha256: str | None = None,
    seen: datetime = T0,
    decided_at: datetime | None = None,
    name: str | None = None,
) -> Candidate:
    """A candidate as the cycle writes it (hashes random unless given)."""
    tag = name or f"{rng.getrandbits(32):08x}"
    row = Candidate(
        state=state,
        cluster_id=cluster_id,
        members=members,
        first_cycle_id=cycle_id,
        last_cycle_id=cycle_id,
        first_seen_at=seen,
        last_seen_at=seen,
        url=f"http://{host}/img/{tag}.jpg",
        final_url=f"http://{host}/img/{tag}.jpg",
        page_url=f"http://{host}/album/",
        host=host,
        server_ip="127.0.1.10",
        country=country,
        asn=asn,
        hoster=hoster,
        sha256=sha256 or rand_hex(rng, 256),
        sha1=rand_hex(rng, 160),
        md5=rand_hex(rng, 128),
        pdq=pdq or rand_hex(rng, 256),
        pdq_quality=pdq_quality,
        width=640,
        height=480,
        format="JPEG",
        bytes=51_234,
        score=score,
        reasons=json.dumps(
            [{"signal": "same_page", "value": 3, "points": score, "detail": "3 known on page"}]
        ),
        decided_at=decided_at,
        decided_by="ana" if decided_at else None,
    )
    with Session(engine) as session:
        session.add(row)
        session.commit()
        session.refresh(row)
        session.expunge(row)
    return row


def add_entries(engine: Engine, family: str, values: list[str], source: str = "known") -> list[int]:
    """Import values as one list version; their entry ids in order."""
    from node.lists.base import list_family

    records = [ImportedRecord(list_family(family), v, n + 1) for n, v in enumerate(values)]
    summary = import_records(engine, records, source=source, version="1", format_name="plain")
    from sqlmodel import col, select

    from node.models import ListEntry

    with Session(engine) as session:
        rows = session.exec(
            select(ListEntry.id)
            .where(col(ListEntry.list_version_id) == summary.list_version_id)
            .order_by(col(ListEntry.id))
        ).all()
    return [int(i) for i in rows if i is not None]


def add_sightings(
    engine: Engine, cycle_id: int, entry_id: int, count: int, tag: str = ""
) -> list[int]:
    ids = []
    with Session(engine) as session:
        for n in range(count):
            s = Sighting(
                cycle_id=cycle_id,
                url=f"http://s.test/{tag}{entry_id}-{n}.jpg",
                final_url=f"http://s.test/{tag}{entry_id}-{n}.jpg",
                country="DE",
                asn=64500,
                hoster="Hoster A",
                family="pdq",
                entry_id=entry_id,
                distance=3,
            )
            session.add(s)
            session.flush()
            assert s.id is not None
            ids.append(s.id)
        session.commit()
    return ids
