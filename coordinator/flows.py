"""Displacement flows (issue 16): where listed items went after they left a hoster or country.

Nodes send, per cell, a Theta sketch of the keyed identities of the list items they matched
(protocol.theta ``item_theta``). The coordinator never learns an item: it only unions,
subtracts and intersects those sketches. For consecutive report periods t -> t+1 of equal
length and each place (a hoster, or a country):

- items(X, t) = union of the item sketches of X's cells in the reports of period t;
- removed(A) = items(A, t) minus items(A, t+1); new(B) = items(B, t+1) minus items(B, t);
- flow A -> B = removed(A) intersect items(B, t+1), for B != A, kept when its estimate > 0.

Every figure is exact while its sketch holds fewer than 2^15 members (not in estimation mode);
beyond that it is an estimate with 3-sigma bounds (protocol.theta.theta_bounds).

The computation here is pure (periods, places and base64 sketches in; figures out) so that it
can be checked against exact Python sets; ``build_flows`` feeds it from the database.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from typing import Any, Literal

from datasketches import (
    compact_theta_sketch,
    theta_a_not_b,
    theta_intersection,
    theta_union,
    update_theta_sketch,
)
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func
from sqlmodel import Session, col, select

from protocol.hashes import Media, ReportFamily, media_of
from protocol.models import UtcDatetime
from protocol.theta import THETA_LG_K, THETA_SEED, decode_theta, theta_bounds

from .models import CellRow, ReportRow
from .views import SuppressionPolicy

FlowsBy = Literal["hoster", "country"]
PeriodKey = tuple[datetime, datetime]
# (country,) by country; (country, asn, hoster) by hoster.
PlaceKey = tuple[Any, ...]

_STREAM_BATCH = 500


# --- set operations on Theta sketches (lg_k 15, seed 9001, as protocol.theta) ---------------


def empty_theta() -> compact_theta_sketch:
    return update_theta_sketch(THETA_LG_K, seed=THETA_SEED).compact()


def union_theta(sketches: Iterable[compact_theta_sketch]) -> compact_theta_sketch:
    union = theta_union(THETA_LG_K, seed=THETA_SEED)
    for sketch in sketches:
        union.update(sketch)
    return union.get_result()


def a_not_b_theta(a: compact_theta_sketch, b: compact_theta_sketch) -> compact_theta_sketch:
    return theta_a_not_b(THETA_SEED).compute(a, b)


def intersect_theta(a: compact_theta_sketch, b: compact_theta_sketch) -> compact_theta_sketch:
    intersection = theta_intersection(THETA_SEED)
    intersection.update(a)
    intersection.update(b)
    return intersection.get_result()


# --- the answer -----------------------------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)


class Estimate(_Out):
    """A set's size: exact (lower = estimate = upper) unless the sketch is in estimation
    mode, then the estimate with its 3-sigma bounds."""

    estimate: int
    lower: int
    upper: int
    exact: bool

    @classmethod
    def of(cls, sketch: compact_theta_sketch) -> Estimate:
        estimate, lower, upper = theta_bounds(sketch)
        return cls(
            estimate=estimate, lower=lower, upper=upper, exact=not sketch.is_estimation_mode()
        )


class CountryPlace(_Out):
    country: str


class HosterPlace(_Out):
    country: str
    asn: int
    hoster: str


Place = HosterPlace | CountryPlace


class PeriodOut(_Out):
    start: UtcDatetime
    end: UtcDatetime


class PlaceRow(_Out):
    """One place in one step. ``None`` = withheld by small-cell suppression (viewer tier)."""

    place: Place
    before: Estimate | None
    after: Estimate | None
    removed: Estimate | None
    new: Estimate | None


class FlowRow(_Out):
    source: Place
    target: Place
    items: Estimate


class Step(_Out):
    from_: PeriodOut = Field(alias="from")
    to: PeriodOut
    places: list[PlaceRow]
    flows: list[FlowRow]


class Skipped(_Out):
    from_: PeriodOut = Field(alias="from")
    to: PeriodOut
    reason: str


class FlowSuppression(_Out):
    """Small-cell suppression of this answer (viewer tier): what was withheld."""

    min_count: int
    min_nodes: int
    places: int  # place rows withheld entirely
    values: int  # single figures withheld in rows that are shown
    flows: int


class LeftOut(_Out):
    """Reports of the window whose cells (some or all) carry no item sketch (older nodes):
    those cells are not in any figure."""

    reports: int
    cells: int


class Flows(_Out):
    generated_at: UtcDatetime
    by: FlowsBy
    hash_family: ReportFamily | None
    tier: Literal["full", "viewer"] = "full"
    media: Media | None = None  # added field (issue 13): image or video families only
    periods: list[PeriodOut]
    steps: list[Step]
    skipped: list[Skipped]
    suppression: FlowSuppression | None = None
    left_out: LeftOut = LeftOut(reports=0, cells=0)


# --- the computation ------------------------------------------------------------------------


@dataclass
class ItemSets:
    """Per (period, place): the union of its cells' item sketches, and the nodes behind it."""

    periods: set[PeriodKey] = field(default_factory=set)
    unions: dict[tuple[PeriodKey, PlaceKey], Any] = field(default_factory=dict)
    nodes: dict[tuple[PeriodKey, PlaceKey], set[str]] = field(default_factory=dict)

    def add_period(self, period: PeriodKey) -> None:
        self.periods.add(period)

    def add(self, period: PeriodKey, place: PlaceKey, sketch_b64: str, node_id: str = "") -> None:
        self.periods.add(period)
        key = (period, place)
        union = self.unions.get(key)
        if union is None:
            union = self.unions[key] = theta_union(THETA_LG_K, seed=THETA_SEED)
        union.update(decode_theta(sketch_b64))
        self.nodes.setdefault(key, set()).add(node_id)

    def at(self, period: PeriodKey) -> dict[PlaceKey, compact_theta_sketch]:
        return {place: u.get_result() for (p, place), u in self.unions.items() if p == period}


