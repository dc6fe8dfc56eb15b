"""Issue 16 at ingest: cells' Theta sketches and reports' per-hoster coverage are checked and
stored (single and batch path); hostile sketch bytes are refused, never decoded blindly."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import struct
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from coordinator.db import new_session
from coordinator.ingest import ingest, ingest_batch
from coordinator.migrate import current_revision, downgrade, head_revision, upgrade
from coordinator.models import CellRow, CoverageRow
from coordinator.sketch_check import (
    THETA_SEED_HASH,
    check_theta_count,
    decode_theta_checked,
    theta_layout,
)
from protocol.errors import MalformedPayload, ProtocolError, SketchMismatch
from protocol.hashes import HashFamily
from protocol.keys import NodeKey
from protocol.models import Denominators, HosterCoverage, Report, ReportCell
from protocol.theta import THETA_LG_K, THETA_SEED, make_theta

from .conftest import NOW, Backend
from .helpers import (
    FEDERATION_KEY,
    envelope_bytes,
    make_report,
    payload_dict,
    register,
    sign_payload,
    sketch_b64,
    stored_counts,
)

FUZZ = settings(
    max_examples=int(os.environ.get("LIBRA_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# --- builders (also used by the picture and coverage tests) ---------------------------------


def theta_cell(
    urls: Sequence[str],
    *,
    country: str = "DE",
    asn: int = 64501,
    hoster: str = "Hoster A Ltd",
    family: HashFamily = HashFamily.PDQ,
    matches: int | None = None,
    items: Sequence[str] | None = None,
    distinct: int | None = None,
    hll: bool = True,
) -> ReportCell:
    """A cell as an issue-16 node sends it: distinct = the URLs' exact count, with the HLL
    and Theta sketches of those URLs, and (given ``items``) the matched items' Theta sketch."""
    unique = set(urls)
    count = len(unique) if distinct is None else distinct
    return ReportCell(
        country=country,
        asn=asn,
        hoster=hoster,
        hash_family=family,
        matches=max(len(urls), count) if matches is None else matches,
        distinct=count,
        sketch=sketch_b64(unique) if hll else None,
        url_theta=make_theta(FEDERATION_KEY, unique),
        items=None if items is None else len(set(items)),
        item_theta=None if items is None else make_theta(FEDERATION_KEY, set(items)),
    )


def with_coverage(report: Report, rows: Sequence[tuple[str, int, str, int, int]]) -> Report:
    """``report`` with coverage rows (country, asn, hoster, pages, images) and denominators
    that add up to them, validated again as a node's report would be."""
    coverage = [
        HosterCoverage(country=c, asn=a, hoster=h, pages_fetched=p, images_hashed=i)
        for c, a, h, p, i in rows
    ]
    denominators = Denominators(
        pages_fetched=sum(r.pages_fetched for r in coverage),
        images_hashed=sum(r.images_hashed for r in coverage),
        hosts_seen=report.denominators.hosts_seen,
    )
    data = report.model_dump()
    data.update(coverage=[r.model_dump() for r in coverage], denominators=denominators.model_dump())
    return Report.model_validate(data)


# --- storage --------------------------------------------------------------------------------


@pytest.fixture
def registered(engine: Engine, key_a: NodeKey) -> Engine:
    register(engine, "node-a", "DE", key_a, NOW)
    return engine


def _report(key: NodeKey, sequence: int = 1) -> Report:
    cells = [
        theta_cell([f"u{i}" for i in range(5)], items=["pdq:a", "pdq:b"], matches=6),
        theta_cell(["v1", "v2"], country="NL", asn=64600, hoster="Hoster N"),
    ]
    report = make_report(key, sequence=sequence, created_at=NOW, cells=cells)
    return with_coverage(
        report,
        [
            ("DE", 64501, "Hoster A Ltd", 30, 120),
            ("NL", 64600, "Hoster N", 4, 9),
            ("FR", 64700, "Clean Hoster", 11, 50),  # crawled, nothing found
        ],
    )


def _stored(engine: Engine) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    with Session(engine) as session:
        cells = sorted(
            (r.hoster, r.distinct, r.url_theta is not None, r.items, r.item_theta is not None)
            for r in session.exec(select(CellRow)).all()
        )
        coverage = sorted(
            (r.country, r.asn, r.hoster, r.pages_fetched, r.images_hashed)
            for r in session.exec(select(CoverageRow)).all()
        )
    return cells, coverage


