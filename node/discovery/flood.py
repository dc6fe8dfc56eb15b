"""The flood guard (issue 14): hold the matches of a list entry that suddenly matches far more
than its history, until an analyst decides.

After a cycle, an entry is held when its sightings in that cycle are at least
``flood_min_matches`` and more than ``flood_factor`` x its mean per cycle over the previous
``flood_history_cycles`` finished cycles (done or interrupted; a failed cycle's partial counts
would lower the mean). Sightings held or discarded earlier are not history: a flood that goes
on stays held. An entry with no history is compared with ``flood_min_matches`` alone. Every
sighting of a held entry in that cycle gets a HeldSighting row; reports leave out held and
discarded sightings (``held_sighting_ids``, node/federation). An analyst then releases them
(reported like any other) or discards them (never reported; each discarded sighting counts
against the entry as a rejected match: node.discovery.flags). All of it is audited.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from node import audit
from node.discovery.flags import DEFAULT_FLAG_AFTER, record_rejected_hits
from node.discovery.models import DISCARDED, HELD, RELEASED, HeldSighting
from node.lists.store import entry_details
from node.models import CrawlCycle, CycleRun, Sighting
from protocol.models import utcnow

if TYPE_CHECKING:
    from node.clock import Clock
    from node.config import DiscoverySettings

# CrawlCycle.status of cycles whose counts are history (node.cycle: "done", INTERRUPTED);
# named here so the guard need not import the crawl.
HISTORY_STATUSES = ("done", "interrupted")
ACTOR = "libra-node"


class HeldError(ValueError):
    """A release or discard that cannot be done; ``code``: not_found, reason_required,
    invalid, wrong_state (decided meanwhile by someone else)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class FloodHold:
    entry_id: int
    matches: int  # its sightings this cycle
    mean: float  # its mean per history cycle (0 without history)
    history_cycles: int
    held: int  # sightings held now


def _history(session: Session, cycle_id: int, cycles: int) -> list[int]:
    """The finished cycles an entry's history is taken from: the last ``cycles`` before
    ``cycle_id`` over the same seed list (its CycleRun key) when it has one. A focused
    re-crawl (``[[crawl.recrawl]]``) and a full crawl see different pages: comparing one with
    the other would make every entry of the full crawl look new."""
    key = session.exec(select(CycleRun.run_key).where(col(CycleRun.cycle_id) == cycle_id)).first()
    query = select(CrawlCycle.id).where(
        col(CrawlCycle.id) < cycle_id,
        col(CrawlCycle.finished_at).is_not(None),
        col(CrawlCycle.status).in_(HISTORY_STATUSES),
    )
    if key is not None:
        query = query.join(CycleRun, col(CycleRun.cycle_id) == col(CrawlCycle.id)).where(
            col(CycleRun.run_key) == key
        )
    return [
        int(i)
        for i in session.exec(query.order_by(col(CrawlCycle.id).desc()).limit(cycles))
        if i is not None
    ]


