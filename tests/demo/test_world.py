"""The synthetic world: determinism, size, image properties, and the ground truth."""

from __future__ import annotations

import hashlib
import io
import itertools
from collections import Counter, deque
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit
from urllib.robotparser import RobotFileParser

import numpy as np
import pdqhash
import pytest
from PIL import Image

from libra.demo import imagegen
from libra.demo.world import (
    IMAGE_FORMS,
    KIND_BENIGN,
    KIND_EVASIVE,
    KIND_EXACT,
    KIND_VARIANT,
    KNOWN_KINDS,
    ExpectedMatch,
    Hoster,
    ImageRef,
    Link,
    NodePlan,
    Page,
    Placement,
    Redirect,
    Site,
    Tally,
    World,
    WorldError,
    render_page,
    written_href,
)

# --- helpers --------------------------------------------------------------------------------


def pdq(data: bytes) -> tuple[int, int]:
    """PDQ straight from pdqhash (as the function does: RGB, at most 512 px)."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    image.thumbnail((512, 512))
    vector, quality = pdqhash.compute(np.asarray(image))
    return int("".join(str(int(b)) for b in vector), 2), int(quality)


def distance(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def fingerprint(world: World) -> str:
    """A digest over everything the world serves and plans."""
    digest = hashlib.sha256()
    for site in world.sites:
        digest.update(repr(site).encode())
    for page in world.pages:
        digest.update(page.site.encode() + page.path.encode() + render_page(page))
    for placement in world.placements:
        digest.update(repr(placement).encode())
    for image_id in sorted(world.images):
        digest.update(image_id.encode() + world.images[image_id])
    for pool_id in sorted(world.known):
        digest.update(pool_id.encode() + world.known[pool_id])
    for node in world.nodes:
        digest.update(repr((node.node_id, node.seeds, sorted(node.known_ids))).encode())
    digest.update(repr(world.redirects).encode())
    return digest.hexdigest()


class _Extractor(HTMLParser):
    """Page links and image URLs from HTML, independently of the world's model."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "img" and values.get("src"):
            self.images.append(values["src"])
        if tag in ("img", "source") and values.get("srcset"):
            for candidate in values["srcset"].split(","):
                self.images.append(candidate.strip().split()[0])
        if tag == "a" and "href" in values:
            href = values["href"]
            if href.lower().endswith((".jpg", ".png")):
                self.images.append(href)
            else:
                self.links.append(href)


def crawl_over_respond(world: World, host: str) -> tuple[set[str], int]:
    """Independent crawl of one site through World.respond: same host only, robots.txt
    obeyed (urllib's parser), redirects followed. Returns image paths found and max depth."""
    robots = RobotFileParser()
    response = world.respond(host, "/robots.txt")
    robots.parse(response.body.decode().splitlines() if response.status == 200 else [])
    base = f"http://{host}"
    seen: set[str] = set()
    images: set[str] = set()
    max_depth = 0
    queue = deque([("/", 0)])
    while queue:
        path, depth = queue.popleft()
        for _ in range(5):  # redirects
            if path in seen or not robots.can_fetch("libra-node", base + path):
                break
            seen.add(path)
            response = world.respond(host, path)
            if response.status != 301:
                break
            assert response.location is not None
            path = urlsplit(urljoin(base + path, response.location)).path
        else:
            continue
        if response.status != 200 or not response.content_type.startswith("text/html"):
            continue
        max_depth = max(max_depth, depth)
        parser = _Extractor()
        parser.feed(response.body.decode())
        for href in parser.images:
            url = urlsplit(urljoin(base + path, href))
            if url.netloc == host:
                images.add(url.path)
        for href in parser.links:
            url = urlsplit(urljoin(base + path, href))
            if url.scheme == "http" and url.netloc == host and url.path not in seen:
                queue.append((url.path, depth + 1))
    return images, max_depth


# --- determinism and size -------------------------------------------------------------------


def test_same_seed_builds_the_same_bytes(world: World) -> None:
    again = World.build(seed=world.seed or 0, scale=1.0)
    assert fingerprint(again) == fingerprint(world)


def test_other_seed_builds_another_world(small_world: World) -> None:
    other = World.build(seed=7, scale=0.1)
    assert fingerprint(other) != fingerprint(small_world)
    assert set(other.images.values()).isdisjoint(small_world.images.values())


def test_world_is_big_enough(world: World) -> None:
    stats = world.stats()
    assert stats["hosters"] >= 7
    assert stats["countries"] >= 4
    assert stats["pages"] >= 60
    assert sum(len(world.reachable_pages(site.host)) for site in world.sites) >= 60
    assert stats["images"] >= 400
    assert stats["pool"] == 40
    assert stats["nodes"] == 3
    # Most images are benign filler.
    assert stats["known_placements"] < stats["placements"] / 4


