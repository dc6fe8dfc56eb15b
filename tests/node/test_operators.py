"""The operator table: parsing, entry-specific errors, most-specific match, attribution override,
database versions on every sighting and in the report."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from node import cycle
from node.attribution.attributor import (
    Attribution,
    Attributor,
    GeoDatabaseError,
    open_operator_table,
)
from node.attribution.operators import (
    OperatorTableError,
    load_operator_table,
    normalise_domain,
    parse_operator_table,
)
from node.federation.reporter import queue_report
from node.models import AttributionSnapshot, Sighting, SightingAttribution
from protocol.keys import NodeKey
from protocol.models import AttributionSource, Period, Report
from tests.node.conftest import write_geoip
from tests.node.test_cycle import FakeCrawler, FakeFunction, world

TABLE = b"""
[[hoster]]
id = "hoster-a"
name = "Hoster A GmbH"
abuse_emails = ["abuse@hoster-a.example"]
asns = [64500]

[[hoster]]
id = "hoster-a-cdn"
name = "Hoster A CDN"
country = "FR"
networks = ["127.0.1.128/25"]
webhook = "https://hoster-a.example/abuse-hook"

[[hoster]]
id = "reseller"
name = "Reseller on Hoster A"
networks = ["127.0.1.0/24"]
domains = ["images.reseller.example"]