def hold_floods(
    engine: Engine,
    cycle_id: int,
    settings: DiscoverySettings,
    clock: Clock = utcnow,
    *,
    actor: str = ACTOR,
) -> list[FloodHold]:
    """Hold the sightings of every entry that flooded in ``cycle_id`` (call it once the cycle
    finished; running it again holds nothing twice). Sets ``CrawlCycle.held``."""
    now = clock()
    holds: list[FloodHold] = []
    with Session(engine) as session, session.begin():
        counts = {
            int(entry): int(n)
            for entry, n in session.exec(
                select(Sighting.entry_id, func.count())
                .where(col(Sighting.cycle_id) == cycle_id)
                .group_by(col(Sighting.entry_id))
            )
        }
        big = {e: n for e, n in counts.items() if n >= settings.flood_min_matches}
        history = _history(session, cycle_id, settings.flood_history_cycles) if big else []
        past: dict[int, int] = {}
        if big and history:
            not_history = select(HeldSighting.sighting_id).where(
                col(HeldSighting.state).in_((HELD, DISCARDED))
            )
            past = {
                int(entry): int(n)
                for entry, n in session.exec(
                    select(Sighting.entry_id, func.count())
                    .where(
                        col(Sighting.cycle_id).in_(history),
                        col(Sighting.entry_id).in_(sorted(big)),
                        col(Sighting.id).not_in(not_history),
                    )
                    .group_by(col(Sighting.entry_id))
                )
            }
        already = select(HeldSighting.sighting_id)
        for entry_id, matches in sorted(big.items()):
            mean = past.get(entry_id, 0) / len(history) if history else 0.0
            if matches <= settings.flood_factor * mean:
                continue
            if past.get(entry_id):
                why = (
                    f"{matches} matches in cycle {cycle_id}, more than {settings.flood_factor:g} "
                    f"x its mean {mean:.2f} over {len(history)} previous cycle(s)"
                )
            else:
                why = (
                    f"{matches} matches in cycle {cycle_id} (at least "
                    f"{settings.flood_min_matches}) with no matches in "
                    f"{len(history)} previous cycle(s)"
                )
            ids = [
                int(i)
                for i in session.exec(
                    select(Sighting.id).where(
                        col(Sighting.cycle_id) == cycle_id,
                        col(Sighting.entry_id) == entry_id,
                        col(Sighting.id).not_in(already),
                    )
                )
                if i is not None
            ]
            for sighting_id in ids:
                session.add(
                    HeldSighting(
                        sighting_id=sighting_id, entry_id=entry_id, held_at=now, reason=why
                    )
                )
            if ids:
                audit.record(
                    session,
                    "sighting.hold",
                    subject=f"list_entry:{entry_id}",
                    reason=why,
                    actor=actor,
                    details={
                        "cycle_id": cycle_id,
                        "matches": matches,
                        "mean": round(mean, 4),
                        "history_cycles": len(history),
                        "held": len(ids),
                        "flood_factor": settings.flood_factor,
                        "flood_min_matches": settings.flood_min_matches,
                    },
                )
            holds.append(FloodHold(entry_id, matches, mean, len(history), len(ids)))
        session.flush()
        held = session.exec(
            select(func.count())
            .select_from(HeldSighting)
            .join(Sighting, col(Sighting.id) == col(HeldSighting.sighting_id))
            .where(col(Sighting.cycle_id) == cycle_id)
        ).one()
        cycle = session.get(CrawlCycle, cycle_id)
        if cycle is not None:
            cycle.held = int(held)
            session.add(cycle)
    return holds


def held_sighting_ids(session: Session, cycle_ids: Iterable[int]) -> set[int]:
    """Sightings of these cycles that a report must leave out: held or discarded."""
    wanted = sorted(set(cycle_ids))
    out: set[int] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        out.update(
            int(i)
            for i in session.exec(
                select(HeldSighting.sighting_id)
                .join(Sighting, col(Sighting.id) == col(HeldSighting.sighting_id))
                .where(
                    col(Sighting.cycle_id).in_(chunk),
                    col(HeldSighting.state).in_((HELD, DISCARDED)),
                )
            )
        )
    return out


def list_held(engine: Engine, state: str = HELD) -> list[dict[str, Any]]:
    """Held (or released, discarded) sightings per entry: count, cycles, first and last
    held, the latest reason, the entry's source/label/category. No URL, no hash value."""
    if state not in (HELD, RELEASED, DISCARDED):
        raise HeldError("invalid", f"state must be one of {HELD}, {RELEASED}, {DISCARDED}")
    with Session(engine) as session:
        rows = session.exec(
            select(HeldSighting, Sighting.cycle_id)
            .join(Sighting, col(Sighting.id) == col(HeldSighting.sighting_id))
            .where(col(HeldSighting.state) == state)
            .order_by(col(HeldSighting.held_at), col(HeldSighting.sighting_id))
        ).all()
    by_entry: dict[int, dict[str, Any]] = {}
    for held, cycle_id in rows:
        e = by_entry.setdefault(
            held.entry_id,
            {"entry_id": held.entry_id, "sightings": 0, "cycles": set(), "first_held_at": None},
        )
        e["sightings"] += 1
        e["cycles"].add(cycle_id)
        e["first_held_at"] = e["first_held_at"] or held.held_at.isoformat()
        e["last_held_at"] = held.held_at.isoformat()
        e["reason"] = held.reason
    details = entry_details(engine, by_entry)
    out = []
    for entry_id, e in sorted(by_entry.items(), key=lambda kv: (-kv[1]["sightings"], kv[0])):
        e["cycles"] = sorted(e["cycles"])
        d = details.get(entry_id, {})
        e.update(source=d.get("source"), label=d.get("label"), category=d.get("category"))
        out.append(e)
    return out


