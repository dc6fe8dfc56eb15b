"""SSRF additions: cloud metadata addresses (even public ones), Teredo, and every IPv6 form that
embeds a forbidden IPv4 address."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker_function.ssrf import METADATA_ADDRESSES, forbidden_reason


@pytest.mark.parametrize(
    "address",
    ["169.254.169.254", "168.63.129.16", "100.100.100.200", "fd00:ec2::254", "169.254.170.2"],
)
def test_metadata_addresses_are_named(address: str) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) == "is a cloud metadata address"


def test_azure_wire_server_is_public_yet_refused() -> None:
    wire = ipaddress.ip_address("168.63.129.16")
    assert wire.is_global and wire in METADATA_ADDRESSES
    assert forbidden_reason(wire) is not None


def test_teredo_is_refused() -> None:
    # Teredo 2001:0::/32 carrying server 65.54.227.120 and an obfuscated public client.
    assert forbidden_reason(ipaddress.ip_address("2001:0:4136:e378:8000:63bf:3fff:fdd2"))


PRIVATE_V4 = st.one_of(
    st.integers(0x0A000000, 0x0AFFFFFF),  # 10/8
    st.integers(0x7F000000, 0x7FFFFFFF),  # 127/8
    st.integers(0xA9FE0000, 0xA9FEFFFF),  # 169.254/16
    st.integers(0x64400000, 0x647FFFFF),  # 100.64/10
    st.integers(0xC0A80000, 0xC0A8FFFF),  # 192.168/16
).map(ipaddress.IPv4Address)


@given(PRIVATE_V4)
def test_embedded_private_ipv4_is_refused_in_every_ipv6_form(v4: ipaddress.IPv4Address) -> None:
    value = int(v4)
    forms = [
        ipaddress.IPv6Address(0xFFFF_0000_0000 | value),  # IPv4-mapped
        ipaddress.IPv6Address(value),  # IPv4-compatible
        ipaddress.IPv6Address((0x0064_FF9B << 96) | value),  # NAT64
        ipaddress.IPv6Address((0x2002 << 112) | (value << 80)),  # 6to4
    ]
    assert forbidden_reason(v4) is not None
    for form in forms:
        assert forbidden_reason(form) is not None, form
