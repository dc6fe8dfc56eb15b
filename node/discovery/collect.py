"""What a cycle saw around its matches, kept until the cycle ends (``CandidateCollector``).

node.cycle feeds the collector every hashed item once its batch is recorded (``add``): the
image's page, URL directory and host, whether it matched, and, for an unmatched image, what a
candidate row needs (URL, page, attribution, hashes, size; never its bytes). A match may come
before or after its unmatched neighbours, so nothing is scored while the cycle runs:
``finish`` (called by node.cycle in the transaction that closes the cycle) scores every kept
image (node.discovery.score), drops those on the negative list (node.discovery.negative) and
writes the candidates (node.discovery.persist).

Counted per page, per (host, URL directory) and per host: hashed items and matched items.
Videos count as items beside images (a matched video is known material), but are never kept
as candidates (issue 14 covers images only). An item is counted on the page where the crawler
first found it (each URL is analysed once per cycle).

Memory bound: the unmatched images are kept in groups (page, image host), at most
``max_kept`` images (MAX_KEPT by default, about 0.4 KB each: ~80 MB at the bound). Past it,
whole groups are dropped, oldest first, first those with nothing known on their page or host
yet (they can still become candidates only if a match on their host comes later), then any;
the images dropped are counted (``dropped``). The counters themselves are not bounded: a few
integers per page, directory and host, as the crawler keeps for every URL it has seen.

A cycle killed before it ends loses its collector: its candidates are written at the end only,
so a resumed cycle finds candidates only among the images it analyses after the restart.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from node.attribution.attributor import Attribution
from node.config import DiscoverySettings
from node.crawl.crawler import ImageFound
from node.discovery.negative import NegativeIndex
from node.discovery.persist import DIGESTS, Found, Limits, Written, write
from node.discovery.score import Context, context_points
from protocol.models import HashResult

logger = logging.getLogger(__name__)

MAX_KEPT = 200_000  # unmatched images kept per cycle (see the module doc)
_EVICT_TO = 0.9  # past the bound, drop groups until this share of it is left


class _Kept:
    """One unmatched image, compact: about 0.4 KB with its strings."""

    __slots__ = (
        "digests",
        "directory",
        "final_url",
        "format",
        "height",
        "nbytes",
        "page",
        "quality",
        "server_ip",
        "url",
        "where",
        "width",
    )

    def __init__(
        self,
        url: str,
        final_url: str | None,
        page: str,
        directory: str | None,
        server_ip: str | None,
        where: tuple[str, int, str],
        digests: bytes,
        result: HashResult,
    ) -> None:
        self.url = url
        self.final_url = final_url  # None: the same as url
        self.page = page
        self.directory = directory
        self.server_ip = server_ip
        self.where = where
        self.digests = digests
        self.quality = result.hashes.pdq_quality
        self.width = result.width
        self.height = result.height
        self.format = result.format
        self.nbytes = result.bytes


@dataclass(frozen=True)
class DiscoveryOutcome:
    """What one cycle's discovery did (logged; ``created`` goes on the cycle row)."""

    created: int = 0  # new candidate rows
    seen_again: int = 0  # existing candidates found again
    scored: int = 0  # unmatched images with something known beside them
    negative: int = 0  # unmatched images on the negative list: never candidates
    not_kept: int = 0  # below min_score (with their near-duplicates)
    cut: int = 0  # left out by max_per_cycle
    dropped: int = 0  # unmatched images dropped by the memory bound
    duplicates: int = 0  # other URLs of the same image


def directory_of(url: str) -> str | None:
    """``http://host/album/`` for ``http://host/album/1.jpg?x=1``; None for a data: URI.

    String slicing, not urlsplit: it runs for every hashed item (the URL is the crawler's
    normalised absolute URL)."""
    if url[:5].lower() == "data:":
        return None
    cut = len(url)
    for mark in ("?", "#"):
        at = url.find(mark, 0, cut)
        if at >= 0:
            cut = at
    start = url.find("://")
    slash = url.rfind("/", 0, cut)
    if start < 0 or slash < start + 3:  # no path: the host's root
        return url[:cut] + "/"
    return url[: slash + 1]


