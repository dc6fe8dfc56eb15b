"""A redirect Location that does not parse or is not an acceptable URL is the target's fault:
502 ``bad_redirect`` (never analysis_failed, never the caller's 400 bad_url)."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.function import helpers as h
from tests.function.conftest import LAB_HOST
from worker_function.errors import BadRedirect
from worker_function.fetch import MAX_LOCATION_CHARS, _redirect_target
from worker_function.urls import parse_target

LOCATIONS = {
    "/loc-data": "data:image/png;base64,iVBORw0KGgo=",
    "/loc-no-slashes": "http:127.0.0.1:1/x",
    "/loc-empty": "",
    "/loc-blank": "   ",
    "/loc-long": "/" + "a" * (MAX_LOCATION_CHARS + 1),
    "/loc-bad-ipv6": "http://[::1/x",
    "/loc-bad-port": "http://img.example.test:99999/x",
    "/loc-javascript": "javascript:alert(1)",
}


@pytest.fixture(scope="module")
def redirects(image_server: h.ImageServer) -> dict[str, str]:
    for path, location in LOCATIONS.items():
        image_server.routes[path] = h.redirect_to(location)
    return LOCATIONS


@pytest.mark.parametrize("path", sorted(LOCATIONS))
def test_unparseable_location_is_bad_redirect(
    lab_function: httpx.Client, base_url: str, redirects: dict[str, str], path: str
) -> None:
    response = lab_function.post("/v1/analyze", json={"url": base_url + path})
    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "bad_redirect"


def test_relative_and_scheme_relative_locations_still_work() -> None:
    here = parse_target(f"http://{LAB_HOST}:8080/dir/page")
    assert str(_redirect_target(here, "../a.jpg").url) == f"http://{LAB_HOST}:8080/a.jpg"
    assert str(_redirect_target(here, "//other.test/b.jpg").url) == "http://other.test/b.jpg"
    assert str(_redirect_target(here, " https://x.test/c ").url) == "https://x.test/c"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(location=st.text(max_size=300))
def test_any_location_is_a_target_or_bad_redirect(location: str) -> None:
    here = parse_target(f"http://{LAB_HOST}:8080/dir/page")
    try:
        target = _redirect_target(here, location)
    except BadRedirect as exc:
        assert (exc.code, exc.http_status) == ("bad_redirect", 502)
    else:
        assert target.scheme in ("http", "https")
