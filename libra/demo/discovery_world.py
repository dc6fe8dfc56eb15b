"""A synthetic web for discovery (issue 14): new material beside known material, with its truth.

Built deterministically from a seed, in memory, from `imagegen`'s benign abstract pictures, as a
`libra.demo.world.World` (so `libra.demo.web.SyntheticWeb` serves it on loopback unchanged) plus
the truth of every image URL:

- KNOWN: copies (exact bytes or a mild variant) of the items on the node's list.
- NEW: items unknown to the list that sit *beside* known ones: on a page that shows a known
  item ("page"), or in the album directory of one on another page of the album ("album"). Some
  new items also appear as near-duplicates (resized or re-encoded copies: the same item).
- DISTRACTOR: benign images where no known item is: other pages of the sites that hold known
  items ("site"), on half of those sites some in the upload directory shared with the pages
  that show known items, as blogs do ("directory"), and whole sites without any known item
  ("elsewhere").
- DECORATION: logos, icons and small thumbnails on the pages (those with known items too):
  true negatives that scoring should rank low by their size.

`DiscoveryWorld.check_queue` checks a node's candidates against the truth: precision and
recall of the clusters an analyst would review down to a threshold, reviews per confirmed
item, and the guarantees a node must keep whatever its scores (no candidate the world does not
serve, no known item, nothing from a site without known items). benchmarks/bench_discovery.py
and tests/demo/test_discovery_world.py use it; the demo can too.

Guarantees (checked with PDQ while building, as `imagegen.pdq_of` computes it, which is what the
function computes): listed items are far apart and of high quality; nothing unlisted is within
UNLISTED_MIN_DISTANCE of a listed item (so nothing but a KNOWN copy can match); distinct new
items are far apart, and far from every distractor and decoration (so only copies of one new
item can cluster with it);
each near-duplicate is within NEAR_DUPLICATE_MAX_DISTANCE of its item.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

import numpy as np

from libra.demo import imagegen
from libra.demo.defaults import DEFAULT_SEED
from libra.demo.world import (
    HOSTERS,
    KIND_BENIGN,
    KIND_EXACT,
    KIND_VARIANT,
    POOL_MIN_DISTANCE,
    POOL_MIN_QUALITY,
    VARIANT_MIN_QUALITY,
    ImageRef,
    Link,
    NodePlan,
    Page,
    Placement,
    Site,
    World,
    WorldError,
)
from worker_function.hashing import hash_image

# The truth's kinds of an image URL.
KIND_KNOWN: Final = "known"
KIND_NEW: Final = "new"
KIND_DISTRACTOR: Final = "distractor"
KIND_DECORATION: Final = "decoration"
TRUTH_KINDS: Final = (KIND_KNOWN, KIND_NEW, KIND_DISTRACTOR, KIND_DECORATION)

# Where an image sits (ImageTruth.setting).
AT_PAGE: Final = "page"  # on a page that shows a known item
AT_ALBUM: Final = "album"  # in an album directory with known items, on another page of the album
# On a page without a known item, in a directory that holds known items (a blog's shared
# upload directory): for the URL, the same place as AT_ALBUM.
AT_DIRECTORY: Final = "directory"
AT_SITE: Final = "site"  # on a site with known items, on a page without one, another directory
AT_ELSEWHERE: Final = "elsewhere"  # on a site without any known item
SETTINGS: Final = (AT_PAGE, AT_ALBUM, AT_DIRECTORY, AT_SITE, AT_ELSEWHERE)

NODE_ID: Final = "node-discovery"
NODE_COUNTRY: Final = "DE"

# PDQ guarantees (see the module docstring). The node matches PDQ within 31 and clusters
# candidates within 16 (settings.discovery.cluster_max_distance): these leave a wide margin.
UNLISTED_MIN_DISTANCE: Final = 64
NEW_MIN_DISTANCE: Final = 64  # between two new items, and between a new item and a distractor
NEAR_DUPLICATE_MAX_DISTANCE: Final = 12
NEW_MIN_QUALITY: Final = 70
# Decoration stays below the node's default discovery.min_pixels (4096 = 64 x 64).
DECORATION_MAX_PIXELS: Final = 4095

_ATTEMPTS: Final = 60
# Target sites (with known items) and distractor-only sites, on the lab's first five hosters.
_HOSTERS: Final = HOSTERS[:5]
# Site names never used by libra.demo.world (its prefixes: shop, blog, forum, pics, news,
# gallery, photos, board), so both worlds can share one lab DNS.
_TARGET_PREFIXES: Final = ("snaps", "albums", "imagebox", "shots", "camroll", "picshare")
_DISTRACTOR_PREFIXES: Final = ("market", "daily", "travel", "garden", "recipes", "sport")
_ALBUM_WORDS: Final = ("summer", "harbor", "meadow", "atlas", "ember", "willow", "orbit", "quiet")


@dataclass(frozen=True)
class ImageTruth:
    """What one image URL is. ``item`` names the picture: copies of one picture (a known item's
    exact and variant copies, a new item's near-duplicates) share it."""

    url: str  # http://<host><path>, without the port
    site: str
    path: str
    kind: str  # one of TRUTH_KINDS
    item: str  # "known-03", "new-017", "distractor-0042", "decoration-007"
    setting: str  # one of SETTINGS
    copy: bool  # resized or re-encoded bytes of the item (a known variant, a new near-duplicate)
    width: int
    height: int
    pages: tuple[str, ...]  # paths of the pages that show it


@dataclass(frozen=True)
class DiscoveryWorld:
    """The served world and the truth of every image URL in it."""

    world: World
    truth: Mapping[str, ImageTruth]  # by ImageTruth.url
    target_sites: tuple[str, ...]  # sites with known items
    distractor_sites: tuple[str, ...]  # sites without any
    seed: int
    scale: float

    @classmethod
    def build(cls, seed: int = DEFAULT_SEED, scale: float = 1.0) -> DiscoveryWorld:
        """The discovery world for ``seed``; ``scale`` (0.1-4; 1 = about 250 image URLs on 7
        sites) grows or shrinks the sites, pages and items."""
        if not 0.1 <= scale <= 4.0:
            raise WorldError(f"scale {scale} is outside 0.1-4")
        return _Builder(seed, scale).build()

    @property
    def node_id(self) -> str:
        return self.world.nodes[0].node_id

    def listed_images(self) -> list[bytes]:
        """The original bytes of the items on the node's list (sorted by item id)."""
        return self.world.list_images(self.node_id)

    def icse_list(self) -> str:
        """The node's list as an agency would write it: one INTERPOL ICSE CSV row per listed
        item with its SHA-256 and PDQ, hashed by the function's own code (`libra node list
        import --format icse`). Hashes only: no image is written anywhere."""
        lines = ["SHA256;PDQ;Image ID"]
        ids = sorted(self.world.nodes[0].known_ids)
        for item, data in zip(ids, self.listed_images(), strict=True):
            hashes = hash_image(data).hashes
            lines.append(f"{hashes.sha256};{hashes.pdq};{item}")
        return "\n".join(lines) + "\n"

    def seed_urls(self, port: int | None = None) -> list[str]:
        return self.world.seed_urls(self.node_id, port)

    def of(self, url: str) -> ImageTruth | None:
        """The truth of an image URL as a node records it (with or without the port)."""
        return self.truth.get(without_port(url))

    def images(self, kind: str) -> list[ImageTruth]:
        if kind not in TRUTH_KINDS:
            raise WorldError(f"unknown truth kind {kind!r}")
        return [t for t in self.truth.values() if t.kind == kind]

    def items(self, kind: str) -> frozenset[str]:
        """Distinct items of ``kind`` (copies counted once)."""
        return frozenset(t.item for t in self.images(kind))

    def stats(self) -> dict[str, int]:
        out = {
            "sites": len(self.world.sites),
            "target_sites": len(self.target_sites),
            "distractor_sites": len(self.distractor_sites),
            "pages": len(self.world.pages),
            "image_urls": len(self.truth),
        }
        for kind in TRUTH_KINDS:
            out[f"{kind}_urls"] = len(self.images(kind))
            out[f"{kind}_items"] = len(self.items(kind))
        out["new_copies"] = sum(t.copy for t in self.images(KIND_NEW))
        return out

    def check_queue(self, rows: Iterable[Mapping[str, Any]], threshold: float) -> QueueCheck:
        """A node's candidates against the truth, as an analyst reviewing the queue down to
        ``threshold`` would meet them. ``rows``: candidates with ``id``, ``url``, ``score`` and
        ``cluster_id`` (None on a representative), every member included: what
        node.discovery.queue.list_candidates gives (with ``members``), or `libra node
        candidates list --json --members` (pending ones; ``--state all`` after verdicts
        counts the decided clusters too).

        A cluster counts when its representative scores at least ``threshold``; it is true
        when its representative is a new item. Recall is over the world's distinct new items
        (near-duplicates counted once), found when any member of a counted cluster shows one.
        """
        clusters: dict[int, list[str]] = defaultdict(list)  # representative id -> URLs
        heads: dict[int, tuple[float, str]] = {}
        for row in rows:
            try:
                cid, url, score = int(row["id"]), str(row["url"]), float(row["score"])
                head = row["cluster_id"]
            except (KeyError, TypeError, ValueError) as exc:
                raise WorldError(
                    f"a candidate row needs id, url, score, cluster_id: {exc}"
                ) from None
            clusters[cid if head is None else int(head)].append(url)
            if head is None:
                heads[cid] = (score, url)
        missing = sorted(set(clusters) - set(heads))
        if missing:
            raise WorldError(f"clusters without their representative among the rows: {missing}")
        foreign: list[str] = []
        known: list[str] = []
        elsewhere: list[str] = []
        true = merged = 0
        false_by_place: Counter[str] = Counter()
        found_in: Counter[str] = Counter()
        queued = 0
        for head, members in clusters.items():
            truths = []
            for url in members:
                truth = self.of(url)
                if truth is None:
                    foreign.append(url)
                    continue
                truths.append(truth)
                if truth.kind == KIND_KNOWN:
                    known.append(url)
                if truth.site in self.distractor_sites:
                    elsewhere.append(url)
            score, head_url = heads[head]
            if score < threshold:
                continue
            queued += 1
            representative = self.of(head_url)
            if representative is not None and representative.kind == KIND_NEW:
                true += 1
            else:
                kind = "foreign" if representative is None else representative.kind
                setting = "" if representative is None else f"/{representative.setting}"
                false_by_place[kind + setting] += 1
            items = {t.item for t in truths}
            merged += len(items) > 1
            for item in {t.item for t in truths if t.kind == KIND_NEW}:
                found_in[item] += 1
        new_items = self.items(KIND_NEW)
        originals = [t for t in self.images(KIND_NEW) if not t.copy]
        by_setting = {}
        for setting in (AT_PAGE, AT_ALBUM):
            of_setting = {t.item for t in originals if t.setting == setting}
            by_setting[setting] = (len(of_setting & set(found_in)), len(of_setting))
        found = len(found_in)
        return QueueCheck(
            threshold=threshold,
            clusters=queued,
            true_clusters=true,
            new_found=found,
            new_total=len(new_items),
            split_items=sum(1 for n in found_in.values() if n > 1),
            merged_clusters=merged,
            false_by_place=dict(sorted(false_by_place.items())),
            found_by_setting=by_setting,
            foreign=tuple(sorted(foreign)),
            known=tuple(sorted(known)),
            from_distractor_sites=tuple(sorted(elsewhere)),
        )


@dataclass(frozen=True)
class QueueCheck:
    """What ``DiscoveryWorld.check_queue`` found."""

    threshold: float
    clusters: int  # representatives scoring >= threshold: the reviews an analyst makes
    true_clusters: int  # whose representative is a new item
    new_found: int  # distinct new items in those clusters
    new_total: int  # distinct new items in the world
    split_items: int  # new items spread over several counted clusters (reviewed twice)
    merged_clusters: int  # counted clusters holding more than one item (decided as one)
    false_by_place: Mapping[str, int]  # "kind/setting" of false representatives -> clusters
    found_by_setting: Mapping[str, tuple[int, int]]  # setting -> (new items found, in world)
    # Broken guarantees, whatever the threshold (each must be empty): candidates the world
    # does not serve, known items (they match, so never candidates), and candidates from the
    # sites without any known item.
    foreign: tuple[str, ...] = ()
    known: tuple[str, ...] = ()
    from_distractor_sites: tuple[str, ...] = ()

    @property
    def precision(self) -> float:
        return self.true_clusters / self.clusters if self.clusters else 1.0

    @property
    def recall(self) -> float:
        return self.new_found / self.new_total if self.new_total else 1.0

    @property
    def reviews_per_confirmed(self) -> float | None:
        """Clusters reviewed per new item confirmed (None: none confirmed)."""
        return self.clusters / self.new_found if self.new_found else None

    def problems(self) -> list[str]:
        """The broken guarantees, one line each (empty when the node behaved)."""
        out = []
        for what, urls in (
            ("candidates the world does not serve", self.foreign),
            ("known items as candidates", self.known),
            ("candidates on sites without known items", self.from_distractor_sites),
        ):
            if urls:
                out.append(f"{len(urls)} {what}, e.g. {urls[0]}")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "clusters": self.clusters,
            "true_clusters": self.true_clusters,
            "precision": round(self.precision, 4),
            "new_found": self.new_found,
            "new_total": self.new_total,
            "recall": round(self.recall, 4),
            "reviews_per_confirmed": (
                None if self.reviews_per_confirmed is None else round(self.reviews_per_confirmed, 4)
            ),
            "split_items": self.split_items,
            "merged_clusters": self.merged_clusters,
            "false_by_place": dict(self.false_by_place),
            "found_by_setting": {k: list(v) for k, v in self.found_by_setting.items()},
            "problems": self.problems(),
        }


