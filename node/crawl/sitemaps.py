"""Sitemaps as a source of page URLs: robots.txt ``Sitemap:`` lines, sitemap indexes, urlsets.

Parsing uses the standard library's expat through ``xml.etree`` with entity expansion refused
(``defusedxml``-style: a DOCTYPE makes the document invalid), and reads at most
``MAX_SITEMAP_BYTES``. Gzip sitemaps (``.xml.gz``) are decompressed in memory up to the same limit.
"""

from __future__ import annotations

import gzip
import io
import xml.etree.ElementTree as ET  # DOCTYPEs and entities are refused before parsing
from dataclasses import dataclass, field

MAX_SITEMAP_BYTES = 10 * 1024 * 1024  # the sitemaps.org limit for one file (uncompressed)
MAX_SITEMAP_URLS = 50_000


class SitemapError(ValueError):
    """Not a sitemap we can read (bad XML, a DOCTYPE, too large)."""


@dataclass
class Sitemap:
    pages: list[str] = field(default_factory=list)  # <urlset><url><loc>
    sitemaps: list[str] = field(default_factory=list)  # <sitemapindex><sitemap><loc>


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def maybe_gunzip(body: bytes) -> bytes:
    if body[:2] != b"\x1f\x8b":
        return body
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(body)) as stream:
            data = stream.read(MAX_SITEMAP_BYTES + 1)
    except (OSError, EOFError) as exc:
        raise SitemapError(f"bad gzip sitemap: {exc}") from exc
    if len(data) > MAX_SITEMAP_BYTES:
        raise SitemapError("sitemap larger than 10 MiB uncompressed")
    return data


def parse_sitemap(body: bytes) -> Sitemap:
    data = maybe_gunzip(body)
    if len(data) > MAX_SITEMAP_BYTES:
        raise SitemapError("sitemap larger than 10 MiB")
    if b"<!DOCTYPE" in data[:4096].upper() or b"<!ENTITY" in data.upper():
        raise SitemapError("sitemap with a DOCTYPE or entities refused")
    try:
        root = ET.fromstring(data)  # noqa: S314
    except ET.ParseError as exc:
        raise SitemapError(f"sitemap is not well-formed XML: {exc}") from exc
    out = Sitemap()
    kind = _local(root.tag)
    if kind not in ("urlset", "sitemapindex"):
        raise SitemapError(f"root element <{kind}> is not urlset or sitemapindex")
    target = out.pages if kind == "urlset" else out.sitemaps
    for entry in root:
        for child in entry:
            if _local(child.tag) == "loc" and child.text and child.text.strip():
                target.append(child.text.strip())
                break
        if len(target) >= MAX_SITEMAP_URLS:
            break
    return out
