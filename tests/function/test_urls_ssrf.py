"""URL validation and the SSRF guard, without any network: resolvers here are fakes."""

from __future__ import annotations

import ipaddress

import pytest

from protocol.lab import LabNetwork
from worker_function.errors import BadUrl, BlockedAddress, FetchFailed
from worker_function.fetch import Fetcher
from worker_function.ssrf import Guard, forbidden_reason
from worker_function.urls import parse_target, resolve_redirect, url_ref


class FakeResolver:
    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        if host not in self.answers:
            raise FetchFailed(f"cannot resolve host {host!r}")
        return self.answers[host]


# --------------------------------------------------------------------------- parse_target


@pytest.mark.parametrize(
    ("raw", "ip"),
    [
        ("http://2130706433/", "127.0.0.1"),
        ("http://0177.0.0.1/", "127.0.0.1"),
        ("http://0x7f.0.0.1/", "127.0.0.1"),
        ("http://0x7f000001/", "127.0.0.1"),
        ("http://127.1/", "127.0.0.1"),
        ("http://127.0.1/", "127.0.0.1"),
        ("http://127.0.0.1./", "127.0.0.1"),
        ("http://012.0.0.1/", "10.0.0.1"),
        ("http://[::ffff:7f00:1]/", "::ffff:7f00:1"),
        ("http://[0:0:0:0:0:0:0:1]/", "::1"),
    ],
)
def test_odd_ip_literals_are_normalised(raw: str, ip: str) -> None:
    target = parse_target(raw)
    assert target.literal == ipaddress.ip_address(ip)
    assert target.host == ip


@pytest.mark.parametrize(
    "raw",
    [
        "ftp://a.test/",
        "file:///etc/passwd",
        "data:image/png;base64,AAAA",
        "//a.test/x",
        "http://user:pw@a.test/",
        "http://user@a.test/",
        "http://:pw@a.test/",
        "http://a.test:0/",
        "http://a.test:99999/",
        "http://a.test:port/",
        "http://a.test\\@b.test/",
        "http://a .test/",
        "http://a.test/\n",
        " http://a.test/",
        "http://%31%32%37.0.0.1/",
        "http://[fe80::1%25eth0]/",
        "http://256.0.0.1/",
        "http://1.2.3.4.5/",
        "http://[::1/",
        "http://a_b!.test/",
        "http://",
    ],
)
def test_bad_urls(raw: str) -> None:
    with pytest.raises(BadUrl):
        parse_target(raw)


def test_target_keeps_path_query_drops_fragment() -> None:
    target = parse_target("HTTPS://Img.Example.TEST:8443/a/b.jpg?x=1&y=%20#frag")
    assert target.scheme == "https"
    assert (target.host, target.port, target.literal) == ("img.example.test", 8443, None)
    assert str(target) == "https://img.example.test:8443/a/b.jpg?x=1&y=%20"


def test_default_ports_and_idna() -> None:
    assert parse_target("http://a.test/").port == 80
    assert parse_target("https://a.test/").port == 443
    assert parse_target("http://bücher.test/").host == "xn--bcher-kva.test"


def test_redirect_resolution_is_revalidated() -> None:
    current = parse_target("http://a.test/dir/page")
    assert str(resolve_redirect(current, "img.jpg")) == "http://a.test/dir/img.jpg"
    assert str(resolve_redirect(current, "//b.test/x")) == "http://b.test/x"
    assert resolve_redirect(current, "http://0177.0.0.1/").host == "127.0.0.1"
    with pytest.raises(BadUrl):
        resolve_redirect(current, "file:///etc/passwd")
    with pytest.raises(BadUrl):
        resolve_redirect(current, "http://u:p@b.test/")


def test_url_ref_is_short_and_does_not_contain_the_url() -> None:
    ref = url_ref("http://secret.test/path/image.jpg")
    assert ref.startswith("url:") and len(ref) == 16
    assert "secret" not in ref and url_ref("http://secret.test/path/image.jpg") == ref


# --------------------------------------------------------------------------- address policy


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.255.255.254",
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "100.127.255.255",
        "0.0.0.0",
        "0.1.2.3",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "192.0.2.1",
        "198.18.0.1",
        "198.51.100.7",
        "203.0.113.9",
        "192.0.0.8",
        "::",
        "::1",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "fec0::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "::127.0.0.1",
        "64:ff9b::7f00:1",
        "64:ff9b::a00:1",
        "64:ff9b:1::1",
        "2002:7f00:1::",
        "2002:a00:1::1",
        "2001:db8::1",
        "2001::1",
        "100::1",
    ],
)
def test_non_global_addresses_are_forbidden(address: str) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(
    "address",
    [
        "93.184.216.34",
        "8.8.8.8",
        "1.1.1.1",
        "2606:4700::1111",
        "2a00:1450:4001::1",
        "::ffff:93.184.216.34",
        "64:ff9b::808:808",
        "2002:808:808::1",
    ],
)
def test_global_addresses_are_allowed(address: str) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) is None


