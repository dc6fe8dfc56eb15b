"""Materialised rollups: the picture from rollups equals the picture from the raw cells."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from datasketches import HLL_4, HLL_8, hll_sketch
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, insert, select
from sqlalchemy.engine import Engine

from coordinator.app import create_app
from coordinator.config import CoordinatorSettings
from coordinator.db import new_session
from coordinator.ingest import ingest
from coordinator.models import (
    CellRow,
    CoverageRow,
    DenominatorRow,
    PictureRollupRow,
    ReportRow,
    RollupBucketRow,
    RollupQueueRow,
)
from coordinator.picture import (
    PictureFilter,
    aggregate_raw,
    assemble,
    build_picture,
    build_picture_raw,
)
from coordinator.rollups import (
    MAX_LEVEL,
    aggregate_rollups,
    block_of,
    blocks_holding,
    cover,
    pending_reports,
    rebuild_rollups,
    refresh_rollups,
)
from protocol.errors import MalformedPayload
from protocol.hashes import HashFamily
from protocol.keys import NodeKey
from protocol.theta import make_theta

from .conftest import NOW
from .helpers import (
    DAY_START,
    FEDERATION_KEY,
    bearer,
    cell,
    envelope_bytes,
    fixed_key,
    make_report,
    make_token,
    register,
    sketch_b64,
)

BASE = datetime(2026, 1, 5, tzinfo=DAY_START.tzinfo)
NODES = ["node-a", "node-b", "node-c"]
LENGTHS = [timedelta(days=1), timedelta(days=2), timedelta(days=7), timedelta(hours=6),
           timedelta(days=31)]  # fmt: skip


@dataclass(frozen=True)
class FakeCell:
    country: str
    asn: int
    hoster: str
    family: str
    matches: int
    distinct: int
    items: tuple[int, ...] | None  # None: no sketch
    methods: tuple[int, int, int, int] | None = None  # None: the node did not say
    theta: bool = False  # issue 16: url_theta of the same items (or of none)


@dataclass(frozen=True)
class FakeReport:
    node: int
    start: datetime
    end: datetime
    cells: tuple[FakeCell, ...]
    pages: int
    # Issue 16: (country, asn, hoster, pages, images) per hoster; empty = no coverage.
    coverage: tuple[tuple[str, int, str, int, int], ...] = ()


def _sketch(items: Sequence[int]) -> str:
    sketch = hll_sketch(12, HLL_8)
    for item in items:
        sketch.update(f"item-{item}")
    return base64.b64encode(sketch.serialize_compact()).decode()


def _theta(items: Sequence[int]) -> str:
    return make_theta(FEDERATION_KEY, (f"item-{item}" for item in items))


cells_st = st.builds(
    FakeCell,
    country=st.sampled_from(["DE", "FR"]),
    asn=st.sampled_from([0, 64501]),
    hoster=st.sampled_from(["h1", "h2", "h3"]),
    family=st.sampled_from(["pdq", "md5"]),
    matches=st.integers(0, 50),
    distinct=st.integers(0, 9),
    items=st.none()
    | st.integers(0, 1500).flatmap(
        lambda n: st.integers(0, 100_000).map(
            lambda seed: tuple((seed * 7919 + i * 104_729) % 3000 for i in range(n))
        )
    ),
    methods=st.none() | st.tuples(*(st.integers(0, 20) for _ in range(4))),
    theta=st.booleans(),
)


@st.composite
def reports_st(draw: st.DrawFn) -> FakeReport:
    start = BASE + timedelta(days=draw(st.integers(0, 70)))
    if draw(st.booleans()):
        start += timedelta(hours=draw(st.sampled_from([6, 18])))
    length = draw(st.sampled_from(LENGTHS))
    raw_cells = draw(st.lists(cells_st, max_size=5))
    unique = {(c.country, c.asn, c.hoster, c.family): c for c in raw_cells}
    coverage: tuple[tuple[str, int, str, int, int], ...] = ()
    if draw(st.booleans()):  # every cell's hoster, and perhaps one where nothing was found
        places = {(c.country, c.asn, c.hoster) for c in unique.values()}
        if draw(st.booleans()):
            places.add(draw(st.sampled_from([("NL", 64700, "clean"), ("DE", 0, "h1")])))
        coverage = tuple(
            (*place, draw(st.integers(0, 50)), draw(st.integers(0, 5000)))
            for place in sorted(places)
        )
    return FakeReport(
        node=draw(st.integers(0, len(NODES) - 1)),
        start=start,
        end=start + length,
        cells=tuple(unique.values()),
        pages=draw(st.integers(0, 100)),
        coverage=coverage,
    )


@st.composite
def filters_st(draw: st.DrawFn) -> PictureFilter:
    def bound() -> datetime | None:
        if draw(st.booleans()):
            return None
        moment = BASE + timedelta(days=draw(st.integers(-3, 110)))
        return moment + timedelta(hours=draw(st.sampled_from([0, 0, 6])))

    start, end = bound(), bound()
    if start is not None and end is not None and end <= start:
        start, end = end, start + timedelta(days=1)
    family = draw(st.sampled_from([None, None, HashFamily.PDQ, HashFamily.MD5, HashFamily.SHA1]))
    return PictureFilter(
        period_start=start,
        period_end=end,
        hash_family=family,
        country=draw(st.sampled_from([None, None, "DE", "FR", "NL"])),
        hoster=draw(st.sampled_from([None, None, None, "h1", "h2", "nope"])),
        asn=draw(st.sampled_from([None, None, None, 0, 64501])),
    )


def _prepare(engine: Engine) -> None:
    for n, node in enumerate(NODES):
        register(engine, node, "DE", fixed_key(n + 10), NOW)


def _clear(engine: Engine) -> None:
    with engine.begin() as conn:
        for table in (PictureRollupRow, RollupBucketRow, RollupQueueRow, CellRow, DenominatorRow,
                      CoverageRow, ReportRow):  # fmt: skip
            conn.execute(delete(table))


def _store(engine: Engine, reports: Sequence[FakeReport]) -> None:
    """Straight into the tables as ingest stores them (signatures are tested elsewhere)."""
    with engine.begin() as conn:
        for report in reports:
            rid = uuid.uuid4().hex
            node = NODES[report.node]
            key_id = fixed_key(report.node + 10).key_id
            conn.execute(
                insert(ReportRow),
                [{"report_id": rid, "node_id": node, "key_id": key_id,
                  "sequence": uuid.uuid4().int % 2**62, "created_at": NOW,
                  "period_start": report.start, "period_end": report.end,
                  "payload_sha256": "0" * 64, "envelope": "{}", "received_at": NOW}],
            )  # fmt: skip
            conn.execute(
                insert(DenominatorRow),
                [{"report_id": rid, "pages_fetched": report.pages, "images_hashed": 2,
                  "hosts_seen": 1}],
            )  # fmt: skip
            if report.cells:
                conn.execute(
                    insert(CellRow),
                    [{"report_id": rid, "country": c.country, "asn": c.asn, "hoster": c.hoster,
                      "hash_family": c.family, "matches": c.matches, "distinct": c.distinct,
                      "sketch": None if c.items is None else _sketch(c.items),
                      "url_theta": _theta(c.items or ()) if c.theta else None,
                      **dict(zip(("m_direct", "m_dihedral", "m_trimmed", "m_region"),
                                 c.methods or (None,) * 4, strict=True))}
                     for c in report.cells],
                )  # fmt: skip
            if report.coverage:
                conn.execute(
                    insert(CoverageRow),
                    [{"report_id": rid, "country": c, "asn": a, "hoster": h, "pages_fetched": p,
                      "images_hashed": i} for c, a, h, p, i in report.coverage],
                )  # fmt: skip
            conn.execute(insert(RollupQueueRow), [{"report_id": rid}])


def _assert_same(engine: Engine, filters: PictureFilter) -> None:
    with new_session(engine) as session:
        raw = assemble(aggregate_raw(session, filters), filters, NOW)
        rolled = assemble(aggregate_rollups(session, filters), filters, NOW)
    assert rolled == raw


@pytest.mark.parametrize("level", range(1, MAX_LEVEL + 1))
def test_blocks_are_aligned_and_nested(level: int) -> None:
    start, end = block_of(BASE + timedelta(hours=5), level)
    assert end - start == timedelta(days=1 << level)
    parent = block_of(start, level + 1)
    assert parent[0] <= start and end <= parent[1]


def test_blocks_holding_a_period() -> None:
    day = datetime(2026, 1, 6, tzinfo=BASE.tzinfo)  # 20,459 days after 1970-01-01: odd
    assert (day - datetime(1970, 1, 1, tzinfo=BASE.tzinfo)).days % 2 == 1
    levels = [level for level, _, _ in blocks_holding(day, day + timedelta(days=1))]
    assert levels == list(range(1, MAX_LEVEL + 2))  # the last one: the all-time bucket
    # Day 20,459 = 8 * 2557 + 3: days 20,459-20,460 cross the level-1 and level-2 block
    # boundaries (20,460), so the smallest block holding them is the 8-day one.
    across = blocks_holding(day, day + timedelta(days=2))
    assert across[0] == (3, *block_of(day, 3))
    assert across[0][1] <= day and day + timedelta(days=2) <= across[0][2]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    first=st.lists(reports_st(), min_size=1, max_size=8),
    second=st.lists(reports_st(), max_size=6),
    filters=st.lists(filters_st(), min_size=1, max_size=4),
    chunk=st.integers(1, 6),
)
def test_rollups_equal_the_raw_picture(
    engine: Engine,
    first: list[FakeReport],
    second: list[FakeReport],
    filters: list[PictureFilter],
    chunk: int,
) -> None:
    if not _registered(engine):
        _prepare(engine)
    _clear(engine)
    _store(engine, first)
    with new_session(engine) as session:
        assert refresh_rollups(session, chunk=chunk) == len(first)
    _store(engine, second)  # folded in on top of existing rollups
    with new_session(engine) as session:
        assert refresh_rollups(session, chunk=chunk) == len(second)
        assert pending_reports(session) == 0
    for one in [PictureFilter(), *filters]:
        _assert_same(engine, one)


def _registered(engine: Engine) -> bool:
    from coordinator.models import NodeRow

    with engine.connect() as conn:
        return bool(conn.execute(select(func.count()).select_from(NodeRow)).scalar())


def test_cover_uses_blocks_and_edge_periods(engine: Engine) -> None:
    _prepare(engine)
    days = [FakeReport(0, BASE + timedelta(days=d), BASE + timedelta(days=d + 1), (), 1)
            for d in range(64)]  # fmt: skip
    _store(engine, days)
    with new_session(engine) as session:
        refresh_rollups(session)
        use, periods = cover(session, PictureFilter())
        assert len(periods) == 64
        # 64 aligned-ish days: a handful of blocks instead of 64 periods.
        assert len(use) <= 2 * MAX_LEVEL
        window = PictureFilter(BASE + timedelta(days=3), BASE + timedelta(days=40))
        use, periods = cover(session, window)
        assert len(periods) == 37 and len(use) < 37
    _assert_same(engine, window)


def test_ingest_queues_reports_and_picture_refreshes(engine: Engine, key_a: NodeKey) -> None:
    register(engine, "node-a", "DE", key_a, NOW)
    cells = [cell(matches=4, sketch=sketch_b64(["x", "y"])), cell(hoster="B", matches=2)]
    report = make_report(key_a, created_at=NOW, cells=cells)
    with new_session(engine) as session:
        assert ingest(session, envelope_bytes(report, key_a), NOW).status == "accepted"
        assert pending_reports(session) == 1
    with new_session(engine) as session:
        pic = build_picture(session, PictureFilter(), NOW)
        assert pending_reports(session) == 0
        assert pic == build_picture_raw(session, PictureFilter(), NOW)
    assert pic.totals.matches == 6 and pic.totals.distinct == 2 + 2


def test_rebuild_gives_the_same_rollups(engine: Engine) -> None:
    _prepare(engine)
    items = tuple(range(900))
    reports = [
        FakeReport(n % 3, BASE + timedelta(days=n), BASE + timedelta(days=n + 2),
                   (FakeCell("DE", 1, "h1", "pdq", n, 1, items[n * 10:]),), 5)
        for n in range(20)
    ]  # fmt: skip
    _store(engine, reports)
    with new_session(engine) as session:
        refresh_rollups(session, chunk=4)
        before = aggregate_rollups(session, PictureFilter())
        assert rebuild_rollups(session) == 20
        assert refresh_rollups(session) == 20
        assert aggregate_rollups(session, PictureFilter()) == before
    _assert_same(engine, PictureFilter())


@pytest.mark.parametrize(("lg_k", "kind"), [(10, HLL_8), (12, HLL_4)])
def test_ingest_refuses_sketches_of_another_shape(
    engine: Engine, key_a: NodeKey, lg_k: int, kind: object
) -> None:
    register(engine, "node-a", "DE", key_a, NOW)
    other = hll_sketch(lg_k, kind)
    other.update("x")
    odd = base64.b64encode(other.serialize_compact()).decode()
    report = make_report(key_a, created_at=NOW, cells=[cell(sketch=odd)])
    with new_session(engine) as session, pytest.raises(MalformedPayload, match="HLL_8 with lg_k"):
        ingest(session, envelope_bytes(report, key_a), NOW)
    with new_session(engine) as session:
        assert pending_reports(session) == 0


def test_api_country_and_hoster_filters(engine: Engine, key_a: NodeKey, tmp_path: Path) -> None:
    register(engine, "node-a", "DE", key_a, NOW)
    cells = [
        cell(country="DE", hoster="Big", matches=5, sketch=sketch_b64(["a", "b"])),
        cell(country="FR", hoster="Big", asn=64999, matches=2, sketch=sketch_b64(["b", "c"])),
        cell(country="FR", hoster="Other", asn=64998, matches=7),
    ]
    report = make_report(key_a, created_at=NOW, cells=cells)
    settings = CoordinatorSettings(data_dir=tmp_path)
    with TestClient(create_app(settings, engine=engine, clock=lambda: NOW)) as client:
        body = envelope_bytes(report, key_a)
        json_type = {"content-type": "application/json"}
        assert client.post("/v1/reports", content=body, headers=json_type).status_code == 200
        admin = bearer(make_token(engine, "admin", NOW))
        big = client.get("/v1/picture", params={"hoster": "Big"}, headers=admin).json()
        assert big["filters"]["hoster"] == "Big"
        assert big["totals"]["matches"] == 7 and big["totals"]["distinct"] == 3
        assert {r["country"] for r in big["by_country"]} == {"DE", "FR"}
        assert big["reports"] == 1  # report-level counts are not narrowed by cell filters
        fr = client.get("/v1/picture", params={"country": "fr"}, headers=admin).json()
        assert fr["filters"]["country"] == "FR" and fr["totals"]["matches"] == 9
        assert {r["hoster"] for r in fr["by_hoster"]} == {"Big", "Other"}
        one = client.get("/v1/picture", params={"asn": 64998}, headers=admin).json()
        assert [r["hoster"] for r in one["by_hoster"]] == ["Other"]
        bad = client.get("/v1/picture", params={"country": "France"}, headers=admin)
        assert bad.status_code == 422
    with new_session(engine) as session:
        for filters in (PictureFilter(hoster="Big"), PictureFilter(country="FR")):
            assert build_picture(session, filters, NOW) == build_picture_raw(session, filters, NOW)
