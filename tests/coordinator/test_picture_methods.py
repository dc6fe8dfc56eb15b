"""Issue 18 at the coordinator: matches counted by how they were found (the cells' optional
`methods`), stored per cell, summed in the rollups, shown and suppressed with their rows."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import select

from coordinator.db import new_session
from coordinator.migrate import current_revision, downgrade, head_revision, upgrade
from coordinator.models import CellRow
from coordinator.picture import PictureFilter, build_picture_raw
from coordinator.views import SuppressionPolicy, for_viewer
from protocol.keys import NodeKey
from protocol.models import MatchMethods

from .conftest import NOW, Backend
from .helpers import DAY_START, cell, make_report, register
from .test_picture import picture, store


def methods(direct: int = 0, dihedral: int = 0, trimmed: int = 0, region: int = 0) -> MatchMethods:
    return MatchMethods(direct=direct, dihedral=dihedral, trimmed=trimmed, region=region)


def by_method(
    direct: int = 0, dihedral: int = 0, trimmed: int = 0, region: int = 0, unspecified: int = 0
) -> dict[str, int]:
    return {
        "direct": direct,
        "dihedral": dihedral,
        "trimmed": trimmed,
        "region": region,
        "unspecified": unspecified,
    }


@pytest.fixture
def two_nodes(engine: Engine, key_a: NodeKey, key_b: NodeKey) -> Engine:
    register(engine, "node-a", "DE", key_a, NOW)
    register(engine, "node-b", "FR", key_b, NOW)
    nodes = engine
    # node-a says how it found its matches; node-b's second cell (an older node's) does not.
    store(
        nodes,
        make_report(
            key_a,
            created_at=NOW,
            cells=[
                cell("DE", 64501, "Hoster A", matches=5, distinct=4, methods=methods(2, 3)),
                cell("NL", 64600, "Hoster N", matches=4, distinct=4, methods=methods(0, 0, 1, 3)),
            ],
        ),
        key_a,
    )
    store(
        nodes,
        make_report(
            key_b,
            node_id="node-b",
            created_at=NOW,
            cells=[
                cell("DE", 64501, "Hoster A", matches=6, distinct=6, methods=methods(1, 0, 0, 5)),
                cell("DE", 64502, "Hoster B", matches=7, distinct=7),
            ],
        ),
        key_b,
    )
    return nodes


def test_cells_store_their_methods_or_null(two_nodes: Engine) -> None:
    with new_session(two_nodes) as session:
        rows = {
            (r.hoster, r.matches): (r.m_direct, r.m_dihedral, r.m_trimmed, r.m_region)
            for r in session.exec(select(CellRow)).all()
        }
    assert rows == {
        ("Hoster A", 5): (2, 3, 0, 0),
        ("Hoster N", 4): (0, 0, 1, 3),
        ("Hoster A", 6): (1, 0, 0, 5),
        ("Hoster B", 7): (None, None, None, None),
    }


def test_picture_sums_methods_across_nodes(two_nodes: Engine) -> None:
    pic = picture(two_nodes)
    assert pic.totals.matches == 22
    assert pic.totals.by_method.model_dump() == by_method(3, 3, 1, 8, unspecified=7)
    countries = {r.country: r.by_method.model_dump() for r in pic.by_country}
    assert countries == {
        "DE": by_method(3, 3, 0, 5, unspecified=7),
        "NL": by_method(0, 0, 1, 3),
    }
    hosters = {r.hoster: r.by_method.model_dump() for r in pic.by_hoster}
    assert hosters == {
        "Hoster A": by_method(3, 3, 0, 5),
        "Hoster B": by_method(unspecified=7),
        "Hoster N": by_method(0, 0, 1, 3),
    }
    for row in pic.by_country:
        assert sum(row.by_method.model_dump().values()) == row.matches
    for hoster_row in pic.by_hoster:
        assert sum(hoster_row.by_method.model_dump().values()) == hoster_row.matches
    # Filtered to a country, from the country's rows.
    de = picture(two_nodes, country="DE")
    assert de.totals.by_method.model_dump() == by_method(3, 3, 0, 5, unspecified=7)
    # The rollups and the raw cells agree.
    with new_session(two_nodes) as session:
        raw = build_picture_raw(session, PictureFilter(), NOW)
    assert raw.totals == pic.totals and raw.by_country == pic.by_country
    assert raw.by_hoster == pic.by_hoster


def test_rollups_merge_methods_of_later_reports(two_nodes: Engine, key_a: NodeKey) -> None:
    assert picture(two_nodes).totals.by_method.region == 8  # rollups built
    store(
        two_nodes,
        make_report(
            key_a,
            sequence=2,
            created_at=NOW,
            cells=[cell("DE", 64501, "Hoster A", matches=2, distinct=1, methods=methods(0, 0, 2))],
        ),
        key_a,
    )
    pic = picture(two_nodes)  # the stored rollup rows are updated, not replaced
    assert pic.totals.by_method.model_dump() == by_method(3, 3, 3, 8, unspecified=7)
    hoster_a = next(r for r in pic.by_hoster if r.hoster == "Hoster A")
    assert hoster_a.by_method.model_dump() == by_method(3, 3, 2, 5)
    with new_session(two_nodes) as session:
        raw = build_picture_raw(session, PictureFilter(), NOW)
    assert raw.by_hoster == pic.by_hoster and raw.totals == pic.totals


def test_breakdown_is_withheld_with_its_row(two_nodes: Engine) -> None:
    # Hoster N (4 matches, one node) and Hoster B (7, one node) fall under min_nodes 2.
    viewer = for_viewer(picture(two_nodes), SuppressionPolicy(min_count=1, min_nodes=2))
    assert [r.hoster for r in viewer.by_hoster] == ["Hoster A"]
    assert viewer.by_hoster[0].by_method.model_dump() == by_method(3, 3, 0, 5)
    assert [r.country for r in viewer.by_country] == ["DE"]
    dumped = viewer.model_dump_json()
    assert "Hoster N" not in dumped and "Hoster B" not in dumped


def test_migration_counts_earlier_rollups_as_unspecified(backend: Backend) -> None:
    engine = backend.engine
    downgrade(engine, "0003")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO rollup_buckets (id, level, span_start, span_end) "
                "VALUES (1, 0, :start, :end)"
            ),
            {"start": DAY_START, "end": DAY_START + timedelta(days=1)},
        )
        conn.execute(
            text(
                "INSERT INTO picture_rollups (bucket_id, hash_family, dim, country, asn, hoster,"
                " cells, matches, plain_distinct, sketch, nodes, reports, pages_fetched,"
                " images_hashed, hosts_seen) VALUES (1, '', 'T', '', -1, '', '2', '9', '0',"
                " NULL, :nodes, '1', '0', '0', '0')"
            ),
            {"nodes": b"\x01"},
        )
    upgrade(engine)
    assert current_revision(engine) == head_revision(engine)
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT m_direct, m_region, m_unspecified FROM picture_rollups")
        ).one()
    assert tuple(row) == ("0", "0", "9")
    downgrade(engine, "0003")
    upgrade(engine)
