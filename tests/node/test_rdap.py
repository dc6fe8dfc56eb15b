"""RDAP abuse contacts against recorded fixtures served on loopback (never a real server)."""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from node import audit
from node.contacts.rdap import (
    Bootstrap,
    RdapError,
    RdapResolver,
    abuse_contact_of,
    abuse_entities,
    cached_answers,
    check_server_url,
    save_bootstrap,
)
from tests.node.rdap_fake import FIXTURES, FakeRdap, fake_rdap


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def rdap() -> Iterator[FakeRdap]:
    with fake_rdap() as server:
        yield server


def make_resolver(
    engine: Engine, bootstrap: Path, clock: Clock | None = None, *, lab: bool = True
) -> RdapResolver:
    return RdapResolver(
        engine,
        bootstrap,
        lab=lab,
        cache_ttl=timedelta(days=7),
        negative_ttl=timedelta(hours=6),
        timeout_s=5,
        clock=clock or Clock(),
    )


def test_nested_abuse_entity_found_through_the_ip_network(
    engine: Engine, tmp_path: Path, rdap: FakeRdap
) -> None:
    resolver = make_resolver(engine, rdap.write_bootstrap(tmp_path / "bootstrap.json"))
    contact = resolver.resolve(ip="192.0.2.7", asn=64496)
    assert contact.emails == ("abuse@hosting.example",)  # nested two levels, not the NOC
    assert (contact.source, contact.reference, contact.webhook) == ("rdap", "EXH-ABUSE-TEST", None)
    assert rdap.requests == ["/rdap/ip/192.0.2.7"]  # the ASN was not needed
    [event] = audit.entries(engine, "contacts.rdap_query")
    assert event.subject == "ip:192.0.2.7" and event.details["outcome"] == "found"


def test_cache_hit_sends_nothing_and_expiry_queries_again(
    engine: Engine, tmp_path: Path, rdap: FakeRdap
) -> None:
    clock = Clock()
    resolver = make_resolver(engine, rdap.write_bootstrap(tmp_path / "b.json"), clock)
    first = resolver.resolve(ip="192.0.2.7", asn=None)
    clock.now += timedelta(days=6, hours=23)
    # A new resolver (e.g. the next process) reads the same cache from the database.
    again = make_resolver(engine, tmp_path / "b.json", clock).resolve(ip="192.0.2.7", asn=None)
    assert again == first
    assert len(rdap.requests) == 1
    clock.now += timedelta(hours=2)  # past the 7 days
    resolver.resolve(ip="192.0.2.7", asn=None)
    assert len(rdap.requests) == 2
    [row] = cached_answers(engine)
    assert row.fetched_at == clock.now and row.expires_at == clock.now + timedelta(days=7)


def test_no_abuse_on_the_network_falls_back_to_the_autnum(
    engine: Engine, tmp_path: Path, rdap: FakeRdap
) -> None:
    resolver = make_resolver(engine, rdap.write_bootstrap(tmp_path / "b.json"))
    contact = resolver.resolve(ip="198.51.100.9", asn=64496)
    # Two spellings of one address in the vCard are one address.
    assert contact.emails == ("abuse@transit.example",)
    assert contact.reference == "AS64496-ABUSE-TEST"
    assert rdap.requests == ["/rdap/ip/198.51.100.9", "/rdap/autnum/64496"]
    network = resolver.cached("ip:198.51.100.9")
    assert network is not None and network.ok and network.emails == ()
    assert network.handle == "NET-198-51-100-0-1"


def test_negative_answers_expire_sooner(engine: Engine, tmp_path: Path, rdap: FakeRdap) -> None:
    clock = Clock()
    resolver = make_resolver(engine, rdap.write_bootstrap(tmp_path / "b.json"), clock)
    missing = resolver.resolve(ip=None, asn=64510)  # 404
    assert missing.source == "none" and "autnum:64510" in (missing.error or "")
    resolver.resolve(ip=None, asn=64510)
    assert rdap.requests == ["/rdap/autnum/64510"]
    clock.now += timedelta(hours=6, seconds=1)
    resolver.resolve(ip=None, asn=64510)
    assert rdap.requests == ["/rdap/autnum/64510"] * 2


def test_unreachable_rdap_gives_no_contact_with_the_error(engine: Engine, tmp_path: Path) -> None:
    with socket.socket() as sock:  # a loopback port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    text = (FIXTURES / "bootstrap.template.json").read_text()
    bootstrap = tmp_path / "b.json"
    bootstrap.write_text(text.replace("{base}", f"http://127.0.0.1:{port}/rdap/"))
    contact = make_resolver(engine, bootstrap).resolve(ip="192.0.2.7", asn=None)
    assert (contact.source, contact.emails, contact.reference) == ("none", (), None)
    assert contact.error is not None and "ConnectError" in contact.error
    [event] = audit.entries(engine, "contacts.rdap_query")
    assert event.details["outcome"] == "error"
    cached = cached_answers(engine)
    assert [(c.query, c.ok) for c in cached] == [("ip:192.0.2.7", False)]