def without_port(url: str) -> str:
    """``http://host:port/path`` -> ``http://host/path`` (the truth's key; query dropped)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return f"{parts.scheme}://{host}{parts.path or '/'}"


# --- the builder ----------------------------------------------------------------------------


@dataclass
class _Draft:
    site: str
    path: str
    title: str
    links: list[Link] = field(default_factory=list)
    images: list[str] = field(default_factory=list)  # image paths, shown with <img src>

    def freeze(self) -> Page:
        refs = tuple(ImageRef("img", path, path) for path in dict.fromkeys(self.images))
        return Page(self.site, self.path, self.title, tuple(self.links), refs)


@dataclass
class _Image:
    """One image URL while building: its placement and its truth, minus the pages."""

    site: str
    path: str
    image_id: str
    world_kind: str  # the World's kind (KIND_EXACT / KIND_VARIANT / KIND_BENIGN)
    base_id: str | None
    variant: str | None
    kind: str
    item: str
    setting: str
    copy: bool
    width: int
    height: int


class _Builder:
    def __init__(self, seed: int, scale: float) -> None:
        self.seed = seed
        self.scale = scale
        self.rng = np.random.default_rng([seed, 14, 0])
        self.tokens: set[str] = set()
        self.sites: list[Site] = []
        self.drafts: dict[tuple[str, str], _Draft] = {}
        self.images: dict[str, bytes] = {}  # image id -> bytes
        self.placed: dict[tuple[str, str], _Image] = {}
        self.known: dict[str, bytes] = {}
        self.known_pdq: dict[str, int] = {}
        self.new_pdq: dict[str, int] = {}  # new item -> PDQ of its first placement
        self.distractor_pdq: list[int] = []
        self.counter = {KIND_NEW: 0, KIND_DISTRACTOR: 0, KIND_DECORATION: 0}
        self.known_uses: dict[str, int] = {}

    def count(self, base: float, least: int) -> int:
        return max(least, round(base * self.scale))

    def token(self) -> str:
        while True:
            text = f"{int(self.rng.integers(0, 2**40)):010x}"
            if text not in self.tokens:
                self.tokens.add(text)
                return text

    def between(self, low: int, high: int) -> int:
        return int(self.rng.integers(low, high + 1))

    # -- steps --

    def build(self) -> DiscoveryWorld:
        self.make_known()
        targets, distractors = self.make_sites()
        for host in targets:
            self.make_target_site(host)
        for host in distractors:
            self.make_distractor_site(host)
        for host in (*targets, *distractors):
            self.decorate_site(host)
        known_ids = frozenset(self.known)
        world = World(
            hosters=_HOSTERS,
            sites=self.sites,
            pages=[d.freeze() for d in self.drafts.values()],
            placements=[
                Placement(i.path, i.site, i.image_id, i.world_kind, i.base_id, i.variant)
                for i in self.placed.values()
            ],
            nodes=[NodePlan(NODE_ID, NODE_COUNTRY, tuple(s.host for s in self.sites), known_ids)],
            images=self.images,
            known=self.known,
            seed=self.seed,
            scale=self.scale,
        )
        pages_of: dict[tuple[str, str], list[str]] = {}
        for draft in self.drafts.values():
            for path in dict.fromkeys(draft.images):
                pages_of.setdefault((draft.site, path), []).append(draft.path)
        known_pages = {
            (d.site, d.path)
            for d in self.drafts.values()
            if any(self.placed[(d.site, p)].kind == KIND_KNOWN for p in d.images)
        }
        targets_set = set(targets)
        truth = {}
        for key, image in self.placed.items():
            pages = tuple(sorted(pages_of.get(key, ())))
            if not pages:
                raise WorldError(f"{image.site}{image.path} is shown on no page")
            setting = image.setting
            if image.kind == KIND_DECORATION:
                if any((image.site, page) in known_pages for page in pages):
                    setting = AT_PAGE
                else:
                    setting = AT_SITE if image.site in targets_set else AT_ELSEWHERE
            url = World.url(image.site, image.path)
            truth[url] = ImageTruth(
                url=url,
                site=image.site,
                path=image.path,
                kind=image.kind,
                item=image.item,
                setting=setting,
                copy=image.copy,
                width=image.width,
                height=image.height,
                pages=pages,
            )
        return DiscoveryWorld(world, truth, targets, distractors, self.seed, self.scale)

    def make_known(self) -> None:
        """The listed items: high quality, pairwise far apart in PDQ (like world.py's pool)."""
        for i in range(self.count(12, 3)):
            item = f"known-{i:02d}"
            for attempt in range(_ATTEMPTS):
                img_rng = np.random.default_rng([self.seed, 14, 1, i, attempt])
                width, height = (int(v) for v in img_rng.integers(300, 481, size=2))
                fmt = imagegen.JPEG if img_rng.random() < 0.6 else imagegen.PNG
                picture = imagegen.generate_image((self.seed, 14, 1, i, attempt), width, height)
                data = imagegen.encode(picture, fmt, quality=92)
                value, quality = imagegen.pdq_of(data)
                if quality >= POOL_MIN_QUALITY and all(
                    (value ^ other).bit_count() >= POOL_MIN_DISTANCE
                    for other in self.known_pdq.values()
                ):
                    break
            else:
                raise WorldError(f"could not make listed item {item} far from the others")
            self.known[item] = data
            self.known_pdq[item] = value
            self.known_uses[item] = 0

    def make_sites(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        targets = self.count(4, 1)
        distractors = self.count(3, 1)
        hosters = [h.key for h in _HOSTERS]
        made: list[str] = []
        for n in range(targets + distractors):
            if n < targets:
                prefix = _TARGET_PREFIXES[n % len(_TARGET_PREFIXES)]
            else:
                prefix = _DISTRACTOR_PREFIXES[(n - targets) % len(_DISTRACTOR_PREFIXES)]
            # Round-robin over hosters, so target and distractor sites share hosters (a hoster
            # is never a signal: the same IP serves sites with and without known items).
            hoster = hosters[n % len(hosters)]
            host = f"{prefix}{n + 1}.{hoster}.test"
            self.sites.append(Site(host, hoster, "User-agent: *\nDisallow:\n"))
            made.append(host)
        return tuple(made[:targets]), tuple(made[targets:])

    # -- pages --

    def page(self, site: str, path: str, title: str, parent: _Draft | None) -> _Draft:
        draft = _Draft(site, path, title)
        self.drafts[(site, path)] = draft
        if parent is not None:
            parent.links.append(Link(path, path))
            draft.links.append(Link(parent.path, parent.path))
        return draft

    def make_target_site(self, host: str) -> None:
        """Albums whose first page shows known and new items and whose second page shows more
        new items in the same directory; posts with a known item and new items; notes with
        distractors (in the posts' upload directory on half the sites); a shop with
        distractors."""
        home = self.page(host, "/", f"{host} home", None)
        albums = self.page(host, "/albums/", "albums", home)
        words = list(_ALBUM_WORDS)
        for a in range(self.count(2, 1)):
            name = f"{words[(a + len(self.drafts)) % len(words)]}-{a + 1}"
            directory = f"/albums/{name}/"
            first = self.page(host, directory, f"album {name}", albums)
            self.show_known(first, directory, self.between(1, 2))
            self.show_new(first, directory, AT_PAGE, self.between(2, 4))
            second = self.page(host, f"{directory}page-2.html", f"album {name}, page 2", first)
            self.show_new(second, directory, AT_ALBUM, self.between(1, 2))
        posts = self.page(host, "/posts/", "posts", home)
        uploads = f"/uploads/2026/{self.between(1, 12):02d}/"
        for p in range(self.count(3, 1)):
            post = self.page(host, f"/posts/entry-{p + 1}.html", f"entry {p + 1}", posts)
            self.show_known(post, uploads, 1)
            self.show_new(post, uploads, AT_PAGE, self.between(1, 2))
        # Half the sites keep every upload in one directory (the notes' pictures beside the
        # posts' known items there), the others one directory per kind of page.
        shared = self.rng.random() < 0.5
        for p in range(self.count(2, 1)):
            post = self.page(host, f"/posts/note-{p + 1}.html", f"note {p + 1}", posts)
            if shared:
                self.show_distractors(post, uploads, AT_DIRECTORY, 2)
            else:
                self.show_distractors(post, "/notes/img/", AT_SITE, 2)
        shop = self.page(host, "/shop/", "shop", home)
        self.show_distractors(shop, "/shop/img/", AT_SITE, self.between(2, 4))
        self.place_near_duplicates(host)

    def make_distractor_site(self, host: str) -> None:
        home = self.page(host, "/", f"{host} home", None)
        albums = self.page(host, "/albums/", "albums", home)
        for a in range(self.count(2, 1)):
            directory = f"/albums/set-{a + 1}/"
            album = self.page(host, directory, f"set {a + 1}", albums)
            self.show_distractors(album, directory, AT_ELSEWHERE, self.between(3, 5))
        posts = self.page(host, "/posts/", "posts", home)
        for p in range(self.count(2, 1)):
            post = self.page(host, f"/posts/entry-{p + 1}.html", f"entry {p + 1}", posts)
            self.show_distractors(post, "/uploads/", AT_ELSEWHERE, 2)

    def decorate_site(self, host: str) -> None:
        """A site-wide logo and icons on every page, and on pages with pictures a few small
        thumbnails of unrelated pictures: all below DECORATION_MAX_PIXELS."""
        drafts = [d for d in self.drafts.values() if d.site == host]
        logo = self.decoration(host, "/static/", (96, 32))
        icons = [self.decoration(host, "/static/icons/", (24, 24)) for _ in range(2)]
        for n, draft in enumerate(drafts):
            has_pictures = bool(draft.images)
            draft.images.insert(0, logo)
            draft.images.append(icons[n % len(icons)])
            if has_pictures:
                for _ in range(self.between(1, 2)):
                    draft.images.append(self.decoration(host, "/thumbs/", (48, 48)))

    # -- placing images --

    def add(self, image: _Image, data: bytes) -> str:
        key = (image.site, image.path)
        if key in self.placed:
            raise WorldError(f"two images at {image.site}{image.path}")
        self.images.setdefault(image.image_id, data)
        self.placed[key] = image
        return image.path

    def file(self, directory: str, data: bytes) -> str:
        return f"{directory}{self.token()}.{imagegen.EXTENSIONS[imagegen.sniff_format(data)]}"

    def show_known(self, draft: _Draft, directory: str, count: int) -> None:
        """``count`` copies of listed items, least used first (each item placed once before
        any is placed twice); about half exact bytes, half variants."""
        for _ in range(count):
            item = min(sorted(self.known), key=lambda k: self.known_uses[k])
            self.known_uses[item] += 1
            if self.rng.random() < 0.5:
                data, image_id, world_kind, variant = self.known[item], item, KIND_EXACT, None
            else:
                data, variant = self.variant_of(self.known[item], self.known_pdq[item], 16)
                image_id, world_kind = f"{item}-v{self.token()}", KIND_VARIANT
            self.show(
                draft,
                directory,
                data,
                image_id,
                KIND_KNOWN,
                item,
                AT_PAGE,
                world_kind=world_kind,
                base_id=item,
                variant=variant,
            )

    def show_new(self, draft: _Draft, directory: str, setting: str, count: int) -> None:
        for _ in range(count):
            n = self.counter[KIND_NEW] = self.counter[KIND_NEW] + 1
            item = f"new-{n:03d}"
            data, value = self.unlisted(
                (14, 2, n), (240, 480), NEW_MIN_QUALITY, self.new_pdq.values(), self.distractor_pdq
            )
            self.new_pdq[item] = value
            self.show(draft, directory, data, item, KIND_NEW, item, setting)

    def show_distractors(self, draft: _Draft, directory: str, setting: str, count: int) -> None:
        for _ in range(count):
            n = self.counter[KIND_DISTRACTOR] = self.counter[KIND_DISTRACTOR] + 1
            item = f"distractor-{n:04d}"
            data, value = self.unlisted((14, 3, n), (160, 400), 50, self.new_pdq.values(), ())
            self.distractor_pdq.append(value)
            self.show(draft, directory, data, item, KIND_DISTRACTOR, item, setting)

    def show(
        self,
        draft: _Draft,
        directory: str,
        data: bytes,
        image_id: str,
        kind: str,
        item: str,
        setting: str,
        *,
        world_kind: str = KIND_BENIGN,
        base_id: str | None = None,
        variant: str | None = None,
        copy: bool | None = None,
    ) -> None:
        """Serve ``data`` under ``directory`` and show it on ``draft``."""
        width, height = _size(data)
        image = _Image(
            site=draft.site,
            path=self.file(directory, data),
            image_id=image_id,
            world_kind=world_kind,
            base_id=base_id,
            variant=variant,
            kind=kind,
            item=item,
            setting=setting,
            copy=variant is not None if copy is None else copy,
            width=width,
            height=height,
        )
        draft.images.append(self.add(image, data))

    def decoration(self, host: str, directory: str, size: tuple[int, int]) -> str:
        n = self.counter[KIND_DECORATION] = self.counter[KIND_DECORATION] + 1
        item = f"decoration-{n:03d}"
        if size[0] * size[1] > DECORATION_MAX_PIXELS:
            raise WorldError(f"decoration {size} is not small")
        # Far from the new items too (all made by now): a decoration never clusters with one.
        data, _value = self.unlisted(
            (14, 4, n), size, 0, self.new_pdq.values(), (), fixed=True, fmt=imagegen.PNG
        )
        path = self.file(directory, data)
        # Its setting follows from the pages that show it, once every page is drawn (build).
        image = _Image(
            site=host,
            path=path,
            image_id=item,
            world_kind=KIND_BENIGN,
            base_id=None,
            variant=None,
            kind=KIND_DECORATION,
            item=item,
            setting="",
            copy=False,
            width=size[0],
            height=size[1],
        )
        return self.add(image, data)

    def place_near_duplicates(self, host: str) -> None:
        """About a third of this site's new items again, resized or re-encoded, on another
        page of the site that shows a known item, in that item's directory (the same item: it
        must cluster with its original)."""
        news = [i for i in self.placed.values() if i.site == host and i.kind == KIND_NEW]
        beside = {
            d.path: [p for p in d.images if self.placed[(host, p)].kind == KIND_KNOWN]
            for d in self.drafts.values()
            if d.site == host
        }
        for original in news:
            if self.rng.random() >= 0.35:
                continue
            pages = [
                self.drafts[(host, path)]
                for path, known in beside.items()
                if known and original.path not in self.drafts[(host, path)].images
            ]
            if not pages:
                continue
            draft = pages[self.between(0, len(pages) - 1)]
            known_path = beside[draft.path][0]
            data, variant = self.variant_of(
                self.images[original.image_id],
                self.new_pdq[original.item],
                NEAR_DUPLICATE_MAX_DISTANCE,
            )
            image_id = f"{original.item}-c{self.token()}"
            directory = known_path[: known_path.rfind("/") + 1]
            self.show(
                draft, directory, data, image_id, KIND_NEW, original.item, AT_PAGE, variant=variant
            )

    # -- pictures --

    def unlisted(
        self,
        key: tuple[int, ...],
        size: tuple[int, int],
        min_quality: int,
        far_from_new: Iterable[int],
        far_from_distractors: Iterable[int],
        *,
        fixed: bool = False,
        fmt: str | None = None,
    ) -> tuple[bytes, int]:
        """A picture nothing listed is near, far from the given new items and distractors;
        (bytes, PDQ). ``size``: (low, high) of each side, or the exact size when ``fixed``."""
        near_new = list(far_from_new)
        near_distractors = list(far_from_distractors)
        for attempt in range(_ATTEMPTS):
            img_rng = np.random.default_rng([self.seed, *key, attempt])
            if fixed:
                width, height = size
            else:
                width, height = (int(v) for v in img_rng.integers(size[0], size[1] + 1, size=2))
            chosen = fmt or (imagegen.JPEG if img_rng.random() < 0.65 else imagegen.PNG)
            picture = imagegen.generate_image((self.seed, *key, attempt), width, height)
            data = imagegen.encode(picture, chosen, quality=int(img_rng.integers(80, 95)))
            value, quality = imagegen.pdq_of(data)
            if (
                quality >= min_quality
                and all(
                    (value ^ k).bit_count() >= UNLISTED_MIN_DISTANCE
                    for k in self.known_pdq.values()
                )
                and all((value ^ v).bit_count() >= NEW_MIN_DISTANCE for v in near_new)
                and all((value ^ v).bit_count() >= NEW_MIN_DISTANCE for v in near_distractors)
            ):
                return data, value
        raise WorldError(f"could not make picture {key} far from the others")

    def variant_of(self, data: bytes, value: int, max_distance: int) -> tuple[bytes, str]:
        """A resized or re-encoded copy within ``max_distance`` of ``value``; (bytes, kind)."""
        kinds = [imagegen.VariantKind.RESIZE, imagegen.VariantKind.CONVERT]
        if imagegen.sniff_format(data) == imagegen.JPEG:
            kinds.append(imagegen.VariantKind.REQUALITY)
        for _ in range(_ATTEMPTS):
            kind = kinds[self.between(0, len(kinds) - 1)]
            copy = imagegen.make_variant(data, kind, self.rng)
            copy_value, quality = imagegen.pdq_of(copy)
            if (
                copy != data
                and (copy_value ^ value).bit_count() <= max_distance
                and quality >= VARIANT_MIN_QUALITY
            ):
                return copy, kind.value
        raise WorldError("could not make a close copy")


def _size(data: bytes) -> tuple[int, int]:
    image, _fmt = imagegen.decode(data)
    return image.size
