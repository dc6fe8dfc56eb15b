"""robots.txt: fetched by us (never by a parser library), once per origin, RFC 9309 rules.

- 2xx: the rules in the file (first 512 KiB) for our user agent.
- 4xx (including 401/403): no rules, everything allowed (RFC 9309 section 2.3.1.3).
- 5xx: everything disallowed for this crawl (section 2.3.1.4).
- Network error or timeout: also everything disallowed, but the pages fail with that network
  reason (``connect_error``, ``timeout``, ...) so that a dead host is not reported as a robots
  refusal; likewise ``blocked_destination`` when the client refuses the destination.
Redirects are followed up to ``max_redirects`` hops (the client checks every destination).

Parsing uses ``protego`` when it is installed (wildcards, longest-match precedence, as Google
does) and falls back to the standard library's ``urllib.robotparser`` otherwise.
"""

from __future__ import annotations

import asyncio
import importlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin
from urllib.robotparser import RobotFileParser

import httpx

from node.crawl.content import SNIFF_BYTES, media_type, sniff_image
from node.net import BlockedDestination

MAX_ROBOTS_BYTES = 512 * 1024


def _load_protego() -> Any:
    try:
        return importlib.import_module("protego").Protego
    except ImportError:
        return None


_PROTEGO = _load_protego()


@dataclass(frozen=True)
class RobotsRules:
    """The robots decision for one origin."""

    # "rules": parsed file; "allow_all"; "disallow_all"; "unreachable": see ``failure``.
    kind: str
    parser: Any = field(default=None, compare=False)
    user_agent: str = ""
    # For "unreachable": the reason every page of the origin fails with.
    failure: str | None = None

    def allows(self, url: str) -> bool:
        if self.kind == "rules":
            if _PROTEGO is not None and isinstance(self.parser, _PROTEGO):
                return bool(self.parser.can_fetch(url, self.user_agent))
            return bool(self.parser.can_fetch(self.user_agent, url))
        return self.kind == "allow_all"


ALLOW_ALL = RobotsRules("allow_all")
DISALLOW_ALL = RobotsRules("disallow_all")


def unreachable(reason: str) -> RobotsRules:
    return RobotsRules("unreachable", failure=reason)


def parse_robots(text: str, user_agent: str) -> RobotsRules:
    """Rules of one robots.txt body for ``user_agent`` (the full User-Agent header value)."""
    if _PROTEGO is not None:
        return RobotsRules("rules", _PROTEGO.parse(text), user_agent)
    parser = RobotFileParser()
    parser.parse(text.splitlines())  # parse() only: this parser must never fetch by itself
    return RobotsRules("rules", parser, user_agent)


async def fetch_robots(
    client: httpx.AsyncClient,
    origin: str,
    *,
    user_agent: str,
    max_redirects: int,
    timeout_s: float,
) -> RobotsRules:
    """Fetch and parse ``{origin}/robots.txt``; every outcome maps to a RobotsRules."""
    url = f"{origin}/robots.txt"
    try:
        for _hop in range(max_redirects + 1):
            async with asyncio.timeout(timeout_s):
                async with client.stream(
                    "GET", url, headers={"User-Agent": user_agent, "Accept": "text/plain,*/*"}
                ) as response:
                    status = response.status_code
                    location = response.headers.get("location")
                    if 300 <= status < 400 and location:
                        url = urljoin(url, location)
                        continue
                    if 400 <= status < 500:
                        return ALLOW_ALL
                    if not 200 <= status < 300:
                        return DISALLOW_ALL
                    if media_type(response.headers.get("content-type")).startswith("image/"):
                        return ALLOW_ALL  # not a robots file; and image bodies are never read
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        if not body and sniff_image(chunk[:SNIFF_BYTES]):
                            return ALLOW_ALL
                        body += chunk
                        if len(body) >= MAX_ROBOTS_BYTES:
                            break
            text = bytes(body[:MAX_ROBOTS_BYTES]).decode("utf-8", errors="replace")
            return parse_robots(text, user_agent)
        # Too many redirects: RFC 9309 lets a crawler treat that as unavailable (4xx).
        return ALLOW_ALL
    except BlockedDestination:
        return unreachable("blocked_destination")
    except (httpx.TimeoutException, TimeoutError):
        return unreachable("timeout")
    except httpx.ConnectError:
        return unreachable("connect_error")
    except httpx.RequestError:
        return unreachable("network_error")
