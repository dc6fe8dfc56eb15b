"""Content decisions for the crawler: is this response an image, is it HTML, which charset.

The crawler never reads an image body: it looks at the Content-Type and at most the first few
bytes (magic numbers) and then closes the stream, passing the URL on to the remote-hash function.
"""

from __future__ import annotations

import codecs
import re

# Enough leading bytes to tell every format below apart.
SNIFF_BYTES = 16
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)
_META_CHARSET = re.compile(
    rb"""<meta[^>]{0,512}?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]{1,40})""", re.I
)
_HTML_START = re.compile(rb"^\s*(?:<!doctype\s+html|<html|<head|<body|<!--)", re.I)
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# WHATWG Encoding: these labels mean windows-1252 on the web, whatever the registry says.
_WEB_ALIASES = {"ascii": "cp1252", "iso8859-1": "cp1252"}


def sniff_image(head: bytes) -> str | None:
    """Image format named by the leading bytes, or None."""
    for magic, name in _SIGNATURES:
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    # "BM" alone is too weak (text can start with it): the 4 reserved header bytes are zero.
    if head[:2] == b"BM" and len(head) >= 10 and head[6:10] == b"\x00\x00\x00\x00":
        return "bmp"
    return None


def looks_like_html(head: bytes) -> bool:
    """Only used when a server sends no Content-Type at all."""
    return bool(_HTML_START.match(head.lstrip(codecs.BOM_UTF8)))


def media_type(content_type: str | None) -> str:
    """'text/html; charset=x' -> 'text/html' ('' if absent)."""
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


def _header_charset(content_type: str | None) -> str | None:
    if not content_type:
        return None
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip("\"'") or None
    return None


def _codec(label: str | None) -> str | None:
    if not label:
        return None
    try:
        name = codecs.lookup(label).name
    except LookupError:
        return None
    return _WEB_ALIASES.get(name, name)


def decode_html(body: bytes, content_type: str | None) -> str:
    """Text of an HTML body: BOM, then the HTTP charset, then <meta charset>, then utf-8.

    Undecodable bytes become U+FFFD rather than failing the page.
    """
    for bom, name in _BOMS:
        if body.startswith(bom):
            return body.decode(name, errors="replace")
    encoding = _codec(_header_charset(content_type))
    if encoding is None:
        match = _META_CHARSET.search(body[:4096])
        encoding = _codec(match.group(1).decode("ascii")) if match else None
        # A <meta> cannot truthfully declare UTF-16 (it would not be readable as ASCII).
        if encoding is not None and encoding.startswith("utf-16"):
            encoding = "utf-8"
    return body.decode(encoding or "utf-8", errors="replace")