def test_hosters_are_distinct_loopback_hosts(world: World) -> None:
    ips = [h.ip for h in world.hosters]
    assert len(set(ips)) == len(ips)
    assert set(ips) >= {f"127.0.1.{i}" for i in range(1, 8)}
    assert "127.0.0.1" not in ips
    known = [h for h in world.hosters if h.in_geoip]
    assert len(known) >= 6
    assert len({h.asn for h in known}) == len(known)
    assert all(h.asn >= 64500 for h in known)
    assert len({h.name for h in known}) == len(known)
    assert len({h.country for h in known}) >= 4
    assert Counter(h.country for h in known).most_common(1)[0][1] >= 2  # two share a country
    unknown = [h for h in world.hosters if not h.in_geoip]
    assert [h.ip for h in unknown] == ["127.0.1.7"]
    assert unknown[0].attribution() == ("ZZ", "unknown", 0)


def test_sites_per_hoster_and_test_tld(world: World) -> None:
    per_hoster = Counter(site.hoster for site in world.sites)
    assert set(per_hoster) == {h.key for h in world.hosters}
    assert all(2 <= n <= 4 for n in per_hoster.values())
    assert all(site.host.endswith(f".{site.hoster}.test") for site in world.sites)


def test_images_use_every_html_form(world: World) -> None:
    forms = {ref.form for page in world.pages for ref in page.images}
    assert forms == set(IMAGE_FORMS)
    html = b"".join(render_page(p) for p in world.pages)
    assert b"srcset=" in html and b"<picture>" in html and b'">full size</a>' in html


def test_some_image_url_is_on_several_pages(world: World) -> None:
    refs = Counter((p.site, ref.target) for p in world.pages for ref in p.images)
    assert max(refs.values()) >= 2


# --- images ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hashes(world: World) -> dict[str, tuple[int, int]]:
    return {image_id: pdq(data) for image_id, data in world.images.items()}


def test_pool_images_are_far_apart_and_good_quality(world: World) -> None:
    pool = {pool_id: pdq(data) for pool_id, data in world.known.items()}
    assert min(q for _, q in pool.values()) >= 50
    closest = min(distance(a[0], b[0]) for a, b in itertools.combinations(pool.values(), 2))
    assert closest > 80


def test_fillers_are_far_from_every_pool_image(
    world: World, hashes: dict[str, tuple[int, int]]
) -> None:
    pool = [pdq(data) for data in world.known.values()]
    fillers = [hashes[p.image_id] for p in world.placements if p.kind == KIND_BENIGN]
    assert len(fillers) >= 400
    assert min(q for _, q in fillers) >= 50
    assert min(distance(f[0], k[0]) for f in fillers for k in pool) > 80


def test_copies_of_known_images(world: World, hashes: dict[str, tuple[int, int]]) -> None:
    variants: Counter[str | None] = Counter()
    for placement in world.placements:
        if placement.kind not in KNOWN_KINDS or placement.kind == KIND_EVASIVE:
            continue  # evasive copies (issue 18): tests/demo/test_robust_world.py
        assert placement.base_id is not None
        original = world.known[placement.base_id]
        served = world.images[placement.image_id]
        if placement.kind == KIND_EXACT:
            assert served == original
            continue
        assert served != original
        base_hash, _ = pdq(original)
        value, quality = hashes[placement.image_id]
        assert distance(value, base_hash) <= 31
        assert quality >= 50
        variants[placement.variant] += 1
        a = Image.open(io.BytesIO(original))
        b = Image.open(io.BytesIO(served))
        if placement.variant == "resize":
            assert 0.58 <= b.width / a.width <= 0.92 and b.format == a.format
        elif placement.variant == "convert":
            assert {a.format, b.format} == {"JPEG", "PNG"} and b.size == a.size
        elif placement.variant == "requality":
            assert a.format == b.format == "JPEG" and b.size == a.size
    assert set(variants) == {"resize", "convert", "requality"}
    assert sum(p.kind == KIND_EXACT for p in world.placements) >= 10


def test_every_image_is_small_enough_for_the_function(world: World) -> None:
    for data in world.images.values():
        image = Image.open(io.BytesIO(data))
        assert max(image.size) <= 512
        assert image.format in ("JPEG", "PNG")


