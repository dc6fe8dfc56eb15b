"""The dashboard's routes without a browser: login and the session cookie, role checks, the
headers of every response, the vendored assets, and that nothing points outside the coordinator."""

from __future__ import annotations

import fnmatch
import hashlib
import itertools
import json
import re
import tomllib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from coordinator.app import create_app
from coordinator.config import CoordinatorSettings
from coordinator.dashboard.mount import static_dir
from coordinator.dashboard.render import PAGES
from coordinator.dashboard.security import CONTENT_SECURITY_POLICY
from coordinator.db import new_session
from coordinator.deps import SESSION_COOKIE
from coordinator.membership import create_invitation, enroll
from protocol.keys import NodeKey

from .conftest import NOW
from .helpers import bearer, envelope_bytes, make_report, make_token, register

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "coordinator" / "dashboard"
VIEWER_PAGES = [p.path for p in PAGES if not p.admin]
ADMIN_PAGES = [p.path for p in PAGES if p.admin]
URL_RE = re.compile(r"https?://[^\s\"'<>)]+")


@pytest.fixture
def client(engine: Engine, tmp_path: Path, key_a: NodeKey) -> Iterator[TestClient]:
    register(engine, "node-a", "DE", key_a, NOW)
    settings = CoordinatorSettings(data_dir=tmp_path)
    with TestClient(create_app(settings, engine=engine, clock=lambda: NOW)) as test_client:
        body = envelope_bytes(make_report(key_a, created_at=NOW), key_a)
        json_type = {"content-type": "application/json"}
        assert test_client.post("/v1/reports", content=body, headers=json_type).status_code == 200
        yield test_client


def log_in(client: TestClient, token: str, next_path: str = "/dashboard/") -> None:
    response = client.post(
        "/dashboard/login", data={"token": token, "next": next_path}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == next_path


def assert_hardened(response: object) -> None:
    headers = response.headers  # type: ignore[attr-defined]
    assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self';" in CONTENT_SECURITY_POLICY
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
    assert "'unsafe-eval'" not in CONTENT_SECURITY_POLICY
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize("path", [*VIEWER_PAGES, *ADMIN_PAGES])
def test_pages_send_anonymous_callers_to_the_login_form(client: TestClient, path: str) -> None:
    response = client.get(path, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/dashboard/login?next=")
    assert_hardened(response)
    assert SESSION_COOKIE not in response.headers.get("set-cookie", "")


def test_login_sets_an_httponly_strict_cookie(client: TestClient, engine: Engine) -> None:
    token = make_token(engine, "viewer", NOW)
    response = client.post(
        "/dashboard/login",
        data={"token": token, "next": "/dashboard/hosters?from=2026-11-23"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/hosters?from=2026-11-23"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}={token};")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http here; https requests get Secure
    # A session cookie: it ends with the browser, as the login page says.
    assert "max-age" not in cookie.lower() and "expires" not in cookie.lower()
    login_text = " ".join(client.get("/dashboard/login").text.split())
    assert "until you log out or close the browser" in login_text
    assert "browser session only" not in login_text
    page = client.get("/dashboard/hosters")
    assert page.status_code == 200
    assert_hardened(page)
    assert page.headers["cache-control"] == "no-store"
    assert 'data-role="viewer"' in page.text
    # No inline script: every script tag loads a file from the dashboard's static mount.
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page.text, flags=re.S)
    assert scripts and all(body == "" for _, body in scripts)
    assert all('src="/dashboard/static/' in attrs for attrs, _ in scripts)
    assert "/dashboard/static/pages/hosters.js" in page.text


def test_the_cookie_authenticates_api_reads_but_never_writes(
    client: TestClient, engine: Engine
) -> None:
    admin = make_token(engine, "admin", NOW)
    log_in(client, admin)
    assert client.get("/v1/picture").json()["tier"] == "full"
    assert client.get("/v1/picture.csv", params={"section": "by_country"}).status_code == 200
    assert client.get("/v1/invitations").status_code == 200
    # A forged cross-site POST would carry the cookie (were it not SameSite): still refused.
    for path, body in [
        ("/v1/invitations", {"country": "PL"}),
        ("/v1/tokens", {"name": "x", "role": "admin"}),
    ]:
        response = client.post(path, json=body)
        assert response.status_code == 401, response.text
    # The same calls with the token as a bearer header work: the cookie is the only difference.
    assert client.post("/v1/invitations", json={"country": "PL"}, headers=bearer(admin)).is_success


@pytest.mark.parametrize(
    ("token", "status", "message"),
    [
        ("lbr_0123456789abcdef_" + "A" * 43, 401, "unknown API token"),
        ("not a token", 401, "malformed API token"),
        ("", 422, "paste an API token"),
    ],
)
def test_login_refuses_bad_tokens(
    client: TestClient, token: str, status: int, message: str
) -> None:
    response = client.post("/dashboard/login", data={"token": token}, follow_redirects=False)
    assert response.status_code == status
    assert message in response.text
    assert "set-cookie" not in response.headers
    assert_hardened(response)


def test_login_refuses_roles_without_dashboard_views(client: TestClient, engine: Engine) -> None:
    for role, node_id in [("node", "node-a"), ("auditor", None)]:
        token = make_token(engine, role, NOW, node_id=node_id)
        response = client.post("/dashboard/login", data={"token": token}, follow_redirects=False)
        assert response.status_code == 403
        assert f"role {role} has no dashboard views" in response.text
        assert "set-cookie" not in response.headers


def test_login_refuses_expired_and_revoked_tokens(client: TestClient, engine: Engine) -> None:
    expired = make_token(engine, "viewer", NOW - timedelta(days=2), ttl=timedelta(days=1))
    response = client.post("/dashboard/login", data={"token": expired}, follow_redirects=False)
    assert response.status_code == 401 and "expired" in response.text


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "http://attacker.invalid"},
        {"origin": "null"},
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
    ],
)
def test_cross_site_login_and_logout_are_refused(
    client: TestClient, engine: Engine, headers: dict[str, str]
) -> None:
    token = make_token(engine, "viewer", NOW)
    response = client.post(
        "/dashboard/login", data={"token": token}, headers=headers, follow_redirects=False
    )
    assert response.status_code == 403
    assert "set-cookie" not in response.headers
    log_in(client, token)
    response = client.post("/dashboard/logout", headers=headers, follow_redirects=False)
    assert response.status_code == 403
    assert client.get("/dashboard/", follow_redirects=False).status_code == 200


