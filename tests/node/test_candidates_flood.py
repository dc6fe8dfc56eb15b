"""The flood guard: an entry matching far more than its history is held (history vs spike, no
history, below the minimum), held sightings are left out of reports until released,
discarding counts against the entry; all audited."""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from node import audit
from node.clock import Clock
from node.config import DiscoverySettings
from node.discovery.flood import (
    HeldError,
    discard,
    held_sighting_ids,
    hold_floods,
    list_held,
    release,
)
from node.discovery.models import DISCARDED, HELD, RELEASED, EntryFlag, HeldSighting
from node.models import CrawlCycle, CycleRun
from tests.node.candidates_kit import T0, add_cycle, add_entries, add_sightings, keyed_engine
from tests.node.conftest import rand_hex

SETTINGS = DiscoverySettings(flood_factor=10, flood_min_matches=20, flood_history_cycles=3)


def _clock() -> Clock:
    return lambda: T0 + timedelta(hours=1)


def _entries(engine: Engine, n: int) -> list[int]:
    rng = random.Random(30)
    return add_entries(engine, "pdq", [rand_hex(rng, 256) for _ in range(n)])


def test_spike_over_history_is_held_and_steady_entries_are_not(tmp_path: Path) -> None:
    engine, _ = keyed_engine(tmp_path)
    steady, spiking, fresh, small = _entries(engine, 4)
    # Four finished cycles; only the last three are history. The failed one is not history.
    for n in range(4):
        cycle = add_cycle(engine, T0 + timedelta(hours=n))
        add_sightings(engine, cycle, steady, 30, tag=f"c{n}")
        add_sightings(engine, cycle, spiking, 3 if n else 300, tag=f"c{n}")
    failed = add_cycle(engine, T0 + timedelta(hours=5), status="failed")
    add_sightings(engine, failed, spiking, 1000, tag="f")
    now = add_cycle(engine, T0 + timedelta(hours=6))
    add_sightings(engine, now, steady, 40)  # 40 <= 10 x 30
    spike = add_sightings(engine, now, spiking, 31)  # 31 > 10 x 3
    new = add_sightings(engine, now, fresh, 20)  # no history: min 20 reached
    add_sightings(engine, now, small, 19)  # below the minimum

    holds = hold_floods(engine, now, SETTINGS, _clock())

    assert {(h.entry_id, h.matches, h.held) for h in holds} == {(spiking, 31, 31), (fresh, 20, 20)}
    by_entry = {h.entry_id: h for h in holds}
    assert by_entry[spiking].mean == 3 and by_entry[spiking].history_cycles == 3
    assert by_entry[fresh].mean == 0
    with Session(engine) as session:
        rows = session.exec(select(HeldSighting)).all()
        row = session.get(CrawlCycle, now)
        assert held_sighting_ids(session, [now]) == set(spike) | set(new)
    assert row is not None and row.held == 51
    assert {r.state for r in rows} == {HELD}
    reason = next(r.reason for r in rows if r.entry_id == spiking)
    assert "31 matches" in reason and "mean 3.00 over 3" in reason
    assert "no matches in 3" in next(r.reason for r in rows if r.entry_id == fresh)
    events = audit.entries(engine, "sighting.hold")
    assert {e.subject for e in events} == {f"list_entry:{spiking}", f"list_entry:{fresh}"}
    assert all(e.actor == "libra-node" for e in events)

    # Running the guard again holds nothing twice.
    hold_floods(engine, now, SETTINGS, _clock())
    with Session(engine) as session:
        assert len(session.exec(select(HeldSighting)).all()) == 51


def test_first_cycle_compares_with_the_minimum_only(tmp_path: Path) -> None:
    engine, _ = keyed_engine(tmp_path)
    (entry,) = _entries(engine, 1)
    cycle = add_cycle(engine)
    add_sightings(engine, cycle, entry, 25)
    (hold,) = hold_floods(engine, cycle, SETTINGS, _clock())
    assert (hold.history_cycles, hold.held) == (0, 25)


def test_held_and_discarded_sightings_are_no_history(tmp_path: Path) -> None:
    engine, _ = keyed_engine(tmp_path)
    (entry,) = _entries(engine, 1)
    first = add_cycle(engine, T0)
    add_sightings(engine, first, entry, 50, tag="a")
    hold_floods(engine, first, SETTINGS, _clock())
    discard(engine, entry_id=entry, actor="ana", reason="collision attack")
    second = add_cycle(engine, T0 + timedelta(hours=1))
    add_sightings(engine, second, entry, 50, tag="b")
    # Its 50 matches of the first cycle were discarded: the flood goes on being held.
    (hold,) = hold_floods(engine, second, SETTINGS, _clock())
    assert (hold.mean, hold.held) == (0, 50)


