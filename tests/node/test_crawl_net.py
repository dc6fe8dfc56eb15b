"""node.net: lab-only resolution, public-only destinations, pinning with the Host header kept."""

from __future__ import annotations

import httpx
import pytest

from node.net import BlockedDestination, is_public_address, make_client
from protocol.lab import LabNetwork

from .test_crawl_kit import Route, html, synthetic_web

UA = "LIBRA-node/test"


async def test_lab_client_pins_ip_and_keeps_host_header() -> None:
    with synthetic_web() as web:
        web.b.add("site-b.test", "/x", html("<p>b</p>"))
        async with make_client(web.lab, timeout=5.0, user_agent=UA) as client:
            response = await client.get(web.url("site-b.test", "/x"))
        assert response.status_code == 200
        assert response.text == "<p>b</p>"
        assert response.url.host == "site-b.test"  # the caller never sees the IP
        assert web.recorder.host_headers == [f"site-b.test:{web.b.port}"]
        assert web.recorder.requests == [("site-b.test", "/x")]


async def test_lab_client_does_not_follow_redirects() -> None:
    with synthetic_web() as web:
        web.a.add("site-a.test", "/r", Route(status=302, headers={"Location": "/elsewhere"}))
        async with make_client(web.lab, timeout=5.0, user_agent=UA) as client:
            response = await client.get(web.url("site-a.test", "/r"))
        assert response.status_code == 302
        assert web.recorder.paths("site-a.test") == ["/r"]


async def test_lab_client_refusals() -> None:
    with synthetic_web() as web:
        narrow = LabNetwork(
            hosts={"site-a.test": "127.0.0.1", "site-b.test": "127.0.0.2"},
            allow_ranges=["127.0.0.1/32"],
            allow_ports=[web.a.port, web.b.port],
        )
        refused = [
            f"http://unmapped.test:{web.a.port}/",  # not in the lab map
            f"http://localhost:{web.a.port}/",  # no DNS in the lab, not even for localhost
            f"http://site-a.test:{web.a.port + 1}/",  # port not allowed
            f"https://site-a.test:{web.a.port}/",  # the lab is plain http
            f"http://site-b.test:{web.b.port}/",  # mapped, but outside allow_ranges
            f"http://127.0.0.2:{web.b.port}/",  # literal outside allow_ranges
        ]
        async with make_client(narrow, timeout=5.0, user_agent=UA) as client:
            for url in refused:
                with pytest.raises(BlockedDestination) as caught:
                    await client.get(url)
                assert caught.value.request.url == httpx.URL(url)
            # A literal inside the allowed range is fine.
            response = await client.get(f"http://127.0.0.1:{web.a.port}/")
            assert response.status_code == 404
        assert web.recorder.requests == [("127.0.0.1", "/")]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "127.0.0.2"])
async def test_production_client_refuses_loopback(host: str) -> None:
    with synthetic_web() as web:
        async with make_client(None, timeout=5.0, user_agent=UA) as client:
            with pytest.raises(BlockedDestination):
                await client.get(f"http://{host}:{web.a.port}/")
            with pytest.raises(BlockedDestination):
                await client.get(f"https://{host}:{web.a.port}/")
        assert web.recorder.requests == []


def test_blocked_destination_is_a_request_error() -> None:
    # Callers that catch httpx.RequestError treat it as a failed request, never a crash.
    assert issubclass(BlockedDestination, httpx.RequestError)
    assert not issubclass(BlockedDestination, httpx.TransportError)  # not transient: no retries


@pytest.mark.parametrize(
    ("ip", "public"),
    [
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("192.0.2.10", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("64:ff9b::7f00:1", False),  # NAT64 form of 127.0.0.1
        ("1.1.1.1", True),  # classification only: no traffic is sent
        ("2606:4700:4700::1111", True),
        ("::ffff:1.1.1.1", True),
    ],
)
def test_is_public_address(ip: str, public: bool) -> None:
    assert is_public_address(ip) is public