@dataclass(frozen=True)
class HeldDecision:
    state: str
    sighting_ids: list[int]
    entries: dict[int, int]  # entry id -> sightings decided
    flagged: list[int]  # discard: entries flagged by it

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "sightings": len(self.sighting_ids),
            "entries": {str(k): v for k, v in sorted(self.entries.items())},
            "flagged": self.flagged,
        }


def _held_rows(
    session: Session, entry_id: int | None, sighting_ids: Iterable[int] | None
) -> tuple[list[HeldSighting], str]:
    """The held rows an analyst names (an entry's, or by sighting id), and how to name them."""
    query = select(HeldSighting).where(col(HeldSighting.state) == HELD)
    if entry_id is not None:
        query = query.where(col(HeldSighting.entry_id) == entry_id)
        what = f"list entry {entry_id}"
    else:
        wanted = sorted(set(sighting_ids or ()))
        if not wanted:
            raise HeldError("invalid", "no sighting ids given")
        query = query.where(col(HeldSighting.sighting_id).in_(wanted))
        what = f"sightings {', '.join(map(str, wanted[:10]))}"
    rows = list(session.exec(query.with_for_update()).all())
    if not rows:
        raise HeldError("not_found", f"no held sightings of {what}")
    return rows, what


def _decide_held(
    engine: Engine,
    state: str,
    entry_id: int | None,
    sighting_ids: Iterable[int] | None,
    actor: str,
    reason: str,
    now: datetime | None,
    flag_after: int,
) -> HeldDecision:
    if (entry_id is None) == (sighting_ids is None):
        raise HeldError("invalid", "name either a list entry or sighting ids")
    if state == DISCARDED and not reason.strip():
        raise HeldError("reason_required", "discarding held sightings needs a reason")
    at = now or utcnow()
    with Session(engine) as session, session.begin():
        rows, what = _held_rows(session, entry_id, sighting_ids)
        ids = sorted(r.sighting_id for r in rows)
        # Changed only where still held, first thing written: a decision made meanwhile by
        # someone else (SQLite reads without a lock) leaves fewer rows, and this one is refused.
        changed = 0
        for start in range(0, len(ids), 500):
            result = session.execute(
                update(HeldSighting)
                .where(
                    col(HeldSighting.sighting_id).in_(ids[start : start + 500]),
                    col(HeldSighting.state) == HELD,
                )
                .values(state=state, decided_at=at, decided_by=actor)
            )
            changed += int(getattr(result, "rowcount", 0))
        if changed != len(ids):
            raise HeldError("wrong_state", f"held sightings of {what} were decided meanwhile")
        entries: dict[int, int] = {}
        for row in rows:
            entries[row.entry_id] = entries.get(row.entry_id, 0) + 1
        flagged: list[int] = []
        if state == DISCARDED:
            flagged = record_rejected_hits(
                session,
                entries,
                flag_after=flag_after,
                actor=actor,
                why="its held sightings were discarded",
                now=at,
            )
        for held_entry, count in sorted(entries.items()):
            audit.record(
                session,
                "sighting.release" if state == RELEASED else "sighting.discard",
                subject=f"list_entry:{held_entry}",
                reason=reason,
                actor=actor,
                details={"sightings": count, "flagged": held_entry in flagged},
            )
    return HeldDecision(state, ids, entries, flagged)


def release(
    engine: Engine,
    *,
    entry_id: int | None = None,
    sighting_ids: Iterable[int] | None = None,
    actor: str,
    reason: str = "",
    now: datetime | None = None,
) -> HeldDecision:
    """Release held sightings (of one entry, or by id): reports carry them again."""
    return _decide_held(
        engine, RELEASED, entry_id, sighting_ids, actor, reason, now, DEFAULT_FLAG_AFTER
    )


def discard(
    engine: Engine,
    *,
    entry_id: int | None = None,
    sighting_ids: Iterable[int] | None = None,
    actor: str,
    reason: str,
    flag_after: int = DEFAULT_FLAG_AFTER,
    now: datetime | None = None,
) -> HeldDecision:
    """Discard held sightings: never reported; each counts against its entry."""
    return _decide_held(engine, DISCARDED, entry_id, sighting_ids, actor, reason, now, flag_after)