class CandidateCollector:
    """Feeds on a cycle's hashed items; ``finish`` writes its candidates (see module doc)."""

    def __init__(
        self,
        settings: DiscoverySettings,
        negative: NegativeIndex | None = None,
        *,
        max_kept: int = MAX_KEPT,
    ) -> None:
        if max_kept < 1:
            raise ValueError(f"max_kept must be at least 1, got {max_kept}")
        self.settings = settings
        self.negative = negative or NegativeIndex([], settings.cluster_max_distance)
        self.max_kept = max_kept
        # [known, items] per page, per directory, per host
        self._pages: dict[str, list[int]] = {}
        self._dirs: dict[str, list[int]] = {}
        self._hosts: dict[str, list[int]] = {}
        # unmatched images per (page, host), oldest group first
        self._groups: dict[tuple[str, str], list[_Kept]] = {}
        self._wheres: dict[tuple[str, int, str], tuple[str, int, str]] = {}
        self.kept = 0
        self.dropped = 0
        self.invalid = 0  # unmatched images whose hashes could not be packed (not kept)

    # ----------------------------------------------------------------- while the cycle runs

    def add(
        self, found: ImageFound, url: str, result: HashResult, matched: bool, where: Attribution
    ) -> None:
        """One hashed item (``url``: its storable URL); ``matched``: it became a sighting."""
        known = 1 if matched else 0
        directory = directory_of(url)
        for table, key in ((self._pages, found.page_url), (self._hosts, found.host)):
            counts = table.get(key)
            if counts is None:
                table[key] = [known, 1]
            else:
                counts[0] += known
                counts[1] += 1
        if directory is not None:
            counts = self._dirs.get(directory)
            if counts is None:
                self._dirs[directory] = [known, 1]
            else:
                counts[0] += known
                counts[1] += 1
        if matched or result.video is not None:
            return
        h = result.hashes
        try:
            digests = bytes.fromhex(h.sha256 + h.sha1 + h.md5 + h.pdq)
        except ValueError:
            digests = b""
        if len(digests) != DIGESTS:
            self.invalid += 1
            return
        place = (where.country, where.asn, where.hoster)
        place = self._wheres.setdefault(place, place)
        final = None if result.final_url == url else result.final_url
        kept = _Kept(
            url, final, found.page_url, directory, result.server_ip, place, digests, result
        )
        group = self._groups.get((found.page_url, found.host))
        if group is None:
            self._groups[(found.page_url, found.host)] = [kept]
        else:
            group.append(kept)
        self.kept += 1
        if self.kept > self.max_kept:
            self._evict()

    def _evict(self) -> None:
        """Drop whole groups, oldest first, cold ones (nothing known on page or host) first."""
        target = int(self.max_kept * _EVICT_TO)
        for cold_only in (True, False):
            for key in list(self._groups):
                if self.kept <= target:
                    return
                page, host = key
                if cold_only and (self._pages[page][0] or self._hosts[host][0]):
                    continue
                group = self._groups.pop(key)
                self.kept -= len(group)
                self.dropped += len(group)

    # ----------------------------------------------------------------- when it ends

    def found(self) -> tuple[list[Found], int]:
        """Every kept image with something known beside it, or that may be a near-duplicate of
        one (all kept images: clustering decides), with its context's reasons; and how many
        had something known beside them."""
        out: list[Found] = []
        near_known = 0
        min_pixels = self.settings.min_pixels
        for (page, host), group in self._groups.items():
            page_counts = self._pages[page]
            host_counts = self._hosts[host]
            for k in group:
                dir_counts = self._dirs.get(k.directory, [0, 0]) if k.directory else [0, 0]
                context = Context(
                    page_known=page_counts[0],
                    page_items=page_counts[1],
                    directory_known=dir_counts[0],
                    directory_items=dir_counts[1],
                    site_known=host_counts[0],
                    site_items=host_counts[1],
                    width=k.width,
                    height=k.height,
                    pdq_quality=k.quality,
                    page=page,
                    directory=k.directory or "",
                    host=host,
                )
                points = context_points(context, min_pixels)
                near_known += points > 0
                out.append(
                    Found(
                        url=k.url,
                        final_url=k.final_url or k.url,
                        page_url=page,
                        host=host,
                        server_ip=k.server_ip,
                        country=k.where[0],
                        asn=k.where[1],
                        hoster=k.where[2],
                        digests=k.digests,
                        pdq_quality=k.quality,
                        width=k.width,
                        height=k.height,
                        format=k.format,
                        bytes=k.nbytes,
                        context=context,
                        min_pixels=min_pixels,
                        points=points,
                    )
                )
        return out, near_known

    def finish(self, session: Session, cycle_id: int, now: datetime) -> DiscoveryOutcome:
        """Score, filter and write this cycle's candidates in ``session``'s transaction."""
        found, near_known = self.found()
        negative = self.negative.suppressed_many(found)
        allowed: Sequence[Found] = [f for f, neg in zip(found, negative, strict=True) if not neg]
        s = self.settings
        written: Written = write(
            session,
            cycle_id,
            now,
            allowed,
            Limits(s.min_score, s.max_per_cycle, s.cluster_max_distance),
        )
        outcome = DiscoveryOutcome(
            created=written.created,
            seen_again=written.seen_again,
            scored=near_known,
            negative=sum(negative),
            not_kept=written.not_kept,
            cut=written.cut,
            dropped=self.dropped,
            duplicates=written.duplicates,
        )
        logger.info("cycle %s discovery: %s", cycle_id, outcome)
        return outcome