# --------------------------------------------------------------------------- guard


async def test_guard_blocks_if_any_address_is_private() -> None:
    resolver = FakeResolver({"mixed.test": ["93.184.216.34", "10.0.0.5"]})
    with pytest.raises(BlockedAddress, match=r"10\.0\.0\.5"):
        await Guard(resolver=resolver).addresses(parse_target("http://mixed.test/a.jpg"))


async def test_guard_blocks_names_resolving_to_loopback() -> None:
    resolver = FakeResolver({"localhost": ["127.0.0.1", "::1"]})
    with pytest.raises(BlockedAddress):
        await Guard(resolver=resolver).addresses(parse_target("http://localhost/"))


async def test_guard_returns_all_public_addresses() -> None:
    resolver = FakeResolver({"cdn.test": ["93.184.216.34", "2606:4700::1111"]})
    addresses = await Guard(resolver=resolver).addresses(parse_target("https://cdn.test/x"))
    assert [str(a) for a in addresses] == ["93.184.216.34", "2606:4700::1111"]
    assert resolver.calls == [("cdn.test", 443)]


async def test_guard_refuses_unusual_ports_unless_configured() -> None:
    resolver = FakeResolver({"cdn.test": ["93.184.216.34"]})
    target = parse_target("http://cdn.test:8080/x")
    with pytest.raises(BlockedAddress, match="port 8080"):
        await Guard(resolver=resolver).addresses(target)
    assert resolver.calls == []  # refused before any lookup
    guard = Guard(resolver=resolver, extra_ports=frozenset({8080}))
    assert len(await guard.addresses(target)) == 1


async def test_guard_literals_skip_resolution() -> None:
    resolver = FakeResolver({})
    with pytest.raises(BlockedAddress):
        await Guard(resolver=resolver).addresses(parse_target("http://2130706433/"))
    assert resolver.calls == []


async def test_guard_rejects_unparseable_resolver_answers() -> None:
    resolver = FakeResolver({"odd.test": ["fe80::1%eth0x"]})
    with pytest.raises(BlockedAddress):
        await Guard(resolver=resolver).addresses(parse_target("http://odd.test/"))


async def test_lab_guard_uses_only_the_host_map() -> None:
    resolver = FakeResolver({"elsewhere.test": ["127.0.0.1"]})
    lab = LabNetwork(hosts={"img.example.test": "127.0.0.5"}, allow_ports=[8080])
    guard = Guard(lab=lab, resolver=resolver)
    addresses = await guard.addresses(parse_target("http://img.example.test:8080/"))
    assert [str(a) for a in addresses] == ["127.0.0.5"]
    with pytest.raises(BlockedAddress, match="host map"):
        await guard.addresses(parse_target("http://elsewhere.test/"))
    assert resolver.calls == []  # never DNS in lab mode
    with pytest.raises(BlockedAddress, match="lab network"):
        await guard.addresses(parse_target("http://93.184.216.34/"))
    with pytest.raises(BlockedAddress, match="port 9090"):
        await guard.addresses(parse_target("http://img.example.test:9090/"))


async def test_lab_guard_respects_narrow_ranges() -> None:
    lab = LabNetwork(hosts={"a.test": "127.0.0.9"}, allow_ranges=["127.0.1.0/24"])
    with pytest.raises(BlockedAddress):
        await Guard(lab=lab).addresses(parse_target("http://a.test/"))


# --------------------------------------------------------------------------- pinning


def _pinned(url: str, ip: str) -> tuple[tuple[str, int, bool, str], dict[bytes, bytes]]:
    """Where the fetcher's connection for ``url`` checked as ``ip`` goes, and its headers."""
    fetcher = Fetcher(Guard())
    target = parse_target(url)
    channel = fetcher._channel(target, ipaddress.ip_address(ip), keepalive=False)
    return channel.destination, dict(fetcher._headers(target))


def test_http_request_goes_to_checked_ip_with_host_header() -> None:
    destination, headers = _pinned("http://cdn.test:8080/a.jpg?x=1", "93.184.216.34")
    assert destination[:3] == ("93.184.216.34", 8080, False)
    assert parse_target("http://cdn.test:8080/a.jpg?x=1").url.raw_path == b"/a.jpg?x=1"
    assert headers[b"Host"] == b"cdn.test:8080"
    assert headers[b"Accept-Encoding"] == b"identity"


def test_https_request_pins_ip_and_sends_sni() -> None:
    destination, headers = _pinned("https://cdn.test/a.jpg", "2606:4700::1111")
    # TLS to the checked IP, the certificate verified for (and SNI sent as) the name.
    assert destination == ("2606:4700::1111", 443, True, "cdn.test")
    assert headers[b"Host"] == b"cdn.test"


def test_literal_targets_are_requested_as_given() -> None:
    destination, headers = _pinned("http://93.184.216.34/a.jpg", "93.184.216.34")
    assert destination[:2] == ("93.184.216.34", 80)
    assert headers[b"Host"] == b"93.184.216.34"
