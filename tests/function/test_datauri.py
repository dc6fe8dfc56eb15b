"""data: image URIs are hashed from their inline bytes, without any fetch."""

from __future__ import annotations

import base64

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.function import helpers as h
from worker_function.app import create_app
from worker_function.datauri import decode_data_uri, is_data_uri
from worker_function.errors import BadUrl, TooLarge
from worker_function.hashing import hash_image
from worker_function.settings import FunctionSettings

MAX_BYTES = 200_000


class _NoFetch:
    """A fetcher that fails the test if the function tries to fetch anything."""

    async def fetch(self, url: str) -> object:
        raise AssertionError(f"fetched {url[:20]}")


def _client() -> httpx.AsyncClient:
    app = create_app(FunctionSettings(lab=None, max_bytes=MAX_BYTES, require_auth=False))
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://function.test")


def _uri(data: bytes, media: str = "image/png") -> str:
    return f"data:{media};base64,{base64.b64encode(data).decode()}"


@pytest.fixture(scope="module")
def png() -> bytes:
    return h.encode(h.generated_image(7, size=(64, 64)), "JPEG", quality=80)


async def test_data_uri_is_hashed_like_its_bytes(png: bytes) -> None:
    async with _client() as client:
        response = await client.post("/v1/analyze", json={"url": _uri(png, "image/jpeg")})
    assert response.status_code == 200, response.text
    body = response.json()
    expected = hash_image(png)
    assert body["hashes"]["sha256"] == expected.hashes.sha256
    assert body["hashes"]["pdq"] == expected.hashes.pdq
    assert body["server_ip"] is None
    assert body["final_url"] == "data:"  # the bytes are not echoed back
    assert body["bytes"] == len(png)


async def test_obtain_never_fetches_a_data_uri(png: bytes) -> None:
    from worker_function.datauri import obtain

    got = await obtain(_NoFetch(), _uri(png, "image/jpeg;name=x.jpg"), max_bytes=MAX_BYTES)  # type: ignore[arg-type]
    assert got.data == png
    assert "bytes=" in repr(got) and base64.b64encode(png).decode()[:16] not in repr(got)


@pytest.mark.parametrize(
    ("uri", "code", "status"),
    [
        ("data:text/html;base64,PGh0bWw+", "bad_url", 400),
        ("data:image/png,rawbytes", "bad_url", 400),
        ("data:image/png;base64", "bad_url", 400),
        ("data:image/png;base64,!!!notbase64!!!", "bad_url", 400),
        ("data:image/png;base64,", "bad_url", 400),
        ("data:image/png;base64,aGVsbG8gd29ybGQ=", "not_an_image", None),
    ],
)
async def test_bad_data_uris_get_specific_errors(uri: str, code: str, status: int | None) -> None:
    async with _client() as client:
        response = await client.post("/v1/analyze", json={"url": uri})
    error = response.json()["error"]
    if status is not None:
        assert (response.status_code, error["code"]) == (status, code)
    else:
        assert response.status_code in (415, 422) and response.status_code != 500


def test_too_large_is_refused_before_decoding() -> None:
    uri = "data:image/png;base64," + "A" * (MAX_BYTES * 2)
    with pytest.raises(TooLarge):
        decode_data_uri(uri, max_bytes=MAX_BYTES)


def test_is_data_uri() -> None:
    assert is_data_uri("DATA:image/png;base64,AA==")
    assert not is_data_uri("http://a.test/data:x")


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.text(max_size=200))
def test_any_data_uri_decodes_or_raises_a_specific_error(tail: str) -> None:
    try:
        got = decode_data_uri("data:" + tail, max_bytes=MAX_BYTES)
    except (BadUrl, TooLarge):
        return
    assert got.data and got.server_ip is None
