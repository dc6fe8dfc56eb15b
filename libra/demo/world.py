"""The demo's synthetic world: hosters, sites, pages, images and three agencies' plans.

Everything is built deterministically from a seed and kept in memory. The same model that the
synthetic web serves (`World.respond`) also yields the ground truth (`World.truth`): which image
URLs each node should find and match, and how the coordinator should therefore count them per
country and hoster. The truth is derived from the model only, never by hashing.

Images are benign abstract pictures from `imagegen`. A pool of "known" base images stands in for
a hash list: each node knows part of the pool, and copies of pool images (exact bytes or mild
variants) are placed on some hosters among many benign filler images.

Videos (issue 13, `World.build(videos=True)`): a few listed synthetic videos (`videos`), known to
some nodes, with their exact bytes, re-encoded, resized, trimmed and re-containered copies and
stills (PNG frames) placed on pages, embedded as <video src>, <source>, og:video or plain links,
among benign unrelated videos; see `libra.demo.videos` for what is checked while building.
"""

from __future__ import annotations

import html
import itertools
import posixpath
import zlib
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, NamedTuple
from urllib.parse import urljoin, urlsplit

import numpy as np

from libra.demo import imagegen, videogen
from libra.demo import videos as videomaker
from libra.demo.defaults import DEFAULT_SEED as DEFAULT_SEED  # re-exported
from libra.demo.policy import REMOVES_AFTER
from protocol.hashes import HashFamily, ReportFamily, hamming
from protocol.models import UNKNOWN_ASN, UNKNOWN_COUNTRY, UNKNOWN_HOSTER
from worker_function.hashing import hash_image

KIND_EXACT: Final = "known-exact"
KIND_VARIANT: Final = "known-variant"
KIND_BENIGN: Final = "benign"
# Issue 18: mirrored, rotated, bordered, letterboxed and cropped copies (imagegen.EVASIVE_KINDS),
# found by dihedral, trimmed and region matching. One of each kind in every world.
KIND_EVASIVE: Final = "known-evasive"
# Issue 13: a listed video's exact bytes (found by video-sha256), a copy of it that differs in
# bytes but not in frames (re-encoded, resized, trimmed, re-containered: found by vPDQ), and a
# still of one of its frames placed as an image (found as vpdq-frame).
KIND_VIDEO_EXACT: Final = "video-exact"
KIND_VIDEO_COPY: Final = "video-copy"
KIND_VIDEO_STILL: Final = "video-still"
VIDEO_KINDS: Final = frozenset({KIND_VIDEO_EXACT, KIND_VIDEO_COPY, KIND_VIDEO_STILL})
# A benign video unrelated to every listed one (apart from KIND_BENIGN, which means an image).
KIND_VIDEO_BENIGN: Final = "benign-video"
KNOWN_KINDS: Final = frozenset({KIND_EXACT, KIND_VARIANT, KIND_EVASIVE, *VIDEO_KINDS})

# How an image is referenced from a page. "link" is <a href> to the image file.
IMAGE_FORMS: Final = ("img", "srcset", "picture", "link")
# How a video is referenced: <video src>, <video><source src>, <meta property="og:video">,
# <a href> to the file.
VIDEO_FORMS: Final = ("video", "source", "og:video", "link")
# Whether `World.build` adds videos unless told. Off: the world's own tests (golden fingerprints,
# image-only assertions) build with the default. `make demo` has videos all the same
# (DEMO_VIDEOS: libra.demo.runner.DemoOptions.videos): the demo's expected picture maps the video
# kinds to their report families (libra/demo/compare.py, with report_family below), the runner
# checks each period's video cells (libra/demo/checks.py check_videos), and the node's notice
# re-check finds video copies and stills as the crawl does (node/matching/media_match.py), so a
# copy at a hoster that never removes stays "present".
VIDEOS_BY_DEFAULT: Final = False
# Whether `make demo` (libra.demo.runner) builds its world with videos.
DEMO_VIDEOS: Final = True

# Limits the build guarantees (checked with PDQ while building, and again by the tests).
POOL_MIN_DISTANCE: Final = 90  # between any two pool images (the brief asks > 80)
POOL_MIN_QUALITY: Final = 70
VARIANT_MAX_DISTANCE: Final = 16  # well inside PDQ's match distance of 31
VARIANT_MIN_QUALITY: Final = 60
# An evasive copy is placed only if its method brings it this close to the listed image (the
# function's own hashes; recall over random copies is measured in benchmarks/bench_robust.py).
EVASIVE_MAX_DISTANCE: Final = 24
FILLER_MIN_QUALITY: Final = 50  # the function drops PDQ below 50; fillers stay hashable


class WorldError(ValueError):
    """An inconsistent world model, or a build that could not meet its guarantees."""


@dataclass(frozen=True)
class Hoster:
    key: str  # "hoster-a"
    name: str  # organisation name, as the lab ASN database spells it
    ip: str  # its one loopback address
    country: str
    asn: int
    # False: the lab GeoIP does not know this hoster, so nodes attribute it as unknown.
    in_geoip: bool = True

    def attribution(self) -> tuple[str, str, int]:
        """(country, hoster name, ASN) as a node attributes this hoster's IP."""
        if not self.in_geoip:
            return (UNKNOWN_COUNTRY, UNKNOWN_HOSTER, UNKNOWN_ASN)
        return (self.country, self.name, self.asn)


@dataclass(frozen=True)
class Site:
    host: str  # "shop1.hoster-a.test" (reserved TLD .test)
    hoster: str  # Hoster.key
    robots: str | None = None  # robots.txt body; None: robots.txt is 404 (everything allowed)
    # Path prefixes that `robots` disallows for every crawler (the model of that file).
    disallow: tuple[str, ...] = ()

    def allows(self, path: str) -> bool:
        return not any(path.startswith(prefix) for prefix in self.disallow)


@dataclass(frozen=True)
class Link:
    href: str  # as written in the HTML
    target: str | None  # the same-host path it resolves to; None if it leaves the host


@dataclass(frozen=True)
class ImageRef:
    form: str  # one of IMAGE_FORMS
    href: str  # as written in the HTML
    target: str  # the same-host path it resolves to (may be a 404)


@dataclass(frozen=True)
class Page:
    site: str
    path: str
    title: str
    links: tuple[Link, ...] = ()
    images: tuple[ImageRef, ...] = ()


@dataclass(frozen=True)
class Redirect:
    site: str
    path: str
    target: str  # same-host path
    status: int = 301


