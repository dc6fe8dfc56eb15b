"""The page shells render query values (shared links) only when valid, and only escaped."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.auth import Role, anonymous
from coordinator.dashboard.render import PAGES, Page, page_html

VIEWER = anonymous(Role.VIEWER)
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
FILTER_PAGES = [p for p in PAGES if p.filters]
SCRIPTS = {p.key: len(re.findall("<script", page_html(p, VIEWER, {}, now=NOW))) for p in PAGES}


def field(page: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert match, name
    return html.unescape(match.group(1))


text = st.text(max_size=40) | st.sampled_from(
    ["2026-11-23", "2026-11-23 06:00", "2026-11-23T06:00", "de", "64500", '"><script>x</script>']
)


@settings(max_examples=200, deadline=None)
@given(
    page=st.sampled_from(FILTER_PAGES),
    start=text, end=text, country=text, hoster=text, asn=text,
)  # fmt: skip
def test_filter_values_are_valid_or_empty_and_always_escaped(
    page: Page, start: str, end: str, country: str, hoster: str, asn: str
) -> None:
    query = {"from": start, "to": end, "country": country, "hoster": hoster, "asn": asn}
    out = page_html(page, VIEWER, query, now=NOW)
    for name in ("from", "to"):
        assert re.fullmatch(r"(\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2})?)?", field(out, name), re.ASCII)
    assert field(out, "country") in ("", country.upper())
    assert re.fullmatch(r"([A-Z]{2})?", field(out, "country"))
    assert re.fullmatch(r"(\d{1,10})?", field(out, "asn"), re.ASCII)
    assert field(out, "hoster") == hoster[:200]
    # Nothing from the query becomes markup: the page has exactly its own script tags.
    assert len(re.findall("<script", out)) == SCRIPTS[page.key]
    assert 'data-now="2026-11-25T12:00:00Z"' in out


def _select(page: str, name: str) -> str:
    match = re.search(rf'<select name="{name}">(.*?)</select>', page, re.S)
    assert match, name
    return match.group(1)


def test_media_selector_and_video_family_labels() -> None:
    # Issue 13: All / Images / Videos, and video families named by what they are.
    for page in FILTER_PAGES + [p for p in PAGES if p.key == "waterbed"]:
        shown = page_html(page, VIEWER, {"media": "video", "family": "vpdq-frame"}, now=NOW)
        media = _select(shown, "media")
        assert re.findall(r'<option value="([^"]*)"', media) == ["", "image", "video"]
        assert '<option value="video" selected>Videos</option>' in media
        families = _select(shown, "family")
        assert '<optgroup label="Videos">' in families
        assert '<option value="video-md5">video file MD5</option>' in families
        assert '<option value="vpdq">vPDQ (video)</option>' in families
        # A still from a listed video is an image find: listed under Images, selected.
        images = families.split('<optgroup label="Videos">')[0]
        assert (
            '<option value="vpdq-frame" selected>still from a listed video (vPDQ frame)</option>'
            in images
        )
    # Anything but image/video selects All (the value is never echoed).
    media = _select(page_html(FILTER_PAGES[0], VIEWER, {"media": '"><x>'}, now=NOW), "media")
    assert " selected" not in media and "<x>" not in media