def test_release_and_discard(tmp_path: Path) -> None:
    engine, _ = keyed_engine(tmp_path)
    a, b = _entries(engine, 2)
    cycle = add_cycle(engine)
    add_sightings(engine, cycle, a, 20, tag="a")
    sb = add_sightings(engine, cycle, b, 25, tag="b")
    hold_floods(engine, cycle, SETTINGS, _clock())
    assert [(r["entry_id"], r["sightings"], r["cycles"]) for r in list_held(engine)] == [
        (b, 25, [cycle]),
        (a, 20, [cycle]),
    ]
    assert list_held(engine)[0]["source"] == "known"

    released = release(engine, entry_id=a, actor="ana", reason="real spike: a new forum")
    assert (released.state, len(released.sighting_ids), released.flagged) == (RELEASED, 20, [])
    part = discard(engine, sighting_ids=sb[:2], actor="bob", reason="benign", flag_after=3)
    assert (part.state, part.entries, part.flagged) == (DISCARDED, {b: 2}, [])
    rest = discard(engine, entry_id=b, actor="bob", reason="benign", flag_after=3)
    assert rest.entries == {b: 23} and rest.flagged == [b]
    with Session(engine) as session:
        flag = session.get(EntryFlag, b)
        left_out = held_sighting_ids(session, [cycle])
    assert flag is not None and flag.rejected_hits == 25 and flag.flagged_at is not None
    # Released sightings are reported again; discarded ones never are.
    assert left_out == set(sb)
    assert list_held(engine) == []
    assert [r["sightings"] for r in list_held(engine, DISCARDED)] == [25]

    with pytest.raises(HeldError, match="no held sightings") as info:
        release(engine, entry_id=a, actor="ana")
    assert info.value.code == "not_found"
    with pytest.raises(HeldError) as why:
        discard(engine, entry_id=a, actor="ana", reason="")
    assert why.value.code == "reason_required"
    with pytest.raises(HeldError):
        release(engine, entry_id=a, sighting_ids=[1], actor="ana")
    actions = [(e.action, e.actor) for e in audit.entries(engine, "sighting.")]
    assert actions[:3] == [
        ("sighting.discard", "bob"),
        ("sighting.discard", "bob"),
        ("sighting.release", "ana"),
    ]


def test_a_decision_made_meanwhile_is_not_made_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two analysts at once: the second read the sightings as held before the first wrote.
    The change is conditional, so the second is refused and its entry gains no hit."""
    from node.discovery import flood

    engine, _ = keyed_engine(tmp_path)
    (entry,) = _entries(engine, 1)
    cycle = add_cycle(engine)
    add_sightings(engine, cycle, entry, 20)
    hold_floods(engine, cycle, SETTINGS, _clock())
    read = flood._held_rows
    raced: list[bool] = []

    def read_then_race(
        session: Session, entry_id: int | None, sighting_ids: Iterable[int] | None
    ) -> tuple[list[HeldSighting], str]:
        found = read(session, entry_id, sighting_ids)
        if not raced:
            raced.append(True)
            release(engine, entry_id=entry, actor="ana")  # another connection, committed
        return found

    monkeypatch.setattr(flood, "_held_rows", read_then_race)
    with pytest.raises(HeldError, match="decided meanwhile") as info:
        discard(engine, entry_id=entry, actor="bob", reason="x")
    assert info.value.code == "wrong_state"
    with Session(engine) as session:
        assert session.get(EntryFlag, entry) is None
        states = {h.state for h in session.exec(select(HeldSighting)).all()}
    assert states == {RELEASED}
    assert audit.entries(engine, "sighting.")[0].action == "sighting.release"


def _run_key(engine: Engine, cycle: int, key: str) -> None:
    with Session(engine) as session, session.begin():
        session.add(CycleRun(cycle_id=cycle, run_key=key))


def test_history_is_taken_from_cycles_over_the_same_seeds(tmp_path: Path) -> None:
    """Focused re-crawls between full crawls are not an entry's history: a full crawl that
    finds an entry as often as the last full crawl did is not held, however many re-crawls of
    other pages (that never saw it) ran in between."""
    engine, _ = keyed_engine(tmp_path)
    (entry,) = _entries(engine, 1)
    full = add_cycle(engine, T0)
    _run_key(engine, full, "full")
    add_sightings(engine, full, entry, 30, tag="full")
    for n in range(1, 4):  # three re-crawls of other seeds: no sighting of the entry
        _run_key(engine, add_cycle(engine, T0 + timedelta(hours=n)), "recrawl")
    again = add_cycle(engine, T0 + timedelta(hours=5))
    _run_key(engine, again, "full")
    add_sightings(engine, again, entry, 30)
    assert hold_floods(engine, again, SETTINGS, _clock()) == []
