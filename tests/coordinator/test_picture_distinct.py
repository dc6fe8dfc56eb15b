"""Issue 16: every published distinct count is within 2 % of the truth, and exact while the
merged Theta sketch holds fewer than 2^15 members; the rollups give the same figures as the
raw cells; groups with an older node's cell fall back to HLL and say they are not exact."""

from __future__ import annotations

import random
from collections.abc import Hashable, Iterable
from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine

from coordinator.db import new_session
from coordinator.ingest import ingest
from coordinator.picture import Picture, PictureFilter, build_picture, build_picture_raw
from protocol.hashes import HashFamily
from protocol.keys import NodeKey
from protocol.models import Denominators, ReportCell

from .conftest import NOW
from .helpers import DAY_START, cell, envelope_bytes, fixed_key, make_report, register
from .test_ingest_theta import theta_cell

NODES = ("node-a", "node-b", "node-c")
KEYS = {node: fixed_key(20 + i) for i, node in enumerate(NODES)}
EXACT_BELOW = 1 << 15
# (hoster, country, asn) of the small places; one big place gets 50,000 URLs.
SMALL = [("Small A", "DE", 64501), ("Small B", "DE", 64502), ("Small C", "FR", 64600)]
BIG = ("Big Host", "NL", 64700)
# The big place's URLs per node: overlapping ranges, 50,000 in all; node-a's cell alone holds
# 35,000 (in estimation mode itself), the others fit exactly.
BIG_RANGES = {"node-a": (0, 35_000), "node-b": (20_000, 45_000), "node-c": (40_000, 50_000)}

# Truth: place key -> URLs, as the picture groups them.
Truth = dict[Hashable, set[str]]


def _world(seed: int) -> tuple[dict[str, list[list[ReportCell]]], Truth]:
    """Per node, two days of cells (small places: 600-1,200 URLs each from a shared pool, so
    nodes and days overlap; the big place on day one), and the true URL set of every group."""
    rng = random.Random(seed)
    truth: Truth = {}
    cells: dict[str, list[list[ReportCell]]] = {node: [[], []] for node in NODES}

    def record(keys: Iterable[Hashable], urls: set[str]) -> None:
        for key in keys:
            truth.setdefault(key, set()).update(urls)

    for day in (0, 1):
        for node in NODES:
            for hoster, country, asn in SMALL:
                pool = [f"https://{hoster[-1].lower()}.test/img/{i}.jpg" for i in range(2_400)]
                for family in (HashFamily.PDQ, HashFamily.MD5):
                    urls = set(rng.sample(pool, rng.randint(600, 1_200)))
                    cells[node][day].append(
                        theta_cell(sorted(urls), country=country, asn=asn, hoster=hoster,
                                   family=family)
                    )  # fmt: skip
                    record(_keys(hoster, asn, country, family, day), urls)
            if day == 0:
                low, high = BIG_RANGES[node]
                urls = {f"https://big.test/{i}.png" for i in range(low, high)}
                hoster, country, asn = BIG
                cells[node][day].append(
                    theta_cell(sorted(urls), country=country, asn=asn, hoster=hoster, hll=False)
                )
                record(_keys(hoster, asn, country, HashFamily.PDQ, day), urls)
    return cells, truth


def _keys(hoster: str, asn: int, country: str, family: HashFamily, day: int) -> list[Hashable]:
    return [
        ("total",),
        ("country", country),
        ("hoster", hoster, asn, country),
        ("family", family.value),
        ("period", day),
    ]


def _store(engine: Engine, cells: dict[str, list[list[ReportCell]]]) -> None:
    for node in NODES:
        register(engine, node, "DE", KEYS[node], NOW)
        for day, day_cells in enumerate(cells[node]):
            report = make_report(
                KEYS[node],
                node_id=node,
                sequence=day + 1,
                created_at=NOW,
                period_start=DAY_START - timedelta(days=1 - day),
                cells=day_cells,
                denominators=Denominators(pages_fetched=1, images_hashed=1, hosts_seen=1),
            )
            with new_session(engine) as session:
                ack = ingest(session, envelope_bytes(report, KEYS[node]), NOW)
                assert ack.status == "accepted"


