"""Connection reuse within one batch (issue 17, worker_function/fetch.FetchSession).

A loopback HTTP/1.1 server counts the TCP connections it accepts and the Host headers seen on
each, so the tests see what the function's sockets really did: kept alive between items for one
host name, never shared between two names on one IP, all closed when the batch ends (also when
it is cancelled), and a single /v1/analyze still opens one connection per request.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from protocol.lab import LabNetwork
from tests.function import helpers as h
from worker_function.app import create_app
from worker_function.batch import BATCH_PATH
from worker_function.errors import BlockedAddress, TooLarge, UpstreamStatus
from worker_function.fetch import Fetcher, FetchLimits
from worker_function.settings import FunctionSettings
from worker_function.ssrf import Guard
from worker_function.urls import parse_target

NAME_A = "a.session.test"
NAME_B = "b.session.test"
PNG = h.encode(h.generated_image(5, (32, 24)), "PNG")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.hosts: list[list[str]] = []  # per accepted connection: the Host of each request
        self.open = 0
        self.gate = threading.Event()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def accepts(self) -> int:
        with self.lock:
            return len(self.hosts)

    def wait_all_closed(self) -> bool:
        """True once every accepted connection has been closed by the client (bounded wait)."""
        for _ in range(600):
            with self.lock:
                if self.open == 0:
                    return True
            time.sleep(0.05)
        return False


class _Handler(BaseHTTPRequestHandler):
    """One instance per TCP connection; HTTP/1.1, so it serves requests until the peer closes."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.hosts.append([])
            self.index = len(self.server.hosts) - 1
            self.server.open += 1

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.lock:
                self.server.open -= 1

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.hosts[self.index].append(self.headers.get("Host", ""))
        port = self.server.port
        if self.path == "/to-b":
            self._send(302, b"", {"Location": f"http://{NAME_B}:{port}/img.png"})
        elif self.path == "/to-private":
            self._send(302, b"", {"Location": "http://10.0.0.1/img.png"})
        elif self.path == "/hold":
            self.server.gate.wait(60)
            self._send(200, PNG, {"Content-Type": "image/png"})
        elif self.path == "/big-error":
            self._send(500, b"x" * 20_000, {"Content-Type": "text/plain"})
        elif self.path.startswith("/img"):
            self._send(200, PNG, {"Content-Type": "image/png"})
        else:
            self._send(404, b"not found", {"Content-Type": "text/plain"})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_Server]:
    httpd = _Server()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.gate.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _lab(server: _Server) -> LabNetwork:
    # Two names on one IP: the case a shared pool would get wrong.
    return LabNetwork(hosts={NAME_A: "127.0.0.1", NAME_B: "127.0.0.1"}, allow_ports=[server.port])


def _fetcher(server: _Server) -> Fetcher:
    return Fetcher(Guard(lab=_lab(server)), FetchLimits(max_bytes=100_000, deadline_seconds=60))


async def test_one_name_reuses_connections_within_a_session(server: _Server) -> None:
    async with _fetcher(server).session(connections=2) as session:
        for n in range(8):
            got = await session.fetcher().fetch(f"http://{NAME_A}:{server.port}/img{n}.png")
            assert got.data == PNG
        assert session.open_clients == 1
    assert server.accepts == 1
    assert server.hosts[0] == [f"{NAME_A}:{server.port}"] * 8
    assert server.wait_all_closed()


async def test_an_upstream_error_keeps_its_connection_for_the_next_item(server: _Server) -> None:
    """A short 404 body is read to its end, so the connection serves the next item."""
    async with _fetcher(server).session(connections=2) as session:
        with pytest.raises(UpstreamStatus):
            await session.fetcher().fetch(f"http://{NAME_A}:{server.port}/missing.png")
        got = await session.fetcher().fetch(f"http://{NAME_A}:{server.port}/img.png")
    assert got.data == PNG
    assert server.accepts == 1
    assert server.hosts[0] == [f"{NAME_A}:{server.port}"] * 2
    assert server.wait_all_closed()


