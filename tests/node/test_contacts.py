"""Abuse contact resolution: operator table first, then RDAP (loopback fixtures), else none."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy.engine import Engine

from node.attribution.operators import parse_operator_table
from node.config import NodeSettings
from node.contacts.model import AbuseContact, HosterIdentity
from node.contacts.rdap import RdapResolver
from node.contacts.resolver import Resolver, contact_resolver
from tests.node.rdap_fake import FakeRdap, fake_rdap

TABLE = b"""
[[hoster]]
id = "hoster-a"
name = "Hoster A"
abuse_emails = ["abuse@hoster-a.example", "legal@hoster-a.example"]
webhook = "http://127.0.0.1:9/hook"
asns = [64500]

[[hoster]]
id = "named-only"
name = "Named only (no contact known)"
networks = ["192.0.2.0/28"]
"""

HOSTER_A = HosterIdentity("DE", 64500, "Hoster A")
OTHER = HosterIdentity("NL", 64496, "Example Transit")


def rdap_resolver(engine: Engine, server: FakeRdap, tmp_path: Path) -> RdapResolver:
    return RdapResolver(
        engine, server.write_bootstrap(tmp_path / "bootstrap.json"), lab=True, timeout_s=5
    )


def test_operator_table_first_and_rdap_untouched(engine: Engine, tmp_path: Path) -> None:
    with fake_rdap() as server:
        resolver = Resolver(parse_operator_table(TABLE), rdap_resolver(engine, server, tmp_path))
        contact = resolver.resolve(HOSTER_A, ip="192.0.2.100", domain="img.example")
        assert server.requests == []
    assert contact == AbuseContact(
        ("abuse@hoster-a.example", "legal@hoster-a.example"),
        "http://127.0.0.1:9/hook",
        "operator-table",
        "hoster-a",
    )
    assert contact.found


def test_table_entry_without_contact_falls_through_to_rdap(engine: Engine, tmp_path: Path) -> None:
    with fake_rdap() as server:
        resolver = Resolver(parse_operator_table(TABLE), rdap_resolver(engine, server, tmp_path))
        # The most specific entry (the /28) names the hoster but knows no contact: RDAP is
        # asked rather than the less specific ASN entry, which is another hoster.
        contact = resolver.resolve(HOSTER_A, ip="192.0.2.7", domain=None)
        assert server.requests == ["/rdap/ip/192.0.2.7"]
    assert (contact.source, contact.emails, contact.reference) == (
        "rdap",
        ("abuse@hosting.example",),
        "EXH-ABUSE-TEST",
    )


def test_nothing_found_is_source_none_with_a_reason(engine: Engine, tmp_path: Path) -> None:
    off = Resolver(None, None).resolve(OTHER, ip="192.0.2.7", domain=None)
    assert (off.source, off.found) == ("none", False) and "RDAP is off" in (off.error or "")
    with fake_rdap() as server:
        resolver = Resolver(None, rdap_resolver(engine, server, tmp_path))
        missing = resolver.resolve(HosterIdentity("ZZ", 0, "unknown"), ip=None, domain=None)
    assert missing.source == "none" and "no address and no ASN" in (missing.error or "")


def test_contact_resolver_from_settings(engine: Engine, tmp_path: Path) -> None:
    table = tmp_path / "operators.toml"
    table.write_bytes(TABLE)
    lab = tmp_path / "lab.toml"
    lab.write_text("")  # only its presence matters here (lab mode)
    with fake_rdap() as server:
        server.write_bootstrap(tmp_path / "rdap-bootstrap.json")
        settings = NodeSettings(
            node_id="node-a",
            country="DE",
            data_dir=tmp_path,
            lab=lab,
            attribution={"operators_file": table},
            contacts={"cache_days": 1, "negative_cache_hours": 1},
        )
        resolver = contact_resolver(settings, engine)
        assert resolver.resolve(HOSTER_A, ip=None, domain=None).source == "operator-table"
        via_rdap = resolver.resolve(OTHER, ip=None, domain=None)
        assert via_rdap.emails == ("abuse@transit.example",)
        assert isinstance(resolver, Resolver) and resolver.rdap is not None
        assert resolver.rdap.cache_ttl == timedelta(days=1)
        no_rdap = settings.model_copy(
            update={"contacts": settings.contacts.model_copy(update={"rdap": False})}
        )
        assert contact_resolver(no_rdap, engine).resolve(OTHER, ip=None, domain=None).source == (
            "none"
        )
        assert server.requests == ["/rdap/autnum/64496"]
