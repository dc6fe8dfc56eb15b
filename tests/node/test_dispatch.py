"""node.dispatch.FunctionClient against a fake function (httpx.MockTransport) and a dead port."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections import Counter

import httpx
import pytest

from node.dispatch import AnalyzeFailure, FunctionClient
from protocol.models import HashResult

BASE = "http://function.test"


def hash_result(url: str) -> dict[str, object]:
    return {
        "url": url,
        "final_url": url,
        "server_ip": "127.0.0.1",
        "format": "PNG",
        "width": 64,
        "height": 48,
        "bytes": 1234,
        "animated": False,
        "hashes": {
            "md5": "0" * 32,
            "sha1": "1" * 40,
            "sha256": "2" * 64,
            "pdq": "3" * 64,
            "pdq_quality": 90,
            "phash": "4" * 16,
            "dhash": "5" * 16,
        },
    }


def error(status: int, code: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"error": {"code": code, "message": f"{code} happened"}}
    return httpx.Response(status, json=body, headers=headers)


class FakeFunction:
    """Answers by the image URL's path; counts attempts and concurrent requests."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.attempts: Counter[str] = Counter()
        self.bodies: list[dict[str, object]] = []
        self.active = 0
        self.max_active = 0
        self.delay_s = delay_s
        self.times: dict[str, list[float]] = {}

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.method == "POST"
        assert request.url.path == "/v1/analyze"
        body = json.loads(request.content)
        self.bodies.append(body)
        url = body["url"]
        kind = httpx.URL(url).path.strip("/")
        self.attempts[kind] += 1
        self.times.setdefault(kind, []).append(time.monotonic())
        n = self.attempts[kind]
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            if kind == "gone":
                return error(502, "upstream_status")
            if kind == "busy" and n == 1:
                return error(429, "rate_limited", {"Retry-After": "1"})
            if kind == "overloaded":
                return error(503, "overloaded")
            if kind == "gateway":
                return error(504, "timeout")
            if kind == "flaky" and n <= 2:
                raise httpx.ConnectError("connection refused", request=request)
            if kind == "down":
                raise httpx.ConnectError("connection refused", request=request)
            if kind == "garbled":
                return httpx.Response(200, json={"url": url})
            if kind == "html-error":
                return httpx.Response(500, text="<h1>Internal Server Error</h1>")
            return httpx.Response(200, json=hash_result(url))
        finally:
            self.active -= 1


def client(fake: FakeFunction, **kwargs: object) -> FunctionClient:
    return FunctionClient(
        BASE,
        transport=httpx.MockTransport(fake),
        backoff_s=0.01,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_success_and_request_body() -> None:
    fake = FakeFunction()
    async with client(fake) as fc:
        result = await fc.analyze("http://site-a.test/ok", dihedral=True)
    assert isinstance(result, HashResult)
    assert result.width == 64 and result.hashes.pdq == "3" * 64
    assert fake.bodies == [{"url": "http://site-a.test/ok", "dihedral": True}]


async def test_upstream_error_is_final() -> None:
    fake = FakeFunction()
    async with client(fake, retries=3) as fc:
        result = await fc.analyze("http://site-a.test/gone")
    assert result == AnalyzeFailure(
        "http://site-a.test/gone", "upstream_status", "upstream_status happened", 502
    )
    assert fake.attempts["gone"] == 1


async def test_504_is_not_retried() -> None:
    fake = FakeFunction()
    async with client(fake, retries=3) as fc:
        result = await fc.analyze("http://site-a.test/gateway")
    assert isinstance(result, AnalyzeFailure) and result.code == "timeout"
    assert fake.attempts["gateway"] == 1


async def test_429_honours_retry_after_then_succeeds() -> None:
    fake = FakeFunction()
    async with client(fake) as fc:
        result = await fc.analyze("http://site-a.test/busy")
    assert isinstance(result, HashResult)
    assert fake.attempts["busy"] == 2
    first, second = fake.times["busy"]
    assert second - first >= 0.95  # Retry-After: 1, not the 10 ms back-off


async def test_503_retried_until_retries_run_out() -> None:
    fake = FakeFunction()
    async with client(fake, retries=2) as fc:
        result = await fc.analyze("http://site-a.test/overloaded")
    assert isinstance(result, AnalyzeFailure)
    assert (result.code, result.http_status) == ("overloaded", 503)
    assert fake.attempts["overloaded"] == 3


async def test_connection_errors_retried() -> None:
    fake = FakeFunction()
    async with client(fake, retries=3) as fc:
        ok = await fc.analyze("http://site-a.test/flaky")
        down = await fc.analyze("http://site-a.test/down")
    assert isinstance(ok, HashResult)
    assert fake.attempts["flaky"] == 3
    assert isinstance(down, AnalyzeFailure)
    assert (down.code, down.http_status) == ("function_unreachable", None)
    assert fake.attempts["down"] == 4


async def test_bad_bodies_become_failures() -> None:
    fake = FakeFunction()
    async with client(fake) as fc:
        garbled = await fc.analyze("http://site-a.test/garbled")
        html_error = await fc.analyze("http://site-a.test/html-error")
        too_long = await fc.analyze("http://site-a.test/" + "x" * 9000)
    assert isinstance(garbled, AnalyzeFailure) and garbled.code == "bad_response"
    assert isinstance(html_error, AnalyzeFailure)
    assert (html_error.code, html_error.http_status) == ("http_500", 500)
    assert isinstance(too_long, AnalyzeFailure) and too_long.code == "invalid_url"
    assert fake.attempts["html-error"] == 1


async def test_analyze_many_caps_concurrency_and_returns_each_url_once() -> None:
    fake = FakeFunction(delay_s=0.05)
    urls = [f"http://site-a.test/ok?n={n}" for n in range(20)] + ["http://site-a.test/gone"]
    async with client(fake, concurrency=3) as fc:
        results = [pair async for pair in fc.analyze_many(urls)]
    assert sorted(url for url, _ in results) == sorted(urls)
    by_url = dict(results)
    assert isinstance(by_url["http://site-a.test/gone"], AnalyzeFailure)
    assert all(isinstance(by_url[u], HashResult) for u in urls[:-1])
    assert fake.max_active == 3


async def test_analyze_many_empty() -> None:
    async with client(FakeFunction()) as fc:
        assert [pair async for pair in fc.analyze_many([])] == []


async def test_real_transport_to_a_dead_loopback_port() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    async with FunctionClient(f"http://127.0.0.1:{port}", retries=1, backoff_s=0.01) as fc:
        result = await fc.analyze("http://site-a.test/a.png")
    assert isinstance(result, AnalyzeFailure)
    assert (result.code, result.http_status) == ("function_unreachable", None)


def test_concurrency_must_be_positive() -> None:
    with pytest.raises(ValueError):
        FunctionClient(BASE, concurrency=0)