@dataclass(frozen=True)
class Placement:
    url_path: str
    site: str
    image_id: str  # key into World.images (the served bytes)
    kind: str  # KIND_EXACT | KIND_VARIANT | KIND_BENIGN
    base_id: str | None = None  # the known pool image it copies (None for benign filler)
    variant: str | None = None  # imagegen.VariantKind value for variants


@dataclass(frozen=True)
class NodePlan:
    node_id: str
    country: str
    seeds: tuple[str, ...]  # site host names; the crawl starts at each one's "/"
    known_ids: frozenset[str]  # pool images in this node's private list


class Response(NamedTuple):
    status: int
    content_type: str
    body: bytes
    location: str | None = None  # same-host path for redirects


@dataclass(frozen=True, order=True)
class ExpectedMatch:
    """One image URL a node should match (each URL counts once per node)."""

    url: str  # "http://<host><path>" without the port, which the world does not know
    site: str
    path: str
    hoster: str  # Hoster.key
    base_id: str
    # KIND_EXACT (same bytes as the listed image), KIND_VARIANT or KIND_EVASIVE (PDQ only)
    kind: str


@dataclass(frozen=True)
class Tally:
    matches: int = 0  # sum over nodes of matched URLs
    distinct: int = 0  # size of the union of matched URLs over nodes


@dataclass(frozen=True)
class Truth:
    """What the coordinator should show, derived from the world model alone."""

    per_node: Mapping[str, frozenset[ExpectedMatch]]
    by_hoster: Mapping[tuple[str, str, int], Tally]  # (country, hoster name, ASN)
    by_country: Mapping[str, Tally]
    total: Tally

    def as_picture(self) -> dict[str, list[dict[str, object]]]:
        """Shaped like the coordinator's picture: `by_country` and `by_hoster` rows."""
        by_country: list[dict[str, object]] = [
            {"country": country, "matches": t.matches, "distinct": t.distinct}
            for country, t in sorted(self.by_country.items())
        ]
        by_hoster: list[dict[str, object]] = [
            {
                "hoster": hoster,
                "asn": asn,
                "country": country,
                "matches": t.matches,
                "distinct": t.distinct,
            }
            for (country, hoster, asn), t in sorted(self.by_hoster.items())
        ]
        return {"by_country": by_country, "by_hoster": by_hoster}


# --- the world ------------------------------------------------------------------------------


