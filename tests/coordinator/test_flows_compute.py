"""Displacement flows as pure functions over (period, place, item sketch): against exact Python
sets on small worlds (every figure exact) and within the stated bounds on a large one."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.flows import (
    Estimate,
    FlowRow,
    HosterPlace,
    ItemSets,
    PlaceRow,
    compute_steps,
    pair_steps,
)
from coordinator.views import SuppressionPolicy
from protocol.theta import item_identity, make_theta

KEY = b"flows test federation key (public test material)"
T0 = datetime(2026, 11, 23, tzinfo=UTC)
FIVE = timedelta(minutes=5)
PLACES = [("DE", 64501, "Hoster A"), ("DE", 64502, "Hoster B"), ("NL", 64600, "Hoster N")]


def period(i: int, length: timedelta = FIVE) -> tuple[datetime, datetime]:
    return (T0 + i * length, T0 + (i + 1) * length)


def ident(n: int) -> str:
    return item_identity("pdq", f"{n:064x}")


def world_sets(world: dict[tuple[int, int], set[int]], cells_per_place: int = 1) -> ItemSets:
    """world: {(period index, place index): items}; each place's items split over cells (as
    several nodes or hash families would report them, overlapping)."""
    sets = ItemSets()
    for (t, p), items in world.items():
        ordered = sorted(items)
        for c in range(cells_per_place):
            part = ordered[c::cells_per_place] + ordered[:1]  # overlap: one item in every cell
            sets.add(period(t), PLACES[p], make_theta(KEY, map(ident, part)), f"node-{c}")
    return sets


def exact(n: int) -> Estimate:
    return Estimate(estimate=n, lower=n, upper=n, exact=True)


def key(place: Any) -> tuple[Any, ...]:
    return (place.country, place.asn, place.hoster)


world_strategy = st.dictionaries(
    st.tuples(st.integers(0, 2), st.integers(0, len(PLACES) - 1)),
    st.sets(st.integers(0, 40), max_size=25),
    max_size=9,
)


@settings(max_examples=60, deadline=None)
@given(world=world_strategy, cells=st.integers(1, 3))
def test_small_worlds_equal_exact_set_arithmetic(
    world: dict[tuple[int, int], set[int]], cells: int
) -> None:
    sets = world_sets(world, cells)
    for t in range(3):  # every period exists, even one with no cells
        sets.add_period(period(t))
    periods, steps, skipped, suppression = compute_steps(sets)
    assert [(p.start, p.end) for p in periods] == [period(t) for t in range(3)]
    assert skipped == [] and suppression is None
    assert [(s.from_.start, s.to.start) for s in steps] == [
        (period(0)[0], period(1)[0]),
        (period(1)[0], period(2)[0]),
    ]
    for t, step in enumerate(steps):
        items = {p: world.get((t, i), set()) for i, p in enumerate(PLACES)}
        later = {p: world.get((t + 1, i), set()) for i, p in enumerate(PLACES)}
        want_places = {
            p: PlaceRow(
                place=HosterPlace(country=p[0], asn=p[1], hoster=p[2]),
                before=exact(len(items[p])),
                after=exact(len(later[p])),
                removed=exact(len(items[p] - later[p])),
                new=exact(len(later[p] - items[p])),
            )
            for p in PLACES
            if items[p] or later[p]
        }
        assert {key(r.place): r for r in step.places} == want_places
        want_flows = {
            (a, b): len((items[a] - later[a]) & later[b])
            for a in PLACES
            for b in PLACES
            if a != b and (items[a] - later[a]) & later[b]
        }
        got = {(key(f.source), key(f.target)): f.items for f in step.flows}
        assert got == {k: exact(n) for k, n in want_flows.items()}
        # Largest flows first.
        sizes = [f.items.estimate for f in step.flows]
        assert sizes == sorted(sizes, reverse=True)


def test_flows_by_country_merge_the_hosters_of_a_country() -> None:
    sets = ItemSets()
    for t, place, items in [
        (0, ("DE",), range(0, 10)),  # DE in t: items 0..9 (two hosters in the world)
        (0, ("NL",), range(10, 15)),
        (1, ("DE",), range(0, 4)),
        (1, ("NL",), range(4, 15)),
    ]:
        sets.add(period(t), place, make_theta(KEY, map(ident, items)))
    _, steps, _, _ = compute_steps(sets, "country")
    (step,) = steps
    assert [(f.source.country, f.target.country, f.items.estimate) for f in step.flows] == [
        ("DE", "NL", 6)
    ]
    rows = {r.place.country: r for r in step.places}
    assert rows["NL"].new == exact(6) and rows["DE"].removed == exact(6)


def test_only_consecutive_periods_of_equal_length_are_stepped() -> None:
    hour = timedelta(hours=1)
    periods = [
        period(0),
        period(1),  # step 0 -> 1
        (period(1)[1], period(1)[1] + hour),  # starts where 1 ends, but an hour long
        (T0 + 3 * hour, T0 + 4 * hour),  # after a gap
        (T0 + 3 * hour + FIVE, T0 + 4 * hour + FIVE),  # overlaps the one before
    ]
    steps, skipped = pair_steps(periods)
    assert steps == [(periods[0], periods[1])]
    reasons = [(s.from_.start, s.to.start, s.reason) for s in skipped]
    assert reasons == [
        (periods[1][0], periods[2][0], "the periods differ in length"),
        (periods[2][0], periods[3][0], "gap: the later period starts after the earlier one ends"),
        (periods[3][0], periods[4][0], "the periods overlap"),
    ]


def test_viewer_tier_withholds_small_figures_and_flows() -> None:
    sets = ItemSets()
    a, b, c = PLACES
    for t, place, items, nodes in [
        (0, a, range(0, 20), ("n1", "n2")),
        (1, a, range(0, 2), ("n1", "n2")),  # after: 2 items, below min_count 5
        (1, b, range(2, 14), ("n1", "n2")),  # 12 items moved A -> B
        (1, c, range(14, 17), ("n1", "n2")),  # 3 moved A -> C: a small flow
        (0, ("FR", 64700, "Solo"), range(50, 80), ("n3",)),  # one node only
    ]:
        for node in nodes:
            sets.add(period(t), place, make_theta(KEY, map(ident, items)), node)
    policy = SuppressionPolicy(min_count=5, min_nodes=2)
    _, (step,), _, suppression = compute_steps(sets, "hoster", policy)
    rows = {key(r.place): r for r in step.places}
    assert set(rows) == {a, b}  # C: 3 new items only (withheld); Solo: one node
    assert rows[a].before == exact(20) and rows[a].after is None and rows[a].removed == exact(18)
    assert [(key(f.source), key(f.target), f.items.estimate) for f in step.flows] == [(a, b, 12)]
    assert suppression is not None
    assert (suppression.places, suppression.values, suppression.flows) == (2, 1, 1)
    # The full tier sees everything.
    _, (full,), _, none = compute_steps(sets, "hoster", None)
    assert none is None and len(full.places) == 4
    assert {(key(f.source), key(f.target)): f.items.estimate for f in full.flows} == {
        (a, b): 12,
        (a, c): 3,
    }


def test_large_world_within_the_stated_bounds() -> None:
    """Beyond 2^15 members the sketches estimate; each figure's 3-sigma bounds hold the truth.
    A place's own count (a union) is within the protocol's 2 %; a difference or intersection
    keeps only the members below the smaller theta, so its bounds are wider (here < 10 %)."""
    rng = random.Random(16)
    a, b, c = PLACES
    at_a = set(range(120_000))
    stays = set(rng.sample(sorted(at_a), 50_000))
    gone = at_a - stays
    to_b = set(rng.sample(sorted(gone), 40_000))
    new_b = set(range(200_000, 230_000))
    at_c = set(range(300_000, 301_000)) | set(rng.sample(sorted(gone - to_b), 700))
    world = {(0, 0): at_a, (1, 0): stays, (1, 1): to_b | new_b, (1, 2): at_c, (0, 2): {300_000}}
    sets = world_sets(world)
    _, (step,), _, _ = compute_steps(sets)
    rows = {key(r.place): r for r in step.places}
    truth: dict[str, tuple[Estimate | None, int]] = {
        "A before": (rows[a].before, len(at_a)),
        "A removed": (rows[a].removed, len(gone)),
        "B new": (rows[b].new, len(to_b | new_b)),
    }
    flows: dict[tuple[Any, ...], FlowRow] = {(key(f.source), key(f.target)): f for f in step.flows}
    truth["A->B"] = (flows[(a, b)].items, len(to_b))
    truth["A->C"] = (flows[(a, c)].items, 700)
    for name, (figure, true) in truth.items():
        assert figure is not None, name
        assert figure.lower <= true <= figure.upper, (name, figure, true)
        if true > 30_000:
            assert not figure.exact
            assert figure.upper - figure.lower <= 0.2 * true, (name, figure, true)
    before_a = rows[a].before
    assert before_a is not None and before_a.upper - before_a.lower <= 0.04 * len(at_a)
    # Small exact parts stay exact: C held one item before.
    assert rows[c].before == exact(1)
