"""`libra demo --host/--port`: loopback addresses only, and a taken port is found up front."""

from __future__ import annotations

import socket

import pytest

from libra.demo.listen import ListenError, check_port_free, free_port, http_url, loopback_host


@pytest.mark.parametrize(
    ("given", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("127.42.0.9", "127.42.0.9"),
        ("::1", "::1"),
        ("[::1]", "::1"),
        ("localhost", "127.0.0.1"),
        (" LOCALHOST ", "127.0.0.1"),
    ],
)
def test_loopback_addresses_are_taken(given: str, address: str) -> None:
    assert loopback_host(given) == address


@pytest.mark.parametrize("given", ["0.0.0.0", "::", "10.0.0.1", "192.168.1.20", "2001:db8::1"])
def test_other_addresses_are_refused(given: str) -> None:
    with pytest.raises(ListenError, match="not a loopback address"):
        loopback_host(given)


@pytest.mark.parametrize("given", ["example.org", "", "127.0.0.1:8700"])
def test_names_are_refused_without_asking_a_resolver(given: str) -> None:
    with pytest.raises(ListenError, match="not an IP address"):
        loopback_host(given)


def test_a_port_in_use_is_refused() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(ListenError, match=f"127.0.0.1:{port}: .*in use"):
            check_port_free("127.0.0.1", port)
    check_port_free("127.0.0.1", port)  # free again once its holder has gone


def test_a_free_port_passes() -> None:
    port = free_port("127.0.0.1")
    check_port_free("127.0.0.1", port)
    assert 0 < port < 65536


def test_urls_put_ipv6_in_brackets() -> None:
    assert http_url("127.0.0.1", 8700) == "http://127.0.0.1:8700"
    assert http_url("::1", 8700) == "http://[::1]:8700"