def test_same_origin_login_passes(client: TestClient, engine: Engine) -> None:
    token = make_token(engine, "viewer", NOW)
    response = client.post(
        "/dashboard/login",
        data={"token": token},
        headers={"origin": "http://testserver", "sec-fetch-site": "same-origin"},
        follow_redirects=False,
    )
    assert response.status_code == 303


@pytest.mark.parametrize(
    "target",
    ["https://attacker.invalid/", "//attacker.invalid/x", "/v1/picture", "/dashboard\\x", ""],
)
def test_next_never_leaves_the_dashboard(client: TestClient, engine: Engine, target: str) -> None:
    token = make_token(engine, "viewer", NOW)
    response = client.post(
        "/dashboard/login", data={"token": token, "next": target}, follow_redirects=False
    )
    assert response.headers["location"] == "/dashboard/"


def test_viewer_gets_403_on_admin_pages_and_admin_api(client: TestClient, engine: Engine) -> None:
    viewer = make_token(engine, "viewer", NOW)
    log_in(client, viewer)
    home = client.get("/dashboard/")
    assert home.status_code == 200
    for path in ADMIN_PAGES:
        assert f'href="{path}"' not in home.text
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 403
        assert "is for admins; role viewer may not see it" in response.text
        assert_hardened(response)
    for path in ("/v1/invitations", "/v1/tokens", "/v1/audit"):
        assert client.get(path).status_code == 403
        assert client.get(path, headers=bearer(viewer)).status_code == 403


def test_admin_sees_admin_pages(client: TestClient, engine: Engine) -> None:
    log_in(client, make_token(engine, "admin", NOW))
    home = client.get("/dashboard/")
    for path in ADMIN_PAGES:
        assert f'href="{path}"' in home.text
        assert client.get(path).status_code == 200