async def test_a_large_error_body_is_not_read_its_connection_is_closed(server: _Server) -> None:
    async with _fetcher(server).session(connections=2) as session:
        with pytest.raises(UpstreamStatus):
            await session.fetcher().fetch(f"http://{NAME_A}:{server.port}/big-error")
        got = await session.fetcher().fetch(f"http://{NAME_A}:{server.port}/img.png")
    assert got.data == PNG
    assert server.accepts == 2
    assert server.wait_all_closed()


async def test_concurrent_items_stay_within_the_connection_limit(server: _Server) -> None:
    async with _fetcher(server).session(connections=2) as session:
        urls = [f"http://{NAME_A}:{server.port}/img{n}.png" for n in range(8)]
        got = await asyncio.gather(*(session.fetcher().fetch(u) for u in urls))
    assert [g.data for g in got] == [PNG] * 8
    assert 1 <= server.accepts <= 2
    assert server.wait_all_closed()


async def test_two_names_on_one_ip_never_share_a_connection(server: _Server) -> None:
    async with _fetcher(server).session(connections=2) as session:
        for n in range(6):
            name = NAME_A if n % 2 else NAME_B
            await session.fetcher().fetch(f"http://{name}:{server.port}/img{n}.png")
        assert session.open_clients == 2
    assert server.accepts == 2
    for hosts in server.hosts:
        assert len(hosts) == 3 and len(set(hosts)) == 1  # one name per connection
    assert {hosts[0] for hosts in server.hosts} == {
        f"{NAME_A}:{server.port}",
        f"{NAME_B}:{server.port}",
    }
    assert server.wait_all_closed()


async def test_a_redirect_to_another_name_uses_that_names_connection(server: _Server) -> None:
    async with _fetcher(server).session(connections=2) as session:
        for _ in range(3):
            got = await session.fetcher().fetch(f"http://{NAME_A}:{server.port}/to-b")
            assert got.final_url == f"http://{NAME_B}:{server.port}/img.png"
    assert server.accepts == 2
    assert sorted(server.hosts) == sorted(
        [[f"{NAME_A}:{server.port}"] * 3, [f"{NAME_B}:{server.port}"] * 3]
    )
    assert server.wait_all_closed()


async def test_a_changed_address_gets_its_own_client(server: _Server) -> None:
    """The pinned IP is part of the key: a new DNS answer never reuses an old connection."""
    session = _fetcher(server).session(connections=2)
    target = parse_target(f"http://{NAME_A}:{server.port}/img.png")
    one, two = ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("127.0.0.2")
    async with session.client(target, one) as first:
        pass
    async with session.client(target, one) as again:
        assert again is first  # idle again: reused for the same name and IP
    async with session.client(target, two) as other:
        assert other is not first
    assert session.open_clients == 2
    await session.aclose()
    assert session.open_clients == 0


async def test_ssrf_refusal_still_holds_per_item_in_a_session(server: _Server) -> None:
    async with _fetcher(server).session(connections=2) as session:
        ok = await session.fetcher().fetch(f"http://{NAME_A}:{server.port}/img.png")
        with pytest.raises(BlockedAddress):
            await session.fetcher().fetch(f"http://{NAME_A}:{server.port}/to-private")
        with pytest.raises(BlockedAddress):
            await session.fetcher().fetch("http://10.0.0.1/img.png")
        again = await session.fetcher().fetch(f"http://{NAME_A}:{server.port}/img2.png")
    assert ok.data == again.data == PNG
    assert server.accepts == 1  # the refused hops never connected anywhere
    assert server.wait_all_closed()


