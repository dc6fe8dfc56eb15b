"""The function's own HTTP/1.1 client (worker_function/http1.py, through fetch.Fetcher).

Real loopback servers that answer with scripted bytes: TLS verifies the name and sends it as SNI
while the connection goes to the checked IP; chunked, close-delimited and 1xx-preceded
responses are read; a keep-alive connection the server has closed is replaced; truncated,
oversized and arbitrary (hypothesis) responses end as a specific FunctionError, never as any
other exception. Names resolve through a lab map to 127.0.0.1; nothing leaves loopback.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.lab import LabNetwork
from tests.function import helpers as h
from tests.tls_certs import self_signed
from worker_function.errors import FetchFailed, FunctionError, TooLarge, UpstreamStatus
from worker_function.fetch import Fetched, Fetcher, FetchLimits, FetchSession
from worker_function.ssrf import Guard

PNG = h.encode(h.generated_image(7, (24, 16)), "PNG")
NAME = "raw.test"
# Answer to the n-th request on a connection (from 0): the bytes to send, then close or not.
Script = Callable[[int], tuple[bytes, bool]]


def _ok(body: bytes = PNG, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n"
        + extra
        + b"\r\n"
        + body
    )


class _Raw:
    """A loopback server that reads each request head and answers from a script."""

    def __init__(self, script: Script, tls: ssl.SSLContext | None = None) -> None:
        self.script = script
        self.tls = tls
        self.connections = 0
        self.heads: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> _Raw:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            for n in range(100):
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                answer, close = self.script(n)
                writer.write(answer)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


def _fetcher(port: int, tls: ssl.SSLContext | None = None, /, **limits: float) -> Fetcher:
    lab = LabNetwork(hosts={NAME: "127.0.0.1", "other.test": "127.0.0.1"}, allow_ports=[port])
    return Fetcher(
        Guard(lab=lab),
        FetchLimits(**{"max_bytes": 100_000, "deadline_seconds": 30.0, **limits}),  # type: ignore[arg-type]
        ssl_context=tls,
    )


def _session(server: _Raw, **limits: float) -> FetchSession:
    return _fetcher(server.port, **limits).session(1)


async def test_plain_fetch_sends_the_name_to_the_checked_ip() -> None:
    async with _Raw(lambda _n: (_ok(), True)) as server:
        got = await _fetcher(server.port).fetch(f"http://{NAME}:{server.port}/a.png?x=1")
    assert got.data == PNG and got.server_ip == "127.0.0.1"
    request_line, *headers = server.heads[0].decode().split("\r\n")
    assert request_line == "GET /a.png?x=1 HTTP/1.1"
    assert f"Host: {NAME}:{server.port}" in headers
    assert "Accept-Encoding: identity" in headers


@pytest.fixture
def tls_pair(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext, list[str | None]]:
    """(server context, client context trusting it, the SNI names the server saw)."""
    cert, key = self_signed(tmp_path, [NAME])
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    seen: list[str | None] = []
    server.sni_callback = lambda _sock, name, _ctx: seen.append(name)
    client = ssl.create_default_context(cafile=str(cert))
    return server, client, seen


async def test_tls_verifies_the_name_and_sends_it_as_sni(
    tls_pair: tuple[ssl.SSLContext, ssl.SSLContext, list[str | None]],
) -> None:
    server_tls, client_tls, seen = tls_pair
    async with _Raw(lambda _n: (_ok(), False), tls=server_tls) as server:
        fetcher = _fetcher(server.port, client_tls)
        async with fetcher.session(1) as session:
            for n in range(3):
                got = await session.fetcher().fetch(f"https://{NAME}:{server.port}/{n}.png")
                assert got.data == PNG
    assert seen == [NAME]  # one handshake, kept alive for three requests
    assert server.connections == 1 and len(server.heads) == 3


async def test_tls_refuses_a_certificate_for_another_name(
    tls_pair: tuple[ssl.SSLContext, ssl.SSLContext, list[str | None]],
) -> None:
    server_tls, client_tls, seen = tls_pair
    async with _Raw(lambda _n: (_ok(), True), tls=server_tls) as server:
        with pytest.raises(FetchFailed, match=r"cannot connect to other\.test"):
            await _fetcher(server.port, client_tls).fetch(f"https://other.test:{server.port}/a")
    assert seen == ["other.test"]
    assert server.heads == []  # no request was sent over the unverified connection


async def test_chunked_bodies_keep_the_connection() -> None:
    half = len(PNG) // 2
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + f"{half:x}\r\n".encode()
        + PNG[:half]
        + f"\r\n{len(PNG) - half:x}\r\n".encode()
        + PNG[half:]
        + b"\r\n0\r\n\r\n"
    )
    async with _Raw(lambda _n: (chunked, False)) as server, _session(server) as session:
        for n in range(3):
            got = await session.fetcher().fetch(f"http://{NAME}:{server.port}/{n}")
            assert got.data == PNG
    assert server.connections == 1


async def test_a_keepalive_connection_the_server_closed_is_replaced() -> None:
    # The server answers once per connection and closes without saying so (an idle timeout).
    async with _Raw(lambda _n: (_ok(), True)) as server, _session(server) as session:
        for n in range(3):
            got = await session.fetcher().fetch(f"http://{NAME}:{server.port}/{n}")
            assert got.data == PNG
            await asyncio.sleep(0.05)  # let the FIN arrive (either path must work)
    assert server.connections == 3


async def test_a_request_dropped_unanswered_on_a_reused_connection_is_sent_once_more() -> None:
    # The first connection answers one request, then closes on the second without a byte
    # back (the race with an idle timeout); later connections answer everything.
    def script(n: int) -> tuple[bytes, bool]:
        return (b"", True) if n == 1 and server.connections == 1 else (_ok(), False)

    async with _Raw(script) as server, _session(server) as session:
        for n in range(2):
            got = await session.fetcher().fetch(f"http://{NAME}:{server.port}/{n}")
            assert got.data == PNG
    assert server.connections == 2 and len(server.heads) == 3


async def test_an_answer_cut_short_on_a_reused_connection_is_not_sent_again() -> None:
    # Part of a head came back: the server saw the request, so it is not repeated.
    def script(n: int) -> tuple[bytes, bool]:
        return (b"HTTP/1.1 200 OK\r\nContent-Le", True) if n == 1 else (_ok(), False)

    async with _Raw(script) as server, _session(server) as session:
        assert (await session.fetcher().fetch(f"http://{NAME}:{server.port}/0")).data == PNG
        with pytest.raises(FetchFailed, match="RemoteProtocolError"):
            await session.fetcher().fetch(f"http://{NAME}:{server.port}/1")
    assert server.connections == 1 and len(server.heads) == 2


async def test_a_fresh_connection_closed_unanswered_is_not_retried() -> None:
    async with _Raw(lambda _n: (b"", True)) as server:
        with pytest.raises(FetchFailed, match="RemoteProtocolError"):
            await _fetcher(server.port).fetch(f"http://{NAME}:{server.port}/a")
    assert server.connections == 1


async def test_informational_and_close_delimited_responses_are_read() -> None:
    answer = (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\nContent-Type: image/png\r\n\r\n" + PNG
    )
    async with _Raw(lambda _n: (answer, True)) as server:
        got = await _fetcher(server.port).fetch(f"http://{NAME}:{server.port}/a")
    assert got.data == PNG


async def test_a_body_cut_short_fails_with_a_reason() -> None:
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + PNG[:100]
    async with _Raw(lambda _n: (cut, True)) as server:
        with pytest.raises(FetchFailed, match="reading the body failed: RemoteProtocolError"):
            await _fetcher(server.port).fetch(f"http://{NAME}:{server.port}/a")


async def test_an_oversized_head_is_refused() -> None:
    # Refused once the unfinished head exceeds 64 KiB (h11's bound, checked between reads).
    huge = _ok(extra=b"X-Filler: " + b"a" * 300_000 + b"\r\n")
    async with _Raw(lambda _n: (huge, True)) as server:
        with pytest.raises(FetchFailed, match="RemoteProtocolError"):
            await _fetcher(server.port).fetch(f"http://{NAME}:{server.port}/a")


async def test_caps_and_statuses_hold_on_the_new_client() -> None:
    missing = b"HTTP/1.1 404 Nope\r\nContent-Length: 0\r\n\r\n"
    async with (
        _Raw(lambda n: (_ok() if n else missing, False)) as server,
        _session(server, max_bytes=len(PNG) - 1) as session,
    ):
        with pytest.raises(UpstreamStatus):
            await session.fetcher().fetch(f"http://{NAME}:{server.port}/missing")
        with pytest.raises(TooLarge):
            await session.fetcher().fetch(f"http://{NAME}:{server.port}/a")
    assert server.connections == 1  # the empty 404 was read to its end and kept the connection


_heads = st.lists(
    st.tuples(
        st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=12),
        st.binary(max_size=30),
    ),
    max_size=4,
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    status=st.integers(min_value=0, max_value=999),
    version=st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2", b"ICY", b""]),
    headers=_heads,
    framing=st.sampled_from(["length", "short", "chunked", "bad-chunk", "none"]),
    body=st.binary(max_size=200) | st.just(PNG),
    junk=st.binary(max_size=64),
)
def test_any_response_ends_as_a_result_or_a_function_error(
    status: int,
    version: bytes,
    headers: list[tuple[str, bytes]],
    framing: str,
    body: bytes,
    junk: bytes,
) -> None:
    head = version + b" " + str(status).encode() + b" X\r\n"
    head += b"".join(name.encode() + b": " + value + b"\r\n" for name, value in headers)
    if framing == "length":
        head += b"Content-Length: " + str(len(body)).encode() + b"\r\n"
    elif framing == "short":
        head += b"Content-Length: " + str(len(body) + 10).encode() + b"\r\n"
    elif framing in ("chunked", "bad-chunk"):
        head += b"Transfer-Encoding: chunked\r\n"
        size = f"{len(body):x}" if framing == "chunked" else "zz"
        body = f"{size}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    answer = head + b"\r\n" + body + junk

    async def attempt() -> None:
        async with _Raw(lambda _n: (answer, True)) as server:
            fetcher = _fetcher(server.port, deadline_seconds=20.0)
            async with fetcher.session(1) as session:
                for _ in range(2):  # the second request exercises reuse or replacement
                    try:
                        got = await session.fetcher().fetch(f"http://{NAME}:{server.port}/a")
                    except FunctionError:
                        continue
                    assert isinstance(got, Fetched) and got.data

    asyncio.run(attempt())
