"""The persistent frontier in the node's SQLite database (tables ``frontier_*``).

Every page outcome and the links it produced are written in ONE transaction, so after a kill the
database says exactly which pages are done. On restart the run with the same key is resumed:
queued items and items that were in flight when the process died are fetched (in-flight ones
for the first time as far as the database knows); done items are not fetched again. Images of
done pages are re-emitted (their analysis may not have finished; node.cycle skips the ones the
resumed cycle has analysed already). data: URIs are never stored.
Uses the sqlite3 module directly (one connection, WAL) because this is the crawler's hot path.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

from node.crawl.frontier import REDIRECTED, FrontierItem, ImageRecord, Resumed, Served

_SCHEMA = """
CREATE TABLE IF NOT EXISTS frontier_run (
    id INTEGER PRIMARY KEY, run_key TEXT NOT NULL, status TEXT NOT NULL,
    started_at REAL NOT NULL, finished_at REAL);
CREATE TABLE IF NOT EXISTS frontier_url (
    run_id INTEGER NOT NULL, key TEXT NOT NULL, url TEXT NOT NULL, kind TEXT NOT NULL,
    depth INTEGER NOT NULL, site TEXT NOT NULL, hops INTEGER NOT NULL, referrer TEXT NOT NULL,
    state TEXT NOT NULL, outcome TEXT, done_at REAL, PRIMARY KEY (run_id, key));
CREATE INDEX IF NOT EXISTS frontier_url_state ON frontier_url (run_id, state);
CREATE TABLE IF NOT EXISTS frontier_image (
    run_id INTEGER NOT NULL, url TEXT NOT NULL, page_url TEXT NOT NULL, host TEXT NOT NULL,
    media TEXT NOT NULL DEFAULT 'image', PRIMARY KEY (run_id, url));