def test_each_known_image_is_on_one_to_four_hosters(world: World) -> None:
    hosters: dict[str, set[str]] = {pool_id: set() for pool_id in world.known}
    for placement in world.placements:
        if placement.base_id is not None:
            hosters[placement.base_id].add(world.site(placement.site).hoster)
    placed = [len(h) for h in hosters.values() if h]
    assert all(1 <= n <= 4 for n in placed)
    assert len(placed) >= len(world.known) - 2
    assert max(placed) >= 3


def test_list_images_are_the_originals(world: World) -> None:
    for node in world.nodes:
        images = world.list_images(node.node_id)
        assert images == [world.known[i] for i in sorted(node.known_ids)]


# --- nodes ----------------------------------------------------------------------------------


def test_node_lists_overlap_partly(world: World) -> None:
    sets = [node.known_ids for node in world.nodes]
    assert [n.node_id for n in world.nodes] == ["node-de", "node-nl", "node-us"]
    assert all(20 <= len(s) <= 30 for s in sets)
    assert sets[0] & sets[1] & sets[2]
    for i, mine in enumerate(sets):
        others = set().union(*(s for j, s in enumerate(sets) if j != i))
        assert mine - others, "each node knows some images nobody else does"
    assert set().union(*sets) == set(world.known)


def test_every_site_is_crawled_and_some_by_several(world: World) -> None:
    crawled = Counter(host for node in world.nodes for host in node.seeds)
    assert set(crawled) == {site.host for site in world.sites}
    assert max(crawled.values()) == 3
    assert sum(1 for n in crawled.values() if n >= 2) >= 3


# --- ground truth ---------------------------------------------------------------------------


def test_truth_equals_an_independent_crawl_of_the_served_html(world: World) -> None:
    """The model's reachability agrees with what the rendered HTML and robots.txt say."""
    placements = {(p.site, p.url_path): p for p in world.placements}
    truth = world.truth()
    for node in world.nodes:
        expected = set()
        for host in node.seeds:
            images, depth = crawl_over_respond(world, host)
            assert depth <= 3
            for path in images:
                placement = placements.get((host, path))
                if placement and placement.base_id in node.known_ids:
                    expected.add((f"http://{host}{path}", placement.kind))
        assert {(m.url, m.kind) for m in truth.per_node[node.node_id]} == expected
        assert expected, f"{node.node_id} should match something"


def test_truth_skips_robots_orphans_and_follows_redirects(world: World) -> None:
    truth = world.truth()
    matched = {m.url for ms in truth.per_node.values() for m in ms}
    crawling = {site.host: {n for n in world.nodes if site.host in n.seeds} for site in world.sites}

    def known_to_a_crawler(placement: Placement) -> bool:
        return any(placement.base_id in n.known_ids for n in crawling[placement.site])

    private = [p for p in world.placements if p.url_path.startswith("/private/")]
    orphan = [p for p in world.placements if p.url_path.startswith("/drafts/")]
    moved = [p for p in world.placements if p.url_path.startswith("/stories/")]
    for group in (private, orphan, moved):
        assert len(group) == 1 and known_to_a_crawler(group[0])
    assert World.url(private[0].site, private[0].url_path) not in matched
    assert World.url(orphan[0].site, orphan[0].url_path) not in matched
    assert World.url(moved[0].site, moved[0].url_path) in matched
    site = world.site(private[0].site)
    assert site.robots is not None and "Disallow: /private/" in site.robots
    # The orphan page is served, just never linked.
    page = next(p for p in world.pages if p.path.startswith("/drafts/"))
    assert world.respond(page.site, page.path).status == 200


def test_truth_counts_add_up(world: World) -> None:
    truth = world.truth()
    total_matches = sum(len(m) for m in truth.per_node.values())
    assert truth.total.matches == total_matches
    assert sum(t.matches for t in truth.by_country.values()) == total_matches
    assert sum(t.matches for t in truth.by_hoster.values()) == total_matches
    assert sum(t.distinct for t in truth.by_hoster.values()) == truth.total.distinct
    assert truth.total.distinct < truth.total.matches  # some URLs are seen by several nodes
    counts = Counter(m.url for ms in truth.per_node.values() for m in ms)
    assert max(counts.values()) >= 2
    assert ("ZZ", "unknown", 0) in truth.by_hoster
    kinds = {m.kind for ms in truth.per_node.values() for m in ms}
    assert kinds == {KIND_EXACT, KIND_VARIANT, KIND_EVASIVE}
    picture = truth.as_picture()
    assert {row["country"] for row in picture["by_country"]} == set(truth.by_country)
    assert len(picture["by_hoster"]) == len(truth.by_hoster)


