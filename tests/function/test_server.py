"""The function over real HTTP: uvicorn on loopback, fetching from a loopback image server."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from protocol.lab import LabNetwork
from protocol.models import ErrorResponse, HashResult
from tests.function.conftest import LAB_HOST, Images
from tests.function.helpers import FunctionServer, ImageServer
from worker_function.app import create_app
from worker_function.hashing import hash_image
from worker_function.settings import FunctionSettings


def analyze(client: httpx.Client, url: str, **extra: object) -> httpx.Response:
    return client.post("/v1/analyze", json={"url": url, **extra})


def error_code(response: httpx.Response) -> str:
    return ErrorResponse.model_validate(response.json()).error.code


def test_healthz(lab_function: httpx.Client) -> None:
    response = lab_function.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_success_returns_every_field(
    lab_function: httpx.Client, base_url: str, images: Images
) -> None:
    response = analyze(lab_function, f"{base_url}/a.jpg")
    assert response.status_code == 200, response.text
    result = HashResult.model_validate(response.json())
    expected = hash_image(images.jpeg)
    assert result.url == f"{base_url}/a.jpg"
    assert result.final_url == f"{base_url}/a.jpg"
    assert result.server_ip == "127.0.0.1"
    assert (result.format, result.width, result.height) == ("JPEG", 320, 240)
    assert result.bytes == len(images.jpeg)
    assert result.animated is False
    assert result.hashes == expected.hashes
    assert result.hashes.sha256 == hashlib.sha256(images.jpeg).hexdigest()
    assert result.hashes.pdq_dihedral is None


def test_dihedral_on_request(lab_function: httpx.Client, base_url: str) -> None:
    response = analyze(lab_function, f"{base_url}/b.png", dihedral=True)
    assert response.status_code == 200, response.text
    hashes = HashResult.model_validate(response.json()).hashes
    assert hashes.pdq_dihedral is not None and len(hashes.pdq_dihedral) == 8
    assert hashes.pdq_dihedral[0] == hashes.pdq


def test_request_is_pinned_to_checked_ip_with_host_header(
    lab_function: httpx.Client, base_url: str, image_server: ImageServer
) -> None:
    before = len(image_server.hits)
    assert analyze(lab_function, f"{base_url}/a.jpg").status_code == 200
    # The server only listens on 127.0.0.1, yet it saw the name: Host carried it.
    assert image_server.hits[before:] == [("/a.jpg", f"{LAB_HOST}:{image_server.port}")]


def test_body_without_content_length(lab_function: httpx.Client, base_url: str) -> None:
    response = analyze(lab_function, f"{base_url}/unsized.jpg")
    assert response.status_code == 200, response.text


def test_upstream_404(lab_function: httpx.Client, base_url: str) -> None:
    response = analyze(lab_function, f"{base_url}/missing.jpg")
    assert response.status_code == 502
    assert error_code(response) == "upstream_status"
    assert "404" in response.json()["error"]["message"]


def test_upstream_503(lab_function: httpx.Client, base_url: str) -> None:
    response = analyze(lab_function, f"{base_url}/server-error")
    assert (response.status_code, error_code(response)) == (502, "upstream_status")
    assert "503" in response.json()["error"]["message"]


@pytest.mark.parametrize("path", ["/page.html", "/lying.jpg", "/empty"])
def test_not_an_image(lab_function: httpx.Client, base_url: str, path: str) -> None:
    # /lying.jpg claims image/jpeg: Content-Type is never trusted.
    response = analyze(lab_function, base_url + path)
    assert (response.status_code, error_code(response)) == (415, "not_an_image")


def test_truncated_jpeg(lab_function: httpx.Client, base_url: str) -> None:
    response = analyze(lab_function, f"{base_url}/truncated.jpg")
    assert (response.status_code, error_code(response)) == (422, "decode_failed")


@pytest.mark.parametrize("path", ["/big.png", "/big-unsized.png"])
def test_too_large(lab_function: httpx.Client, base_url: str, path: str) -> None:
    # With Content-Length the refusal is immediate; without, the streaming counter stops it.
    response = analyze(lab_function, base_url + path)
    assert (response.status_code, error_code(response)) == (413, "too_large")


def test_slow_drip_times_out(image_server: ImageServer, lab: LabNetwork) -> None:
    # The drip never completes its body (helpers.slow_drip), so only the fetch deadline can end
    # this request: 504 timeout proves it fired, however slow the machine is. No wall clock.
    settings = FunctionSettings(lab=None, require_auth=False, deadline_seconds=1.0)
    with (
        FunctionServer(create_app(settings, lab=lab)) as server,
        httpx.Client(base_url=server.url, trust_env=False, timeout=120) as client,
    ):
        url = f"http://{LAB_HOST}:{image_server.port}/slow.jpg"
        response = analyze(client, url)
    assert (response.status_code, error_code(response)) == (504, "timeout")


def test_pixel_bomb(lab_function: httpx.Client, base_url: str, images: Images) -> None:
    assert len(images.bomb) < 300_000  # small on the wire, 400 megapixels decoded
    response = analyze(lab_function, f"{base_url}/bomb.png")
    assert (response.status_code, error_code(response)) == (413, "pixel_limit")


def test_five_redirects_are_followed(lab_function: httpx.Client, base_url: str) -> None:
    response = analyze(lab_function, f"{base_url}/r/5")
    assert response.status_code == 200, response.text
    assert response.json()["final_url"] == f"{base_url}/a.jpg"
    assert response.json()["url"] == f"{base_url}/r/5"


def test_redirect_chain_over_five(lab_function: httpx.Client, base_url: str) -> None:
    response = analyze(lab_function, f"{base_url}/r/6")
    assert (response.status_code, error_code(response)) == (502, "too_many_redirects")


@pytest.mark.parametrize("path", ["/to-metadata", "/to-private", "/to-unknown-host"])
def test_redirect_to_blocked_address(lab_function: httpx.Client, base_url: str, path: str) -> None:
    response = analyze(lab_function, base_url + path)
    assert (response.status_code, error_code(response)) == (403, "blocked_address")


def test_redirect_to_bad_scheme(lab_function: httpx.Client, base_url: str) -> None:
    # The Location is the target's fault, not the caller's: 502 bad_redirect, not 400 bad_url.
    response = analyze(lab_function, f"{base_url}/to-ftp")
    assert (response.status_code, error_code(response)) == (502, "bad_redirect")


def test_redirect_without_location(lab_function: httpx.Client, base_url: str) -> None:
    response = analyze(lab_function, f"{base_url}/redirect-no-location")
    assert (response.status_code, error_code(response)) == (502, "upstream_status")


def test_lab_mode_allows_loopback_literal(
    lab_function: httpx.Client, image_server: ImageServer
) -> None:
    response = analyze(lab_function, f"http://127.0.0.1:{image_server.port}/a.jpg")
    assert response.status_code == 200, response.text


def test_lab_mode_refuses_ports_not_listed(lab_function: httpx.Client) -> None:
    response = analyze(lab_function, f"http://{LAB_HOST}:9/a.jpg")
    assert (response.status_code, error_code(response)) == (403, "blocked_address")


def test_loopback_refused_outside_lab_mode(
    prod_function: httpx.Client, image_server: ImageServer
) -> None:
    before = len(image_server.hits)
    response = analyze(prod_function, f"http://127.0.0.1:{image_server.port}/a.jpg")
    assert (response.status_code, error_code(response)) == (403, "blocked_address")
    assert "127.0.0.1" in response.json()["error"]["message"]
    assert len(image_server.hits) == before  # refused before connecting


@pytest.mark.parametrize(
    "host",
    [
        "2130706433",
        "0177.0.0.1",
        "0x7f000001",
        "0x7f.1",
        "127.1",
        "017700000001",
        "[::ffff:127.0.0.1]",
        "[::1]",
        "0.0.0.0",
        "127.0.0.1.",
    ],
)
def test_odd_loopback_literals_blocked(
    prod_function: httpx.Client, image_server: ImageServer, host: str
) -> None:
    response = analyze(prod_function, f"http://{host}:{image_server.port}/a.jpg")
    assert (response.status_code, error_code(response)) == (403, "blocked_address")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://img.example.test/a.jpg",
        "file:///etc/passwd",
        "gopher://x.test/",
        "javascript:1",
        "img.example.test/a.jpg",
        "http:///a.jpg",
        "http://a b.test/",
        "http://x.test\\@y.test/",
    ],
)
def test_bad_url(lab_function: httpx.Client, url: str) -> None:
    response = analyze(lab_function, url)
    assert (response.status_code, error_code(response)) == (400, "bad_url")


@pytest.mark.parametrize(
    "url", ["http://user:secret@img.example.test/a.jpg", "https://user@img.example.test/"]
)
def test_userinfo_refused(lab_function: httpx.Client, url: str) -> None:
    response = analyze(lab_function, url)
    assert (response.status_code, error_code(response)) == (400, "bad_url")
    assert "userinfo" in response.json()["error"]["message"]


def test_invalid_json_body(lab_function: httpx.Client) -> None:
    response = lab_function.post(
        "/v1/analyze", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert (response.status_code, error_code(response)) == (422, "invalid_request")


@pytest.mark.parametrize(
    "body", [{}, {"url": ""}, {"url": 5}, {"url": "http://x.test/", "unknown": 1}]
)
def test_invalid_request_fields(lab_function: httpx.Client, body: dict[str, object]) -> None:
    response = lab_function.post("/v1/analyze", json=body)
    assert (response.status_code, error_code(response)) == (422, "invalid_request")


def test_unknown_route_is_json(lab_function: httpx.Client) -> None:
    response = lab_function.get("/v1/nothing")
    assert (response.status_code, error_code(response)) == (404, "not_found")
    response = lab_function.get("/v1/analyze")
    assert (response.status_code, error_code(response)) == (405, "method_not_allowed")