def _published(pic: Picture) -> dict[Hashable, tuple[int, int, int, bool]]:
    rows: dict[Hashable, tuple[int, int, int, bool]] = {}

    def add(key: Hashable, row: object) -> None:
        rows[key] = (
            row.distinct,  # type: ignore[attr-defined]
            row.distinct_lower,  # type: ignore[attr-defined]
            row.distinct_upper,  # type: ignore[attr-defined]
            row.distinct_exact,  # type: ignore[attr-defined]
        )

    add(("total",), pic.totals)
    for c in pic.by_country:
        add(("country", c.country), c)
    for h in pic.by_hoster:
        add(("hoster", h.hoster, h.asn, h.country), h)
    for f in pic.by_family:
        add(("family", f.hash_family.value), f)
    for p in pic.by_period:
        add(("period", (p.period_start - DAY_START).days + 1), p)
    return rows


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_distinct_within_two_percent_and_exact_below_2_15(engine: Engine, seed: int) -> None:
    cells, truth = _world(seed)
    _store(engine, cells)
    with new_session(engine) as session:
        pic = build_picture(session, PictureFilter(), NOW)
        raw = build_picture_raw(session, PictureFilter(), NOW)
    assert pic == raw  # rollups and cells agree, bounds included
    published = _published(pic)
    assert set(published) == set(truth)
    estimated = 0
    for key, urls in truth.items():
        distinct, lower, upper, exact = published[key]
        true = len(urls)
        assert abs(distinct - true) <= 0.02 * true, (key, distinct, true)
        assert lower <= true <= upper, (key, lower, true, upper)
        if true < EXACT_BELOW:
            assert exact and distinct == lower == upper == true, key
        else:
            estimated += 1
            assert not exact and lower < distinct < upper, key
            assert upper - lower <= 0.04 * true  # 3-sigma bounds within 2 % either side
    # The big place, its country, the total, day one and PDQ: past 2^15, estimated.
    assert estimated == 5


def test_filtered_pictures_agree_with_truth(engine: Engine) -> None:
    cells, truth = _world(7)
    _store(engine, cells)
    hoster, country, asn = BIG
    with new_session(engine) as session:
        by_country = build_picture(session, PictureFilter(country=country), NOW)
        by_family = build_picture(session, PictureFilter(hash_family=HashFamily.MD5), NOW)
        assert by_country == build_picture_raw(session, PictureFilter(country=country), NOW)
    true_big = len(truth[("hoster", hoster, asn, country)])
    assert abs(by_country.totals.distinct - true_big) <= 0.02 * true_big
    assert not by_country.totals.distinct_exact
    md5 = len(truth[("family", "md5")])
    assert by_family.totals.distinct == md5 and by_family.totals.distinct_exact


def test_a_cell_without_theta_falls_back_to_hll(engine: Engine, key_a: NodeKey) -> None:
    register(engine, "node-a", "DE", key_a, NOW)
    urls = [f"https://x.test/{i}" for i in range(700)]
    new = theta_cell(urls[:500])
    old = theta_cell(urls[300:], hoster="Old Node Host").model_copy(update={"url_theta": None})
    old_same_place = cell(hoster="Hoster A Ltd", family=HashFamily.MD5, matches=5, distinct=5)
    report = make_report(key_a, created_at=NOW, cells=[new, old, old_same_place])
    with new_session(engine) as session:
        ingest(session, envelope_bytes(report, key_a), NOW)
        pic = build_picture(session, PictureFilter(), NOW)
        only_new = build_picture(session, PictureFilter(hash_family=HashFamily.PDQ), NOW)
    hosters = {h.hoster: h for h in pic.by_hoster}
    # Hoster A has a sketchless MD5 cell: HLL of its PDQ cell plus 5, not exact.
    assert not hosters["Hoster A Ltd"].distinct_exact
    assert not pic.totals.distinct_exact
    assert pic.totals.distinct_lower <= 700 + 5 <= pic.totals.distinct_upper
    # Filtered to PDQ the old node's cell still counts (no url_theta): HLL, not exact...
    assert not only_new.totals.distinct_exact
    # ...but the new node's place alone is all Theta: exact.
    pdq_hosters = {h.hoster: h for h in only_new.by_hoster}
    assert pdq_hosters["Hoster A Ltd"].distinct_exact
    assert pdq_hosters["Hoster A Ltd"].distinct == 500


def test_untrimmed_cell_counts_as_its_union(engine: Engine, key_a: NodeKey) -> None:
    """A node need not trim: 40,000 entries without a rebuild is an "exact" sketch, stored as
    sent; published, it counts as any union of it does (estimated), on both paths alike."""
    import base64

    from datasketches import update_theta_sketch

    from protocol.theta import THETA_LG_K, THETA_SEED, keyed

    from .helpers import FEDERATION_KEY

    untrimmed = update_theta_sketch(THETA_LG_K, seed=THETA_SEED)
    for i in range(40_000):  # the table rebuilds only past 61,440
        untrimmed.update(keyed(FEDERATION_KEY, f"https://u.test/{i}"))
    compact = untrimmed.compact(True)
    assert compact.num_retained == 40_000 and not compact.is_estimation_mode()
    wide = theta_cell(["a"], hll=False).model_copy(
        update={
            "url_theta": base64.b64encode(compact.serialize(True)).decode(),
            "distinct": 40_000,
            "matches": 40_000,
        }
    )
    register(engine, "node-a", "DE", key_a, NOW)
    report = make_report(key_a, created_at=NOW, cells=[wide])
    with new_session(engine) as session:
        assert ingest(session, envelope_bytes(report, key_a), NOW).status == "accepted"
        pic = build_picture(session, PictureFilter(), NOW)
        assert pic == build_picture_raw(session, PictureFilter(), NOW)
    assert not pic.totals.distinct_exact
    assert abs(pic.totals.distinct - 40_000) <= 0.02 * 40_000
    assert pic.totals.distinct_lower <= 40_000 <= pic.totals.distinct_upper