def test_small_world_still_has_every_feature(small_world: World) -> None:
    stats = small_world.stats()
    assert stats["pages"] < 120 and stats["images"] < 100 and stats["pool"] == 6
    assert any(p.url_path.startswith("/private/") for p in small_world.placements)
    assert small_world.redirects
    truth = small_world.truth()
    assert truth.total.matches > 0
    assert ("ZZ", "unknown", 0) in truth.by_hoster


# --- a hand-made world, counted by hand -------------------------------------------------------


def _png(seed: int) -> bytes:
    return imagegen.encode(imagegen.generate_image(seed, 64, 64), imagegen.PNG)


@pytest.fixture(scope="module")
def handmade() -> World:
    a, b, x = "a.hoster-a.test", "b.hoster-b.test", "x.hoster-x.test"
    known = {"k1": _png(1), "k2": _png(2), "k3": _png(3)}
    images = {**known, "k2-v": _png(22), "b1": _png(100)}

    def img(path: str, form: str = "img") -> ImageRef:
        return ImageRef(form, path, path)

    def link(path: str) -> Link:
        return Link(path, path)

    return World(
        hosters=[
            Hoster("hoster-a", "Hoster A Ltd", "127.0.1.1", "DE", 64501),
            Hoster("hoster-b", "Hoster B BV", "127.0.1.2", "NL", 64502),
            Hoster("hoster-x", "Hoster X", "127.0.1.7", "ZZ", 0, in_geoip=False),
        ],
        sites=[
            Site(a, "hoster-a", "User-agent: *\nDisallow: /private/\n", ("/private/",)),
            Site(b, "hoster-b"),
            Site(x, "hoster-x"),
        ],
        pages=[
            Page(
                a,
                "/",
                "home",
                (
                    link("/s/"),
                    link("/private/"),
                    link("/gone.html"),
                    link("/old"),
                    Link("http://b.hoster-b.test/", None),
                ),
            ),
            Page(
                a,
                "/s/",
                "s",
                (Link("../", "/"),),
                (img("/m/1.jpg"), img("/m/2.jpg", "srcset"), img("/m/b.jpg"), img("/m/1.jpg")),
            ),
            Page(a, "/private/", "p", (), (img("/private/p.png"),)),
            Page(a, "/new.html", "new", (), (img("/m/3.png", "picture"),)),
            Page(a, "/orphan.html", "o", (), (img("/m/o.png"),)),
            Page(b, "/", "home", (link("/x.html"),), (img("/i/1.png", "link"),)),
            Page(b, "/x.html", "x", (link("/"),), (img("/i/1.png"),)),
            Page(x, "/", "home", (), (img("/z.png"),)),
        ],
        redirects=[Redirect(a, "/old", "/new.html")],
        placements=[
            Placement("/m/1.jpg", a, "k1", KIND_EXACT, "k1"),
            Placement("/m/2.jpg", a, "k2-v", KIND_VARIANT, "k2", "resize"),
            Placement("/m/b.jpg", a, "b1", KIND_BENIGN),
            Placement("/private/p.png", a, "k1", KIND_EXACT, "k1"),
            Placement("/m/3.png", a, "k3", KIND_EXACT, "k3"),
            Placement("/m/o.png", a, "k2", KIND_EXACT, "k2"),
            Placement("/i/1.png", b, "k1", KIND_EXACT, "k1"),
            Placement("/z.png", x, "k2-v", KIND_VARIANT, "k2", "resize"),
        ],
        nodes=[
            NodePlan("n1", "DE", (a, b), frozenset({"k1", "k2"})),
            NodePlan("n2", "NL", (b, x), frozenset({"k1", "k2", "k3"})),
        ],
        images=images,
        known=known,
    )