class World:
    """An immutable synthetic web plus the nodes' plans; see the module docstring."""

    def __init__(
        self,
        *,
        hosters: Sequence[Hoster],
        sites: Sequence[Site],
        pages: Sequence[Page],
        placements: Sequence[Placement],
        nodes: Sequence[NodePlan],
        images: Mapping[str, bytes],
        known: Mapping[str, bytes],
        redirects: Sequence[Redirect] = (),
        seed: int | None = None,
        scale: float | None = None,
        videos: Mapping[str, bytes] | None = None,
    ) -> None:
        self.hosters = tuple(hosters)
        self.sites = tuple(sites)
        self.pages = tuple(pages)
        self.placements = tuple(placements)
        self.nodes = tuple(nodes)
        self.images = dict(images)
        self.known = dict(known)  # pool id -> original bytes (what the lists are made from)
        # Listed video id -> original bytes. None: the ids the nodes list beyond the image pool,
        # with their bytes in `images` (the exact copy is served under the video's own id), so a
        # world rebuilt from this one's parts (libra.demo.history) keeps its videos.
        self.videos = dict(videos) if videos is not None else self._listed_videos()
        self.redirects = tuple(redirects)
        self.seed = seed
        self.scale = scale
        self._hoster = {h.key: h for h in self.hosters}
        self._site = {s.host: s for s in self.sites}
        self._page = {(p.site, p.path): p for p in self.pages}
        self._placement = {(p.site, p.url_path): p for p in self.placements}
        self._redirect = {(r.site, r.path): r for r in self.redirects}
        self._node = {n.node_id: n for n in self.nodes}
        self._check()

    def _listed_videos(self) -> dict[str, bytes]:
        # Anything else the nodes list (no bytes, or not a video) is refused by _check.
        ids = {i for node in self.nodes for i in node.known_ids} - set(self.known)
        return {
            i: self.images[i]
            for i in sorted(ids)
            if i in self.images and videogen.container_of(self.images[i]) is not None
        }

    def _check(self) -> None:
        def unique(what: str, count: int, keys: int) -> None:
            if count != keys:
                raise WorldError(f"duplicate {what}")

        unique("hoster key", len(self.hosters), len(self._hoster))
        unique("site host", len(self.sites), len(self._site))
        unique("page", len(self.pages), len(self._page))
        unique("placement URL", len(self.placements), len(self._placement))
        unique("node id", len(self.nodes), len(self._node))
        for site in self.sites:
            if site.hoster not in self._hoster:
                raise WorldError(f"site {site.host} names unknown hoster {site.hoster}")
        for key in (*self._page, *self._placement, *self._redirect):
            if key[0] not in self._site:
                raise WorldError(f"{key[0]}{key[1]} is on no known site")
        served = set(self._page) | set(self._placement) | set(self._redirect)
        if len(served) != len(self._page) + len(self._placement) + len(self._redirect):
            raise WorldError("a path is both a page, an image and/or a redirect")
        for placement in self.placements:
            if placement.image_id not in self.images:
                raise WorldError(f"placement {placement.url_path} has no image bytes")
            listed = self.videos if placement.kind in VIDEO_KINDS else self.known
            if placement.kind in KNOWN_KINDS and placement.base_id not in listed:
                raise WorldError(f"placement {placement.url_path} copies no listed item")
        for node in self.nodes:
            stray = sorted(node.known_ids - set(self.known) - set(self.videos))
            if stray:
                raise WorldError(
                    f"node {node.node_id} knows items outside the pool and the videos: {stray[0]}"
                )
            for host in node.seeds:
                if host not in self._site:
                    raise WorldError(f"node {node.node_id} seeds unknown site {host}")

    # --- construction ---------------------------------------------------------------------

    @classmethod
    def build(
        cls, seed: int = DEFAULT_SEED, scale: float = 1.0, videos: bool = VIDEOS_BY_DEFAULT
    ) -> World:
        """The demo world for `seed`; `scale` (0.05-8, 1 = about 115 pages and 500 images)
        shrinks or grows the pages, images and pool; hosters, nodes and specials stay.
        `videos`: add the listed videos, their copies and stills and benign videos (the same
        few at every scale); the images are the same either way."""
        if not 0.05 <= scale <= 8.0:
            raise WorldError(f"scale {scale} is outside 0.05-8")
        return _Builder(seed, scale, videos).build()

    # --- lookups --------------------------------------------------------------------------

    def hoster(self, key: str) -> Hoster:
        return self._hoster[key]

    def site(self, host: str) -> Site:
        return self._site[host]

    def hoster_of(self, host: str) -> Hoster:
        return self._hoster[self._site[host].hoster]

    def placement(self, key: tuple[str, str]) -> Placement | None:
        """The image placed at (site host, path), if any."""
        return self._placement.get(key)

    def page(self, key: tuple[str, str]) -> Page | None:
        """The page at (site host, path), if any."""
        return self._page.get(key)

    def node(self, node_id: str) -> NodePlan:
        try:
            return self._node[node_id]
        except KeyError:
            raise WorldError(f"no node {node_id!r} in this world") from None

    def site_ips(self) -> dict[str, str]:
        """Every site host -> the loopback IP of its hoster (the lab's DNS)."""
        return {s.host: self._hoster[s.hoster].ip for s in self.sites}

    @staticmethod
    def url(host: str, path: str, port: int | None = None) -> str:
        return f"http://{host}{'' if port is None else f':{port}'}{path}"

    def seed_urls(self, node_id: str, port: int | None = None) -> list[str]:
        return [self.url(host, "/", port) for host in self.node(node_id).seeds]

    def list_images(self, node_id: str) -> list[bytes]:
        """The original pool images in the node's private list (sorted by pool id)."""
        return [self.known[i] for i in sorted(self.node(node_id).known_ids) if i in self.known]

    def list_videos(self, node_id: str) -> list[tuple[str, bytes]]:
        """(video id, original bytes) of the listed videos in the node's list, by id."""
        ids = sorted(self.node(node_id).known_ids)
        return [(i, self.videos[i]) for i in ids if i in self.videos]

    def stats(self) -> dict[str, int]:
        return {
            "hosters": len(self.hosters),
            "countries": len({h.country for h in self.hosters if h.in_geoip}),
            "sites": len(self.sites),
            "pages": len(self.pages),
            "images": len(self.images),
            "placements": len(self.placements),
            "known_placements": sum(p.kind in KNOWN_KINDS for p in self.placements),
            "pool": len(self.known),
            "nodes": len(self.nodes),
            "videos": len(self.videos),
            "video_placements": sum(
                p.kind in VIDEO_KINDS or p.kind == KIND_VIDEO_BENIGN for p in self.placements
            ),
        }

    # --- serving --------------------------------------------------------------------------

    def respond(self, host: str, path: str) -> Response:
        """What the synthetic web answers for `GET http://host<path>` (query ignored)."""
        host = host.lower().rstrip(".")
        path = urlsplit(path).path or "/"
        site = self._site.get(host)
        if site is None:
            return _not_found()
        if path == "/robots.txt":
            if site.robots is None:
                return _not_found()
            return Response(200, "text/plain; charset=utf-8", site.robots.encode())
        key = (host, path)
        page = self._page.get(key)
        if page is not None:
            return Response(200, "text/html; charset=utf-8", render_page(page))
        placement = self._placement.get(key)
        if placement is not None:
            data = self.images[placement.image_id]
            return Response(200, media_type(data), data)
        redirect = self._redirect.get(key)
        if redirect is not None:
            body = f'<a href="{html.escape(redirect.target)}">moved</a>'.encode()
            return Response(redirect.status, "text/html; charset=utf-8", body, redirect.target)
        return _not_found()

    def resource(self, host: str, path: str) -> tuple[int, str, bytes]:
        """(status, content type, body); see `respond` for the redirect location too."""
        response = self.respond(host, path)
        return (response.status, response.content_type, response.body)

    # --- ground truth ---------------------------------------------------------------------

    def reachable_pages(self, host: str) -> list[Page]:
        """Pages a polite same-host crawler finds from the site's "/": links followed on this
        host only, robots.txt obeyed, redirects followed on this host, 404s dead ends."""
        site = self._site[host]
        seen: set[str] = set()
        found: list[Page] = []
        queue = deque(["/"])
        while queue:
            path: str | None = queue.popleft()
            for _hop in range(_MAX_REDIRECTS + 1):
                if path is None or path in seen or not site.allows(path):
                    path = None
                    break
                seen.add(path)
                redirect = self._redirect.get((host, path))
                if redirect is None:
                    break
                path = redirect.target
            else:
                path = None  # too many redirects
            page = None if path is None else self._page.get((host, path))
            if page is None:
                continue  # not fetched, or a 404
            found.append(page)
            queue.extend(link.target for link in page.links if link.target is not None)
        return found

    def matches_for(self, node_id: str) -> frozenset[ExpectedMatch]:
        """Image URLs the node should match: on a page reachable from its seeds, copying a pool
        image that its list holds."""
        plan = self.node(node_id)
        out: set[ExpectedMatch] = set()
        for host in plan.seeds:
            hoster = self._site[host].hoster
            for page in self.reachable_pages(host):
                for ref in page.images:
                    placement = self._placement.get((host, ref.target))
                    if placement is None or placement.kind not in KNOWN_KINDS:
                        continue
                    assert placement.base_id is not None  # checked in _check
                    if placement.base_id in plan.known_ids:
                        out.add(
                            ExpectedMatch(
                                url=self.url(host, ref.target),
                                site=host,
                                path=ref.target,
                                hoster=hoster,
                                base_id=placement.base_id,
                                kind=placement.kind,
                            )
                        )
        return frozenset(out)

    def truth(self, node_ids: Iterable[str] | None = None) -> Truth:
        """Expected picture for the given nodes (default: all of them)."""
        ids = [n.node_id for n in self.nodes] if node_ids is None else list(node_ids)
        return self.tally({node_id: self.matches_for(node_id) for node_id in ids})

    def tally(self, per_node: Mapping[str, frozenset[ExpectedMatch]]) -> Truth:
        """The picture of the given matches per node (counted per country and hoster)."""
        hoster_matches: dict[tuple[str, str, int], int] = {}
        hoster_urls: dict[tuple[str, str, int], set[str]] = {}
        country_matches: dict[str, int] = {}
        country_urls: dict[str, set[str]] = {}
        all_urls: set[str] = set()
        for matches in per_node.values():
            for match in matches:
                key = self._hoster[match.hoster].attribution()
                hoster_matches[key] = hoster_matches.get(key, 0) + 1
                hoster_urls.setdefault(key, set()).add(match.url)
                country_matches[key[0]] = country_matches.get(key[0], 0) + 1
                country_urls.setdefault(key[0], set()).add(match.url)
                all_urls.add(match.url)
        return Truth(
            per_node=per_node,
            by_hoster={k: Tally(v, len(hoster_urls[k])) for k, v in hoster_matches.items()},
            by_country={k: Tally(v, len(country_urls[k])) for k, v in country_matches.items()},
            total=Tally(sum(len(m) for m in per_node.values()), len(all_urls)),
        )


