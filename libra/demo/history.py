"""The demo world with history (issue 16): several report periods in which material appears,
hosters remove it after the notices they receive, part of it reappears elsewhere, and a new
hotspot hoster emerges midway.

The static `World` stays as it was; `History.build` extends it with a hotspot hoster and with
placements that come online in later periods (new material, and copies of removed material at
other hosters in another country). What is online in a period follows the timeline and the
hosters' reactions to notices; see `libra.demo.noticesim` for the scripted notice behaviour
the truth is computed from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Final

import numpy as np

from libra.demo import imagegen
from libra.demo.noticesim import NoticeSimulation
from libra.demo.policy import PlacementKey
from libra.demo.world import (
    HOSTERS,
    KIND_BENIGN,
    KIND_EXACT,
    KIND_VARIANT,
    KNOWN_KINDS,
    VARIANT_MAX_DISTANCE,
    VARIANT_MIN_QUALITY,
    VIDEOS_BY_DEFAULT,
    ExpectedMatch,
    Hoster,
    ImageRef,
    Link,
    NodePlan,
    Page,
    Placement,
    Site,
    World,
    WorldError,
)

PERIODS: Final = 6
# The hotspot: a hoster with nothing listed until HOTSPOT_PERIOD, then the most of all.
HOTSPOT: Final = Hoster("hoster-h", "Hoster H Ltd", "127.0.1.8", "MT", 64508)
HOTSPOT_PERIOD: Final = 3
# Share of the base world's listed copies that come online only in a later period.
LATE_SHARE: Final = 0.3
# Share of the items removed in a period whose copies reappear in the next period.
REAPPEAR_SHARE: Final = 0.6
# New listed copies at the hotspot when it emerges (besides the displaced ones).
HOTSPOT_NEW: Final = 8


@dataclass(frozen=True)
class History:
    """The extended world and when each placement comes online (absent from `appear`: 0)."""

    world: World
    appear: Mapping[PlacementKey, int]
    periods: int

    @classmethod
    def build(
        cls, seed: int, scale: float, periods: int = PERIODS, videos: bool = VIDEOS_BY_DEFAULT
    ) -> History:
        if periods < HOTSPOT_PERIOD + 2:
            raise WorldError(f"a history needs at least {HOTSPOT_PERIOD + 2} periods")
        world = World.build(seed=seed, scale=scale, videos=videos)
        return _HistoryBuilder(world, seed, periods).build()

    def online(self, key: PlacementKey, period: int) -> bool:
        """Whether the placement has come online by `period` (removals aside)."""
        return self.appear.get(key, 0) <= period

    def matches(
        self, node_id: str, period: int, removed: Mapping[PlacementKey, int]
    ) -> frozenset[ExpectedMatch]:
        """Image URLs the node should match in `period`: as `World.matches_for`, counting only
        placements online in the period and not removed (a removal at day d is gone from d+1)."""
        world = self.world
        plan = world.node(node_id)
        out: set[ExpectedMatch] = set()
        for host in plan.seeds:
            hoster = world.site(host).hoster
            for page in world.reachable_pages(host):
                for ref in page.images:
                    key = (host, ref.target)
                    placement = world.placement(key)
                    if placement is None or placement.kind not in KNOWN_KINDS:
                        continue
                    if not self.online(key, period) or removed.get(key, period) < period:
                        continue
                    assert placement.base_id is not None
                    if placement.base_id in plan.known_ids:
                        out.add(
                            ExpectedMatch(
                                url=world.url(host, ref.target),
                                site=host,
                                path=ref.target,
                                hoster=hoster,
                                base_id=placement.base_id,
                                kind=placement.kind,
                            )
                        )
        return frozenset(out)

    def hashed(
        self, node_id: str, period: int, removed: Mapping[PlacementKey, int]
    ) -> set[PlacementKey]:
        """The images the node hashes in `period`: every image online and not removed that a
        page reachable from its seeds refers to (each image URL once per crawl)."""
        world = self.world
        out: set[PlacementKey] = set()
        for host in world.node(node_id).seeds:
            for page in world.reachable_pages(host):
                for ref in page.images:
                    key = (host, ref.target)
                    if world.placement(key) is None or not self.online(key, period):
                        continue  # a missing file (404)
                    if removed.get(key, period) >= period:
                        out.add(key)
        return out

    def page_in(self, page: Page, period: int) -> Page:
        """The page as served in `period`: references to images not yet online are left out
        (a removed image stays referenced; the hoster only deleted the file)."""
        refs = tuple(r for r in page.images if self.online((page.site, r.target), period))
        return page if len(refs) == len(page.images) else replace(page, images=refs)


def day_periods(today: datetime, periods: int = PERIODS) -> list[tuple[datetime, datetime]]:
    """The `periods` whole UTC days before the day of `today`, oldest first."""
    midnight = today.replace(hour=0, minute=0, second=0, microsecond=0)
    first = midnight - timedelta(days=periods)
    return [(first + timedelta(days=i), first + timedelta(days=i + 1)) for i in range(periods)]


class _HistoryBuilder:
    def __init__(self, base: World, seed: int, periods: int) -> None:
        self.base = base
        self.periods = periods
        self.rng = np.random.default_rng([seed, 16])
        self.hosters: list[Hoster] = [*base.hosters, HOTSPOT]
        self.sites: list[Site] = list(base.sites)
        self.pages: dict[tuple[str, str], Page] = {(p.site, p.path): p for p in base.pages}
        self.placements: list[Placement] = list(base.placements)
        self.images: dict[str, bytes] = dict(base.images)
        self.appear: dict[PlacementKey, int] = {}
        self.nodes: list[NodePlan] = list(base.nodes)
        self.counter = 0

    def world(self) -> World:
        return World(
            hosters=self.hosters,
            sites=self.sites,
            pages=list(self.pages.values()),
            placements=self.placements,
            nodes=self.nodes,
            images=self.images,
            known=self.base.known,
            redirects=self.base.redirects,
            seed=self.base.seed,
            scale=self.base.scale,
        )

    def build(self) -> History:
        self.make_hotspot()
        self.delay_some()
        sim: NoticeSimulation | None = None
        for period in range(self.periods - 1):
            history = History(self.world(), dict(self.appear), self.periods)
            sim = NoticeSimulation(history)
            sim.run(until=period)
            removed_now = [k for k, day in sim.removed.items() if day == period]
            self.reappear(history, removed_now, period + 1)
            if period + 1 == HOTSPOT_PERIOD:
                self.hotspot_material(history)
        return History(self.world(), dict(self.appear), self.periods)

    # -- the hotspot hoster: benign pages from the start, listed material from midway --

    def make_hotspot(self) -> None:
        benign = [p for p in self.base.placements if p.kind == KIND_BENIGN]
        for n, prefix in enumerate(("cdn", "share")):
            host = f"{prefix}{n + 1}.{HOTSPOT.key}.test"
            self.sites.append(Site(host, HOTSPOT.key))
            articles = [f"/gallery/set-{i + 1}.html" for i in range(3)]
            self.pages[(host, "/")] = Page(
                host, "/", f"{host} home", (Link("/gallery/", "/gallery/"),)
            )
            self.pages[(host, "/gallery/")] = Page(
                host,
                "/gallery/",
                "gallery",
                (Link("/", "/"), *(Link(a, a) for a in articles)),
            )
            for i, path in enumerate(articles):
                filler = benign[(7 * n + i) % len(benign)]
                image_path = f"/files/{n}-{i}.{_ext(self.images[filler.image_id])}"
                self.placements.append(Placement(image_path, host, filler.image_id, KIND_BENIGN))
                self.pages[(host, path)] = Page(
                    host,
                    path,
                    f"set {i + 1}",
                    (Link("/gallery/", "/gallery/"),),
                    (ImageRef("img", image_path, image_path),),
                )
        # Every node has the hotspot among its seeds (a tip-off list shared by the agencies).
        hot = tuple(s.host for s in self.sites if s.hoster == HOTSPOT.key)
        self.nodes = [replace(plan, seeds=(*plan.seeds, *hot)) for plan in self.nodes]

    def hotspot_material(self, history: History) -> None:
        pool = sorted(self.base.known)
        order = self.rng.permutation(len(pool))[:HOTSPOT_NEW]
        for n, i in enumerate(order):
            self.place_copy(history, pool[int(i)], HOTSPOT.key, HOTSPOT_PERIOD, exact=n % 2 == 0)

    # -- material over time --

    def delay_some(self) -> None:
        """A share of the listed copies comes online in periods 1..HOTSPOT_PERIOD."""
        for placement in self.base.placements:
            if placement.kind not in KNOWN_KINDS or self.rng.random() >= LATE_SHARE:
                continue
            later = int(self.rng.integers(1, HOTSPOT_PERIOD + 1))
            self.appear[(placement.site, placement.url_path)] = later

    def reappear(self, history: History, removed: Sequence[PlacementKey], period: int) -> None:
        """Copies of part of what was removed come online in `period` at a hoster in another
        country (the hotspot too, once it is up): exact and re-encoded copies alternately."""
        items: dict[str, str] = {}  # base id -> the country it was removed from
        world = history.world
        for key in sorted(removed):
            placement = world.placement(key)
            assert placement is not None and placement.base_id is not None
            items.setdefault(placement.base_id, world.hoster_of(key[0]).country)
        chosen = [b for b in sorted(items) if self.rng.random() < REAPPEAR_SHARE]
        for n, base_id in enumerate(chosen):
            targets = [
                h.key
                for h in self.hosters
                if h.in_geoip
                and h.country != items[base_id]
                and (h.key != HOTSPOT.key or period >= HOTSPOT_PERIOD)
            ]
            target = targets[int(self.rng.integers(0, len(targets)))]
            self.place_copy(history, base_id, target, period, exact=n % 2 == 0)

    def place_copy(
        self, history: History, base_id: str, hoster: str, period: int, exact: bool
    ) -> None:
        """A copy of pool image `base_id` on a reachable page of a site of `hoster` that a node
        knowing the image crawls (so that the copy is found), online from `period`."""
        world = history.world
        knowing = {p.node_id for p in world.nodes if base_id in p.known_ids}
        hosts = [
            s.host
            for s in self.sites
            if s.hoster == hoster
            and any(s.host in world.node(n).seeds for n in knowing)
            and s.disallow == ()
        ]
        if not hosts:
            return
        host = hosts[int(self.rng.integers(0, len(hosts)))]
        pages = world.reachable_pages(host)
        page = pages[int(self.rng.integers(0, len(pages)))]
        image_id, kind, variant = self.copy_bytes(base_id, exact)
        self.counter += 1
        path = f"/moved/{period}-{self.counter:03d}.{_ext(self.images[image_id])}"
        self.placements.append(Placement(path, host, image_id, kind, base_id, variant))
        self.appear[(host, path)] = period
        current = self.pages[(host, page.path)]
        self.pages[(host, page.path)] = replace(
            current, images=(*current.images, ImageRef("img", path, path))
        )

    def copy_bytes(self, base_id: str, exact: bool) -> tuple[str, str, str | None]:
        original = self.base.known[base_id]
        if exact:
            self.images.setdefault(base_id, original)
            return base_id, KIND_EXACT, None
        target, _ = imagegen.pdq_of(original)
        kinds = [imagegen.VariantKind.RESIZE, imagegen.VariantKind.CONVERT]
        for _ in range(12):
            kind = kinds[int(self.rng.integers(0, len(kinds)))]
            data = imagegen.make_variant(original, kind, self.rng)
            value, quality = imagegen.pdq_of(data)
            if (
                data != original
                and (value ^ target).bit_count() <= VARIANT_MAX_DISTANCE
                and quality >= VARIANT_MIN_QUALITY
            ):
                image_id = f"{base_id}-h{len(self.images):05d}"
                self.images[image_id] = data
                return image_id, KIND_VARIANT, kind.value
        raise WorldError(f"could not make a close variant of {base_id}")


def _ext(data: bytes) -> str:
    return imagegen.EXTENSIONS[imagegen.sniff_format(data)]


__all__ = ["HOSTERS", "HOTSPOT", "History", "day_periods"]