def test_handmade_truth_by_hand(handmade: World) -> None:
    truth = handmade.truth()
    # n1 crawls a: "/", "/s/", and "/new.html" via the redirect; not /private/ (robots), not
    # /orphan.html (unlinked), not /gone.html (404). k3 on /new.html is not in n1's list.
    # On b it finds /i/1.png (twice: a link and an img; one URL).
    assert truth.per_node["n1"] == {
        ExpectedMatch(
            "http://a.hoster-a.test/m/1.jpg",
            "a.hoster-a.test",
            "/m/1.jpg",
            "hoster-a",
            "k1",
            KIND_EXACT,
        ),
        ExpectedMatch(
            "http://a.hoster-a.test/m/2.jpg",
            "a.hoster-a.test",
            "/m/2.jpg",
            "hoster-a",
            "k2",
            KIND_VARIANT,
        ),
        ExpectedMatch(
            "http://b.hoster-b.test/i/1.png",
            "b.hoster-b.test",
            "/i/1.png",
            "hoster-b",
            "k1",
            KIND_EXACT,
        ),
    }
    assert {m.url for m in truth.per_node["n2"]} == {
        "http://b.hoster-b.test/i/1.png",
        "http://x.hoster-x.test/z.png",
    }
    assert truth.by_hoster == {
        ("DE", "Hoster A Ltd", 64501): Tally(2, 2),
        ("NL", "Hoster B BV", 64502): Tally(2, 1),
        ("ZZ", "unknown", 0): Tally(1, 1),
    }
    assert truth.by_country == {"DE": Tally(2, 2), "NL": Tally(2, 1), "ZZ": Tally(1, 1)}
    assert truth.total == Tally(5, 4)
    assert truth.as_picture() == {
        "by_country": [
            {"country": "DE", "matches": 2, "distinct": 2},
            {"country": "NL", "matches": 2, "distinct": 1},
            {"country": "ZZ", "matches": 1, "distinct": 1},
        ],
        "by_hoster": [
            {"hoster": "Hoster A Ltd", "asn": 64501, "country": "DE", "matches": 2, "distinct": 2},
            {"hoster": "Hoster B BV", "asn": 64502, "country": "NL", "matches": 2, "distinct": 1},
            {"hoster": "unknown", "asn": 0, "country": "ZZ", "matches": 1, "distinct": 1},
        ],
    }


def test_handmade_truth_for_some_nodes(handmade: World) -> None:
    truth = handmade.truth(["n2"])
    assert set(truth.per_node) == {"n2"}
    assert truth.total == Tally(2, 2)
    assert truth.by_country == {"NL": Tally(1, 1), "ZZ": Tally(1, 1)}


def test_handmade_responses(handmade: World) -> None:
    a = "a.hoster-a.test"
    status, ctype, body = handmade.resource(a, "/robots.txt")
    assert (status, ctype) == (200, "text/plain; charset=utf-8")
    assert b"Disallow: /private/" in body
    assert handmade.resource("b.hoster-b.test", "/robots.txt")[0] == 404
    status, ctype, body = handmade.resource(a, "/s/?page=2")
    assert status == 200 and ctype.startswith("text/html")
    assert b'href="../"' in body and b'srcset="/m/2.jpg 1x"' in body
    assert handmade.resource(a, "/m/1.jpg") == (200, "image/png", handmade.known["k1"])
    assert handmade.resource(a, "/gone.html")[0] == 404
    assert handmade.resource("A.HOSTER-A.TEST.", "/")[0] == 200
    assert handmade.resource("nowhere.test", "/")[0] == 404
    redirect = handmade.respond(a, "/old")
    assert (redirect.status, redirect.location) == (301, "/new.html")


def test_inconsistent_worlds_are_refused(handmade: World) -> None:
    parts: dict[str, Any] = {
        "hosters": handmade.hosters,
        "sites": handmade.sites,
        "pages": handmade.pages,
        "placements": handmade.placements,
        "nodes": handmade.nodes,
        "images": handmade.images,
        "known": handmade.known,
    }
    with pytest.raises(WorldError, match="duplicate site"):
        World(**{**parts, "sites": (*handmade.sites, handmade.sites[0])})
    with pytest.raises(WorldError, match="unknown hoster"):
        World(**{**parts, "sites": (*handmade.sites, Site("y.test", "hoster-y"))})
    with pytest.raises(WorldError, match="no image bytes"):
        World(**{**parts, "placements": (Placement("/q.png", "b.hoster-b.test", "zz", "benign"),)})
    with pytest.raises(WorldError, match="both"):
        World(**{**parts, "redirects": (Redirect("a.hoster-a.test", "/s/", "/"),)})
    with pytest.raises(WorldError, match="outside the pool"):
        World(**{**parts, "nodes": (NodePlan("n9", "DE", (), frozenset({"k9"})),)})
    with pytest.raises(WorldError, match="no node"):
        handmade.list_images("n9")
    with pytest.raises(WorldError, match="scale"):
        World.build(scale=0.0)


@pytest.mark.parametrize(
    ("page", "target"),
    [
        ("/a/b.html", "/a/c.html"),
        ("/a/b.html", "/"),
        ("/a/b/c.html", "/a/b.html"),
        ("/", "/x/"),
        ("/a/", "/a/"),
        ("/a/", "/b/c.png"),
    ],
)
def test_written_hrefs_resolve_back(page: str, target: str) -> None:
    for relative in (False, True):
        href = written_href(page, target, relative)
        assert urljoin(f"http://h{page}", href) == f"http://h{target}"