async def test_a_session_item_keeps_its_own_byte_cap(server: _Server) -> None:
    async with _fetcher(server).session(connections=2) as session:
        with pytest.raises(TooLarge):
            await session.fetcher(len(PNG) - 1).fetch(f"http://{NAME_A}:{server.port}/img.png")
        got = await session.fetcher(len(PNG)).fetch(f"http://{NAME_A}:{server.port}/img.png")
    assert got.data == PNG
    assert server.wait_all_closed()


async def test_a_cancelled_batch_closes_its_clients(server: _Server) -> None:
    session = _fetcher(server).session(connections=2)

    async def batch() -> None:
        async with session:
            await session.fetcher().fetch(f"http://{NAME_A}:{server.port}/img.png")
            await session.fetcher().fetch(f"http://{NAME_A}:{server.port}/hold")

    task = asyncio.create_task(batch())
    while server.accepts == 0 or len(server.hosts[0]) < 2:  # the held request has arrived
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert session.open_clients == 0
    server.gate.set()  # the handler answers, then finds the connection closed by the function
    assert server.wait_all_closed()
    assert server.accepts == 1


def _app_client(server: _Server, **values: object) -> h.FunctionServer:
    base: dict[str, object] = {
        "max_bytes": 100_000,
        "deadline_seconds": 60.0,
        "lab": None,
        "extra_ports": [],
        "require_auth": False,
        "decode_isolation": "thread",
    }
    settings = FunctionSettings(**{**base, **values})  # type: ignore[arg-type]
    return h.FunctionServer(create_app(settings, lab=_lab(server)))


def test_a_batch_reuses_connections_and_closes_them(server: _Server) -> None:
    urls = [f"http://{NAME_A}:{server.port}/img{n}.png" for n in range(8)]
    body = json.dumps({"items": [{"url": u} for u in urls]}).encode()
    with (
        _app_client(server, batch_concurrency=2) as function,
        httpx.Client(base_url=function.url, trust_env=False, timeout=120) as client,
    ):
        response = client.post(BATCH_PATH, content=body)
        assert response.status_code == 200
        results = response.json()["results"]
        assert [r["error"] for r in results] == [None] * 8
        assert server.accepts <= 2 < len(urls)
        assert server.wait_all_closed()  # nothing outlives the batch


def test_single_analyses_keep_one_connection_each(server: _Server) -> None:
    with (
        _app_client(server) as function,
        httpx.Client(base_url=function.url, trust_env=False, timeout=120) as client,
    ):
        for n in range(3):
            url = f"http://{NAME_A}:{server.port}/img{n}.png"
            response = client.post("/v1/analyze", content=json.dumps({"url": url}).encode())
            assert response.status_code == 200
        assert server.accepts == 3
        assert server.wait_all_closed()


def test_a_batch_spread_over_hosts_asks_each_host_one_thing_at_a_time(server: _Server) -> None:
    # A page's image and its og:image per name, in page order: two slots go to two names at
    # first, and each name's second item waits for its first, then reuses its connection
    # (the batch scheduling of worker_function/batch.HostSlots; before, each name's two
    # items ran at once on two connections).
    urls = [
        f"http://{name}:{server.port}/{path}"
        for name in (NAME_A, NAME_B)
        for path in ("img-page.png", "og-missing.jpg")
    ]
    body = json.dumps({"items": [{"url": u} for u in urls]}).encode()
    with (
        _app_client(server, batch_concurrency=2) as function,
        httpx.Client(base_url=function.url, trust_env=False, timeout=120) as client,
    ):
        response = client.post(BATCH_PATH, content=body)
        assert response.status_code == 200
        codes = [(r["error"] or {}).get("code") for r in response.json()["results"]]
        assert codes == [None, "upstream_status", None, "upstream_status"]
        assert server.accepts == 2
        assert sorted(hosts[0].split(":")[0] for hosts in server.hosts) == [NAME_A, NAME_B]
        assert all(len(hosts) == 2 for hosts in server.hosts)  # each served its name twice
        assert server.wait_all_closed()