_MAX_REDIRECTS: Final = 5


def found_by_method(original: bytes, copy: bytes, kind: imagegen.VariantKind) -> bool:
    """Whether the node, with its default settings and a list built with ``libra hash
    --regions``, finds ``copy`` by the method meant for ``kind`` within EVASIVE_MAX_DISTANCE
    (hashes from the function's own pipeline)."""
    listed = hash_image(original, regions=True).hashes
    seen = hash_image(copy, dihedral=True).hashes
    method = imagegen.EVASIVE_KINDS[kind]
    if method == "dihedral":
        candidates = [(v, listed.pdq) for v in seen.pdq_dihedral or []]
    elif method == "trimmed":
        ok = (seen.pdq_trimmed_quality or 0) >= VARIANT_MIN_QUALITY
        candidates = [(v, listed.pdq) for v in seen.pdq_trimmed or []] if ok else []
    else:
        candidates = [(seen.pdq, r) for r in listed.pdq_regions or []]
    return seen.pdq_quality >= VARIANT_MIN_QUALITY and any(
        hamming(a, b) <= EVASIVE_MAX_DISTANCE for a, b in candidates
    )


# The report family a node counts each video kind under: the listed video's bytes by SHA-256
# (the demo's lists carry it: libra.demo.lists.vics_videos), a copy by vPDQ, a still as a frame.
_VIDEO_FAMILY: dict[str, ReportFamily] = {
    KIND_VIDEO_EXACT: ReportFamily.VIDEO_SHA256,
    KIND_VIDEO_COPY: ReportFamily.VPDQ,
    KIND_VIDEO_STILL: ReportFamily.VPDQ_FRAME,
}


def report_family(kind: str, exact: HashFamily, perceptual: HashFamily) -> str:
    """The report family (wire name) a node with list families (`exact`, `perceptual`) counts
    a match of `kind` (world.KIND_*) under: an exact image copy by its exact family, a video
    kind by its video family, any other image copy by the perceptual family."""
    if kind == KIND_EXACT:
        return exact.value
    video = _VIDEO_FAMILY.get(kind)
    return (video if video is not None else ReportFamily(perceptual.value)).value


def media_type(data: bytes) -> str:
    """The Content-Type the web serves the bytes of an image or video with."""
    container = videogen.container_of(data)
    if container is not None:
        return videogen.CONTENT_TYPES[container]
    return imagegen.CONTENT_TYPES[imagegen.sniff_format(data)]


def media_extension(data: bytes) -> str:
    """The file name extension of an image's or video's real format."""
    container = videogen.container_of(data)
    if container is not None:
        return container
    return imagegen.EXTENSIONS[imagegen.sniff_format(data)]


def _not_found() -> Response:
    return Response(404, "text/html; charset=utf-8", b"<!doctype html><title>404</title>not found")


# --- HTML -----------------------------------------------------------------------------------

_WORDS: Final = [
    "river",
    "stone",
    "lantern",
    "meadow",
    "orbit",
    "harbor",
    "copper",
    "quiet",
    "summit",
    "willow",
    "ember",
    "signal",
    "canyon",
    "garden",
    "compass",
    "marble",
    "breeze",
    "atlas",
    "pepper",
    "violet",
    "timber",
    "glacier",
    "mosaic",
    "parade",
    "velvet",
    "anchor",
    "crystal",
    "falcon",
    "island",
    "juniper",
    "kettle",
]


def _filler_text(page: Page) -> str:
    # Deterministic per page, without an RNG: the rendering is a pure function of the model.
    state = zlib.crc32(f"{page.site}{page.path}".encode())
    words = []
    for _ in range(24):
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        words.append(_WORDS[state % len(_WORDS)])
    return " ".join(words).capitalize() + "."


def _image_tags(refs: Sequence[ImageRef]) -> list[str]:
    """img src; srcset and picture refs are paired into one tag where possible, so candidate
    lists with several URLs occur; links are <a href> to the file."""
    tags: list[str] = []
    pending: dict[str, list[str]] = {"srcset": [], "picture": []}

    def flush(form: str) -> None:
        hrefs = [html.escape(h) for h in pending[form]]
        pending[form] = []
        if not hrefs:
            return
        if form == "srcset":
            candidates = ", ".join(f"{h} {i + 1}x" for i, h in enumerate(hrefs))
            tags.append(f'<img srcset="{candidates}" alt="">')
        elif len(hrefs) == 1:
            tags.append(
                f'<picture><source srcset="{hrefs[0]}"><img src="{hrefs[0]}" alt=""></picture>'
            )
        else:
            tags.append(
                f'<picture><source media="(min-width: 800px)" srcset="{hrefs[0]}">'
                f'<img src="{hrefs[1]}" alt=""></picture>'
            )

    for ref in refs:
        if ref.form == "og:video":
            continue  # in the head (render_page)
        if ref.form == "video":
            tags.append(f'<video src="{html.escape(ref.href)}" controls muted></video>')
            continue
        if ref.form == "source":
            kind = videogen.CONTENT_TYPES.get(ref.href.rsplit(".", 1)[-1].lower(), "")
            tags.append(
                f'<video controls><source src="{html.escape(ref.href)}" type="{kind}"></video>'
            )
            continue
        if ref.form in pending:
            pending[ref.form].append(ref.href)
            if len(pending[ref.form]) == 2:
                flush(ref.form)
        elif ref.form == "link":
            tags.append(f'<a href="{html.escape(ref.href)}">full size</a>')
        else:
            tags.append(f'<img src="{html.escape(ref.href)}" alt="" loading="lazy">')
    flush("srcset")
    flush("picture")
    return tags


