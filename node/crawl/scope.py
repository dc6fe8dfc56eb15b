"""Crawl scope: which page links a crawl follows, from which seed site, with which budgets.

A seed defines a *site*: its host name (``mode="host"``, the default) or its registered domain
(``mode="domain"``: ``www.a.example.co.uk`` and ``img.a.example.co.uk`` are one site). The
registered domain comes from tldextract's bundled public-suffix snapshot; it never fetches a
list over the network. A host with no known public suffix (``.test``, IP literals,
``localhost``) is its own site. Links leaving the site are followed for at most
``external_hops`` consecutive hops. Include/exclude patterns (Python regexes, ``search``
semantics) apply to every page URL; an exclude wins over an include.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import tldextract

from node.crawl.links import url_host

ScopeMode = Literal["host", "domain"]

# suffix_list_urls=() -> only the snapshot shipped inside the package; cache_dir=None -> no
# files written either.
_EXTRACT = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


@lru_cache(maxsize=65536)
def registered_domain(host: str) -> str:
    """``example.co.uk`` for ``a.b.example.co.uk``; the host itself when it has no known suffix."""
    parts = _EXTRACT(host)
    if not parts.suffix or not parts.domain:
        return host
    return f"{parts.domain}.{parts.suffix}"


class ScopeError(ValueError):
    """An include/exclude pattern is not a valid regular expression."""


@dataclass(frozen=True)
class ScopeRules:
    mode: ScopeMode = "host"
    external_hops: int = 0  # consecutive hops off the seed's site that are still followed
    include: tuple[str, ...] = ()  # if any: a page URL must match one of them
    exclude: tuple[str, ...] = ()  # a page URL matching any is not followed


@dataclass(frozen=True)
class Verdict:
    follow: bool
    hops: int = 0  # external hops used by the followed URL
    reason: str = ""  # why not: "offsite", "excluded", "not_included"


def _compile(patterns: tuple[str, ...]) -> list[re.Pattern[str]]:
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise ScopeError(f"invalid URL pattern {pattern!r}: {exc}") from exc
    return compiled


class Scope:
    def __init__(self, rules: ScopeRules | None = None) -> None:
        self.rules = rules or ScopeRules()
        if self.rules.external_hops < 0:
            raise ScopeError("external_hops must be >= 0")
        self._include = _compile(self.rules.include)
        self._exclude = _compile(self.rules.exclude)

    def site_of(self, url: str) -> str:
        host = url_host(url)
        return registered_domain(host) if self.rules.mode == "domain" else host

    def patterns_allow(self, url: str) -> str:
        """'' when the URL passes include/exclude, else the reason."""
        if any(p.search(url) for p in self._exclude):
            return "excluded"
        if self._include and not any(p.search(url) for p in self._include):
            return "not_included"
        return ""

    def judge(self, url: str, site: str, hops: int) -> Verdict:
        """May a link to ``url``, found on a page ``hops`` off ``site``, be followed?"""
        reason = self.patterns_allow(url)
        if reason:
            return Verdict(False, reason=reason)
        if self.site_of(url) == site:
            return Verdict(True, hops=0)
        if hops + 1 <= self.rules.external_hops:
            return Verdict(True, hops=hops + 1)
        return Verdict(False, reason="offsite")