def test_malformed_json_is_an_error_not_a_crash(
    engine: Engine, tmp_path: Path, rdap: FakeRdap
) -> None:
    contact = make_resolver(engine, rdap.write_bootstrap(tmp_path / "b.json")).resolve(
        ip="203.0.113.5", asn=None
    )
    assert contact.source == "none"
    assert "malformed RDAP JSON" in (contact.error or "")


def test_redirect_off_the_machine_is_refused_in_lab_mode(
    engine: Engine, tmp_path: Path, rdap: FakeRdap
) -> None:
    contact = make_resolver(engine, rdap.write_bootstrap(tmp_path / "b.json")).resolve(
        ip=None, asn=64500
    )
    assert contact.source == "none"
    assert "not a loopback" in (contact.error or "")
    assert rdap.requests == ["/rdap/autnum/64500"]


def test_outside_lab_only_https_servers_and_public_addresses(
    engine: Engine, tmp_path: Path, rdap: FakeRdap
) -> None:
    bootstrap = tmp_path / "b.json"
    # Outside lab mode whoisit itself drops plain-http servers from the bootstrap.
    bootstrap.write_text(rdap.bootstrap_text())
    resolver = make_resolver(engine, bootstrap, lab=False)
    documentation = resolver.resolve(ip="192.0.2.7", asn=None)
    assert "not a public address" in (documentation.error or "")
    refused = resolver.resolve(ip=None, asn=64496)
    assert "only https" in (refused.error or "")
    assert rdap.requests == []
    with pytest.raises(RdapError, match="only https"):
        check_server_url("http://rdap.example/", lab=False)
    check_server_url("https://rdap.example/", lab=False)


def test_lab_mode_refuses_non_loopback_servers(engine: Engine, tmp_path: Path) -> None:
    text = (FIXTURES / "bootstrap.template.json").read_text()
    bootstrap = tmp_path / "b.json"
    bootstrap.write_text(text.replace("{base}", "http://192.0.2.1/rdap/"))
    contact = make_resolver(engine, bootstrap).resolve(ip="192.0.2.7", asn=None)
    assert "not a loopback" in (contact.error or "")
    with pytest.raises(RdapError):
        check_server_url("http://localhost/", lab=True)  # names are not resolved in the lab


def test_missing_or_invalid_bootstrap(engine: Engine, tmp_path: Path) -> None:
    contact = make_resolver(engine, tmp_path / "absent.json").resolve(ip="192.0.2.7", asn=None)
    assert "libra node contacts bootstrap" in (contact.error or "")
    with pytest.raises(RdapError, match="invalid RDAP bootstrap"):
        save_bootstrap(tmp_path / "x.json", '{"timestamp": 1, "asn": {}}', lab=True)
    assert not (tmp_path / "x.json").exists()
    with pytest.raises(RdapError, match="invalid RDAP bootstrap"):
        save_bootstrap(tmp_path / "x.json", "not json", lab=True)


def test_bootstrap_lookup_picks_the_longest_prefix_and_never_a_fallback() -> None:
    data = json.loads((FIXTURES / "bootstrap.template.json").read_text())
    data["ipv4"]["services"].append([["192.0.2.128/25"], ["https://narrow.example/"]])
    boot = Bootstrap(json.loads(json.dumps(data).replace("{base}", "https://wide.example/")))
    assert boot.servers_for_ip(ipaddress.ip_address("192.0.2.200")) == ["https://narrow.example/"]
    assert boot.servers_for_ip(ipaddress.ip_address("192.0.2.1")) == ["https://wide.example/"]
    assert boot.servers_for_ip(ipaddress.ip_address("10.0.0.1")) == []
    assert boot.servers_for_asn(64500) == ["https://wide.example/"]
    assert boot.servers_for_asn(3320) == []


def test_bad_query_values_are_errors(engine: Engine, tmp_path: Path, rdap: FakeRdap) -> None:
    resolver = make_resolver(engine, rdap.write_bootstrap(tmp_path / "b.json"))
    assert "not an IP address" in (resolver.lookup("ip", "192.0.2.999").error or "")
    assert "not an AS number" in (resolver.lookup("autnum", "AS-x").error or "")
    assert resolver.resolve(ip=None, asn=None).source == "none"
    assert rdap.requests == []


def test_abuse_search_is_bounded_and_ignores_junk() -> None:
    deep: dict[str, Any] = {"roles": ["abuse"], "handle": "DEEP"}
    for _ in range(40):
        deep = {"entities": [deep, "junk", 7]}
    assert abuse_entities(deep) == []  # nested beyond the depth limit
    assert abuse_contact_of({"handle": "X", "entities": "nope"}) == ((), "X")
    vcard = ["vcard", [["email", {}, "text", "mailto:a@b.example"], ["email", {}, "text", 5]]]
    doc = {"entities": [{"roles": ["abuse"], "handle": "H", "vcardArray": vcard}]}
    assert abuse_contact_of(doc) == (("a@b.example",), "H")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["entities", "roles", "handle", "vcardArray", "x"]),
            children,
            max_size=4,
        )
    ),
    max_leaves=30,
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_any_json_answer_is_parsed_without_raising(document: Any) -> None:
    emails, handle = abuse_contact_of(document)
    assert all(isinstance(e, str) and "@" in e for e in emails)
    assert handle is None or isinstance(handle, str)
