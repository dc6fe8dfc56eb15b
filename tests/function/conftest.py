"""Shared fixtures: a loopback image server and the function app in lab and production mode."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from protocol.lab import LabNetwork
from tests.function import helpers as h
from worker_function.app import create_app
from worker_function.settings import FunctionSettings

LAB_HOST = "img.example.test"
# A small byte cap so the size tests run quickly. The fetch deadline is generous: no test of the
# shared fixtures may fail because a loaded machine is slow; the deadline tests use their own
# short deadline against a server that never finishes (test_server.py).
TEST_MAX_BYTES = 300_000
TEST_DEADLINE = 60.0


@dataclass
class Images:
    jpeg: bytes
    png: bytes
    oversized: bytes
    truncated_jpeg: bytes
    bomb: bytes


@pytest.fixture(scope="session")
def images() -> Images:
    jpeg = h.encode(h.generated_image(1), "JPEG", quality=90)
    return Images(
        jpeg=jpeg,
        png=h.encode(h.generated_image(2), "PNG"),
        oversized=h.noise_png(3, (400, 400)),
        truncated_jpeg=jpeg[: len(jpeg) // 2],
        bomb=h.pixel_bomb_png(20_000, 20_000),
    )


@pytest.fixture(scope="module")
def image_server(images: Images) -> Iterator[h.ImageServer]:
    routes: dict[str, h.Static | h.Handler] = {
        "/a.jpg": h.Static(200, images.jpeg, "image/jpeg"),
        "/b.png": h.Static(200, images.png, "image/png"),
        "/page.html": h.Static(
            200, b"<!doctype html><html><body>hi</body></html>" * 30, "text/html"
        ),
        "/lying.jpg": h.Static(200, b"<html>" + b"x" * 1000 + b"</html>", "image/jpeg"),
        "/truncated.jpg": h.Static(200, images.truncated_jpeg, "image/jpeg"),
        "/big.png": h.Static(200, images.oversized, "image/png"),
        "/big-unsized.png": h.Static(200, images.oversized, "image/png", length=False),
        "/unsized.jpg": h.Static(200, images.jpeg, "image/jpeg", length=False),
        "/bomb.png": h.Static(200, images.bomb, "image/png"),
        "/slow.jpg": h.slow_drip(images.jpeg),
        "/empty": h.Static(200, b"", "image/jpeg"),
        "/server-error": h.Static(503, b"busy", "text/plain"),
        "/redirect-no-location": h.Static(302, b"", "text/plain"),
        "/to-metadata": h.redirect_to("http://169.254.169.254/latest/meta-data/"),
        "/to-private": h.redirect_to("http://10.0.0.1/a.jpg"),
        "/to-unknown-host": h.redirect_to("http://not-in-the-lab.test/a.jpg"),
        "/to-ftp": h.redirect_to("ftp://img.example.test/a.jpg"),
    }
    # /r/N redirects N times before the image (relative and absolute Locations alternate).
    for n in range(1, 8):
        target = "/a.jpg" if n == 1 else f"/r/{n - 1}"
        routes[f"/r/{n}"] = h.redirect_to(target, status=301 if n % 2 else 307)
    with h.ImageServer(routes) as server:
        yield server


@pytest.fixture(scope="module")
def lab(image_server: h.ImageServer) -> LabNetwork:
    return LabNetwork(hosts={LAB_HOST: "127.0.0.1"}, allow_ports=[image_server.port])


def _settings(**values: object) -> FunctionSettings:
    base: dict[str, object] = {
        "max_bytes": TEST_MAX_BYTES,
        "deadline_seconds": TEST_DEADLINE,
        "lab": None,
        "extra_ports": [],
        # Authentication has its own tests (test_auth.py); these exercise everything behind it.
        "require_auth": False,
    }
    base.update(values)
    return FunctionSettings(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def lab_function(lab: LabNetwork) -> Iterator[httpx.Client]:
    with (
        h.FunctionServer(create_app(_settings(), lab=lab)) as server,
        httpx.Client(base_url=server.url, trust_env=False, timeout=30) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def prod_function(image_server: h.ImageServer) -> Iterator[httpx.Client]:
    """Production mode. The image server's port is allowed, so refusals are about addresses."""
    settings = _settings(extra_ports=[image_server.port])
    with (
        h.FunctionServer(create_app(settings)) as server,
        httpx.Client(base_url=server.url, trust_env=False, timeout=30) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def base_url(image_server: h.ImageServer) -> str:
    return f"http://{LAB_HOST}:{image_server.port}"
