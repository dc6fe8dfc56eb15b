"""The synthetic web over real loopback HTTP: one server per hoster IP, Host header decides."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import httpx
import pytest

from libra.demo.web import SyntheticWeb, WebError
from libra.demo.world import KIND_BENIGN, Response, World, render_page


@pytest.fixture(scope="module")
def web(small_world: World) -> Iterator[SyntheticWeb]:
    with SyntheticWeb(small_world) as running:
        yield running


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    # trust_env=False: never a proxy, only the loopback address we name.
    with httpx.Client(trust_env=False, timeout=60.0, follow_redirects=False) as c:
        yield c


def get(
    client: httpx.Client, web: SyntheticWeb, host: str, path: str, method: str = "GET"
) -> httpx.Response:
    """Request `path` from the IP that the lab DNS gives `host`, with `host` in Host."""
    ip = web.lab_network().resolve(host) or web.world.hoster_of(host).ip
    return client.request(
        method, f"http://{ip}:{web.port}{path}", headers={"Host": f"{host}:{web.port}"}
    )


def test_one_port_on_every_hoster_ip(web: SyntheticWeb, client: httpx.Client) -> None:
    assert web.running and 1024 < web.port < 65536
    for hoster in web.world.hosters:
        # Something answers on each IP at the shared port; an unknown Host gets a 404.
        response = client.get(f"http://{hoster.ip}:{web.port}/", headers={"Host": "nope.test"})
        assert response.status_code == 404


def test_pages_match_the_model(web: SyntheticWeb, client: httpx.Client) -> None:
    world = web.world
    for page in world.pages[:25]:
        response = get(client, web, page.site, page.path)
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert response.content == render_page(page)


def test_images_are_served_byte_for_byte(web: SyntheticWeb, client: httpx.Client) -> None:
    world = web.world
    known = [p for p in world.placements if p.kind != KIND_BENIGN][:5]
    for placement in [*world.placements[:10], *known]:
        response = get(client, web, placement.site, placement.url_path)
        assert response.status_code == 200
        assert response.headers["content-type"] in ("image/jpeg", "image/png")
        assert response.content == world.images[placement.image_id]
        assert int(response.headers["content-length"]) == len(response.content)


def test_head_sends_headers_only(web: SyntheticWeb, client: httpx.Client) -> None:
    placement = web.world.placements[0]
    response = get(client, web, placement.site, placement.url_path, method="HEAD")
    assert response.status_code == 200
    assert response.content == b""
    assert int(response.headers["content-length"]) == len(web.world.images[placement.image_id])


def test_robots_and_404(web: SyntheticWeb, client: httpx.Client) -> None:
    world = web.world
    private = next(s for s in world.sites if "/private/" in s.disallow)
    response = get(client, web, private.host, "/robots.txt")
    assert response.status_code == 200
    assert "Disallow: /private/" in response.text
    no_robots = [s for s in world.sites if s.robots is None]
    for site in no_robots[:2]:
        assert get(client, web, site.host, "/robots.txt").status_code == 404
    assert get(client, web, private.host, "/no/such/page.html").status_code == 404


def test_redirect_location_is_absolute_with_port(web: SyntheticWeb, client: httpx.Client) -> None:
    redirect = web.world.redirects[0]
    response = get(client, web, redirect.site, redirect.path)
    assert response.status_code == 301
    assert response.headers["location"] == f"http://{redirect.site}:{web.port}{redirect.target}"
    followed = get(client, web, redirect.site, redirect.target)
    assert followed.status_code == 200


def test_a_site_is_only_served_by_its_own_hoster(web: SyntheticWeb, client: httpx.Client) -> None:
    world = web.world
    site = world.sites[0]
    other_ip = next(h.ip for h in world.hosters if h.key != site.hoster)
    response = client.get(f"http://{other_ip}:{web.port}/", headers={"Host": site.host})
    assert response.status_code == 404


def test_lab_network_and_urls(web: SyntheticWeb) -> None:
    world = web.world
    lab = web.lab_network()
    assert lab.allow_ports == [web.port]
    assert lab.allow_ranges == ["127.0.1.0/24"]
    for site in world.sites:
        assert lab.resolve(site.host) == world.hoster_of(site.host).ip
        assert lab.allows(world.hoster_of(site.host).ip)
    assert not lab.allows("127.0.0.1")
    first = world.sites[0].host
    assert web.base_url(first) == f"http://{first}:{web.port}/"
    node = world.nodes[0]
    assert web.seed_urls(node.node_id) == [f"http://{h}:{web.port}/" for h in node.seeds]
    with pytest.raises(WebError):
        web.base_url("elsewhere.test")


def test_fixed_port_and_stop(small_world: World) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.1.1", 0))
        port = probe.getsockname()[1]
    web = SyntheticWeb(small_world, port=port)
    web.start()
    try:
        assert web.port == port
        site = small_world.sites[0]
        ip = small_world.hoster_of(site.host).ip
        with httpx.Client(trust_env=False, timeout=60.0) as c:
            assert c.get(f"http://{ip}:{port}/", headers={"Host": site.host}).status_code == 200
    finally:
        web.stop()
    assert not web.running
    with pytest.raises(WebError):
        _ = web.port
    with pytest.raises(httpx.ConnectError), httpx.Client(trust_env=False, timeout=2.0) as c:
        c.get(f"http://{ip}:{port}/", headers={"Host": site.host})


def test_taken_port_is_an_error(small_world: World) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.1.3", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(WebError, match="cannot listen"):
            SyntheticWeb(small_world, port=port).start()
        # Without a fixed port, the web finds one free on every IP.
        with SyntheticWeb(small_world) as web:
            assert web.port != port


# --- the error path: no traceback on the demo's console (issue 17) -------------------------


@pytest.fixture
def failing(
    web: SyntheticWeb, monkeypatch: pytest.MonkeyPatch
) -> Callable[[BaseException], httpx.Response | None]:
    """Makes the first hoster's server fail its next request with the given exception (as
    a write to a client that hung up, or a fault of ours, would), then sends that request;
    the client's response, or None when the server closed the connection without one."""

    def fail_with(error: BaseException) -> httpx.Response | None:
        server = next(s for s in web._servers if s.ip == web.ips[0])

        def respond(host: str, path: str) -> Response:
            raise error

        monkeypatch.setattr(server, "respond", respond)
        site = next(s for s in web.world.sites if web.world.hoster_of(s.host).ip == server.ip)
        # A fresh connection: the server's handler thread ends (and reports) before the
        # client sees the connection close.
        with httpx.Client(trust_env=False, timeout=60.0) as fresh:
            try:
                return get(fresh, web, site.host, "/")
            except httpx.RemoteProtocolError:
                return None

    return fail_with