def render_page(page: Page) -> bytes:
    """The page's HTML. Links and images appear exactly as the model lists them."""
    title = html.escape(page.title)
    items = "".join(
        f'<li><a href="{html.escape(link.href)}">{html.escape(_label(link))}</a></li>'
        for link in page.links
    )
    images = "\n".join(_image_tags(page.images))
    meta = "".join(
        f'<meta property="og:video" content="{html.escape(ref.href)}">'
        for ref in page.images
        if ref.form == "og:video"
    )
    text = (
        "<!doctype html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{title}</title>{meta}</head>\n'
        f'<body id="top"><h1>{title}</h1>\n<p>{_filler_text(page)}</p>\n'
        f'<nav><ul>{items}</ul></nav>\n<div class="images">\n{images}\n</div>\n'
        "</body></html>\n"
    )
    return text.encode()


def _label(link: Link) -> str:
    if link.target is None:
        return link.href
    name = link.target.rstrip("/").rsplit("/", 1)[-1]
    return name.removesuffix(".html") or "home"


def written_href(from_path: str, to_path: str, relative: bool) -> str:
    """How a page at `from_path` writes a link to `to_path`: root-relative, or relative when
    asked and possible. Checked by resolving it back."""
    if relative:
        base_dir = from_path[: from_path.rfind("/") + 1]
        candidate = posixpath.relpath(to_path, base_dir)
        if to_path.endswith("/") and candidate != ".":
            candidate += "/"
        elif candidate == ".":
            candidate = "./"
        if urljoin(f"http://h{from_path}", candidate) == f"http://h{to_path}":
            return candidate
    return to_path


# --- the builder ----------------------------------------------------------------------------

HOSTERS: Final = (
    Hoster("hoster-a", "Hoster A Ltd", "127.0.1.1", "DE", 64501),
    Hoster("hoster-b", "Hoster B GmbH", "127.0.1.2", "DE", 64502),
    Hoster("hoster-c", "Hoster C B.V.", "127.0.1.3", "NL", 64503),
    Hoster("hoster-d", "Hoster D Inc", "127.0.1.4", "US", 64504),
    Hoster("hoster-e", "Hoster E SAS", "127.0.1.5", "FR", 64505),
    Hoster("hoster-f", "Hoster F SRL", "127.0.1.6", "RO", 64506),
    # Not in the lab GeoIP: exercises the "unknown" attribution path.
    Hoster("hoster-g", "Hoster G Unlisted", "127.0.1.7", UNKNOWN_COUNTRY, UNKNOWN_ASN, False),
)

COUNTRY_NAMES: Final = {
    "DE": "Germany",
    "NL": "Netherlands",
    "US": "United States",
    "FR": "France",
    "RO": "Romania",
    "MT": "Malta",  # the history's hotspot (libra.demo.history)
}

NODES: Final = (("node-de", "DE"), ("node-nl", "NL"), ("node-us", "US"))

# Which node crawls a hoster's sites first ("national focus"); others join at random.
_PRIMARY_NODE: Final = {"DE": 0, "NL": 1, "US": 2, "FR": 0, "RO": 1, UNKNOWN_COUNTRY: 2}

# Who knows which part of the pool, as cumulative fractions of the (shuffled) pool:
# some images are known to all three nodes, some to two, some to one.
_MEMBERSHIP: Final = (
    (0.25, (0, 1, 2)),
    (0.45, (0, 1)),
    (0.62, (1, 2)),
    (0.75, (0, 2)),
    (0.85, (0,)),
    (0.93, (1,)),
    (1.00, (2,)),
)

# Who lists which video (node indexes), by video number.
_VIDEO_MEMBERSHIP: Final = ((0, 1, 2), (1, 2), (0, 2), (0, 1))
# The copies of each listed video besides its exact bytes, by video number (each kind once
# at least; libra.demo.videos makes them).
_VIDEO_COPIES: Final = (
    (videomaker.REENCODE, videomaker.TRIM),
    (videomaker.RESIZE, videomaker.REMUX_MKV),
    (videomaker.WEBM, videomaker.TRIM),
    (videomaker.REMUX_MOV, videomaker.RESIZE),
)
_VIDEO_DIRS: Final = ("/videos/", "/media/clips/", "/uploads/2026/11/")
_SITE_PREFIXES: Final = ("shop", "blog", "forum", "pics", "news", "gallery", "photos", "board")
_SECTIONS: Final = ("gallery", "news", "forum", "archive", "photos", "blog", "events", "market")
_MEDIA_DIRS: Final = ("/media/", "/uploads/2026/11/", "/img/", "/static/pics/")
_ROBOTS_VARIANTS: Final = (
    None,
    "User-agent: *\nDisallow:\n",
    "User-agent: *\nDisallow: /cgi-bin/\n",
    "User-agent: BadBot\nDisallow: /\n\nUser-agent: *\nAllow: /\n",
)
_ROBOTS_DISALLOW: Final = {
    None: (),
    "User-agent: *\nDisallow:\n": (),
    "User-agent: *\nDisallow: /cgi-bin/\n": ("/cgi-bin/",),
    "User-agent: BadBot\nDisallow: /\n\nUser-agent: *\nAllow: /\n": (),
}
PRIVATE_PREFIX: Final = "/private/"


@dataclass
class _Draft:
    """A page while it is being built."""

    site: str
    path: str
    title: str
    links: list[Link] = field(default_factory=list)
    images: list[ImageRef] = field(default_factory=list)
    normal: bool = True  # ordinary content page (specials get no random images)

    def freeze(self) -> Page:
        return Page(self.site, self.path, self.title, tuple(self.links), tuple(self.images))


