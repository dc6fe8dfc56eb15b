"""Video URLs on a page (issue 13): every form the crawler finds, and manifests noted apart."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from node.crawl.links import extract_links, looks_like_manifest, looks_like_video

PAGE = "http://site-v.test/dir/page.html"
D = "http://site-v.test/dir/"


def test_every_video_form() -> None:
    doc = """<html><head>
<meta property="og:video" content="/og.mp4"><meta property="og:video:secure_url" content="og2.webm">
<meta name="twitter:player:stream" content="https://cdn.test/tw.mov">
<meta property="og:image" content="still.jpg">
</head><body>
<video src="clip.mp4" poster="poster.jpg"></video>
<video controls><source src="alt.webm" type="video/webm"><source src="alt.mkv"></video>
<a href="movie.AVI?dl=1#t=3">download</a><a href="more.html">page</a>
<video><source src="live/stream" type="application/x-mpegURL"></video>
<a href="dash/manifest.mpd">dash</a><a href="hls/index.m3u8">hls</a>
<picture><source srcset="pic.webp"></picture>
"""
    links = extract_links(doc, PAGE)
    assert links.videos == [
        D + "clip.mp4",
        D + "alt.webm",
        D + "alt.mkv",
        "http://site-v.test/og.mp4",
        D + "og2.webm",
        "https://cdn.test/tw.mov",
        D + "movie.AVI?dl=1",
    ]
    assert links.manifests == [D + "live/stream", D + "dash/manifest.mpd", D + "hls/index.m3u8"]
    # The poster and og:image are images; a <picture> source stays an image, not a video.
    assert sorted(links.images) == sorted([D + "poster.jpg", D + "still.jpg", D + "pic.webp"])
    assert links.pages == [D + "more.html"]


def test_duplicates_and_non_http_are_dropped() -> None:
    doc = """<video src="a.mp4"></video><a href="a.mp4">same</a>
<meta property="og:video" content="a.mp4"><video src="data:video/mp4;base64,AAAA"></video>
<video src="ftp://x.test/b.mp4"></video><video src="  "></video>"""
    links = extract_links(doc, PAGE)
    assert links.videos == [D + "a.mp4"]
    assert links.data_images == []  # a data: video is counted as a data URI, never listed
    assert links.data_uris == 1


def test_extension_rules() -> None:
    assert looks_like_video("http://h.test/x/y.MP4")
    assert not looks_like_video("http://h.test/x.mp4/page")
    assert not looks_like_video("http://h.test/x?f=y.mp4")  # the query string does not count
    assert looks_like_manifest("http://h.test/a/b.m3u8")
    assert not looks_like_video("http://h.test/a/b.m3u8")


@given(st.text(max_size=300))
def test_any_markup_parses_without_error(markup: str) -> None:
    links = extract_links(f"<video src='{markup}'><source src=\"{markup}\"></video>", PAGE)
    assert len(links.videos) + len(links.manifests) <= 2
    for url in links.videos + links.manifests:
        assert url.startswith(("http://", "https://"))