CREATE TABLE IF NOT EXISTS frontier_host_visit (host TEXT PRIMARY KEY, last_crawled REAL NOT NULL);
"""

QUEUED, DONE = "queued", "done"
# Added by issue 16 (who served a fetched page); older frontier tables gain them on open.
_SERVED_COLUMNS = ("server_ip", "served_host")
# Added by issue 13 (a found URL's media, "image" or "video"); older tables gain it on open.
_IMAGE_MEDIA = "ALTER TABLE frontier_image ADD COLUMN media TEXT NOT NULL DEFAULT 'image'"


class SqliteFrontier:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.executescript(_SCHEMA)
        have = {row[1] for row in self._db.execute("PRAGMA table_info(frontier_url)")}
        for column in _SERVED_COLUMNS:
            if column not in have:
                self._db.execute(f"ALTER TABLE frontier_url ADD COLUMN {column} TEXT")
        if "media" not in {row[1] for row in self._db.execute("PRAGMA table_info(frontier_image)")}:
            self._db.execute(_IMAGE_MEDIA)
        self._run = 0
        self._seen: set[str] = set()
        self._sites: dict[str, int] = {}

    @property
    def run_id(self) -> int:
        return self._run

    def start(self, run_key: str, seeds: list[FrontierItem]) -> list[FrontierItem]:
        db = self._db
        row = db.execute(
            "SELECT id FROM frontier_run WHERE run_key = ? AND status = 'running' "
            "ORDER BY id DESC LIMIT 1",
            (run_key,),
        ).fetchone()
        # Runs of another seed list left running are over: their seen-set no longer applies.
        db.execute(
            "UPDATE frontier_run SET status = 'abandoned', finished_at = ? "
            "WHERE status = 'running' AND run_key != ?",
            (time.time(), run_key),
        )
        self._seen.clear()
        self._sites.clear()
        if row is None:
            cur = db.execute(
                "INSERT INTO frontier_run (run_key, status, started_at) VALUES (?, 'running', ?)",
                (run_key, time.time()),
            )
            self._run = int(cur.lastrowid or 0)
            return seeds  # the crawler add()s them
        self._run = int(row[0])
        pending: list[FrontierItem] = []
        for key, url, kind, depth, site, hops, referrer, state in db.execute(
            "SELECT key, url, kind, depth, site, hops, referrer, state FROM frontier_url "
            "WHERE run_id = ? ORDER BY rowid",
            (self._run,),
        ):
            self._seen.add(key)
            self._sites[site] = self._sites.get(site, 0) + 1
            if state == QUEUED:
                pending.append(FrontierItem(url, depth, site, hops, referrer, kind))
        return pending

    def resumed_images(self) -> list[ImageRecord]:
        return [
            ImageRecord(url, page_url, host, media)
            for url, page_url, host, media in self._db.execute(
                "SELECT url, page_url, host, media FROM frontier_image WHERE run_id = ? "
                "ORDER BY rowid",
                (self._run,),
            )
        ]

    def resumed_outcomes(self) -> list[Resumed]:
        return [
            (
                FrontierItem(url, depth, site, hops, referrer, kind),
                outcome,
                Served(ip, host) if ip is not None or host is not None else None,
            )
            for url, depth, site, hops, referrer, kind, outcome, ip, host in self._db.execute(
                "SELECT url, depth, site, hops, referrer, kind, outcome, server_ip, served_host "
                "FROM frontier_url WHERE run_id = ? AND state = ? ORDER BY done_at, rowid",
                (self._run, DONE),
            )
        ]

    def seen(self, key: str) -> bool:
        return key in self._seen

    def _insert(self, key: str, item: FrontierItem) -> bool:
        if key in self._seen:
            return False
        self._seen.add(key)
        self._sites[item.site] = self._sites.get(item.site, 0) + 1
        self._db.execute(
            "INSERT OR IGNORE INTO frontier_url (run_id, key, url, kind, depth, site, hops, "
            "referrer, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'queued')",
            (self._run, key, item.url, item.kind, item.depth, item.site, item.hops, item.referrer),
        )
        return True

    def add(self, key: str, item: FrontierItem) -> bool:
        return self._insert(key, item)

    def complete(
        self,
        key: str,
        outcome: str,
        new: list[tuple[str, FrontierItem]],
        images: list[ImageRecord],
        aliases: Sequence[str] = (),
        served: Served | None = None,
    ) -> list[FrontierItem]:
        db = self._db
        db.execute("BEGIN")
        try:
            now = time.time()
            db.execute(
                "UPDATE frontier_url SET state = 'done', outcome = ?, done_at = ?, "
                "server_ip = ?, served_host = ? WHERE run_id = ? AND key = ?",
                (
                    outcome,
                    now,
                    served.ip if served else None,
                    served.host if served else None,
                    self._run,
                    key,
                ),
            )
            # Redirect targets reached from this URL: seen, so a resumed run skips them too.
            db.executemany(
                "INSERT INTO frontier_url (run_id, key, url, kind, depth, site, hops, referrer, "
                "state, outcome, done_at) SELECT run_id, ?, ?, kind, depth, site, hops, referrer, "
                "'done', ?, ? FROM frontier_url WHERE run_id = ? AND key = ? "
                "ON CONFLICT (run_id, key) DO NOTHING",
                [(a, a, REDIRECTED, now, self._run, key) for a in aliases if a != key],
            )
            added = [item for k, item in new if self._insert(k, item)]
            db.executemany(
                "INSERT OR IGNORE INTO frontier_image (run_id, url, page_url, host, media) "
                "VALUES (?, ?, ?, ?, ?)",
                [
                    (self._run, i.url, i.page_url, i.host, i.media)
                    for i in images
                    if i.url[:5].lower() != "data:"  # image bytes never go to disk
                ],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            for _k, _item in new:
                self._seen.discard(_k)
            raise
        return added

    def counts(self) -> dict[str, int]:
        return dict(self._sites)

    def outcomes(self) -> dict[str, str | None]:
        """key -> outcome of every URL of the current run (None while queued)."""
        return dict(
            self._db.execute(
                "SELECT key, outcome FROM frontier_url WHERE run_id = ?", (self._run,)
            ).fetchall()
        )

    def finish(self) -> None:
        now = time.time()
        self._db.execute("BEGIN")
        self._db.execute(
            "UPDATE frontier_run SET status = 'done', finished_at = ? WHERE id = ?",
            (now, self._run),
        )
        self._db.execute(
            "INSERT INTO frontier_host_visit (host, last_crawled) SELECT DISTINCT site, ? "
            "FROM frontier_url WHERE run_id = ? AND true "
            "ON CONFLICT(host) DO UPDATE SET last_crawled = excluded.last_crawled",
            (now, self._run),
        )
        self._db.execute("COMMIT")

    def last_crawled(self, site: str) -> float | None:
        row = self._db.execute(
            "SELECT last_crawled FROM frontier_host_visit WHERE host = ?", (site,)
        ).fetchone()
        return float(row[0]) if row else None

    def close(self) -> None:
        self._db.close()