class _Builder:
    def __init__(self, seed: int, scale: float, videos: bool = False) -> None:
        self.seed = seed
        self.scale = scale
        self.with_videos = videos
        self.videos: dict[str, bytes] = {}  # listed video id -> original bytes
        self.rng = np.random.default_rng([seed, 0])
        self.tokens: set[str] = set()
        self.sites: list[Site] = []
        self.drafts: dict[tuple[str, str], _Draft] = {}
        self.redirects: list[Redirect] = []
        self.placements: list[Placement] = []
        self.images: dict[str, bytes] = {}
        self.known: dict[str, bytes] = {}
        self.known_pdq: dict[str, int] = {}
        self.membership: dict[str, set[int]] = {}
        self.crawlers: dict[str, set[int]] = {}  # site host -> node indexes

    # -- small helpers --

    def token(self) -> str:
        while True:
            text = f"{int(self.rng.integers(0, 2**40)):010x}"
            if text not in self.tokens:
                self.tokens.add(text)
                return text

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def pick(self, items: Sequence[str]) -> str:
        return items[int(self.rng.integers(0, len(items)))]

    def page(self, site: str, path: str, title: str, normal: bool = True) -> _Draft:
        draft = _Draft(site, path, title, normal=normal)
        self.drafts[(site, path)] = draft
        return draft

    def link(self, draft: _Draft, target: str) -> None:
        href = written_href(draft.path, target, relative=self.chance(0.35))
        draft.links.append(Link(href, target))

    def refer(self, draft: _Draft, target: str, form: str | None = None) -> None:
        if form is None:
            form = self.pick(("img", "img", "img", "srcset", "picture", "link"))
        href = written_href(draft.path, target, relative=self.chance(0.4))
        draft.images.append(ImageRef(form, href, target))

    def normal_pages(self, host: str) -> list[_Draft]:
        return [d for d in self.drafts.values() if d.site == host and d.normal]

    # -- steps --

    def build(self) -> World:
        self.make_sites()
        for site in self.sites:
            self.make_pages(site)
        self.membership = self.make_pool()
        self.assign_crawlers()
        self.make_fillers()
        self.place_known()
        self.make_specials()
        self.place_evasive()  # last: the steps above draw the same numbers as before
        if self.with_videos:
            self.make_videos()  # its own random numbers: the images stay as they were
        nodes = self.make_nodes()
        return World(
            hosters=HOSTERS,
            sites=self.sites,
            pages=[d.freeze() for d in self.drafts.values()],
            placements=self.placements,
            nodes=nodes,
            images=self.images,
            known=self.known,
            redirects=self.redirects,
            seed=self.seed,
            scale=self.scale,
            videos=self.videos,
        )

    def make_sites(self) -> None:
        for hoster in HOSTERS:
            count = int(self.rng.integers(2, 5)) if self.scale >= 0.5 else 2
            prefixes = self.rng.permutation(len(_SITE_PREFIXES))[:count]
            for i in prefixes:
                number = int(self.rng.integers(1, 10))
                host = f"{_SITE_PREFIXES[int(i)]}{number}.{hoster.key}.test"
                robots = _ROBOTS_VARIANTS[int(self.rng.integers(0, len(_ROBOTS_VARIANTS)))]
                self.sites.append(Site(host, hoster.key, robots, _ROBOTS_DISALLOW[robots]))

    def make_pages(self, site: Site) -> None:
        host = site.host
        index = self.page(host, "/", f"{host} home")
        sections = self.rng.permutation(len(_SECTIONS))[: int(self.rng.integers(1, 3))]
        for s in sections:
            name = _SECTIONS[int(s)]
            section = self.page(host, f"/{name}/", f"{name} on {host}")
            self.link(index, section.path)
            self.link(section, "/")
            articles = max(1, round(int(self.rng.integers(1, 4)) * self.scale))
            for k in range(articles):
                slug = f"{self.pick(('item', 'post', 'entry'))}-{k + 1}"
                article = self.page(host, f"/{name}/{slug}.html", f"{name} {slug}")
                self.link(section, article.path)
                self.link(article, section.path)
                if self.chance(0.3):
                    detail = self.page(host, f"/{name}/{slug}/full.html", f"{slug} in full")
                    self.link(article, detail.path)
                    self.link(detail, article.path)
                    self.link(detail, "/")
        # Same-page fragment, mail and off-site links: none of them extends the crawl.
        if self.chance(0.5):
            index.links.append(Link("#top", "/"))
        index.links.append(Link(f"mailto:abuse@{host}", None))
        other = self.sites[int(self.rng.integers(0, len(self.sites)))].host
        if other != host:
            index.links.append(Link(f"http://{other}/", None))
        # Broken links: same-host paths that exist nowhere (404).
        for draft in [d for d in self.drafts.values() if d.site == host]:
            if self.chance(0.12):
                gone = f"/gone-{self.token()}.html"
                draft.links.append(Link(gone, gone))

    def make_pool(self) -> dict[str, set[int]]:
        """Pool images with guaranteed quality and spread; returns pool id -> node indexes."""
        size = max(6, round(40 * self.scale))
        membership: dict[str, set[int]] = {}
        order = self.rng.permutation(size)
        for i in range(size):
            pool_id = f"known-{i:02d}"
            for attempt in range(50):
                img_rng = np.random.default_rng([self.seed, 2, i, attempt])
                width, height = (int(v) for v in img_rng.integers(300, 481, size=2))
                fmt = imagegen.JPEG if img_rng.random() < 0.6 else imagegen.PNG
                image = imagegen.generate_image((self.seed, 2, i, attempt, 1), width, height)
                data = imagegen.encode(image, fmt, quality=92)
                value, quality = imagegen.pdq_of(data)
                if quality >= POOL_MIN_QUALITY and all(
                    (value ^ other).bit_count() >= POOL_MIN_DISTANCE
                    for other in self.known_pdq.values()
                ):
                    break
            else:
                raise WorldError(f"could not make pool image {pool_id} far from the others")
            self.known[pool_id] = data
            self.known_pdq[pool_id] = value
            position = (int(np.nonzero(order == i)[0][0]) + 0.5) / size
            nodes = next(members for limit, members in _MEMBERSHIP if position < limit)
            membership[pool_id] = set(nodes)
        return membership

    def media_path(self, draft: _Draft, ext: str) -> str:
        if self.chance(0.3):
            directory = draft.path[: draft.path.rfind("/") + 1] + "img/"
        else:
            directory = self.pick(_MEDIA_DIRS)
        return f"{directory}{self.token()}.{ext}"

    def filler_image(self, i: int) -> bytes:
        """Benign filler image `i`: PDQ quality >= 50 and far from every pool image, so that
        no filler can ever match a list (checked here, so it holds for any seed)."""
        for attempt in range(50):
            img_rng = np.random.default_rng([self.seed, 1, i, attempt])
            width = int(img_rng.integers(96, 321))
            height = int(img_rng.integers(96, 321))
            fmt = imagegen.JPEG if img_rng.random() < 0.65 else imagegen.PNG
            image = imagegen.generate_image((self.seed, 1, i, attempt, 1), width, height)
            data = imagegen.encode(image, fmt, quality=int(img_rng.integers(75, 95)))
            value, quality = imagegen.pdq_of(data)
            if quality >= FILLER_MIN_QUALITY and all(
                (value ^ other).bit_count() >= POOL_MIN_DISTANCE
                for other in self.known_pdq.values()
            ):
                return data
        raise WorldError(f"could not make filler image {i} far from the pool")

    def make_fillers(self) -> None:
        count = max(12, round(430 * self.scale))
        hosts = [s.host for s in self.sites]
        for i in range(count):
            image_id = f"img-{i:04d}"
            data = self.images[image_id] = self.filler_image(i)
            pages = self.normal_pages(self.pick(hosts))
            first = pages[int(self.rng.integers(0, len(pages)))]
            path = self.media_path(first, imagegen.EXTENSIONS[imagegen.sniff_format(data)])
            self.placements.append(Placement(path, first.site, image_id, KIND_BENIGN))
            self.refer(first, path)
            if self.chance(0.1):
                self.refer(pages[int(self.rng.integers(0, len(pages)))], path)

    def known_copy(self, pool_id: str, exact: bool) -> tuple[str, str, str | None]:
        """(image id, kind, variant) for a placed copy of a pool image."""
        if exact:
            self.images.setdefault(pool_id, self.known[pool_id])
            return pool_id, KIND_EXACT, None
        original = self.known[pool_id]
        is_jpeg = imagegen.sniff_format(original) == imagegen.JPEG
        kinds = [imagegen.VariantKind.RESIZE, imagegen.VariantKind.CONVERT]
        if is_jpeg:
            kinds.append(imagegen.VariantKind.REQUALITY)
        for _ in range(12):
            kind = kinds[int(self.rng.integers(0, len(kinds)))]
            data = imagegen.make_variant(original, kind, self.rng)
            value, quality = imagegen.pdq_of(data)
            distance = (value ^ self.known_pdq[pool_id]).bit_count()
            if (
                data != original
                and distance <= VARIANT_MAX_DISTANCE
                and quality >= VARIANT_MIN_QUALITY
            ):
                image_id = f"{pool_id}-v{self.token()}"
                self.images[image_id] = data
                return image_id, KIND_VARIANT, kind.value
        raise WorldError(f"could not make a close variant of {pool_id}")

    def place(self, pool_id: str, draft: _Draft, directory: str | None = None) -> str:
        """Place a copy (exact or variant) of a pool image, referenced from `draft`; returns
        its path. The file name's extension follows the copy's real format."""
        image_id, kind, variant = self.known_copy(pool_id, exact=self.chance(0.5))
        ext = imagegen.EXTENSIONS[imagegen.sniff_format(self.images[image_id])]
        if directory is None:
            path = self.media_path(draft, ext)
        else:
            path = f"{directory}{self.token()}.{ext}"
        self.placements.append(Placement(path, draft.site, image_id, kind, pool_id, variant))
        self.refer(draft, path)
        return path

    def place_known(self) -> None:
        hoster_keys = [h.key for h in HOSTERS]
        by_hoster = {k: [s.host for s in self.sites if s.hoster == k] for k in hoster_keys}
        for n, pool_id in enumerate(sorted(self.known)):
            spread = int(self.rng.choice([1, 2, 3, 4], p=[0.35, 0.3, 0.2, 0.15]))
            chosen = [hoster_keys[int(i)] for i in self.rng.permutation(len(hoster_keys))[:spread]]
            # The unknown hoster always gets one, so the "unknown" path is exercised.
            if n == 0 and "hoster-g" not in chosen:
                chosen[-1] = "hoster-g"
            for key in chosen:
                pages = self.normal_pages(self.pick(by_hoster[key]))
                path = self.place(pool_id, pages[int(self.rng.integers(0, len(pages)))])
                if self.chance(0.3):
                    self.refer(pages[int(self.rng.integers(0, len(pages)))], path)

    def place_evasive(self) -> None:
        """One copy of each evasive kind, on a site crawled by a node whose list holds the
        original, so that every world expects each method to find something."""
        for kind in imagegen.EVASIVE_KINDS:
            host = self.pick([s.host for s in self.sites])
            hoster = self.site_hoster(host)
            spread: dict[str, set[str]] = {p: set() for p in self.known}
            for placed in self.placements:
                if placed.base_id is not None:
                    spread[placed.base_id].add(self.site_hoster(placed.site))
            # Known by a node crawling the site, and still on at most 4 hosters afterwards.
            holders = [
                p
                for p in sorted(self.known)
                if self.membership[p] & self.crawlers[host] and len(spread[p] | {hoster}) <= 4
            ]
            if not holders:
                continue
            for _ in range(12):
                pool_id = self.pick(holders)
                data = imagegen.make_variant(self.known[pool_id], kind, self.rng)
                if found_by_method(self.known[pool_id], data, kind):
                    break
            else:
                raise WorldError(f"could not make a findable {kind.value} copy")
            image_id = f"{pool_id}-e{self.token()}"
            self.images[image_id] = data
            pages = self.normal_pages(host)
            draft = pages[int(self.rng.integers(0, len(pages)))]
            path = self.media_path(draft, imagegen.EXTENSIONS[imagegen.sniff_format(data)])
            self.placements.append(
                Placement(path, host, image_id, KIND_EVASIVE, pool_id, kind.value)
            )
            self.refer(draft, path)

    def make_specials(self) -> None:
        """Known images that a correct crawler must NOT count (behind robots.txt, on an
        unlinked page) and one it must count although it sits behind a redirect."""
        hosts = [s.host for s in self.sites]
        # robots.txt Disallow: /private/ with a linked page that holds a known image.
        private_host = self.pick(hosts)
        site_index = self.sites.index(next(s for s in self.sites if s.host == private_host))
        robots = f"User-agent: *\nDisallow: {PRIVATE_PREFIX}\n"
        self.sites[site_index] = Site(
            private_host, self.sites[site_index].hoster, robots, (PRIVATE_PREFIX,)
        )
        private = self.page(private_host, PRIVATE_PREFIX, "members only", normal=False)
        self.link(self.drafts[(private_host, "/")], PRIVATE_PREFIX)
        self.link(private, "/")
        self.place(self.special_base(private_host), private, PRIVATE_PREFIX)
        # An orphan page: served, but linked from nowhere.
        orphan_host = self.pick(hosts)
        orphan = self.page(orphan_host, f"/drafts/{self.token()}.html", "draft", normal=False)
        self.place(self.special_base(orphan_host), orphan, "/drafts/")
        # A redirect from a linked path to a page that is linked from nowhere else.
        moved_host = self.pick(hosts)
        moved = self.page(moved_host, f"/stories/{self.token()}.html", "latest", normal=False)
        self.redirects.append(Redirect(moved_host, "/latest/", moved.path))
        self.link(self.drafts[(moved_host, "/")], "/latest/")
        self.link(moved, "/")
        self.place(self.special_base(moved_host), moved, "/stories/")
        # One image reference to a missing file (a 404 the function reports).
        broken_host = self.pick(hosts)
        pages = self.normal_pages(broken_host)
        missing = f"/media/{self.token()}.jpg"
        pages[0].images.append(ImageRef("img", missing, missing))

    def special_base(self, host: str) -> str:
        """A pool image for a special placement on `host`: known to the nodes that crawl the
        site (so a crawler that wrongly counted it would show), and still on at most four
        hosters."""
        hoster = self.site_hoster(host)
        crawling = self.crawlers[host]
        hosters_of: dict[str, set[str]] = {pool_id: set() for pool_id in self.known}
        for placement in self.placements:
            if placement.base_id is not None:
                hosters_of[placement.base_id].add(self.site_hoster(placement.site))
        candidates = [
            pool_id
            for pool_id in sorted(self.known)
            if self.membership[pool_id] & crawling and len(hosters_of[pool_id] | {hoster}) <= 4
        ]
        if not candidates:
            raise WorldError(f"no pool image fits a special placement on {host}")
        return min(
            candidates,
            key=lambda p: (-len(self.membership[p] & crawling), len(hosters_of[p] | {hoster})),
        )

    def site_hoster(self, host: str) -> str:
        return next(s.hoster for s in self.sites if s.host == host)

    def assign_crawlers(self) -> None:
        """Which nodes crawl which site: the node of the hoster's region first ("national
        focus"), often a second node, sometimes all three; every site at least one."""
        hoster_country = {h.key: h.country for h in HOSTERS}
        for site in self.sites:
            nodes = {_PRIMARY_NODE[hoster_country[site.hoster]]}
            roll = self.rng.random()
            if roll < 0.15:
                nodes = {0, 1, 2}
            elif roll < 0.5:
                nodes.add(int(self.rng.integers(0, 3)))
            self.crawlers[site.host] = nodes
        if not any(len(n) == 3 for n in self.crawlers.values()):
            self.crawlers[self.sites[0].host] = {0, 1, 2}

    def make_videos(self) -> None:
        """The listed videos (each known to some nodes), their copies on pages of the hosters
        that never remove anything, one still of every other listed video, and benign videos
        anywhere. Each listed video's exact copy is served under its own id."""
        rng = np.random.default_rng([self.seed, 13])
        listed = videomaker.listed_videos(self.seed)
        self.check_images_far_from(listed)
        keep = [h.key for h in HOSTERS if REMOVES_AFTER.get(h.key) is None]
        forms = iter(itertools.cycle(VIDEO_FORMS))
        for n, video in enumerate(listed):
            self.videos[video.video_id] = video.data
            self.images[video.video_id] = video.data
            self.membership[video.video_id] = set(_VIDEO_MEMBERSHIP[n % len(_VIDEO_MEMBERSHIP)])
            copies: list[tuple[str, str | None]] = [(KIND_VIDEO_EXACT, None)]
            copies += [(KIND_VIDEO_COPY, kind) for kind in _VIDEO_COPIES[n % len(_VIDEO_COPIES)]]
            if n % 2 == 0:
                copies.append((KIND_VIDEO_STILL, None))
            for k, (kind, variant) in enumerate(copies):
                if kind == KIND_VIDEO_EXACT:
                    image_id, data = video.video_id, video.data
                elif kind == KIND_VIDEO_STILL:
                    data = videomaker.make_still(video, self.known_pdq.values())
                    image_id = f"{video.video_id}-still"
                else:
                    assert variant is not None
                    data = videomaker.make_copy(video, variant)
                    image_id = f"{video.video_id}-{variant}"
                self.images[image_id] = data
                draft = self.video_page(video.video_id, keep[(n + k) % len(keep)], rng)
                path = f"{self.pick(_VIDEO_DIRS)}{self.token()}.{media_extension(data)}"
                self.placements.append(
                    Placement(path, draft.site, image_id, kind, video.video_id, variant)
                )
                form = self.pick(IMAGE_FORMS) if kind == KIND_VIDEO_STILL else next(forms)
                self.refer(draft, path, form)
        hosts = [s.host for s in self.sites]
        for i, data in enumerate(videomaker.benign_videos(self.seed, listed)):
            image_id = f"vid-{i:02d}"
            self.images[image_id] = data
            pages = self.normal_pages(self.pick(hosts))
            draft = pages[int(rng.integers(0, len(pages)))]
            path = f"{self.pick(_VIDEO_DIRS)}{self.token()}.{media_extension(data)}"
            self.placements.append(Placement(path, draft.site, image_id, KIND_VIDEO_BENIGN))
            self.refer(draft, path, next(forms))

    def video_page(self, video_id: str, hoster: str, rng: np.random.Generator) -> _Draft:
        """A normal page on a site of `hoster` that a node listing the video crawls."""
        hosts = [
            s.host
            for s in self.sites
            if s.hoster == hoster and self.crawlers[s.host] & self.membership[video_id]
        ]
        if not hosts:  # no crawler of this hoster lists it: any of its sites (not matched)
            hosts = [s.host for s in self.sites if s.hoster == hoster]
        pages = self.normal_pages(hosts[int(rng.integers(0, len(hosts)))])
        return pages[int(rng.integers(0, len(pages)))]

    def check_images_far_from(self, listed: Sequence[videomaker.ListedVideo]) -> None:
        """No placed image may be a still of a listed video by accident (vpdq-frame)."""
        for placement in self.placements:
            data = self.images[placement.image_id]
            pdq, quality = imagegen.pdq_of(data)
            if quality >= videomaker.MIN_QUALITY and not videomaker.far_from_videos(
                f"{pdq:064x}", listed
            ):
                raise WorldError(f"image {placement.image_id} is near a frame of a listed video")

    def make_nodes(self) -> list[NodePlan]:
        plans = []
        for index, (node_id, country) in enumerate(NODES):
            seeds = tuple(s.host for s in self.sites if index in self.crawlers[s.host])
            known = frozenset(p for p, members in self.membership.items() if index in members)
            plans.append(NodePlan(node_id, country, seeds, known))
        return plans
