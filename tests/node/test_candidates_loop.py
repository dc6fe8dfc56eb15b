"""The verdict loop end to end on loopback (the web, function and cycle of
tests/node/test_discovery_cycle.py): a cycle finds candidates; an analyst confirms one and
rejects one; the next cycle matches the confirmed image as a sighting of a "discovered" entry,
and an entry an analyst disabled matches nothing (its image comes back as a candidate)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from node.discovery.flags import disable
from node.discovery.models import CONFIRMED, REJECTED, Candidate
from node.discovery.verdicts import confirm, reject
from node.models import ListEntry, ListVersion, Sighting
from tests.node.test_discovery_cycle import World, _candidates, _cycle, _list_known, world

# `world` is the module-scoped fixture of test_discovery_cycle: imported so pytest finds it here.
__all__ = ["world"]


async def test_confirmed_image_is_matched_by_the_next_cycle(
    engine: Engine, world: World, tmp_path: Path
) -> None:
    _list_known(engine, world)
    first = await _cycle(engine, world, tmp_path)
    found = _candidates(engine, world)
    assert {"u2", "u3"} <= set(found)

    confirmed = confirm(engine, found["u2"].id or 0, "ana", "A1", "reviewed in the case tool")
    rejected = reject(engine, found["u3"].id or 0, "ana", "benign")
    assert rejected.negative_added >= 3
    with Session(engine) as session:
        k1_entry = session.exec(
            select(ListEntry.id).where(ListEntry.value == world.sha256("k1"))
        ).one()
    assert k1_entry is not None
    disable(engine, k1_entry, "ana", "matches benign images")

    second = await _cycle(engine, world, tmp_path)
    assert second.status == "done"
    with Session(engine) as session:
        sightings = {
            world.name_of(s.url): s
            for s in session.exec(select(Sighting).where(Sighting.cycle_id == second.cycle_id))
        }
        entry = session.get(ListEntry, sightings["u2"].entry_id)
        assert entry is not None
        version = session.get(ListVersion, entry.list_version_id)
        rows = {c.id: c for c in session.exec(select(Candidate)).all()}
    # The confirmed image is known material now: a sighting of its "discovered" entry.
    assert sightings["u2"].entry_id in confirmed.entry_ids
    assert version is not None and version.source == "discovered"
    assert entry.label == f"candidate:{found['u2'].id}" and entry.category == "A1"
    # The disabled entry matched nothing; k2 and k3 still match.
    assert "k1" not in sightings and {"k2", "k3"} <= set(sightings)
    assert rows[found["u2"].id].state == CONFIRMED
    assert rows[found["u3"].id].state == REJECTED
    # No candidate row was made again for either decided image. The one new candidate is
    # k1: with its entry disabled it is an unknown image beside known ones (u2 now), which
    # an analyst reviews like any other.
    after = _candidates(engine, world)
    assert first.candidates == len(found) and second.candidates == 1
    assert set(after) - set(found) == {"k1"}
