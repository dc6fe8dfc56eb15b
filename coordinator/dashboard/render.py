"""HTML page shells from the packaged templates (string.Template; every value is escaped
unless it is another packaged fragment). Data reaches the page only through the JSON API."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from html import escape
from importlib import resources
from string import Template

from protocol.hashes import MEDIA, ReportFamily, media_of

from ..auth import Principal, Scope

# A From/To value: a UTC date, optionally with a time (the page script reads both).
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2})?$")
COUNTRY_RE = re.compile(r"^[A-Za-z]{2}$")
ASN_RE = re.compile(r"^\d{1,10}$")
MAX_HOSTER = 200


@dataclass(frozen=True)
class Page:
    key: str  # template and page script name
    path: str
    title: str
    admin: bool = False  # admins only (scope members:write)
    charts: bool = True  # loads ECharts
    filters: bool = True  # the period / hash family filter bar
    extra_scripts: tuple[str, ...] = ()  # loaded before the page script
    refresh: bool = True  # reloads its data every minute (the auto-refresh toggle)


PAGES: tuple[Page, ...] = (
    Page("map", "/dashboard/", "Map", extra_scripts=("territories.js",)),
    Page("trends", "/dashboard/trends", "Trends"),
    Page("hosters", "/dashboard/hosters", "Hosters and ASNs"),
    Page("waterbed", "/dashboard/waterbed", "Waterbed", filters=False),
    Page("displacement", "/dashboard/displacement", "Displacement"),
    Page("coverage", "/dashboard/coverage", "Coverage", extra_scripts=("territories.js",)),
    Page(
        "nodes",
        "/dashboard/admin/nodes",
        "Nodes",
        admin=True,
        charts=False,
        filters=False,
        refresh=False,
    ),
    Page(
        "invitations",
        "/dashboard/admin/invitations",
        "Invitations",
        admin=True,
        charts=False,
        filters=False,
        refresh=False,
    ),
)


@cache
def template(name: str) -> Template:
    text = resources.files(__package__).joinpath("templates", f"{name}.html").read_text("utf-8")
    return Template(text)


def can_view(principal: Principal, page: Page) -> bool:
    return principal.can(Scope.MEMBERS_WRITE if page.admin else Scope.PICTURE_READ)


def date_param(value: str | None) -> str:
    """A YYYY-MM-DD[ HH:MM] query value, or "" (anything else is ignored, never echoed)."""
    return value if value is not None and DATE_RE.match(value) else ""


def country_param(value: str | None) -> str:
    return value.upper() if value is not None and COUNTRY_RE.match(value) else ""


def asn_param(value: str | None) -> str:
    return value if value is not None and ASN_RE.match(value) else ""


def hoster_param(value: str | None) -> str:
    # Any text (escaped where it is put into the page); the API refuses longer names.
    return value[:MAX_HOSTER] if value else ""


# Issue 13: the video families read as what they are; image families keep their short names
# (the value is always the wire name, so links and the API stay the same).
FAMILY_LABELS: dict[ReportFamily, str] = {
    ReportFamily.VIDEO_MD5: "video file MD5",
    ReportFamily.VIDEO_SHA1: "video file SHA-1",
    ReportFamily.VIDEO_SHA256: "video file SHA-256",
    ReportFamily.VPDQ: "vPDQ (video)",
    ReportFamily.VPDQ_FRAME: "still from a listed video (vPDQ frame)",
}
MEDIA_LABELS = {"": "All", "image": "Images", "video": "Videos"}


def family_label(family: ReportFamily) -> str:
    return FAMILY_LABELS.get(family, family.value)


def family_options(selected: str | None) -> str:
    """The family select, grouped by what was found (vpdq-frame is an image: a still)."""
    options = ['<option value="">all</option>']
    for media, group in (("image", "Images"), ("video", "Videos")):
        options.append(f'<optgroup label="{group}">')
        for family in ReportFamily:
            if media_of(family) != media:
                continue
            mark = " selected" if family.value == selected else ""
            label = escape(family_label(family))
            options.append(f'<option value="{family.value}"{mark}>{label}</option>')
        options.append("</optgroup>")
    return "".join(options)


def media_options(selected: str | None) -> str:
    """All / Images / Videos (the API's ``media`` filter); anything else selects All."""
    options = []
    for value in ("", *MEDIA):
        mark = " selected" if value and value == selected else ""
        options.append(f'<option value="{value}"{mark}>{MEDIA_LABELS[value]}</option>')
    return "".join(options)


def _nav(principal: Principal | None, current: str) -> str:
    if principal is None:
        return ""
    links = []
    for page in PAGES:
        if not can_view(principal, page):
            continue
        attr = ' aria-current="page"' if page.key == current else ""
        css = ' class="admin"' if page.admin else ""
        links.append(f'<a href="{page.path}"{attr}{css}>{escape(page.title)}</a>')
    return "".join(links)


def layout(
    *,
    title: str,
    page_key: str,
    content: str,
    principal: Principal | None,
    scripts: tuple[str, ...] = (),
    filters: str = "",
    now: datetime | None = None,
    csrf: str = "",
    refresh: bool = False,
) -> str:
    tags = "\n".join(f'<script src="/dashboard/static/{s}" defer></script>' for s in scripts)
    anonymous = principal is not None and principal.name == "anonymous"
    who = "" if principal is None else f"{principal.name} · {principal.role.value}"
    logout = ""
    if principal is not None and not anonymous:
        logout = (
            '<form class="logout" method="post" action="/dashboard/logout">'
            '<button type="submit">Log out</button></form>'
        )
    elif anonymous:
        logout = '<a class="logout" href="/dashboard/login">Log in</a>'
    return template("layout").substitute(
        title=escape(title),
        page=escape(page_key),
        role=escape(principal.role.value if principal else ""),
        admin="true" if principal is not None and principal.can(Scope.MEMBERS_WRITE) else "false",
        nav=_nav(principal, page_key),
        who=escape(who),
        logout=logout,
        scripts=tags,
        filters=filters,
        content=content,
        now=escape(now.astimezone(UTC).isoformat().replace("+00:00", "Z") if now else ""),
        csrf=escape(csrf),
        refresh=template("refresh").substitute() if refresh else "",
    )


def page_html(
    page: Page,
    principal: Principal,
    query: dict[str, str],
    *,
    now: datetime | None = None,
    csrf: str = "",
) -> str:
    family = query.get("family")
    if page.key == "waterbed":
        content = template("waterbed").substitute(
            b_from=date_param(query.get("b_from")),
            b_to=date_param(query.get("b_to")),
            a_from=date_param(query.get("a_from")),
            a_to=date_param(query.get("a_to")),
            families=family_options(family),
            media=media_options(query.get("media")),
        )
    else:
        content = template(page.key).substitute()
    filters = ""
    if page.filters:
        filters = template("filters").substitute(
            action=escape(page.path),
            **{"from": date_param(query.get("from")), "to": date_param(query.get("to"))},
            families=family_options(family),
            media=media_options(query.get("media")),
            country=escape(country_param(query.get("country"))),
            hoster=escape(hoster_param(query.get("hoster"))),
            asn=asn_param(query.get("asn")),
        )
    if page.charts:
        content += template("glossary").substitute()
    scripts: tuple[str, ...] = ("vendor/echarts.min.js",) if page.charts else ()
    scripts = (*scripts, *page.extra_scripts)
    return layout(
        title=page.title,
        page_key=page.key,
        content=content,
        principal=principal,
        scripts=(*scripts, "dashboard.js", f"pages/{page.key}.js"),
        filters=filters,
        now=now,
        csrf=csrf if page.admin else "",
        refresh=page.refresh,
    )


def login_html(*, next_path: str, error: str | None, anonymous_viewer: bool) -> str:
    content = template("login").substitute(
        next=escape(next_path),
        error=f'<p class="error" id="login-error">{escape(error)}</p>' if error else "",
        anonymous=(
            '<p><a href="/dashboard/">Continue without a token (anonymous viewer)</a></p>'
            if anonymous_viewer
            else ""
        ),
    )
    return layout(title="Log in", page_key="login", content=content, principal=None)


def message_html(title: str, message: str, principal: Principal | None) -> str:
    content = template("message").substitute(message=escape(message))
    return layout(title=title, page_key="message", content=content, principal=principal)