[[hoster]]
id = "reseller-shop"
name = "Reseller shop"
domains = ["shop.images.reseller.example"]
"""


def test_most_specific_match_wins() -> None:
    ops = parse_operator_table(TABLE, "ops.toml")
    # domain > network > ASN; longest suffix and longest prefix first
    hit = ops.match(domain="a.shop.images.reseller.example", ip="127.0.1.200", asn=64500)
    assert hit is not None and (hit.operator.id, hit.by) == ("reseller-shop", "domain")
    hit = ops.match(domain="cdn.images.reseller.example.", ip="127.0.1.200", asn=64500)
    assert hit is not None and (hit.operator.id, hit.key) == ("reseller", "images.reseller.example")
    hit = ops.match(domain="unrelated.example", ip="127.0.1.200", asn=64500)
    assert hit is not None and (hit.operator.id, hit.by) == ("hoster-a-cdn", "network")
    hit = ops.match(ip="::ffff:127.0.1.5", asn=64500)  # IPv4-mapped IPv6 is the IPv4 address
    assert hit is not None and hit.operator.id == "reseller"
    hit = ops.match(ip="127.0.9.9", asn=64500)
    assert hit is not None and (hit.operator.id, hit.by, hit.key) == ("hoster-a", "asn", "AS64500")
    assert ops.match(domain="reseller.example", ip="not-an-ip", asn=64999) is None
    assert ops.match() is None


def test_digest_is_the_file_content() -> None:
    ops = parse_operator_table(TABLE)
    assert ops.version == "sha256:" + hashlib.sha256(TABLE).hexdigest()
    assert parse_operator_table(TABLE + b"\n").version != ops.version


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[hoster]]\nid = "a"\nname = "A"\nasns = [1]\n[x]', "unknown top-level key"),
        ('[[hoster]]\nid = "A B"\nname = "A"\nasns = [1]', "hoster #1: id must be"),
        ('[[hoster]]\nid = "a"\nname = ""\nasns = [1]', "hoster #1 (id 'a'): name must be"),
        ('[[hoster]]\nid = "a"\nname = "A"\ncountry = "de"\nasns = [1]', "'de' is not"),
        ('[[hoster]]\nid = "a"\nname = "A"\nasns = [0]', "asns[0] 0 is not an AS number"),
        ('[[hoster]]\nid = "a"\nname = "A"\nasns = [true]', "asns[0] True"),
        ('[[hoster]]\nid = "a"\nname = "A"\nnetworks = ["10.0.0.1/8"]', "networks[0]"),
        ('[[hoster]]\nid = "a"\nname = "A"\ndomains = ["bad domain"]', "domains[0]"),
        ('[[hoster]]\nid = "a"\nname = "A"\nasns = [1]\nabuse_emails = ["x"]', "abuse_emails[0]"),
        ('[[hoster]]\nid = "a"\nname = "A"\nasns = [1]\nwebhook = "ftp://x"', "webhook"),
        ('[[hoster]]\nid = "a"\nname = "A"\nasns = [1]\nfoo = 1', "unknown key(s) foo"),
        ('[[hoster]]\nid = "a"\nname = "A"', "matches nothing"),
        (
            '[[hoster]]\nid = "a"\nname = "A"\nasns = [1]\n'
            '[[hoster]]\nid = "b"\nname = "B"\nasns = [2, 1]',
            "hoster #2 (id 'b'): AS1 is already given by hoster 'a'",
        ),
        (
            '[[hoster]]\nid = "a"\nname = "A"\nasns = [1]\n'
            '[[hoster]]\nid = "a"\nname = "B"\nasns = [2]',
            "id a is already given",
        ),
        ('[[hoster]]\nid = "a"\nname = "A" x\nasns = [1]\n', "line 3"),
        ("hoster = 3", "array of tables"),
    ],
)
def test_errors_name_the_entry_and_field(text: str, message: str) -> None:
    with pytest.raises(OperatorTableError) as info:
        parse_operator_table(text.encode(), "ops.toml")
    assert message in str(info.value)
    assert str(info.value).startswith("ops.toml")


def test_missing_file(tmp_path: Path) -> None:
    assert load_operator_table(None) is None
    with pytest.raises(OperatorTableError, match="cannot read"):
        load_operator_table(tmp_path / "nope.toml")
    # The crawl treats a broken table like a broken GeoIP database: it stops with the message.
    with pytest.raises(GeoDatabaseError, match="cannot read"):
        open_operator_table(tmp_path / "nope.toml")


@given(st.text(max_size=80))
def test_normalise_domain_never_raises(text: str) -> None:
    name = normalise_domain(text)
    assert name is None or (name == name.lower() and not name.endswith("."))


def test_attribution_overridden_by_the_table(tmp_path: Path) -> None:
    country_db, asn_db = write_geoip(tmp_path)
    ops = parse_operator_table(TABLE)
    with Attributor(country_db, asn_db, ops) as attributor:
        # network entry with a country override
        assert attributor.lookup("127.0.1.200") == Attribution(
            "FR", 64500, "Hoster A CDN", "hoster-a-cdn"
        )
        # domain entry beats the network; the country stays the GeoIP one
        assert attributor.lookup("127.0.1.200", "x.shop.images.reseller.example") == Attribution(
            "DE", 64500, "Reseller shop", "reseller-shop"
        )
        # not in the table: GeoIP as before
        assert attributor.lookup("127.0.2.9") == Attribution("NL", 64501, "Hoster B")
        # unknown stays unknown (never dropped), unless the domain is known
        assert attributor.lookup("127.0.3.1") == Attribution()
        assert attributor.lookup(None, "images.reseller.example") == Attribution(
            "ZZ", 0, "Reseller on Hoster A", "reseller"
        )


def test_sources_name_each_database_version(tmp_path: Path) -> None:
    country_db, asn_db = write_geoip(tmp_path)
    ops = parse_operator_table(TABLE)
    with Attributor(country_db, asn_db, ops) as attributor:
        sources = attributor.sources()
    names = [s.name for s in sources]
    assert names == ["GeoLite2-ASN", "GeoLite2-Country", "operator-table"]
    assert sources[2].version == ops.version
    for source in sources[:2]:  # build epoch as an ISO UTC time
        assert source.version.endswith("Z") and source.version[:2] == "20"
    with Attributor() as nothing:
        assert nothing.sources() == []


async def test_every_sighting_records_its_snapshot_and_the_report_names_it(
    engine: Engine, tmp_path: Path
) -> None:
    events, answers, index = world(engine)
    country_db, asn_db = write_geoip(tmp_path)
    ops = parse_operator_table(TABLE)
    with Attributor(country_db, asn_db, ops) as attributor:
        summary = await cycle.run(
            engine=engine,
            crawler=FakeCrawler(events),
            function=FakeFunction(answers),
            index=index,
            attributor=attributor,
            seeds=["http://a.test/", "http://b.test/"],
        )
        expected = attributor.sources()
    assert expected[2] == AttributionSource(name="operator-table", version=ops.version)
    with Session(engine) as session:
        sightings = {s.url: s for s in session.exec(select(Sighting)).all()}
        links = {a.sighting_id: a for a in session.exec(select(SightingAttribution)).all()}
        snapshots = session.exec(select(AttributionSnapshot)).all()
    assert {url: (s.country, s.asn, s.hoster) for url, s in sightings.items()} == {
        "http://a.test/1.png": ("DE", 64500, "Reseller on Hoster A"),  # 127.0.1.5: network
        "http://b.test/3.png": ("ZZ", 0, "unknown"),  # 127.0.9.9: unknown, never dropped
        "http://b.test/4.png": ("NL", 64501, "Hoster B"),  # not in the table: GeoIP
    }
    assert len(snapshots) == 1 and set(links) == {s.id for s in sightings.values()}
    assert {links[s.id or 0].operator_id for s in sightings.values()} == {"reseller", None}
    assert {a.snapshot_id for a in links.values()} == {snapshots[0].id}

    moment = summary.started_at
    day = Period(
        start=moment.replace(hour=0, minute=0, second=0, microsecond=0),
        end=moment.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1),
    )
    report = queue_report(
        engine, node_id="node-a", key=NodeKey.generate(), federation_key=bytes(32), period=day
    ).report
    assert report.attribution_sources == expected
    assert Report.model_validate(report.model_dump()).attribution_sources == expected
    # A report with no sightings names no sources (the field is then left out of the payload).
    empty = queue_report(
        engine, node_id="node-a", key=NodeKey.generate(), federation_key=bytes(32), period=day
    ).report
    assert empty.attribution_sources == []


async def test_a_table_changed_mid_period_shows_both_versions(
    engine: Engine, tmp_path: Path
) -> None:
    events, answers, index = world(engine)
    country_db, asn_db = write_geoip(tmp_path)
    versions = []
    for table in (TABLE, TABLE.replace(b"Hoster A CDN", b"Hoster A Edge")):
        ops = parse_operator_table(table)
        versions.append(ops.version)
        with Attributor(country_db, asn_db, ops) as attributor:
            summary = await cycle.run(
                engine=engine,
                crawler=FakeCrawler(events),
                function=FakeFunction(answers),
                index=index,
                attributor=attributor,
                seeds=["http://a.test/"],
            )
    start = summary.started_at.replace(hour=0, minute=0, second=0, microsecond=0)
    day = Period(start=start, end=start + timedelta(days=1))
    report = queue_report(
        engine, node_id="node-a", key=NodeKey.generate(), federation_key=bytes(32), period=day
    ).report
    tables = [s.version for s in report.attribution_sources if s.name == "operator-table"]
    assert sorted(tables) == sorted(versions) and versions[0] != versions[1]
    assert len(report.attribution_sources) == 4  # two GeoIP databases + two table versions
    with Session(engine) as session:
        assert len(session.exec(select(AttributionSnapshot)).all()) == 2
