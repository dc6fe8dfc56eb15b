"""HTML -> page links and image URLs, plus the URL normalisation the crawler de-duplicates on.

Parsing uses selectolax (lexbor), which recovers from broken markup like a browser does. Image
forms found: ``<img src|srcset>`` (and the lazy-loading ``data-src``/``data-srcset``),
``<picture><source srcset>``, ``<a href>`` to a file with an image extension, ``og:image`` /
``twitter:image`` meta, and inline ``background``/``background-image: url(...)`` styles.

Video forms found (issue 13): ``<video src>`` and its ``<source src>`` children, ``og:video`` /
``twitter:player:stream`` meta, and ``<a href>`` to a file with a video extension; a video's
``poster`` is an image. HLS (``.m3u8``) and DASH (``.mpd``) manifests are noted, not followed:
their segments are not reassembled into a video (docs/operations-crawler.md).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import urljoin

import httpx
from selectolax.lexbor import LexborHTMLParser
from w3lib.url import canonicalize_url

from node.net import DEFAULT_PORTS

# Formats the remote-hash function decodes (plus common aliases of the same formats).
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}
)
_IMAGE_META = frozenset(
    {"og:image", "og:image:url", "og:image:secure_url", "twitter:image", "twitter:image:src"}
)
# Containers the function's video decoder takes (issue 13).
VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi"})
# Streaming manifests: noted (counted, listed) but not fetched as videos.
MANIFEST_EXTENSIONS = frozenset({".m3u8", ".mpd"})
_MANIFEST_TYPES = frozenset(
    {"application/x-mpegurl", "application/vnd.apple.mpegurl", "application/dash+xml"}
)
_VIDEO_META = frozenset(
    {"og:video", "og:video:url", "og:video:secure_url", "twitter:player:stream"}
)
_PAGE_SELECTOR = "a[href], area[href], iframe[src], frame[src]"
_CSS_URL = re.compile(r"""url\(\s*(?:"([^"]*)"|'([^']*)'|([^)'"]*?))\s*\)""", re.IGNORECASE)
_BACKGROUND_PROPS = frozenset({"background", "background-image"})
_HTML_SPACE = " \t\n\r\f"


@dataclass
class PageLinks:
    """What one page points at: absolute, normalised, de-duplicated, in document order."""

    pages: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    # data: URIs: all are counted; the image ones (data:image/...) are listed for the function,
    # which decodes them itself. The node never decodes them.
    data_uris: int = 0
    data_images: list[str] = field(default_factory=list)
    videos: list[str] = field(default_factory=list)
    # HLS/DASH manifests: listed so that they can be counted; never sent to the function.
    manifests: list[str] = field(default_factory=list)


@lru_cache(maxsize=131072)  # pages link the same URLs over and over; parsing is the hot path
def normalize_url(url: str) -> str | None:
    """Canonical form for de-duplication, or None if not a fetchable http(s) URL.

    Lower-cases scheme and host (IDNA-encoded), drops the default port and the fragment, makes
    an empty path ``/`` and percent-encodes what needs it (httpx's rules).
    """
    try:
        parsed = httpx.URL(url.strip(_HTML_SPACE))
    except (httpx.InvalidURL, UnicodeError, ValueError):
        return None
    if parsed.scheme not in DEFAULT_PORTS or not parsed.host:
        return None
    if parsed.port == DEFAULT_PORTS[parsed.scheme]:
        parsed = parsed.copy_with(port=None)
    # Re-setting raw_path spells an empty path as "/" (httpx keeps "http://a.test" otherwise).
    parsed = parsed.copy_with(fragment=None)
    parsed = parsed.copy_with(raw_path=parsed.raw_path)
    return str(parsed)


@lru_cache(maxsize=131072)
def canonical_key(url: str) -> str:
    """The seen-set key of a normalised URL: w3lib's canonical form (query arguments sorted,
    percent-encoding unified, fragment dropped). The URL fetched stays the page's own spelling."""
    return canonicalize_url(url)


def storable_url(url: str) -> str:
    """What may be written to disk for an image URL: a data: URI carries the image itself, so only
    its SHA-256 is kept (``data:sha256,<hex>``)."""
    if url[:5].lower() != "data:":
        return url
    return "data:sha256," + hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()


@lru_cache(maxsize=131072)
def url_host(url: str) -> str:
    """Host name of a normalised URL ('' if it has none)."""
    try:
        return httpx.URL(url).host
    except httpx.InvalidURL:
        return ""


def _extension(url: str) -> str:
    """The lower-cased extension of the URL's last path segment ('' if none)."""
    path = httpx.URL(url).path.lower()
    dot = path.rfind(".")
    return path[dot:] if dot > path.rfind("/") else ""


def looks_like_image(url: str) -> bool:
    """By extension of the path only (the query string does not count)."""
    return _extension(url) in IMAGE_EXTENSIONS


def looks_like_video(url: str) -> bool:
    """By extension of the path only, as for images."""
    return _extension(url) in VIDEO_EXTENSIONS


def looks_like_manifest(url: str) -> bool:
    """An HLS or DASH manifest, by extension."""
    return _extension(url) in MANIFEST_EXTENSIONS