EXPECTED_CELLS = [("Hoster A Ltd", 5, True, 2, True), ("Hoster N", 2, True, None, False)]
EXPECTED_COVERAGE = [
    ("DE", 64501, "Hoster A Ltd", 30, 120),
    ("FR", 64700, "Clean Hoster", 11, 50),
    ("NL", 64600, "Hoster N", 4, 9),
]


def test_single_ingest_stores_thetas_and_coverage(registered: Engine, key_a: NodeKey) -> None:
    report = _report(key_a)
    with new_session(registered) as session:
        assert ingest(session, envelope_bytes(report, key_a), NOW).status == "accepted"
    assert _stored(registered) == (EXPECTED_CELLS, EXPECTED_COVERAGE)
    with Session(registered) as session:
        row = session.exec(select(CellRow).where(CellRow.hoster == "Hoster A Ltd")).one()
    assert row.url_theta == report.cells[0].url_theta  # as received
    assert row.item_theta == report.cells[0].item_theta


def test_batch_ingest_stores_thetas_and_coverage(registered: Engine, key_a: NodeKey) -> None:
    bodies: list[bytes | dict[str, object]] = [envelope_bytes(_report(key_a), key_a)]
    with new_session(registered) as session:
        outcomes = ingest_batch(session, bodies, NOW)  # type: ignore[arg-type]
    assert [getattr(o, "status", o) for o in outcomes] == ["accepted"]
    assert _stored(registered) == (EXPECTED_CELLS, EXPECTED_COVERAGE)


def test_report_without_new_members_stores_nulls(registered: Engine, key_a: NodeKey) -> None:
    with new_session(registered) as session:
        ingest(session, envelope_bytes(make_report(key_a, created_at=NOW), key_a), NOW)
    cells, coverage = _stored(registered)
    assert cells == [("Hoster A Ltd", 2, False, None, False)] and coverage == []


def test_deleting_a_report_deletes_its_coverage(registered: Engine, key_a: NodeKey) -> None:
    report = _report(key_a)
    with new_session(registered) as session:
        ingest(session, envelope_bytes(report, key_a), NOW)
    with registered.begin() as conn:
        if registered.dialect.name == "sqlite":
            conn.execute(text("PRAGMA foreign_keys=ON"))
        for table in ("rollup_queue", "denominators", "cells", "reports"):
            conn.execute(text(f"DELETE FROM {table}"))
    assert _stored(registered) == ([], [])


# --- refusals -------------------------------------------------------------------------------


def _rejected(engine: Engine, key: NodeKey, report: Report, code: str) -> str:
    before = stored_counts(engine)
    with new_session(engine) as session, pytest.raises(ProtocolError) as info:
        ingest(session, envelope_bytes(report, key), NOW)
    assert info.value.code == code, info.value.message
    assert stored_counts(engine) == before
    return info.value.message


def test_distinct_must_equal_exact_theta(registered: Engine, key_a: NodeKey) -> None:
    cell = theta_cell([f"u{i}" for i in range(10)], distinct=9, matches=10)
    cell = cell.model_copy(update={"sketch": None})  # only the Theta sketch speaks
    message = _rejected(
        registered, key_a, make_report(key_a, created_at=NOW, cells=[cell]), "sketch_mismatch"
    )
    assert "distinct 9" in message and "10" in message


def test_items_must_equal_exact_item_theta(registered: Engine, key_a: NodeKey) -> None:
    cell = theta_cell(["u1", "u2", "u3"], items=["pdq:a", "pdq:b"])
    cell = cell.model_copy(update={"items": 3})
    report = make_report(key_a, created_at=NOW, cells=[cell])
    assert "items 3" in _rejected(registered, key_a, report, "sketch_mismatch")


def test_estimation_mode_count_within_six_sigma(registered: Engine, key_a: NodeKey) -> None:
    urls = [f"big-{i}" for i in range(50_000)]
    ok = theta_cell(urls, hll=False)
    with new_session(registered) as session:
        body = envelope_bytes(make_report(key_a, created_at=NOW, cells=[ok]), key_a)
        assert ingest(session, body, NOW).status == "accepted"
    # 10 % off is far outside 6 sigma (0.55 % each) at 2^15 retained entries.
    far = theta_cell(urls, hll=False, distinct=45_000)
    report = make_report(key_a, sequence=2, created_at=NOW, cells=[far])
    assert "6-sigma" in _rejected(registered, key_a, report, "sketch_mismatch")


