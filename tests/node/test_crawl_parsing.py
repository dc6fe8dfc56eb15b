"""Pure parts of the crawler: link and image extraction, URLs, charsets, magic numbers, robots."""

from __future__ import annotations

import pytest

from node.crawl import robots as crawl_robots
from node.crawl.content import decode_html, looks_like_html, media_type, sniff_image
from node.crawl.links import (
    background_urls,
    extract_links,
    looks_like_image,
    normalize_url,
    parse_srcset,
)
from node.crawl.robots import parse_robots

PAGE = "http://site-a.test/dir/page.html"


def test_every_image_form_and_page_link() -> None:
    doc = """<html><head>
<meta property="og:image" content="/og.jpg"><meta property="og:image:secure_url" content="og2.png">
<meta name="twitter:image" content="https://cdn.test/tw.png">
<meta name="description" content="x.jpg">
</head><body>
<img src="a.png" srcset="a-1.png 1x, a-2.png 2x">
<img data-src="lazy.jpg" data-srcset="lazy2.jpg 2x">
<picture><source srcset="s.avif 1x, s2.webp 2x"><img src="p.jpg"></picture>
<a href="big.JPEG?size=l#zoom">image link</a><a href="next.html#part">next</a><a href="#top">top</a>
<area href="/map.html"><iframe src="frame.html"></iframe>
<span style="background: #fff url(&quot;bg.gif&quot;) no-repeat; cursor: url(c.cur)"></span>
<div style="BACKGROUND-IMAGE:url(bg2.png), url('data:image/png;base64,AAAA')">
<img src="data:image/gif;base64,R0lGOD=="><img src="  spaced.png  "><img src="">
<a href="mailto:x@y.test">m</a><a href="javascript:go()">j</a><a href="tel:1">t</a>
"""
    links = extract_links(doc, PAGE)
    d = "http://site-a.test/dir/"
    assert sorted(links.images) == sorted(
        [
            d + "a.png",
            d + "a-1.png",
            d + "a-2.png",
            d + "lazy.jpg",
            d + "lazy2.jpg",
            d + "p.jpg",
            d + "s.avif",
            d + "s2.webp",
            "http://site-a.test/og.jpg",
            d + "og2.png",
            "https://cdn.test/tw.png",
            d + "bg.gif",
            d + "bg2.png",
            d + "spaced.png",
            d + "big.JPEG?size=l",
        ]
    )
    assert links.pages == [d + "next.html", PAGE, "http://site-a.test/map.html", d + "frame.html"]
    assert links.data_uris == 2


def test_base_href_and_broken_markup() -> None:
    doc = (
        '<base href="http://other.test/root/"><base href="/ignored/">'
        "<p><img src=x.png <a href=y.html>"
    )
    links = extract_links(doc, PAGE)
    assert "http://other.test/root/x.png" in links.images
    # The browser-like parser recovers: whatever it makes of the broken tag, nothing escapes base.
    for url in links.images + links.pages:
        assert url.startswith("http://other.test/root/")


def test_duplicates_are_removed() -> None:
    links = extract_links('<img src="a.png"><img src="./a.png#x"><a href="a.png">a</a>', PAGE)
    assert links.images == ["http://site-a.test/dir/a.png"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("HTTP://Site-A.TEST:80/a#frag", "http://site-a.test/a"),
        ("https://site-a.test:443", "https://site-a.test/"),
        ("https://site-a.test:8443/?q=1", "https://site-a.test:8443/?q=1"),
        ("http://site-a.test/a b", "http://site-a.test/a%20b"),
        ("http://site-a.test/./x/../y", "http://site-a.test/y"),
        ("ftp://site-a.test/", None),
        ("javascript:alert(1)", None),
        ("not a url", None),
        ("http://", None),
    ],
)
def test_normalize_url(raw: str, expected: str | None) -> None:
    assert normalize_url(raw) == expected


def test_srcset_and_background_parsing() -> None:
    assert parse_srcset(" a.jpg 1x,b.jpg 2x , c.jpg, d(1,2).jpg 640w,,") == [
        "a.jpg",
        "b.jpg",
        "c.jpg",
        "d(1,2).jpg",
    ]
    assert parse_srcset("") == []
    assert background_urls("color:red; background-image: url( 'x;y.png' ), url(z.png)") == [
        "x;y.png",
        "z.png",
    ]
    assert background_urls("list-style: url(bullet.png); mask: url(m.svg)") == []
    assert looks_like_image("http://a.test/x.TIFF?y=.html")
    assert not looks_like_image("http://a.test/x.png/view")


def test_charsets() -> None:
    text = "café"
    assert decode_html(text.encode("cp1252"), "text/html; charset=windows-1252") == text
    assert decode_html(f'<meta charset="ISO-8859-1">{text}'.encode("latin-1"), None).endswith(text)
    meta = f'<meta http-equiv="Content-Type" content="text/html; charset=koi8-r">{"мир"}'
    assert decode_html(meta.encode("koi8-r"), "text/html").endswith("мир")
    # The header wins over <meta>; a BOM wins over both.
    assert decode_html('<meta charset="koi8-r">é'.encode(), "text/html; charset=utf-8").endswith(
        "é"
    )
    assert decode_html(b"\xef\xbb\xbf\xc3\xa9", "text/html; charset=koi8-r") == "é"
    # Unknown labels and invalid bytes fall back to utf-8 with replacement, never an error.
    assert decode_html(b"ok \xff", "text/html; charset=no-such-charset") == "ok \ufffd"
    assert media_type("Text/HTML; charset=x") == "text/html"
    assert looks_like_html(b"\n  <!DOCTYPE html><html>")
    assert not looks_like_html(b"%PDF-1.4")


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "jpeg"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "png"),
        (b"GIF89a\x01\x00", "gif"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "webp"),
        (b"BM\x36\x00\x0c\x00\x00\x00\x00\x00\x36\x00", "bmp"),
        (b"II*\x00\x08\x00\x00\x00", "tiff"),
        (b"MM\x00*\x00\x00\x00\x08", "tiff"),
        (b"BMW makes cars, not bitmaps", None),
        (b"<html><body>", None),
        (b"RIFF\x10\x00\x00\x00WAVEfmt ", None),
    ],
)
def test_sniff_image(head: bytes, kind: str | None) -> None:
    assert sniff_image(head) == kind


ROBOTS = """User-agent: *
Disallow: /

User-agent: LIBRA-node
Disallow: /members/
Disallow: /tmp
"""


@pytest.mark.parametrize("parser", ["protego", "stdlib"])
def test_robots_rules_for_our_agent(parser: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if parser == "stdlib":
        monkeypatch.setattr(crawl_robots, "_PROTEGO", None)
    elif crawl_robots._PROTEGO is None:
        pytest.skip("protego is not installed; the stdlib fallback is in use")
    ours = parse_robots(ROBOTS, "LIBRA-node/0.1 (+https://libra.invalid/bot)")
    assert not ours.allows("http://site-a.test/members/list.html")
    assert not ours.allows("http://site-a.test/tmp/x")
    assert ours.allows("http://site-a.test/")
    assert ours.allows("http://site-a.test/public/a.html")
    other = parse_robots(ROBOTS, "SomeOtherBot/1.0")
    assert not other.allows("http://site-a.test/public/a.html")
    assert parse_robots("", "LIBRA-node/0.1").allows("http://site-a.test/x")
