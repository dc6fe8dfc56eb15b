"""node.net's TLS: every host pool shares one TLS context (built once, not per host), and each
connection still verifies the certificate of the name it was asked for.

The server is a loopback TLS listener with a self-signed certificate made here; the resolver
pins every name to 127.0.0.1 (the production resolver refuses loopback by design)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from node.net import PinnedTransport
from tests.tls_certs import self_signed


@pytest.fixture
async def tls_port(tmp_path: Path) -> AsyncIterator[int]:
    cert, key = self_signed(tmp_path, ["a.test", "b.test"])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def answer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def _loopback(_host: str, _port: int) -> str:
    return "127.0.0.1"


async def test_pools_share_one_tls_context_and_still_verify_each_name(
    tls_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[ssl.SSLContext] = []
    original = httpx.create_ssl_context

    def counting(*args: object, **kwargs: object) -> ssl.SSLContext:
        context = original(*args, **kwargs)  # type: ignore[arg-type]
        built.append(context)
        return context

    monkeypatch.setattr(httpx, "create_ssl_context", counting)
    transport = PinnedTransport(
        _loopback, schemes=frozenset({"https"}), limits=httpx.Limits(max_connections=4)
    )
    async with httpx.AsyncClient(transport=transport, trust_env=False) as client:
        for name in ("a.test", "b.test"):
            # Self-signed: not in the CA bundle, so verification must refuse it for each name.
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await client.get(f"https://{name}:{tls_port}/")
    assert len(built) == 1  # one context for both host pools


async def test_a_trusted_certificate_is_accepted_only_for_its_names(
    tls_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the test CA trusted, a.test is served; c.test (not in the certificate) is refused:
    the shared context checks the name of each connection, not of the first one."""
    cert = tmp_path / "cert.pem"

    def trusting(*_args: object, **_kwargs: object) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(cert))

    monkeypatch.setattr(httpx, "create_ssl_context", trusting)
    transport = PinnedTransport(
        _loopback, schemes=frozenset({"https"}), limits=httpx.Limits(max_connections=4)
    )
    async with httpx.AsyncClient(transport=transport, trust_env=False) as client:
        response = await client.get(f"https://a.test:{tls_port}/")
        assert (response.status_code, response.text) == (200, "ok")
        with pytest.raises(httpx.ConnectError, match=r"Hostname mismatch"):
            await client.get(f"https://c.test:{tls_port}/")