def test_estimation_mode_needs_two_to_the_fifteen_entries(
    registered: Engine, key_a: NodeKey
) -> None:
    from datasketches import update_theta_sketch

    small = update_theta_sketch(10, seed=THETA_SEED)  # lg_k 10: estimation mode from 1,024
    for i in range(5_000):
        small.update(f"x{i}")
    small.trim()
    b64 = base64.b64encode(small.compact(True).serialize(True)).decode()
    cell = theta_cell(["a"], hll=False).model_copy(
        update={"url_theta": b64, "distinct": 5_000, "matches": 5_000}
    )
    report = make_report(key_a, created_at=NOW, cells=[cell])
    assert "32768" in _rejected(registered, key_a, report, "malformed_payload")


def test_garbage_theta_is_malformed(registered: Engine, key_a: NodeKey) -> None:
    good = theta_cell(["a", "b"], hll=False)
    for bogus in ("not base64 !", base64.b64encode(b"garbage, not a sketch").decode()):
        cell = good.model_copy(update={"url_theta": bogus})
        report = make_report(key_a, created_at=NOW, cells=[cell])
        _rejected(registered, key_a, report, "malformed_payload")
        cell = good.model_copy(update={"item_theta": bogus, "items": 1})
        report = make_report(key_a, created_at=NOW, cells=[cell])
        _rejected(registered, key_a, report, "malformed_payload")


@pytest.mark.parametrize("hoster", ["nul\x00byte", "lone \ud800 surrogate"])
def test_unstorable_coverage_hoster_is_malformed(
    registered: Engine, key_a: NodeKey, hoster: str
) -> None:
    report = with_coverage(make_report(key_a, created_at=NOW, cells=[]), [("DE", 1, "x", 1, 1)])
    data = payload_dict(report)
    data["coverage"][0]["hoster"] = hoster
    before = stored_counts(registered)
    with new_session(registered) as session, pytest.raises(ProtocolError) as info:
        ingest(session, sign_payload(json.dumps(data).encode(), key_a), NOW)
    assert info.value.code == "malformed_payload"
    assert stored_counts(registered) == before


# --- the header check -----------------------------------------------------------------------


def _raw(count: int) -> bytes:
    return base64.b64decode(make_theta(FEDERATION_KEY, (f"m{i}" for i in range(count))))


@pytest.mark.parametrize("count", [0, 1, 2, 9, 1_000, 40_000])
def test_header_states_exact_length_of_real_sketches(count: int) -> None:
    raw = _raw(count)
    assert raw[1] == (3 if count < 2 else 4)  # empty and single-entry sketches stay version 3
    layout = theta_layout(raw)
    assert layout is not None and layout[0] == min(count, 1 << THETA_LG_K)
    assert theta_layout(raw[:-1]) is None and theta_layout(raw + b"\0") is None


def test_seed_hash_constant_is_datasketches() -> None:
    from datasketches import update_theta_sketch

    assert update_theta_sketch(THETA_LG_K, seed=THETA_SEED).compact().get_seed_hash() == (
        THETA_SEED_HASH
    )


@pytest.mark.parametrize(
    ("offset", "value"),
    [
        (2, 2),  # not the compact family
        (1, 5),  # unknown serial version
        (3, 65),  # version 4: more than 64 bits per entry
        (3, 0),
        (4, 5),  # version 4: entry count wider than 4 bytes
        (4, 0),
        (5, 0x1B),  # big-endian flag
        (5, 0x12),  # not ordered
        (6, 0x00),  # another seed
        (0, 3),  # preamble longs
    ],
)
def test_hostile_header_fields_are_refused(offset: int, value: int) -> None:
    raw = bytearray(_raw(50))
    raw[offset] = value
    assert theta_layout(bytes(raw)) is None
    with pytest.raises(MalformedPayload):
        decode_theta_checked(base64.b64encode(bytes(raw)).decode(), "url_theta")


