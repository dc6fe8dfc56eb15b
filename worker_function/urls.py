"""URL validation: the first gate before any name is resolved or any socket opened.

Odd IPv4 spellings (``2130706433``, ``0177.0.0.1``, ``0x7f.1``, ``127.1``) are normalised to
dotted quads, because resolvers and browsers accept them and they would otherwise slip past an
address check as "host names".
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urljoin, urlsplit, urlunsplit

import httpx

from .errors import BadUrl

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOWED_SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}

# A host made only of numbers in decimal, octal or hex is an IPv4 literal to inet_aton.
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}\.?$")
# As in browsers (WHATWG URL): a host whose last label is numeric must be an IPv4 literal.
_NUMERIC_LAST_LABEL = re.compile(r"(^|\.)(0x[0-9a-f]*|[0-9]+)\.?$")
_LABEL = r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?"
_HOST_NAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*\.?$")
_FORBIDDEN_CHARS = re.compile(r"[\x00-\x20\x7f\\]")


@dataclass(frozen=True)
class Target:
    """A validated URL: ``url`` names the host; ``literal`` is set when the host is an IP."""

    url: httpx.URL
    host: str  # lowercase, IDNA-encoded name or canonical IP text (no brackets)
    port: int
    literal: IPAddress | None

    @property
    def scheme(self) -> str:
        return self.url.scheme

    def __str__(self) -> str:
        return str(self.url)


def parse_target(raw: str) -> Target:
    """Validate ``raw`` as an absolute http(s) URL without userinfo; raise BadUrl otherwise."""
    if _FORBIDDEN_CHARS.search(raw):
        raise BadUrl("URL contains whitespace, control characters or backslashes")
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        raise BadUrl(f"URL does not parse: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise BadUrl(f"scheme {scheme or '(none)'!r} is not allowed; use http or https")
    if "@" in parts.netloc:
        raise BadUrl("URLs with userinfo (user:password@) are not allowed")
    host = (parts.hostname or "").lower()
    if not host:
        raise BadUrl("URL has no host")
    if "%" in host:
        raise BadUrl("percent-encoded hosts and IPv6 zone identifiers are not allowed")
    if port is not None and not 1 <= port <= 65535:
        raise BadUrl(f"port {port} is out of range")
    literal = _ip_literal(host)
    if literal is not None:
        host = literal.compressed
    url = _to_httpx(parts, scheme, host, port, literal)
    if literal is None:
        host = url.raw_host.decode("ascii")
        if not _HOST_NAME.match(host) or len(host) > 253:
            raise BadUrl("host is not a valid host name")
    return Target(url=url, host=host, port=port or DEFAULT_PORTS[scheme], literal=literal)


def resolve_redirect(current: Target, location: str) -> Target:
    """The target of a redirect ``Location`` relative to ``current``, validated afresh."""
    return parse_target(urljoin(str(current.url), location.strip()))


def url_ref(url: str) -> str:
    """A short, stable reference to a URL for logs (raw URLs never go to INFO logs)."""
    return "url:" + hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def _ip_literal(host: str) -> IPAddress | None:
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise BadUrl(f"invalid IPv6 literal {host!r}") from None
    if _NUMERIC_HOST.match(host) or _NUMERIC_LAST_LABEL.search(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host.rstrip(".")))
        except OSError:
            raise BadUrl(f"invalid IPv4 literal {host!r}") from None
    return None


def _to_httpx(
    parts: SplitResult, scheme: str, host: str, port: int | None, literal: IPAddress | None
) -> httpx.URL:
    netloc = f"[{host}]" if isinstance(literal, ipaddress.IPv6Address) else host
    if port is not None and port != DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    # The fragment never reaches the server.
    rebuilt = urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))
    try:
        return httpx.URL(rebuilt)
    except (httpx.InvalidURL, ValueError, UnicodeError) as exc:
        raise BadUrl(f"URL is not valid: {exc}") from None