def parse_srcset(value: str) -> list[str]:
    """Every candidate URL of a srcset (HTML's parsing rules, simplified: no error recovery
    beyond skipping empty candidates)."""
    urls: list[str] = []
    pos, end = 0, len(value)
    while pos < end:
        while pos < end and (value[pos] in _HTML_SPACE or value[pos] == ","):
            pos += 1
        start = pos
        while pos < end and value[pos] not in _HTML_SPACE:
            pos += 1
        url = value[start:pos]
        if url.endswith(","):
            # "a.jpg," is a candidate with no descriptors; trailing commas are not part of it.
            url = url.rstrip(",")
        else:
            # Skip descriptors ("2x", "640w") up to the comma that ends this candidate; commas
            # inside parentheses do not end it.
            depth = 0
            while pos < end:
                char = value[pos]
                if char == "(":
                    depth += 1
                elif char == ")" and depth:
                    depth -= 1
                elif char == "," and not depth:
                    break
                pos += 1
        if url:
            urls.append(url)
    return urls


def background_urls(style: str) -> list[str]:
    """url(...) values of background / background-image declarations in an inline style."""
    found: list[str] = []

    # Replace each url(...) by a placeholder first: its content may contain ';' or ':'
    # (data: URIs) which would break splitting into declarations.
    def stash(match: re.Match[str]) -> str:
        found.append(next(g for g in match.groups() if g is not None))
        return f"\x00{len(found) - 1}\x00"

    masked = _CSS_URL.sub(stash, style)
    urls: list[str] = []
    for declaration in masked.split(";"):
        prop, sep, value = declaration.partition(":")
        if not sep or prop.strip().lower() not in _BACKGROUND_PROPS:
            continue
        for index in re.findall(r"\x00(\d+)\x00", value):
            urls.append(found[int(index)].strip(_HTML_SPACE))
    return urls


class _Collector:
    def __init__(self, base: str) -> None:
        self.base = base
        self.links = PageLinks()
        self._pages: set[str] = set()
        self._images: set[str] = set()
        self._videos: set[str] = set()
        self._manifests: set[str] = set()
        self._data: set[str] = set()

    def _resolve(self, raw: str | None) -> str | None:
        if raw is None:
            return None
        raw = raw.strip(_HTML_SPACE)
        if not raw:
            return None
        if raw[:5].lower() == "data:":
            self.links.data_uris += 1
            if raw[5:11].lower() == "image/" and raw not in self._data:
                self._data.add(raw)
                self.links.data_images.append(raw)
            return None
        try:
            return normalize_url(urljoin(self.base, raw))
        except ValueError:  # e.g. an invalid IPv6 literal
            return None

    def image(self, raw: str | None) -> None:
        url = self._resolve(raw)
        if url is not None and url not in self._images:
            self._images.add(url)
            self.links.images.append(url)

    def video(self, raw: str | None, media_type: str = "") -> None:
        url = self._resolve(raw)
        if url is None:
            return
        if media_type.strip().lower() in _MANIFEST_TYPES or looks_like_manifest(url):
            if url not in self._manifests:
                self._manifests.add(url)
                self.links.manifests.append(url)
        elif url not in self._videos:
            self._videos.add(url)
            self.links.videos.append(url)

    def page(self, raw: str | None) -> None:
        url = self._resolve(raw)
        if url is None:
            return
        if looks_like_image(url):
            self.image(url)
        elif looks_like_video(url) or looks_like_manifest(url):
            self.video(url)
        elif url not in self._pages:
            self._pages.add(url)
            self.links.pages.append(url)


def extract_links(html: str, page_url: str) -> PageLinks:
    """Page links, image and video URLs of one HTML document, resolved against <base href> or
    the URL."""
    tree = LexborHTMLParser(html)
    base = page_url
    base_node = tree.css_first("base[href]")
    if base_node is not None:
        href = (base_node.attributes.get("href") or "").strip(_HTML_SPACE)
        if href:
            candidate = normalize_url(urljoin(page_url, href))
            if candidate is not None:
                base = candidate
    out = _Collector(base)

    for node in tree.css("img"):
        attrs = node.attributes
        out.image(attrs.get("src"))
        out.image(attrs.get("data-src"))
        for attr in ("srcset", "data-srcset"):
            for candidate in parse_srcset(attrs.get(attr) or ""):
                out.image(candidate)
    for node in tree.css("picture source[srcset]"):
        for candidate in parse_srcset(node.attributes.get("srcset") or ""):
            out.image(candidate)
    for node in tree.css("video"):
        out.video(node.attributes.get("src"))
        out.image(node.attributes.get("poster"))
    for node in tree.css("video source[src]"):
        out.video(node.attributes.get("src"), node.attributes.get("type") or "")
    for node in tree.css("meta[content]"):
        attrs = node.attributes
        key = (attrs.get("property") or attrs.get("name") or "").strip().lower()
        if key in _IMAGE_META:
            out.image(attrs.get("content"))
        elif key in _VIDEO_META:
            out.video(attrs.get("content"))
    for node in tree.css("[style]"):
        style = node.attributes.get("style") or ""
        if "url(" in style.lower():
            for raw in background_urls(style):
                out.image(raw)
    for node in tree.css(_PAGE_SELECTOR):
        out.page(node.attributes.get("src" if node.tag in ("iframe", "frame") else "href"))
    return out.links
