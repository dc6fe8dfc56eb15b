"""POST /v1/analyze:batch (issue 17): many URLs in one signed request, answered per item in the
request's order with the same results and error codes as single analyses; hostile batches
(unsigned, replayed, oversize, too many items, duplicate URLs, over the byte budget) refused."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from protocol.keys import encode_public_key
from protocol.lab import LabNetwork
from protocol.models import AnalyzeBatchResponse
from protocol.request_auth import RequestSigner
from tests.function import helpers as h
from tests.function.conftest import LAB_HOST, TEST_DEADLINE, TEST_MAX_BYTES, Images
from worker_function.app import Admission, Overloaded, create_app
from worker_function.batch import BATCH_PATH, ByteBudget, HostSlots, host_of, parse_batch
from worker_function.errors import FunctionError
from worker_function.settings import FunctionSettings

KEY = SigningKey(b"\x07" * 32)
OTHER_KEY = SigningKey(b"\x08" * 32)


def _settings(**values: object) -> FunctionSettings:
    base: dict[str, object] = {
        "max_bytes": TEST_MAX_BYTES,
        "deadline_seconds": TEST_DEADLINE,
        "lab": None,
        "decode_isolation": "thread",
        "authorized_keys": {"node-a": encode_public_key(KEY.verify_key)},
        "metrics": True,
    }
    base.update(values)
    return FunctionSettings(**base)  # type: ignore[arg-type]


def _post(
    client: httpx.Client, body: bytes, *, path: str = BATCH_PATH, sign_path: str | None = None
) -> httpx.Response:
    headers = RequestSigner("node-a", KEY).headers("POST", sign_path or path, body)
    return client.post(path, content=body, headers=headers)


def _batch(*urls: str, dihedral: bool = False) -> bytes:
    return json.dumps({"items": [{"url": u, "dihedral": dihedral} for u in urls]}).encode()


@pytest.fixture(scope="module")
def batch_function(lab: LabNetwork) -> Iterator[httpx.Client]:
    with (
        h.FunctionServer(create_app(_settings(), lab=lab)) as server,
        httpx.Client(base_url=server.url, trust_env=False, timeout=120) as client,
    ):
        yield client


def test_items_are_answered_in_order_as_single_analyses_are(
    batch_function: httpx.Client, base_url: str
) -> None:
    paths = [
        "/a.jpg",
        "/missing.png",  # upstream 404
        "/b.png",
        "/page.html",  # not an image
        "/big.png",  # over max_bytes
        "/truncated.jpg",  # decode_failed
        "/to-private",  # a redirect to 10.0.0.1
        "/r/2",  # two redirects, then the image
    ]
    urls = [base_url + p for p in paths] + ["ftp://x.test/a.jpg", "http://10.0.0.1/a.jpg"]
    response = _post(batch_function, _batch(*urls))
    assert response.status_code == 200
    answer = AnalyzeBatchResponse.model_validate_json(response.content)
    assert [item.url for item in answer.results] == urls
    for url, item in zip(urls, answer.results, strict=True):
        body = json.dumps({"url": url}).encode()
        single = _post(batch_function, body, path="/v1/analyze")
        if single.status_code == 200:
            assert item.result is not None and item.error is None
            assert item.result.model_dump() == single.json()
        else:
            assert item.error is not None and item.result is None
            expected = single.json()["error"]
            assert (item.error.code, item.error.http_status) == (
                expected["code"],
                single.status_code,
            )
    codes = [item.error.code if item.error else "ok" for item in answer.results]
    assert codes == [
        "ok",
        "upstream_status",
        "ok",
        "not_an_image",
        "too_large",
        "decode_failed",
        "blocked_address",
        "ok",
        "bad_url",
        "blocked_address",
    ]


def test_dihedral_per_item(batch_function: httpx.Client, base_url: str) -> None:
    body = json.dumps(
        {"items": [{"url": base_url + "/a.jpg", "dihedral": True}, {"url": base_url + "/b.png"}]}
    ).encode()
    results = _post(batch_function, body).json()["results"]
    assert len(results[0]["result"]["hashes"]["pdq_dihedral"]) == 8
    assert results[1]["result"]["hashes"]["pdq_dihedral"] is None


def test_a_batch_must_be_signed_for_its_own_path(
    batch_function: httpx.Client, base_url: str
) -> None:
    body = _batch(base_url + "/a.jpg")
    unsigned = batch_function.post(BATCH_PATH, content=body)
    assert (unsigned.status_code, unsigned.json()["error"]["code"]) == (401, "unauthenticated")
    # A signature made for /v1/analyze does not carry over to the batch route.
    moved = _post(batch_function, body, sign_path="/v1/analyze")
    assert (moved.status_code, moved.json()["error"]["code"]) == (401, "unauthenticated")
    foreign = RequestSigner("node-a", OTHER_KEY).headers("POST", BATCH_PATH, body)
    wrong_key = batch_function.post(BATCH_PATH, content=body, headers=foreign)
    assert wrong_key.status_code == 401


def test_a_replayed_batch_is_refused(batch_function: httpx.Client, base_url: str) -> None:
    body = _batch(base_url + "/a.jpg")
    headers = RequestSigner("node-a", KEY).headers("POST", BATCH_PATH, body)
    assert batch_function.post(BATCH_PATH, content=body, headers=headers).status_code == 200
    again = batch_function.post(BATCH_PATH, content=body, headers=headers)
    assert (again.status_code, again.json()["error"]["code"]) == (401, "replayed_request")


def test_duplicate_urls_are_refused_before_any_fetch(
    batch_function: httpx.Client, base_url: str, image_server: h.ImageServer
) -> None:
    hits = len(image_server.hits)
    body = _batch(base_url + "/a.jpg", base_url + "/b.png", base_url + "/a.jpg")
    response = _post(batch_function, body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "duplicate_url"
    assert "items 0 and 2" in error["message"] and LAB_HOST not in error["message"]
    assert len(image_server.hits) == hits


def test_too_many_items(lab: LabNetwork, base_url: str, image_server: h.ImageServer) -> None:
    app = create_app(_settings(max_batch_items=4), lab=lab)
    with (
        h.FunctionServer(app) as server,
        httpx.Client(base_url=server.url, trust_env=False, timeout=120) as client,
    ):
        hits = len(image_server.hits)
        five = _post(client, _batch(*(f"{base_url}/a.jpg?{i}" for i in range(5))))
        assert (five.status_code, five.json()["error"]["code"]) == (413, "too_many_items")
        # Beyond the protocol's own ceiling (1024) too, not a generic validation error.
        many = _post(client, _batch(*(f"http://x.test/{i}" for i in range(1025))))
        assert (many.status_code, many.json()["error"]["code"]) == (413, "too_many_items")
        assert len(image_server.hits) == hits
        four = _post(client, _batch(*(f"{base_url}/a.jpg?{i}" for i in range(4))))
        assert four.status_code == 200


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"[]", b'{"items": []}', b'{"items": [{"url": ""}]}', b'{"urls": ["x"]}'],
)
def test_malformed_batches_are_invalid_requests(batch_function: httpx.Client, body: bytes) -> None:
    response = _post(batch_function, body)
    assert (response.status_code, response.json()["error"]["code"]) == (422, "invalid_request")


def test_the_body_limit_is_the_batchs_own(batch_function: httpx.Client) -> None:
    # 64 items of long URLs: over the 64 KiB of a single request, within the batch's limit.
    urls = [f"http://x.test/{i}/" + "a" * 7000 for i in range(64)]
    body = _batch(*urls)
    assert 64 * 1024 < len(body) <= 64 * 9 * 1024
    answer = _post(batch_function, body)
    assert answer.status_code == 200  # every item refused on its own (x.test is not in the lab)
    assert {item["error"]["code"] for item in answer.json()["results"]} == {"blocked_address"}
    single = _post(batch_function, body, path="/v1/analyze")
    assert (single.status_code, single.json()["error"]["code"]) == (413, "request_too_large")
    # Over the batch's limit: refused before it is read (declared length) or verified.
    over = body + b" " * (64 * 9 * 1024)
    refused = _post(batch_function, over)
    assert (refused.status_code, refused.json()["error"]["code"]) == (413, "request_too_large")


def test_the_batch_byte_budget(lab: LabNetwork, base_url: str, images: Images) -> None:
    size = len(images.jpeg)
    app = create_app(_settings(max_batch_bytes=size + size // 2), lab=lab)
    urls = [f"{base_url}/a.jpg?{i}" for i in range(4)]
    with (
        h.FunctionServer(app) as server,
        httpx.Client(base_url=server.url, trust_env=False, timeout=120) as client,
    ):
        results = _post(client, _batch(*urls)).json()["results"]
    codes = [r["error"]["code"] if r["error"] else "ok" for r in results]
    assert codes.count("ok") == 1 and codes.count("batch_too_large") == 3
    refused = next(r["error"] for r in results if r["error"])
    assert refused["http_status"] == 413


async def test_byte_budget_waits_for_open_reservations() -> None:
    budget = ByteBudget(total=250, per_item=100)
    first, second = await budget.reserve(), await budget.reserve()
    assert (first, second) == (100, 100)
    # 50 left beside two open reservations: the third waits rather than take a short share.
    import asyncio

    third = asyncio.create_task(budget.reserve())
    await asyncio.sleep(0)
    assert not third.done()
    await budget.settle(first, used=30)
    assert await third == 100  # 250 - 30 spent - 100 open = 120 >= 100
    await budget.settle(second, used=100)
    await budget.settle(100, used=100)
    assert await budget.reserve() == 20  # nothing open: what is left
    await budget.settle(20, used=0)
    assert budget.spent == 230


def test_items_run_with_bounded_concurrency(lab: LabNetwork) -> None:
    gate = threading.Event()
    lock = threading.Lock()
    active = [0, 0]  # now, most at once
    png = h.encode(h.generated_image(5), "PNG")

    def counted(request: BaseHTTPRequestHandler) -> None:
        with lock:
            active[0] += 1
            active[1] = max(active[1], active[0])
        try:
            gate.wait(timeout=300)
            request.send_response(200)
            request.send_header("Content-Type", "image/png")
            request.send_header("Content-Length", str(len(png)))
            request.end_headers()
            request.wfile.write(png)
        finally:
            with lock:
                active[0] -= 1

    with h.ImageServer({"/held.png": counted}) as images:
        lab_here = LabNetwork(hosts={LAB_HOST: "127.0.0.1"}, allow_ports=[images.port])
        app = create_app(_settings(batch_concurrency=3), lab=lab_here)
        urls = [f"http://{LAB_HOST}:{images.port}/held.png?{i}" for i in range(8)]
        with (
            h.FunctionServer(app) as server,
            httpx.Client(base_url=server.url, trust_env=False, timeout=300) as client,
        ):
            answer: list[httpx.Response] = []
            sender = threading.Thread(target=lambda: answer.append(_post(client, _batch(*urls))))
            sender.start()
            deadline = time.monotonic() + 120
            while active[0] < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.3)  # room for a fourth fetch to start, were concurrency unbounded
            held = active[0]
            gate.set()
            sender.join(timeout=300)
    assert held == 3 and active[1] == 3
    assert [r["error"] for r in answer[0].json()["results"]] == [None] * 8


def test_each_item_costs_a_rate_limit_token(lab: LabNetwork, base_url: str) -> None:
    settings_ = _settings(rate_limit_per_second=0.001, rate_limit_burst=5, max_batch_items=5)
    with (
        h.FunctionServer(create_app(settings_, lab=lab)) as server,
        httpx.Client(base_url=server.url, trust_env=False, timeout=120) as client,
    ):
        five = _post(client, _batch(*(f"{base_url}/a.jpg?{i}" for i in range(5))))
        assert five.status_code == 200
        one = _post(client, _batch(base_url + "/b.png"))
        assert (one.status_code, one.json()["error"]["code"]) == (429, "rate_limited")
        assert int(one.headers["Retry-After"]) >= 1


def test_a_batch_larger_than_the_bucket_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="max_batch_items"):
        _settings(max_batch_items=200, rate_limit_burst=100)
    # Not set explicitly (an older configuration with a small bucket): it shrinks instead.
    small = _settings(rate_limit_burst=10)
    assert small.batch_items_limit() == 10 and small.batch_request_bytes() == 10 * 9 * 1024
    assert _settings().batch_items_limit() == 64
    assert _settings().batch_request_bytes() == 64 * 9 * 1024


def test_admission_counts_a_batchs_concurrency() -> None:
    admission = Admission(limit=10, retry_after=2)
    admission.enter(8)
    with pytest.raises(Overloaded):
        admission.enter(3)
    admission.enter(2)
    admission.leave(8)
    admission.leave(2)
    assert admission.in_flight == 0


def test_items_are_counted_as_analyses(batch_function: httpx.Client, base_url: str) -> None:
    def count(text: str, name: str, outcome: str) -> float:
        prefix = f'{name}{{outcome="{outcome}"}} '
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix))

    before = batch_function.get("/metrics").text
    _post(batch_function, _batch(base_url + "/b.png", base_url + "/page.html"))
    batch_function.post(BATCH_PATH, content=b"{}")  # unsigned: a refused batch
    after = batch_function.get("/metrics").text
    for name, outcome, more in [
        ("libra_function_analyses_total", "ok", 1),
        ("libra_function_analyses_total", "not_an_image", 1),
        ("libra_function_batches_total", "ok", 1),
        ("libra_function_batches_total", "unauthenticated", 1),
    ]:
        assert count(after, name, outcome) - count(before, name, outcome) == more, name


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda children: (
                st.lists(children, max_size=4)
                | st.dictionaries(st.sampled_from(["items", "url", "dihedral", "x"]), children)
            ),
            max_leaves=12,
        ).map(lambda value: json.dumps(value).encode()),
    )
)
def test_any_body_is_a_batch_or_a_specific_error(body: bytes) -> None:
    try:
        batch = parse_batch(body, max_items=64)
    except FunctionError as exc:
        assert exc.code in {"invalid_request", "too_many_items", "duplicate_url"}
        assert exc.http_status in {413, 422}
    else:
        assert 1 <= len(batch.items) <= 64
        assert len({item.url for item in batch.items}) == len(batch.items)


async def test_host_slots_prefer_the_finished_host_then_idle_hosts() -> None:
    slots = HostSlots(2)
    hosts = ["a", "a", "b", "b", "c"]
    turns = [slots.wait(host) for host in hosts]
    slots.start()
    # Two slots: the first item of two different hosts, not a's two items at once.
    assert [t.done() for t in turns] == [True, False, True, False, False]
    slots.done("b")  # b's connection is idle now: its next item goes there
    assert [t.done() for t in turns] == [True, False, True, True, False]
    slots.done("a")  # a's next item, before c that waited behind it
    assert [t.done() for t in turns] == [True, True, True, True, False]
    slots.done("b")
    assert turns[4].done()  # a slot never stays free while items wait
    assert slots.free == 0 and dict(slots.active) == {"a": 1, "b": 0, "c": 1}


async def test_host_slots_run_one_hosts_items_in_parallel_when_nothing_else_waits() -> None:
    slots = HostSlots(3)
    turns = [slots.wait("a") for _ in range(5)]
    slots.start()
    assert [t.done() for t in turns] == [True, True, True, False, False]
    turns[3].cancel()  # an item that gave up is skipped, its slot goes on
    slots.done("a")
    assert turns[4].done() and slots.free == 0


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://Img.Example.test:8080/a.png?x", "http://img.example.test:8080"),
        ("https://img.example.test/a.png", "https://img.example.test"),
        ("data:image/png;base64,AAAA", ""),
    ],
)
def test_host_of(url: str, host: str) -> None:
    assert host_of(url) == host