def _place(key: PlaceKey) -> Place:
    if len(key) == 1:
        return CountryPlace(country=key[0])
    return HosterPlace(country=key[0], asn=int(key[1]), hoster=key[2])


def _period(key: PeriodKey) -> PeriodOut:
    return PeriodOut(start=key[0], end=key[1])


def pair_steps(
    periods: Iterable[PeriodKey],
) -> tuple[list[tuple[PeriodKey, PeriodKey]], list[Skipped]]:
    """Which period pairs get a step, and why the others do not.

    A step joins t and the period that starts where t ends and lasts as long. In the sorted
    list, an adjacent pair that is not a step is listed as skipped, unless its first period
    already has a step (with mixed period lengths, periods of other lengths interleave)."""
    ordered = sorted(set(periods))
    by_start: dict[datetime, list[PeriodKey]] = {}
    for p in ordered:
        by_start.setdefault(p[0], []).append(p)
    steps: list[tuple[PeriodKey, PeriodKey]] = []
    has_step: set[PeriodKey] = set()
    for p in ordered:
        for q in by_start.get(p[1], []):
            if q[1] - q[0] == p[1] - p[0]:
                steps.append((p, q))
                has_step.add(p)
    skipped: list[Skipped] = []
    for p, q in pairwise(ordered):
        if p in has_step:
            continue
        if q[0] > p[1]:
            reason = "gap: the later period starts after the earlier one ends"
        elif q[0] < p[1]:
            reason = "the periods overlap"
        else:
            reason = "the periods differ in length"
        skipped.append(Skipped(from_=_period(p), to=_period(q), reason=reason))
    return steps, skipped


@dataclass
class _Counter:
    places: int = 0
    values: int = 0
    flows: int = 0


def compute_steps(
    sets: ItemSets,
    by: FlowsBy = "hoster",
    policy: SuppressionPolicy | None = None,
) -> tuple[list[PeriodOut], list[Step], list[Skipped], FlowSuppression | None]:
    """The steps between consecutive equal periods, with viewer-tier suppression when
    ``policy`` is given: a figure below ``min_count`` is withheld (a zero is shown: it says
    nothing about a small cell), a place that fewer than ``min_nodes`` nodes saw is withheld
    entirely, and a flow below either threshold is left out."""
    del by  # the places' shape already says which
    pairs, skipped = pair_steps(sets.periods)
    hidden = _Counter()
    steps = [_step(sets, t0, t1, policy, hidden) for t0, t1 in pairs]
    suppression = None
    if policy is not None:
        suppression = FlowSuppression(
            min_count=policy.min_count,
            min_nodes=policy.min_nodes,
            places=hidden.places,
            values=hidden.values,
            flows=hidden.flows,
        )
    return [_period(p) for p in sorted(sets.periods)], steps, skipped, suppression


def _step(
    sets: ItemSets,
    t0: PeriodKey,
    t1: PeriodKey,
    policy: SuppressionPolicy | None,
    hidden: _Counter,
) -> Step:
    before, after = sets.at(t0), sets.at(t1)
    empty = empty_theta()
    nodes_of = sets.nodes

    def nodes(*keys: tuple[PeriodKey, PlaceKey]) -> int:
        seen: set[str] = set()
        for key in keys:
            seen |= nodes_of.get(key, set())
        return len(seen)

    # Which places of t+1 hold each retained hash: a flow A -> B is computed only for the B
    # that share at least one retained member with removed(A) (any other one is empty).
    owners: dict[int, list[PlaceKey]] = {}
    for place, sketch in after.items():
        for h in sketch:
            owners.setdefault(h, []).append(place)
    estimating = {place: sketch.is_estimation_mode() for place, sketch in after.items()}
    ordered = sorted(set(before) | set(after), key=_sort_key)
    rank = {place: i for i, place in enumerate(ordered)}
    models = {place: _place(place) for place in ordered}

    places: list[PlaceRow] = []
    flows: list[tuple[int, int, int, FlowRow]] = []
    for place in ordered:
        b, a = before.get(place, empty), after.get(place, empty)
        removed = a_not_b_theta(b, a)
        new = a_not_b_theta(a, b)
        figures = [Estimate.of(s) for s in (b, a, removed, new)]
        row = _place_row(place, figures, nodes((t0, place), (t1, place)), policy, hidden)
        if row is not None:
            places.append(row)
        if removed.num_retained == 0:
            continue
        shared = Counter(q for h in removed for q in owners.get(h, ()) if q != place)
        removed_exact = not removed.is_estimation_mode()
        for target, count in shared.items():
            if removed_exact and not estimating[target]:
                # Both sets held whole: the intersection is exactly the shared members.
                moved = Estimate(estimate=count, lower=count, upper=count, exact=True)
            else:
                moved = Estimate.of(intersect_theta(removed, after[target]))
            if moved.estimate <= 0:
                continue
            if policy is not None and policy.hides(
                moved.estimate, nodes((t0, place), (t1, target))
            ):
                hidden.flows += 1
                continue
            flow = FlowRow(source=models[place], target=models[target], items=moved)
            flows.append((-moved.estimate, rank[place], rank[target], flow))
    flows.sort(key=lambda f: f[:3])  # largest first, then by place
    return Step(from_=_period(t0), to=_period(t1), places=places, flows=[f[3] for f in flows])


