"""The global picture: sums, merged distinct counts, node counts, filters and ordering."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy.engine import Engine

from coordinator.db import new_session
from coordinator.ingest import ingest
from coordinator.picture import Picture, PictureFilter, build_picture
from protocol.hashes import HashFamily
from protocol.keys import NodeKey
from protocol.models import Denominators, Report

from .conftest import NOW
from .helpers import DAY_START, cell, envelope_bytes, make_report, register, sketch_b64

DAY2 = DAY_START + timedelta(days=1)


@pytest.fixture
def nodes(engine: Engine, key_a: NodeKey, key_b: NodeKey) -> Engine:
    register(engine, "node-a", "DE", key_a, NOW)
    register(engine, "node-b", "FR", key_b, NOW)
    return engine


def store(engine: Engine, report: Report, key: NodeKey, now: datetime = NOW) -> None:
    with new_session(engine) as session:
        assert ingest(session, envelope_bytes(report, key), now).status == "accepted"


def picture(engine: Engine, **filters: object) -> Picture:
    with new_session(engine) as session:
        return build_picture(session, PictureFilter(**filters), NOW)  # type: ignore[arg-type]


def items(start: int, stop: int) -> list[str]:
    return [f"image-{i}" for i in range(start, stop)]


def test_empty_picture(engine: Engine) -> None:
    pic = picture(engine)
    assert (pic.reports, pic.nodes) == (0, 0)
    assert pic.totals.model_dump() == {
        "matches": 0,
        "distinct": 0,
        "pages_fetched": 0,
        "images_hashed": 0,
        "hosts_seen": 0,
        "by_method": {"direct": 0, "dihedral": 0, "trimmed": 0, "region": 0, "unspecified": 0},
        "by_media": {"image": 0, "video": 0},  # issue 13
        # Issue 16: nothing is counted exactly; no report carried coverage.
        "distinct_exact": True,
        "distinct_lower": 0,
        "distinct_upper": 0,
        "prevalence": None,
    }
    assert not (pic.by_country or pic.by_hoster or pic.by_family or pic.by_period)


UNSPECIFIED_160 = {"direct": 0, "dihedral": 0, "trimmed": 0, "region": 0, "unspecified": 160}


# Issue 16 members of a row from HLL sketches only (no url_theta: never exact; the HLL's
# 3-sigma bounds) and from reports without coverage (no denominators, no prevalence).
HLL_100_UNCOVERED = {
    "distinct_exact": False,
    "distinct_lower": 100,
    "distinct_upper": 101,
    "pages_fetched": None,
    "images_hashed": None,
    "prevalence": None,
}


def test_overlapping_sketches_give_true_union(
    nodes: Engine, key_a: NodeKey, key_b: NodeKey
) -> None:
    # Both nodes saw the same hoster in NL; 20 of their items are the same.
    store(
        nodes,
        make_report(
            key_a,
            created_at=NOW,
            cells=[
                cell(
                    "NL",
                    64600,
                    "Shared Host",
                    matches=90,
                    distinct=60,
                    sketch=sketch_b64(items(0, 60)),
                )
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
                cell(
                    "NL",
                    64600,
                    "Shared Host",
                    matches=70,
                    distinct=60,
                    sketch=sketch_b64(items(40, 100)),
                )
            ],
        ),
        key_b,
    )
    pic = picture(nodes)
    assert (pic.reports, pic.nodes) == (2, 2)
    assert pic.totals.matches == 160
    assert pic.totals.distinct == 100  # not 120: the overlap counts once
    assert [r.model_dump() for r in pic.by_country] == [
        {
            "country": "NL",
            "matches": 160,
            "distinct": 100,
            "nodes": 2,
            # Reports without `methods`: all their matches are "unspecified".
            "by_method": {
                "direct": 0,
                "dihedral": 0,
                "trimmed": 0,
                "region": 0,
                "unspecified": 160,
            },
            **HLL_100_UNCOVERED,
        }
    ]
    assert [r.model_dump() for r in pic.by_hoster] == [
        {
            "hoster": "Shared Host",
            "asn": 64600,
            "country": "NL",
            "matches": 160,
            "distinct": 100,
            "nodes": 2,
            "by_method": {
                "direct": 0,
                "dihedral": 0,
                "trimmed": 0,
                "region": 0,
                "unspecified": 160,
            },
            **HLL_100_UNCOVERED,
        }
    ]
    assert [(r.hash_family, r.matches, r.distinct) for r in pic.by_family] == [
        (HashFamily.PDQ, 160, 100)
    ]


def test_group_sums_nodes_and_ordering(nodes: Engine, key_a: NodeKey, key_b: NodeKey) -> None:
    store(
        nodes,
        make_report(
            key_a,
            created_at=NOW,
            cells=[
                cell(
                    "DE", 64501, "Hoster A", matches=5, distinct=4, sketch=sketch_b64(items(0, 4))
                ),
                cell(
                    "NL", 64600, "Hoster N", matches=7, distinct=7, sketch=sketch_b64(items(10, 17))
                ),
                cell(
                    "NL",
                    64601,
                    "Hoster M",
                    family=HashFamily.MD5,
                    matches=2,
                    distinct=2,
                    sketch=sketch_b64(items(100, 102)),
                ),
            ],
            denominators=Denominators(pages_fetched=100, images_hashed=1000, hosts_seen=10),
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
                cell(
                    "DE", 64501, "Hoster A", matches=7, distinct=3, sketch=sketch_b64(items(2, 5))
                ),
                cell(
                    "US",
                    64700,
                    "Hoster U",
                    matches=12,
                    distinct=1,
                    sketch=sketch_b64(items(50, 51)),
                ),
            ],
            denominators=Denominators(pages_fetched=50, images_hashed=200, hosts_seen=5),
        ),
        key_b,
    )
    pic = picture(nodes)
    assert pic.totals.model_dump() == {
        "matches": 33,
        "distinct": 4 + 1 + 7 + 2 + 1,  # items 0-4, 10-16, 100-101, 50
        "pages_fetched": 150,
        "images_hashed": 1200,
        "hosts_seen": 15,
        "by_method": {"direct": 0, "dihedral": 0, "trimmed": 0, "region": 0, "unspecified": 33},
        "by_media": {"image": 33, "video": 0},
        "distinct_exact": False,  # HLL only (one cell has no sketch at all)
        "distinct_lower": 15,
        "distinct_upper": 16,
        "prevalence": None,
    }
    # Ties on matches (DE 12, US 12) fall back to the country code.
    assert [(r.country, r.matches, r.distinct, r.nodes) for r in pic.by_country] == [
        ("DE", 12, 5, 2),
        ("US", 12, 1, 1),
        ("NL", 9, 9, 1),
    ]
    assert [
        (r.hoster, r.asn, r.country, r.matches, r.distinct, r.nodes) for r in pic.by_hoster
    ] == [
        ("Hoster A", 64501, "DE", 12, 5, 2),
        ("Hoster U", 64700, "US", 12, 1, 1),
        ("Hoster N", 64600, "NL", 7, 7, 1),
        ("Hoster M", 64601, "NL", 2, 2, 1),
    ]
    assert [(r.hash_family.value, r.matches, r.distinct) for r in pic.by_family] == [
        ("pdq", 31, 13),
        ("md5", 2, 2),
    ]


def test_cells_without_sketch_fall_back_to_summed_distinct(
    nodes: Engine, key_a: NodeKey, key_b: NodeKey
) -> None:
    store(nodes, make_report(key_a, created_at=NOW, cells=[cell(matches=3, distinct=2)]), key_a)
    store(
        nodes,
        make_report(
            key_b,
            node_id="node-b",
            created_at=NOW,
            cells=[cell(matches=10, distinct=9, sketch=sketch_b64(items(0, 9)))],
        ),
        key_b,
    )
    pic = picture(nodes)
    assert pic.totals.distinct == 9 + 2
    assert [(r.country, r.distinct) for r in pic.by_country] == [("DE", 11)]


def test_filters_by_period_and_family(nodes: Engine, key_a: NodeKey, key_b: NodeKey) -> None:
    store(
        nodes,
        make_report(
            key_a,
            sequence=1,
            created_at=NOW,
            period_start=DAY_START,
            cells=[
                cell(family=HashFamily.PDQ, matches=4, distinct=4, sketch=sketch_b64(items(0, 4))),
                cell(family=HashFamily.MD5, matches=1, distinct=1, sketch=sketch_b64(items(0, 1))),
            ],
        ),
        key_a,
    )
    store(
        nodes,
        make_report(
            key_b,
            node_id="node-b",
            sequence=1,
            created_at=DAY2 + timedelta(days=1),  # issue 12: a period ends before its report
            period_start=DAY2,
            cells=[
                cell(
                    "FR",
                    family=HashFamily.PDQ,
                    matches=6,
                    distinct=6,
                    sketch=sketch_b64(items(2, 8)),
                )
            ],
        ),
        key_b,
        now=DAY2 + timedelta(days=1),
    )
    everything = picture(nodes)
    assert (everything.reports, everything.nodes, everything.totals.matches) == (2, 2, 11)
    assert everything.totals.distinct == 8  # items 0-7 across both periods and families
    assert [
        (p.period_start, p.period_end, p.matches, p.distinct) for p in everything.by_period
    ] == [
        (DAY_START, DAY2, 5, 4),
        (DAY2, DAY2 + timedelta(days=1), 6, 6),
    ]

    day2 = picture(nodes, period_start=DAY2)
    assert (day2.reports, day2.nodes, day2.totals.matches, day2.totals.distinct) == (1, 1, 6, 6)
    assert [r.country for r in day2.by_country] == ["FR"]
    assert day2.filters.period_start == DAY2

    day1 = picture(nodes, period_end=DAY2)
    assert (day1.reports, day1.totals.matches) == (1, 5)
    assert day1.totals.images_hashed == 40

    # A window that contains no whole report period selects nothing.
    none = picture(nodes, period_start=DAY_START + timedelta(hours=1), period_end=DAY2)
    assert (none.reports, none.totals.matches, none.by_country) == (0, 0, [])

    md5 = picture(nodes, hash_family=HashFamily.MD5)
    assert (md5.totals.matches, md5.totals.distinct) == (1, 1)
    assert [(f.hash_family, f.matches) for f in md5.by_family] == [(HashFamily.MD5, 1)]
    assert [(c.country, c.nodes) for c in md5.by_country] == [("DE", 1)]
    # Reports and denominators are about the period window, not the family.
    assert (md5.reports, md5.nodes, md5.totals.images_hashed) == (2, 2, 80)

    pdq_day1 = picture(nodes, hash_family=HashFamily.PDQ, period_end=DAY2)
    assert (pdq_day1.totals.matches, pdq_day1.totals.distinct) == (4, 4)


def test_several_reports_of_one_period_all_count(nodes: Engine, key_a: NodeKey) -> None:
    for sequence, span in ((1, (0, 5)), (2, (3, 10))):
        store(
            nodes,
            make_report(
                key_a,
                sequence=sequence,
                created_at=NOW,
                cells=[
                    cell(
                        matches=span[1] - span[0],
                        distinct=span[1] - span[0],
                        sketch=sketch_b64(items(*span)),
                    )
                ],
            ),
            key_a,
        )
    pic = picture(nodes)
    assert (pic.reports, pic.nodes) == (2, 1)
    assert pic.totals.matches == 12
    assert pic.totals.distinct == 10  # the cycles' items overlap; the sketch union knows
    assert pic.totals.pages_fetched == 20
    assert [(p.matches, p.distinct) for p in pic.by_period] == [(12, 10)]


def test_huge_sums_do_not_overflow(nodes: Engine, key_a: NodeKey) -> None:
    big = 2**53 - 1
    cells = [cell(hoster=f"hoster {i}", matches=big, distinct=big) for i in range(1100)]
    store(nodes, make_report(key_a, created_at=NOW, cells=cells), key_a)
    pic = picture(nodes)
    # Beyond 2^63 in total: exact on PostgreSQL, float-rounded on SQLite, never an error.
    assert abs(pic.totals.matches - 1100 * big) / (1100 * big) < 1e-9
    assert pic.totals.distinct == 1100 * big
