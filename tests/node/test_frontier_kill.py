"""A real kill: `libra node crawl` is SIGKILLed mid-crawl and restarted; the SQLite frontier
resumes so that no page is lost and no page finished before the kill is fetched again, and the
killed cycle is continued so that no image analysed before the kill is sent or counted again."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from node.cli.main import app

from .test_crawl_kit import Route, html, synthetic_web

PAGES = 60
HOSTS = ("site-a.test", "site-c.test")
PER_HOST = 1
# The kill lands while /p40 of every host is held open by the web (pages /p0-/p39 done, the
# rest not yet found): mid-crawl by construction, on a fast machine or a loaded one.
GATE_PAGE = 40


def _gate(web: Any, gate: threading.Event) -> None:
    for host in HOSTS:
        route = web.a.routes[(host, f"/p{GATE_PAGE}")]

        def held(route: Route = route) -> Route:
            gate.wait()
            return route

        web.a.add(host, f"/p{GATE_PAGE}", held)


def _at_gate(web: Any) -> bool:
    return all(f"/p{GATE_PAGE}" in web.recorder.paths(h) for h in HOSTS)


def _node(tmp_path: Path, lab_toml: str, seeds: list[str]) -> Path:
    directory = tmp_path / "node"
    result = CliRunner().invoke(
        app, ["init", "--dir", str(directory), "--node-id", "node-kill", "--country", "de"]
    )
    assert result.exit_code == 0, result.output
    (directory / "lab.toml").write_text(lab_toml)
    config = directory / "node.toml"
    text = config.read_text()
    text = text.replace("seeds = []", f"seeds = {seeds!r}".replace("'", '"'))
    if "seeds = [" not in text:
        text = f"seeds = {seeds!r}\n".replace("'", '"') + text
    text = text.replace("max_depth = 6", "max_depth = 200")
    config.write_text(f'lab = "lab.toml"\n{text}')
    return config


def _done(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {row[0] for row in conn.execute("SELECT url FROM frontier_url WHERE state = 'done'")}


def _spawn(config: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "LIBRA_NODE_CONFIG": str(config)}
    return subprocess.Popen(
        [sys.executable, "-m", "libra", "node", "crawl", "--config", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_sigkill_mid_crawl_then_resume_loses_and_repeats_nothing(tmp_path: Path) -> None:
    with synthetic_web() as web:
        for host in HOSTS:
            # A chain plus a fan-out: every page links the next two, each answer takes 60 ms.
            for n in range(PAGES):
                links = "".join(f'<a href="/p{m}">{m}</a>' for m in (n + 1, n + 2) if m < PAGES)
                route = html(links)
                web.a.add(host, f"/p{n}", Route(body=route.body, delay_s=0.06))
        lab = f"allow_ports = [{web.a.port}]\n[hosts]\n" + "".join(
            f'"{h}" = "127.0.0.1"\n' for h in HOSTS
        )
        seeds = [web.url(h, "/p0") for h in HOSTS]
        config = _node(tmp_path, lab, seeds)
        db = config.parent / "node.sqlite3"

        gate = threading.Event()
        _gate(web, gate)
        first = _spawn(config)
        # No deadline of our own (pytest-timeout bounds a hang): the gate holds the crawl.
        while True:
            if _at_gate(web) and db.exists():
                try:
                    if len(_done(db)) >= 30:
                        break
                except sqlite3.OperationalError:
                    pass  # tables not created yet
            assert first.poll() is None, first.stderr.read() if first.stderr else b""
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait()
        gate.set()
        done_at_kill = _done(db)
        requests_at_kill = Counter(
            (h, p) for h in HOSTS for p in web.recorder.paths(h) if p != "/robots.txt"
        )
        assert 30 <= len(done_at_kill) < 2 * PAGES, "the kill did not land mid-crawl"

        second = _spawn(config)
        assert second.wait() == 0, second.stderr.read() if second.stderr else b""

        requests = Counter(
            (h, p) for h in HOSTS for p in web.recorder.paths(h) if p != "/robots.txt"
        )
        expected = {(h, f"/p{n}") for h in HOSTS for n in range(PAGES)}
        assert set(requests) == expected  # nothing lost
        for url in done_at_kill:
            host = url.split("//", 1)[1].split(":", 1)[0]
            path = "/" + url.split("//", 1)[1].split("/", 1)[1]
            assert requests[(host, path)] == 1, f"{url} was finished before the kill but refetched"
        # Only requests in flight at the kill (at most one per host) can have been repeated.
        repeated = [key for key, count in requests.items() if count > 1]
        assert all(requests[k] == 2 for k in repeated)
        assert len(repeated) <= len(HOSTS) * PER_HOST
        assert all(requests_at_kill[k] == 1 for k in repeated)
        assert len(_done(db)) == 2 * PAGES


# --------------------------------------------------------------------------- images and sightings

LISTED_MD5 = "5d41402abc4b2a76b9719d911017c592"
DISPATCH_CONCURRENCY = 8  # node default: [dispatch] concurrency
DISPATCH_BATCH = 32  # node default: [dispatch] batch_size (images per function request)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the killed node hangs up on the calls it had in flight


def _result(url: str) -> dict[str, object]:
    path = url.split("//", 1)[-1].split("/", 1)[-1]
    md5 = LISTED_MD5 if path.startswith("m") else hashlib.md5(url.encode()).hexdigest()
    return {
        "url": url,
        "final_url": url,
        "server_ip": "127.0.0.1",
        "format": "PNG",
        "width": 64,
        "height": 48,
        "bytes": 1234,
        "animated": False,
        "hashes": {
            "md5": md5,
            "sha1": hashlib.sha1(url.encode()).hexdigest(),
            "sha256": hashlib.sha256(url.encode()).hexdigest(),
            "pdq": "3" * 64,  # the list holds md5 only: never a match
            "pdq_quality": 90,
            "phash": "4" * 16,
            "dhash": "5" * 16,
        },
    }


class _CountingFunction:
    """A remote-hash function on loopback that counts the analyses asked per image URL, single
    (/v1/analyze) or batched (/v1/analyze:batch, one count per item).

    Images whose path starts with /m answer with the listed md5 (a match); the others with an
    md5 of their URL (no match). Every answer takes 50 ms.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                batch = self.path.endswith("/v1/analyze:batch")
                urls = [str(i["url"]) for i in body["items"]] if batch else [str(body["url"])]
                with outer.lock:
                    for url in urls:
                        outer.calls[url] += 1
                time.sleep(0.05)
                results = [_result(url) for url in urls]
                items = [{"url": u, "result": r, "error": None} for u, r in zip(urls, results)]
                document = {"results": items} if batch else results[0]
                answer = json.dumps(document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _CountingFunction:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def snapshot(self) -> Counter[str]:
        with self.lock:
            return Counter(self.calls)


def _analysed(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {row[0] for row in conn.execute("SELECT url FROM cycle_image")}


def test_sigkill_mid_cycle_then_resume_analyses_and_counts_each_image_once(
    tmp_path: Path,
) -> None:
    expected_images: set[str] = set()
    matched: set[str] = set()
    with synthetic_web() as web, _CountingFunction() as function:
        for host in HOSTS:
            for n in range(PAGES):
                links = "".join(f'<a href="/p{m}">{m}</a>' for m in (n + 1, n + 2) if m < PAGES)
                # Its own image, the previous page's (found twice), and every 5th page a listed one.
                images = [f"/i{n}.png"] + ([f"/i{n - 1}.png"] if n else [])
                if n % 5 == 0:
                    images.append(f"/m{n}.png")
                    matched.add(web.url(host, f"/m{n}.png"))
                expected_images.update(web.url(host, i) for i in images)
                tags = "".join(f'<img src="{i}">' for i in images)
                route = html(links + tags)
                web.a.add(host, f"/p{n}", Route(body=route.body, delay_s=0.06))
        lab = f"allow_ports = [{web.a.port}]\n[hosts]\n" + "".join(
            f'"{h}" = "127.0.0.1"\n' for h in HOSTS
        )
        config = _node(tmp_path, lab, [web.url(h, "/p0") for h in HOSTS])
        config.write_text(f'function_url = "{function.url}"\n' + config.read_text())
        listed = tmp_path / "listed.txt"
        listed.write_text(LISTED_MD5 + "\n")
        imported = CliRunner().invoke(
            app, ["list", "import", str(listed), "--algorithm", "md5", "--config", str(config)]
        )
        assert imported.exit_code == 0, imported.output
        db = config.parent / "node.sqlite3"

        gate = threading.Event()
        _gate(web, gate)
        first = _spawn(config)
        while True:  # the gate holds the crawl; pytest-timeout bounds a hang
            try:
                if _at_gate(web) and len(_done(db)) >= 30 and len(_analysed(db)) >= 10:
                    break
            except sqlite3.OperationalError:
                pass  # tables not created yet
            assert first.poll() is None, first.stderr.read() if first.stderr else b""
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait()
        gate.set()
        analysed_at_kill = _analysed(db)
        calls_at_kill = function.snapshot()
        assert 10 <= len(analysed_at_kill) < len(expected_images), "the kill missed the cycle"
        assert len(_done(db)) < 2 * PAGES, "the kill did not land mid-crawl"
        # Sent before the kill, answer not committed: the only calls that may be repeated.
        in_flight = set(calls_at_kill) - analysed_at_kill
        assert len(in_flight) <= DISPATCH_CONCURRENCY * DISPATCH_BATCH

        second = _spawn(config)
        assert second.wait() == 0, second.stderr.read() if second.stderr else b""
        calls = function.snapshot()

    assert set(calls) == expected_images  # no image lost
    assert all(calls[url] == 1 for url in analysed_at_kill), "an analysed image was re-sent"
    repeated = {url for url, count in calls.items() if count > 1}
    assert repeated <= in_flight
    assert all(calls[url] == 2 for url in repeated)
    with sqlite3.connect(db) as conn:
        cycles = conn.execute(
            "SELECT id, status, images_found, matches, analysis_failures, pages_fetched, "
            "pages_failed, hosts_seen FROM crawl_cycle"
        ).fetchall()
        assert len(cycles) == 1, cycles  # the resumed run continued the killed cycle
        cycle_id, status, images_found, matches, failures, fetched, failed, hosts = cycles[0]
        assert status == "done"
        # The report's denominators cover the whole cycle, pages before the kill included.
        assert (fetched, failed, hosts) == (2 * PAGES, 0, len(HOSTS))
        per_host = conn.execute(
            "SELECT SUM(pages_fetched) FROM host_pages WHERE cycle_id = ?", (cycle_id,)
        ).fetchone()
        assert per_host == (2 * PAGES,)
        sightings = [
            row[0]
            for row in conn.execute("SELECT url FROM sighting WHERE cycle_id = ?", (cycle_id,))
        ]
        analysed = [
            row[0]
            for row in conn.execute("SELECT url FROM cycle_image WHERE cycle_id = ?", (cycle_id,))
        ]
    assert sorted(sightings) == sorted(matched)  # exactly one sighting per listed image URL
    assert sorted(analysed) == sorted(expected_images)
    assert (images_found, matches, failures) == (len(expected_images), len(matched), 0)
