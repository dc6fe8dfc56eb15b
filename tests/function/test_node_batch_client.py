"""The node's function client against the real function (issue 17): `analyze_batch` through
POST /v1/analyze:batch gives, item by item, exactly what one request per image gives, with
signed requests, in order, 3 at a time."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from nacl.signing import SigningKey

from node.dispatch import AnalyzeFailure, FunctionClient
from protocol.keys import encode_public_key
from protocol.lab import LabNetwork
from protocol.models import HashResult
from protocol.request_auth import RequestSigner
from tests.function import helpers as h
from tests.function.conftest import TEST_DEADLINE, TEST_MAX_BYTES
from worker_function.app import create_app
from worker_function.settings import FunctionSettings

KEY = SigningKey(b"\x09" * 32)
PATHS = ["/a.jpg", "/missing.png", "/b.png", "/page.html", "/truncated.jpg", "/r/2", "/big.png"]


@pytest.fixture(scope="module")
def function_url(lab: LabNetwork) -> Iterator[str]:
    settings = FunctionSettings(
        max_bytes=TEST_MAX_BYTES,
        deadline_seconds=TEST_DEADLINE,
        decode_isolation="thread",
        authorized_keys={"node-a": encode_public_key(KEY.verify_key)},
        lab=None,
    )
    with h.FunctionServer(create_app(settings, lab=lab)) as server:
        yield server.url


async def test_batches_answer_as_single_requests_do(function_url: str, base_url: str) -> None:
    urls = [base_url + p for p in PATHS]
    signer = RequestSigner("node-a", KEY)
    async with FunctionClient(function_url, auth=signer, batch_size=1) as single:
        one_by_one = [await single.analyze(u) for u in urls]
    paths: list[str] = []

    async def seen(request: httpx.Request) -> None:
        paths.append(request.url.path)

    async with FunctionClient(function_url, auth=signer, batch_size=3) as batching:
        batching._client.event_hooks["request"].append(seen)  # which routes it used
        batched = await batching.analyze_batch(urls)
    # 7 URLs, 3 per signed request; the last one alone goes as a single request.
    assert paths == ["/v1/analyze:batch", "/v1/analyze:batch", "/v1/analyze"]
    assert [r.url for r in batched] == urls
    for alone, together in zip(one_by_one, batched, strict=True):
        if isinstance(alone, HashResult):
            assert isinstance(together, HashResult)
            assert together.hashes == alone.hashes and together.final_url == alone.final_url
        else:
            assert isinstance(together, AnalyzeFailure)
            assert (together.code, together.http_status) == (alone.code, alone.http_status)
    assert sum(isinstance(r, HashResult) for r in batched) >= 3
    assert {r.code for r in batched if isinstance(r, AnalyzeFailure)} >= {"upstream_status"}
