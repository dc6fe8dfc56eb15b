"""The history's world as the synthetic web serves it: the current period ("epoch"), and each
hoster's abuse desk, a webhook on the hoster's own address that reacts to the notices it
receives by deleting the named files (as scripted in `history.REMOVES_AFTER`).

The desks act only on notices that arrive, correctly signed; the truth (noticesim) is computed
without them, so a node that fails to send a notice leaves the material online and the demo's
check fails.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from libra.demo.history import History
from libra.demo.policy import REMOVES_AFTER, PlacementKey
from libra.demo.world import Response, render_page
from node.notices import xarf
from node.notices.delivery import read_secret_file

WEBHOOK_PATH: Final = "/xarf"


def write_webhook_key(path: Path) -> bytes:
    """A new key for the nodes to sign webhooks with, written as an operator would (text,
    docs/notices.md); returns the bytes the desks check with, read as the nodes read them.
    (Raw random bytes were cut by the nodes wherever they began or ended with a whitespace
    byte, about one demo in twenty: every notice refused, nothing removed.)"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(secrets.token_hex(32) + "\n", encoding="utf-8")
    path.chmod(0o600)
    return read_secret_file(path, "webhook_secret_file")


def webhook_host(hoster: str) -> str:
    """The host name of a hoster's abuse webhook (served on the hoster's address)."""
    return f"abuse.{hoster}.test"


class LiveWorld:
    """Thread-safe: the web serves requests from several threads while the runner moves on."""

    def __init__(self, history: History, webhook_secret: bytes) -> None:
        self.history = history
        self.world = history.world
        self.secret = webhook_secret
        self.epoch = 0
        self.removed: dict[PlacementKey, int] = {}  # deleted file -> epoch of the deletion
        self.notices: Counter[str] = Counter()  # webhook deliveries per hoster key
        self.rejected = 0  # deliveries with a bad signature or body
        self._lock = threading.Lock()
        self._hook_hosts = {webhook_host(key): key for key in REMOVES_AFTER}

    def set_epoch(self, period: int) -> None:
        with self._lock:
            self.epoch = period

    def dns(self) -> dict[str, str]:
        """Every site and webhook host -> its hoster's loopback address (the lab's DNS)."""
        names = self.world.site_ips()
        for host, key in self._hook_hosts.items():
            names[host] = self.world.hoster(key).ip
        return names

    def webhook_url(self, hoster: str, port: int) -> str:
        return f"http://{webhook_host(hoster)}:{port}{WEBHOOK_PATH}"

    def respond(self, host: str, path: str) -> Response:
        host = host.lower().rstrip(".")
        path = urlsplit(path).path or "/"
        key = (host, path)
        with self._lock:
            epoch = self.epoch
            gone = key in self.removed
        placement = self.world.placement(key)
        if placement is not None and (gone or not self.history.online(key, epoch)):
            return Response(404, "text/html; charset=utf-8", b"<!doctype html>not found")
        page = self.world.page(key)
        if page is not None:
            served = self.history.page_in(page, epoch)
            return Response(200, "text/html; charset=utf-8", render_page(served))
        return self.world.respond(host, path)

    def webhook(self, host: str, path: str, headers: Mapping[str, str], body: bytes) -> int:
        """A POST to a hoster's abuse webhook (`headers` with lower-case names): the HTTP
        status to answer."""
        hoster = self._hook_hosts.get(host.lower().rstrip("."))
        if hoster is None or urlsplit(path).path != WEBHOOK_PATH:
            return 404
        ok = xarf.verify_webhook(
            self.secret,
            body,
            headers.get(xarf.TIMESTAMP_HEADER.lower(), ""),
            headers.get(xarf.SIGNATURE_HEADER.lower(), ""),
        )
        try:
            notice = json.loads(body) if ok else None
            urls = [urlsplit(str(r["url"])) for r in notice["reports"]] if notice else None
            round_ = int(notice["round"]) if notice else 0
        except (ValueError, KeyError, TypeError):
            urls = None
        if urls is None:
            with self._lock:
                self.rejected += 1
            return 401 if not ok else 400
        threshold = REMOVES_AFTER[hoster]
        with self._lock:
            self.notices[hoster] += 1
            for url in urls:
                key = ((url.hostname or "").lower(), url.path)
                site = self.world.placement(key)
                if site is None or self.world.hoster_of(key[0]).key != hoster:
                    continue  # not ours: an abuse desk acts on its own files only
                if threshold is not None and round_ >= threshold:
                    self.removed.setdefault(key, self.epoch)
        return 200