def test_invitation_list_shows_states_never_codes(client: TestClient, engine: Engine) -> None:
    with new_session(engine) as session:
        pending = create_invitation(
            session, country="PL", ttl=timedelta(days=1), now=NOW, actor="test", note="Poland"
        )
        old = create_invitation(
            session, country="IT", ttl=timedelta(hours=1), now=NOW - timedelta(days=1),
            actor="test",
        )  # fmt: skip
        used = create_invitation(
            session, country="NL", ttl=timedelta(days=1), now=NOW, actor="test"
        )
        enroll(
            session, invitation_code=used.code, node_id="node-nl", country="NL",
            operator="Politie", ed25519_public_key=NodeKey.generate().public_key_b64,
            x25519_public_key=_x25519(), now=NOW, token_ttl=timedelta(days=1),
        )  # fmt: skip
    admin = make_token(engine, "admin", NOW)
    response = client.get("/v1/invitations", headers=bearer(admin))
    assert response.status_code == 200
    states = {i["invitation_id"]: i["state"] for i in response.json()["invitations"]}
    assert states == {
        pending.row.invitation_id: "pending",
        old.row.invitation_id: "expired",
        used.row.invitation_id: "used",
    }
    text = response.text
    for issued in (pending, old, used):
        assert issued.code not in text
        # inv_<id>_<secret>: the secret is URL-safe base64 and may itself hold "_".
        assert issued.code.split("_", 2)[2] not in text
    assert "secret" not in text


def _x25519() -> str:
    import base64

    from nacl.public import PrivateKey

    return base64.b64encode(bytes(PrivateKey.generate().public_key)).decode()


def test_a_dead_session_cookie_goes_back_to_login(client: TestClient, engine: Engine) -> None:
    token = make_token(engine, "viewer", NOW - timedelta(days=2), ttl=timedelta(days=1))
    client.cookies.set(SESSION_COOKIE, token)
    response = client.get("/dashboard/trends", follow_redirects=False)
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith("/dashboard/login?next=%2Fdashboard%2Ftrends&reason=")
    assert "expired" in location
    assert f'{SESSION_COOKIE}=""' in response.headers["set-cookie"]  # cleared
    assert client.get("/v1/picture").status_code == 401


