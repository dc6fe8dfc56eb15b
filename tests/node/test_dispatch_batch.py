"""node.dispatch.FunctionClient.analyze_batch (issue 17): many URLs per signed request against a
fake function (httpx.MockTransport): answers in order, item errors kept per item, the whole
batch retried on transient answers, an older function without the route asked one URL at a
time, a function that takes fewer items per batch asked in smaller batches."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import httpx
import pytest
from nacl.signing import SigningKey

from node.dispatch import AnalyzeFailure, FunctionClient
from protocol.models import HashResult
from protocol.request_auth import RequestSigner
from tests.node.test_dispatch import BASE, error, hash_result


class BatchFunction:
    """Answers /v1/analyze:batch per item by the URL's path (``gone``: an upstream 404), and
    /v1/analyze singly; counts requests per route and batch sizes."""

    def __init__(
        self,
        *,
        has_batch: bool = True,
        max_items: int = 64,
        busy_first: int = 0,
        reorder: bool = False,
    ) -> None:
        self.has_batch = has_batch
        self.max_items = max_items
        self.busy_first = busy_first
        self.reorder = reorder
        self.routes: Counter[str] = Counter()
        self.sizes: list[int] = []
        self.headers: list[httpx.Headers] = []
        self.delay_s = 0.0
        self.active = 0
        self.max_active = 0

    def item(self, url: str) -> dict[str, object]:
        if httpx.URL(url).path.strip("/") == "gone":
            return {
                "url": url,
                "result": None,
                "error": {"code": "upstream_status", "message": "HTTP 404", "http_status": 502},
            }
        return {"url": url, "result": hash_result(url), "error": None}

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.routes[request.url.path] += 1
        self.headers.append(request.headers)
        body = json.loads(request.content)
        if request.url.path == "/v1/analyze":
            url = body["url"]
            if httpx.URL(url).path.strip("/") == "gone":
                return error(502, "upstream_status")
            return httpx.Response(200, json=hash_result(url))
        assert request.url.path == "/v1/analyze:batch"
        if not self.has_batch:
            return httpx.Response(404, json={"detail": "Not Found"})
        if self.busy_first > 0:
            self.busy_first -= 1
            return error(503, "overloaded", {"Retry-After": "0"})
        urls = [item["url"] for item in body["items"]]
        if len(urls) > self.max_items:
            return error(413, "too_many_items")
        self.sizes.append(len(urls))
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        await asyncio.sleep(self.delay_s)
        self.active -= 1
        items = [self.item(u) for u in urls]
        if self.reorder:
            items.reverse()
        return httpx.Response(200, json={"results": items})


def _client(fake: BatchFunction, **kwargs: object) -> FunctionClient:
    return FunctionClient(
        BASE,
        transport=httpx.MockTransport(fake),
        backoff_s=0.01,
        **kwargs,  # type: ignore[arg-type]
    )


URLS = [f"http://img.test/{name}" for name in ("a", "b", "gone", "c", "d")]


async def test_one_request_answers_every_url_in_order() -> None:
    fake = BatchFunction()
    async with _client(fake, batch_size=8) as client:
        results = await client.analyze_batch(URLS)
    assert fake.routes == Counter({"/v1/analyze:batch": 1})
    assert [r.url for r in results] == URLS
    assert all(isinstance(r, HashResult) for i, r in enumerate(results) if i != 2)
    assert results[2] == AnalyzeFailure(URLS[2], "upstream_status", "HTTP 404", 502)


async def test_batches_are_signed_for_their_own_route() -> None:
    key = SigningKey(b"\x05" * 32)
    fake = BatchFunction()
    async with _client(fake, batch_size=8, auth=RequestSigner("node-a", key)) as client:
        await client.analyze_batch(URLS)
    headers = fake.headers[0]
    assert headers["x-libra-caller"] == "node-a"
    signature = headers["x-libra-signature"]
    # The same body signed for /v1/analyze would be another signature: the path is signed.
    body = json.dumps(
        {"items": [{"url": u, "dihedral": False} for u in URLS]}, separators=(",", ":")
    ).encode()
    other = RequestSigner("node-a", key).headers("POST", "/v1/analyze", body)
    assert other["X-Libra-Signature"] != signature


async def test_larger_lists_go_in_batches_of_batch_size() -> None:
    fake = BatchFunction()
    urls = [f"http://img.test/{i}" for i in range(10)]
    async with _client(fake, batch_size=4) as client:
        results = await client.analyze_batch(urls)
    assert fake.sizes == [4, 4, 2]
    assert [r.url for r in results] == urls


async def test_a_function_without_the_route_is_asked_one_url_at_a_time() -> None:
    fake = BatchFunction(has_batch=False)
    async with _client(fake, batch_size=8) as client:
        first = await client.analyze_batch(URLS)
        second = await client.analyze_batch(URLS)
    # One probe of the batch route, then single requests only.
    assert fake.routes == Counter({"/v1/analyze:batch": 1, "/v1/analyze": 2 * len(URLS)})
    assert [r.url for r in first] == URLS and [r.url for r in second] == URLS
    assert isinstance(first[2], AnalyzeFailure) and first[2].code == "upstream_status"


async def test_too_many_items_halves_the_batch_and_remembers() -> None:
    fake = BatchFunction(max_items=3)
    urls = [f"http://img.test/{i}" for i in range(8)]
    async with _client(fake, batch_size=8) as client:
        results = await client.analyze_batch(urls)
        again = await client.analyze_batch(urls)
    assert [r.url for r in results] == urls and [r.url for r in again] == urls
    assert all(isinstance(r, HashResult) for r in results + again)
    assert max(fake.sizes) <= 3


async def test_a_transient_answer_retries_the_whole_batch() -> None:
    fake = BatchFunction(busy_first=2)
    async with _client(fake, batch_size=8, retries=3) as client:
        results = await client.analyze_batch(URLS)
    assert fake.routes["/v1/analyze:batch"] == 3
    assert [r.url for r in results] == URLS


async def test_retries_exhausted_give_every_url_the_failure() -> None:
    fake = BatchFunction(busy_first=10)
    async with _client(fake, batch_size=8, retries=1) as client:
        results = await client.analyze_batch(URLS)
    assert [r.url for r in results] == URLS
    assert all(isinstance(r, AnalyzeFailure) and r.code == "overloaded" for r in results)


async def test_an_answer_in_another_order_is_refused() -> None:
    fake = BatchFunction(reorder=True)
    async with _client(fake, batch_size=8) as client:
        results = await client.analyze_batch(URLS)
    assert all(isinstance(r, AnalyzeFailure) and r.code == "bad_response" for r in results)


@pytest.mark.parametrize("urls", [[], ["http://img.test/a"], ["http://img.test/a"] * 2])
async def test_one_url_or_repeated_urls_go_singly(urls: list[str]) -> None:
    fake = BatchFunction()
    async with _client(fake, batch_size=8) as client:
        results = await client.analyze_batch(urls)
    assert fake.routes["/v1/analyze:batch"] == 0
    assert [r.url for r in results] == urls


async def test_batch_size_one_never_batches() -> None:
    fake = BatchFunction()
    async with _client(fake, batch_size=1) as client:
        await client.analyze_batch(URLS)
    assert fake.routes == Counter({"/v1/analyze": len(URLS)})


async def test_at_most_half_the_calls_in_flight_are_batches() -> None:
    """A batch takes up to 16 of the function's 64 analysis slots: 8 batches at once would be
    answered 503 overloaded, so at most concurrency / 2 are sent at once."""
    fake = BatchFunction()
    fake.delay_s = 0.05
    lists = [[f"http://img.test/{n}-{i}" for i in range(4)] for n in range(12)]
    async with _client(fake, batch_size=8, concurrency=8) as client:
        answers = await asyncio.gather(*(client.analyze_batch(urls) for urls in lists))
    assert [[r.url for r in a] for a in answers] == lists
    assert fake.max_active == 4
