"""Matches counted by how they were found (issue 18): direct, dihedral, trimmed, region.

The report payload does not carry these counts yet (a protocol change the lead wires in); this
is the node-side aggregation the reporter calls, per report cell (country, ASN, hoster, hash
family) over one period, from the sightings alone: counts of sightings, no hash or URL.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from .matcher import Method
from .models import Sighting

Cell = tuple[str, int, str, str]  # (country, asn, hoster, family), as in the report's cells
_KEYS = tuple(
    col(c)
    for c in (Sighting.country, Sighting.asn, Sighting.hoster, Sighting.family, Sighting.method)
)


def methods_by_cell(engine: Engine, start: datetime, end: datetime) -> dict[Cell, dict[str, int]]:
    """{cell: {method: sightings}} for sightings seen in [start, end); every method is
    present in each cell (zero when unused), so a reader need not know the list."""
    out: dict[Cell, dict[str, int]] = {}
    with Session(engine) as session:
        rows = session.execute(  # sqlmodel's select takes at most 4 columns
            select(*_KEYS, func.count())
            .where(col(Sighting.seen_at) >= start, col(Sighting.seen_at) < end)
            .group_by(*_KEYS)
        )
        for country, asn, hoster, family, method, count in rows:
            cell = out.setdefault((country, asn, hoster, family), {m.value: 0 for m in Method})
            cell[method] = cell.get(method, 0) + int(count)
    return out