def test_entry_count_field_must_match_the_data() -> None:
    raw = bytearray(_raw(50))
    raw[8] = 200  # version 4, exact: the count follows the 8-byte preamble
    assert theta_layout(bytes(raw)) is None
    v3 = bytearray(base64.b64decode(_v3_uncompressed(5)))
    struct.pack_into("<I", v3, 8, 6)  # claims one more entry than it holds
    assert theta_layout(bytes(v3)) is None


def _v3_uncompressed(count: int) -> str:
    from datasketches import update_theta_sketch

    sketch = update_theta_sketch(THETA_LG_K, seed=THETA_SEED)
    for i in range(count):
        sketch.update(f"m{i}")
    return base64.b64encode(sketch.compact(True).serialize()).decode()


def test_uncompressed_version_3_is_accepted() -> None:
    check_theta_count(_v3_uncompressed(5), 5, "url_theta", "distinct")


def test_repeated_entries_are_refused() -> None:
    raw = bytearray(base64.b64decode(_v3_uncompressed(3)))
    raw[24:32] = raw[16:24]  # second entry = first: one member counted twice
    with pytest.raises(MalformedPayload, match="repeated"):
        decode_theta_checked(base64.b64encode(bytes(raw)).decode(), "url_theta")


@FUZZ
@given(
    count=st.sampled_from([0, 1, 2, 7, 8, 9, 300, 40_000]),
    cut=st.integers(min_value=0, max_value=300_000),
    flips=st.lists(
        st.tuples(st.integers(min_value=0, max_value=300_000), st.integers(1, 255)), max_size=4
    ),
)
def test_truncated_or_garbled_theta_never_crashes(
    count: int, cut: int, flips: list[tuple[int, int]]
) -> None:
    raw = bytearray(_RAW[count])
    for position, mask in flips:
        if raw:
            raw[position % len(raw)] ^= mask
    data = bytes(raw[: cut % (len(raw) + 1)] if cut % 3 else raw)
    with contextlib.suppress(MalformedPayload, SketchMismatch):
        check_theta_count(base64.b64encode(data).decode(), count, "url_theta", "distinct")


_RAW = {n: _raw(n) for n in (0, 1, 2, 7, 8, 9, 300, 40_000)}


@FUZZ
@given(count=st.sampled_from([0, 1, 2, 7, 8, 9, 300, 40_000]), data=st.data())
def test_every_truncation_is_malformed(count: int, data: st.DataObject) -> None:
    raw = _RAW[count]
    cut = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    with pytest.raises(MalformedPayload):
        check_theta_count(base64.b64encode(raw[:cut]).decode(), count, "url_theta", "distinct")


@FUZZ
@given(header=st.binary(min_size=8, max_size=40), tail=st.binary(max_size=64))
def test_arbitrary_bytes_with_theta_family_never_crash(header: bytes, tail: bytes) -> None:
    raw = bytearray(header + tail)
    raw[2] = 3  # compact Theta family: reach the deeper checks
    raw[6:8] = struct.pack("<H", THETA_SEED_HASH)
    with contextlib.suppress(MalformedPayload, SketchMismatch):
        check_theta_count(base64.b64encode(bytes(raw)).decode(), 1, "item_theta", "items")


# --- migration 0005 -------------------------------------------------------------------------


def test_migration_0005_down_and_up_keeps_older_data(backend: Backend, key_a: NodeKey) -> None:
    engine = backend.engine
    register(engine, "node-a", "DE", key_a, NOW)
    with new_session(engine) as session:
        ingest(session, envelope_bytes(make_report(key_a, created_at=NOW), key_a), NOW)
    downgrade(engine, "0004")
    with engine.connect() as conn:
        columns = set(conn.execute(text("SELECT * FROM cells")).keys())
        assert "url_theta" not in columns
    upgrade(engine)
    assert current_revision(engine) == head_revision(engine)
    with Session(engine) as session:
        row = session.exec(select(CellRow)).one()
    assert (row.distinct, row.url_theta, row.items, row.item_theta) == (2, None, None, None)
    # The new tables and columns work after the round trip.
    with new_session(engine) as session:
        report = _report(key_a, sequence=2)
        assert ingest(session, envelope_bytes(report, key_a), NOW).status == "accepted"
    assert len(_stored(engine)[1]) == 3
    downgrade(engine, "0004")
    upgrade(engine)