def _place_row(
    place: PlaceKey,
    figures: list[Estimate],
    nodes: int,
    policy: SuppressionPolicy | None,
    hidden: _Counter,
) -> PlaceRow | None:
    if all(f.estimate == 0 for f in figures[:2]):
        return None  # nothing there in either period (only possible with estimation mode)
    shown: list[Estimate | None] = list(figures)
    if policy is not None:
        if nodes < policy.min_nodes:
            hidden.places += 1
            return None
        for i, f in enumerate(figures):
            if 0 < f.estimate < policy.min_count:
                shown[i] = None
        if all(s is None or s.estimate == 0 for s in shown):
            hidden.places += 1
            return None
        hidden.values += sum(1 for s in shown if s is None)
    return PlaceRow(
        place=_place(place), before=shown[0], after=shown[1], removed=shown[2], new=shown[3]
    )


def _sort_key(place: PlaceKey) -> tuple[str, ...]:
    return tuple(str(part) for part in place)


# --- from the database ----------------------------------------------------------------------


@dataclass(frozen=True)
class FlowFilter:
    period_start: datetime | None = None
    period_end: datetime | None = None
    hash_family: ReportFamily | None = None
    media: Media | None = None


def build_flows(
    session: Session,
    filters: FlowFilter,
    by: FlowsBy,
    now: datetime,
    policy: SuppressionPolicy | None = None,
) -> Flows:
    """Flows over the stored reports whose whole period lies in the window (as the picture)."""
    report_where = []
    if filters.period_start is not None:
        report_where.append(col(ReportRow.period_start) >= filters.period_start)
    if filters.period_end is not None:
        report_where.append(col(ReportRow.period_end) <= filters.period_end)
    cell_where = [*report_where]
    if filters.hash_family is not None:
        cell_where.append(col(CellRow.hash_family) == filters.hash_family.value)
    if filters.media is not None:
        families = [f.value for f in ReportFamily if media_of(f) == filters.media]
        cell_where.append(col(CellRow.hash_family).in_(families))

    sets = ItemSets()
    # Every report period counts, also one whose reports matched nothing: its places are
    # empty, so all that was there before was removed.
    for start, end in session.exec(
        select(col(ReportRow.period_start), col(ReportRow.period_end))
        .where(*report_where)
        .distinct()
    ):
        sets.add_period((start, end))

    columns: tuple[Any, ...] = (
        col(ReportRow.period_start),
        col(ReportRow.period_end),
        col(ReportRow.node_id),
        col(CellRow.country),
        col(CellRow.asn),
        col(CellRow.hoster),
        col(CellRow.item_theta),
    )
    joined = (
        select(*columns)
        .select_from(CellRow)
        .join(ReportRow, col(ReportRow.report_id) == col(CellRow.report_id))
        .where(*cell_where, col(CellRow.item_theta).is_not(None))
        .execution_options(yield_per=_STREAM_BATCH)
    )
    for start, end, node_id, country, asn, hoster, theta in session.exec(joined):
        place: PlaceKey = (country,) if by == "country" else (country, int(asn), hoster)
        sets.add((start, end), place, theta, node_id)

    left_reports, left_cells = session.exec(
        select(func.count(col(ReportRow.report_id).distinct()), func.count(col(CellRow.id)))
        .select_from(CellRow)
        .join(ReportRow, col(ReportRow.report_id) == col(CellRow.report_id))
        .where(*cell_where, col(CellRow.item_theta).is_(None))
    ).one()

    periods, steps, skipped, suppression = compute_steps(sets, by, policy)
    return Flows(
        generated_at=now,
        by=by,
        hash_family=filters.hash_family,
        media=filters.media,
        tier="full" if policy is None else "viewer",
        periods=periods,
        steps=steps,
        skipped=skipped,
        suppression=suppression,
        left_out=LeftOut(reports=int(left_reports), cells=int(left_cells)),
    )
