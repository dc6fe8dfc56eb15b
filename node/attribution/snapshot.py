"""Which database versions each sighting's attribution rests on, and a period's union of them.

A snapshot is one distinct set of sources (``AttributionSource`` name + version: GeoIP country,
ASN, operator table); it is stored once (``attribution_snapshot``, keyed by a digest) and every
sighting points at it (``sighting_attribution``). The report lists the sources of the snapshots
its sightings rest on, so every figure can be traced to the data that placed it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from node.models import AttributionSnapshot, Sighting, SightingAttribution
from protocol.models import AttributionSource

MAX_SOURCES = 20  # Report.attribution_sources limit


def _canonical(sources: list[AttributionSource]) -> str:
    pairs = sorted({(s.name, s.version) for s in sources})
    return json.dumps(pairs, separators=(",", ":"))


def snapshot_id(
    session: Session, sources: list[AttributionSource], now: datetime | None = None
) -> int:
    """The id of the snapshot for ``sources``, created on first use (safe against a racing
    process: a unique-digest conflict re-reads the other process's row); ``now``: the caller's
    clock (a lab clock under ``--at``)."""
    text = _canonical(sources)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    query = select(AttributionSnapshot.id).where(col(AttributionSnapshot.digest) == digest)
    found = session.exec(query).first()
    if found is not None:
        return int(found)
    try:
        with session.begin_nested():
            row = AttributionSnapshot(digest=digest, sources=text)
            if now is not None:
                row.first_used_at = now
            session.add(row)
            session.flush()
    except IntegrityError:
        existing = session.exec(query).one()
        assert existing is not None  # a primary key
        return int(existing)
    assert row.id is not None
    return row.id


def record_sighting(
    session: Session, sighting_id: int, snapshot: int, operator_id: str | None
) -> None:
    session.add(
        SightingAttribution(sighting_id=sighting_id, snapshot_id=snapshot, operator_id=operator_id)
    )


def sources_for_cycles(session: Session, cycle_ids: list[int]) -> list[AttributionSource]:
    """The union of the sources behind the sightings of ``cycle_ids`` (sorted)."""
    if not cycle_ids:
        return []
    rows = session.exec(
        select(AttributionSnapshot.sources)
        .distinct()
        .join(
            SightingAttribution,
            col(SightingAttribution.snapshot_id) == col(AttributionSnapshot.id),
        )
        .join(Sighting, col(Sighting.id) == col(SightingAttribution.sighting_id))
        .where(col(Sighting.cycle_id).in_(cycle_ids))
    ).all()
    pairs = {(str(n), str(v)) for text in rows for n, v in json.loads(text)}
    # Beyond the limit (databases swapped more than ~20 times in one period) the report names
    # the first sources in sorted order rather than failing to be built.
    return [AttributionSource(name=n, version=v) for n, v in sorted(pairs)][:MAX_SOURCES]
