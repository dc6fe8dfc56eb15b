"""The crawl frontier: what is queued, what was seen, what is done (per crawl run).

Backends:

- ``MemoryFrontier``: in process only (tests, one-off runs).
- ``SqliteFrontier`` (node/crawl/frontier/sqlite.py): the default; lives in the node's SQLite
  file, so a crawl killed mid-way resumes where it stopped (no page lost, no finished page
  fetched again).
- ``RedisFrontier`` (node/crawl/frontier/redis_streams.py): several crawler workers share one
  frontier, one owner per host at a time (leases reclaimed with XAUTOCLAIM when a worker dies).

A *run* is one crawl over one seed list; the seen-set is per run, so each URL is fetched at most
once per cycle. Keys are ``links.canonical_key`` (w3lib).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

ItemKind = Literal["page", "sitemap"]
# Outcome of a URL that was reached as a redirect target while fetching another one.
REDIRECTED = "redirected"


@dataclass(frozen=True)
class FrontierItem:
    url: str
    depth: int
    site: str  # the seed site it belongs to (host or registered domain)
    hops: int = 0  # consecutive external hops used
    referrer: str = ""
    kind: ItemKind = "page"


@dataclass(frozen=True)
class Served:
    """Who served a fetched page (issue 16): the address and the host of its final URL."""

    ip: str | None
    host: str | None


# An item finished before a restart, its outcome, and who served it (pages only, else None).
Resumed = tuple[FrontierItem, str, Served | None]


@dataclass(frozen=True)
class ImageRecord:
    url: str
    page_url: str
    host: str
    media: str = "image"  # "video" for a video URL (issue 13): a resumed crawl keeps it


class Frontier(Protocol):
    """What the in-process crawler needs from a frontier (all calls are quick and local)."""

    def start(self, run_key: str, seeds: list[FrontierItem]) -> list[FrontierItem]:
        """Begin or resume the run ``run_key``; returns the items still to fetch."""
        ...

    def resumed_images(self) -> list[ImageRecord]:
        """Images found before a restart of this run (re-emitted so none is lost)."""
        ...

    def resumed_outcomes(self) -> list[Resumed]:
        """Items finished before a restart of this run with their outcomes (and who served
        them), so the cycle's page counts and their attribution cover the whole run and not
        only what was fetched after the restart."""
        ...

    def add(self, key: str, item: FrontierItem) -> bool:
        """Queue ``item`` if ``key`` is new in this run; False if already seen."""
        ...

    def seen(self, key: str) -> bool: ...

    def complete(
        self,
        key: str,
        outcome: str,
        new: list[tuple[str, FrontierItem]],
        images: list[ImageRecord],
        aliases: Sequence[str] = (),
        served: Served | None = None,
    ) -> list[FrontierItem]:
        """Atomically: mark ``key`` done with ``outcome`` ("ok", "image" or a failure reason)
        and ``served`` (a fetched page), mark the redirect targets ``aliases`` seen (done,
        ``REDIRECTED``), record ``images`` and queue the new items; returns those that were
        new."""
        ...

    def counts(self) -> dict[str, int]:
        """Items per site in this run (for per-host budgets after a resume)."""
        ...

    def finish(self) -> None: ...

    def close(self) -> None: ...


class MemoryFrontier:
    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._sites: dict[str, int] = {}

    def start(self, run_key: str, seeds: list[FrontierItem]) -> list[FrontierItem]:
        self._seen.clear()
        self._sites.clear()
        return seeds

    def resumed_images(self) -> list[ImageRecord]:
        return []

    def resumed_outcomes(self) -> list[Resumed]:
        return []

    def add(self, key: str, item: FrontierItem) -> bool:
        if key in self._seen:
            return False
        self._seen.add(key)
        self._sites[item.site] = self._sites.get(item.site, 0) + 1
        return True

    def seen(self, key: str) -> bool:
        return key in self._seen

    def complete(
        self,
        key: str,
        outcome: str,
        new: list[tuple[str, FrontierItem]],
        images: list[ImageRecord],
        aliases: Sequence[str] = (),
        served: Served | None = None,
    ) -> list[FrontierItem]:
        self._seen.update(aliases)
        return [item for k, item in new if self.add(k, item)]

    def counts(self) -> dict[str, int]:
        return dict(self._sites)

    def finish(self) -> None:
        pass

    def close(self) -> None:
        pass