def test_logout_clears_the_cookie(client: TestClient, engine: Engine) -> None:
    log_in(client, make_token(engine, "viewer", NOW))
    response = client.post("/dashboard/logout", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/login"
    assert f'{SESSION_COOKIE}=""' in response.headers["set-cookie"]
    assert "Max-Age=0" in response.headers["set-cookie"]
    client.cookies.clear()
    assert client.get("/dashboard/", follow_redirects=False).status_code == 303


def test_anonymous_viewer_mode_opens_viewer_pages_only(engine: Engine, tmp_path: Path) -> None:
    settings = CoordinatorSettings(data_dir=tmp_path, anonymous_role="viewer")
    with TestClient(create_app(settings, engine=engine, clock=lambda: NOW)) as client:
        assert client.get("/dashboard/").status_code == 200
        assert client.get("/dashboard/admin/nodes").status_code == 403
        assert "Continue without a token" in client.get("/dashboard/login").text


def test_query_values_are_never_echoed_raw(client: TestClient, engine: Engine) -> None:
    log_in(client, make_token(engine, "viewer", NOW))
    evil = '"><script>alert(1)</script>'
    page = client.get("/dashboard/", params={"from": evil, "family": evil, "to": "2026-11-24"})
    assert page.status_code == 200
    assert "<script>alert" not in page.text and "alert(1)" not in page.text
    assert 'name="to" value="2026-11-24"' in page.text
    login = client.get("/dashboard/login", params={"reason": evil, "next": evil})
    assert "<script>alert" not in login.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in login.text  # shown as text


def test_static_assets_are_served_with_the_same_headers(client: TestClient) -> None:
    for path, kind in [
        ("/dashboard/static/vendor/echarts.min.js", "javascript"),
        ("/dashboard/static/vendor/world.geo.json", "json"),
        ("/dashboard/static/dashboard.js", "javascript"),
        ("/dashboard/static/dashboard.css", "css"),
        ("/dashboard/static/vendor/LICENSE-echarts.txt", "text/plain"),
    ]:
        response = client.get(path)
        assert response.status_code == 200, path
        assert kind in response.headers["content-type"]
        assert_hardened(response)
    assert client.get("/dashboard/static/../render.py").status_code == 404
    assert client.get("/dashboard/static/%2e%2e/render.py").status_code == 404
    assert client.get("/dashboard/static/nothing.js").status_code == 404


def _served_files() -> list[Path]:
    return sorted(p for p in static_dir().rglob("*") if p.is_file())


def test_no_external_urls_in_served_html_or_scripts(client: TestClient, engine: Engine) -> None:
    log_in(client, make_token(engine, "admin", NOW))
    texts = {path: client.get(path).text for path in [*VIEWER_PAGES, *ADMIN_PAGES]}
    texts["/dashboard/login"] = client.get("/dashboard/login").text
    for file in _served_files():
        if file.suffix in (".js", ".css", ".json", ".html"):
            texts[str(file)] = file.read_text("utf-8")
    for name, text in texts.items():
        if name.endswith("echarts.min.js"):
            # Vendored library: URLs only in its licence comments, plus XML namespace names
            # (identifiers, never fetched).
            text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
            found = set(URL_RE.findall(text))
            assert {u for u in found if not u.startswith("http://www.w3.org/")} == set(), name
            continue
        assert URL_RE.findall(text) == [], name
        assert "//cdn" not in text and "@import" not in text, name


def test_world_map_carries_iso_alpha2_codes() -> None:
    world = json.loads((static_dir() / "vendor" / "world.geo.json").read_text())
    codes = [f["properties"]["iso"] for f in world["features"]]
    assert len(codes) == len(set(codes)) == 175
    assert all(re.fullmatch(r"[A-Z]{2}", c) for c in codes)
    assert {"DE", "FR", "NL", "US", "BR", "JP", "XK", "CY", "SO", "TW"} <= set(codes)
    for feature in world["features"]:
        assert feature["geometry"]["type"] == "MultiPolygon"
        for polygon in feature["geometry"]["coordinates"]:
            ring = polygon[0]
            assert ring[0] == ring[-1]
            assert all(-180 <= x <= 180 and -90 <= y <= 90 for x, y in ring)
            if feature["properties"]["iso"] != "AQ":  # winds around the pole
                # Split at the antimeridian: no edge streaks across the flat map.
                assert all(abs(b[0] - a[0]) <= 180 for a, b in itertools.pairwise(ring))


def test_vendored_files_match_their_recorded_hashes() -> None:
    vendor = static_dir() / "vendor"
    versions = json.loads((vendor / "VERSIONS.json").read_text())
    assert set(versions) >= {"echarts", "world-atlas", "i18n-iso-countries", "files"}
    recorded = versions["files"]
    present = {p.name for p in vendor.iterdir() if p.name != "VERSIONS.json"}
    assert set(recorded) == present
    for name, digest in recorded.items():
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == digest, name
    assert "Apache License" in (vendor / "LICENSE-echarts.txt").read_text()
    version = versions["echarts"]["version"]
    assert f't.version="{version}"' in (vendor / "echarts.min.js").read_text()


def test_every_dashboard_asset_is_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["coordinator.dashboard"]
    assets = [
        p.relative_to(DASHBOARD).as_posix()
        for p in DASHBOARD.rglob("*")
        if p.is_file()
        and p.suffix != ".py"
        and "__pycache__" not in p.parts
        and p.parts[len(DASHBOARD.parts)] in ("static", "templates")
    ]
    assert assets

    def matches(path: str, pattern: str) -> bool:
        # setuptools globs: "*" stays inside one directory level.
        parts, pats = path.split("/"), pattern.split("/")
        return len(parts) == len(pats) and all(map(fnmatch.fnmatchcase, parts, pats))

    missing = [a for a in assets if not any(matches(a, pat) for pat in patterns)]
    assert missing == []