def test_a_client_hanging_up_mid_response_is_quiet(
    failing: Callable[[BaseException], httpx.Response | None],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    for error in (BrokenPipeError(32, "Broken pipe"), ConnectionResetError(104, "reset")):
        assert failing(error) is None
    assert not [r for r in caplog.records if r.name == "libra.demo.web"]
    assert capfd.readouterr().err == ""


def test_a_fault_is_one_line_without_traceback(
    web: SyntheticWeb,
    failing: Callable[[BaseException], httpx.Response | None],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    server = next(s for s in web._servers if s.ip == web.ips[0])
    before = server.errors
    assert failing(RuntimeError("page model broken")) is None
    records = [r for r in caplog.records if r.name == "libra.demo.web"]
    assert len(records) == 1 and records[0].exc_info is None
    line = records[0].getMessage()
    assert "\n" not in line
    assert "RuntimeError: page model broken" in line and web.ips[0] in line
    assert server.errors == before + 1
    assert "Traceback" not in capfd.readouterr().err


def test_a_bad_content_length_is_a_400(web: SyntheticWeb, client: httpx.Client) -> None:
    site = web.world.sites[0]
    ip = web.world.hoster_of(site.host).ip
    with socket.create_connection((ip, web.port), timeout=60.0) as sock:
        sock.sendall(
            f"POST /xarf HTTP/1.1\r\nHost: {site.host}\r\nContent-Length: lots\r\n\r\n".encode()
        )
        answer = sock.makefile("rb").readline()
    assert answer.startswith(b"HTTP/1.1 400")
