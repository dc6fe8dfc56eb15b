"""A synthetic web on loopback for the crawler tests (no tests here; imported by test_crawl_*).

Each ``Site`` is a ThreadingHTTPServer on a loopback IP and a free port. Virtual hosts are chosen
by the Host header, so several lab names can share one server. The server records every request,
the concurrency per host, and how many body bytes a large response wrote before the client hung
up, which is how the tests prove that the crawler never reads an image body.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from protocol.lab import LabNetwork

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BIG_BODY = 16 * 1024 * 1024
CHUNK = 64 * 1024


@dataclass
class Route:
    status: int = 200
    content_type: str | None = "text/html; charset=utf-8"
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    # Serve this many bytes (starting with `body`, padded with zeros) in chunks, recording how
    # many were written before the client closed.
    big: int | None = None
    # False: no Content-Length; the body ends when the connection closes.
    declare_length: bool = True


def html(text: str) -> Route:
    return Route(body=text.encode())


@dataclass
class Recorder:
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: list[tuple[str, str]] = field(default_factory=list)  # (host, path)
    active: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    max_active: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    active_total: int = 0
    max_active_total: int = 0
    written: dict[str, int] = field(default_factory=dict)
    finished: dict[str, threading.Event] = field(
        default_factory=lambda: defaultdict(threading.Event)
    )
    host_headers: list[str] = field(default_factory=list)

    def paths(self, host: str) -> list[str]:
        with self.lock:
            return [p for h, p in self.requests if h == host]


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that hang up early are expected here


class Site:
    def __init__(self, ip: str, recorder: Recorder) -> None:
        self.routes: dict[tuple[str, str], Route | Callable[[], Route]] = {}
        self.recorder = recorder
        handler = _make_handler(self)
        self.server = _QuietServer((ip, 0), handler)
        self.server.daemon_threads = True
        self.ip = ip
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add(self, host: str, path: str, route: Route | Callable[[], Route]) -> None:
        self.routes[(host, path)] = route


def _make_handler(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            rec = site.recorder
            raw_host = self.headers.get("Host", "")
            host = raw_host.rsplit(":", 1)[0].lower()
            with rec.lock:
                rec.requests.append((host, self.path))
                rec.host_headers.append(raw_host)
                rec.active[host] += 1
                rec.active_total += 1
                rec.max_active[host] = max(rec.max_active[host], rec.active[host])
                rec.max_active_total = max(rec.max_active_total, rec.active_total)
            left = False

            def leave() -> None:
                # Before the first byte of the answer: once the client has the whole answer it
                # may start its next request, and a thread still on its way out must not count
                # twice (on a loaded machine that gap was long enough to see one request more).
                nonlocal left
                if not left:
                    left = True
                    with rec.lock:
                        rec.active[host] -= 1
                        rec.active_total -= 1

            try:
                self._serve(host, leave)
            finally:
                leave()

        def _serve(self, host: str, leave: Callable[[], None]) -> None:
            found = site.routes.get((host, self.path))
            route = found() if callable(found) else found
            if route is None:
                route = Route(status=404, body=b"<html>not found</html>")
            if route.delay_s:
                time.sleep(route.delay_s)
            leave()
            self.send_response(route.status)
            if route.content_type is not None:
                self.send_header("Content-Type", route.content_type)
            for name, value in route.headers.items():
                self.send_header(name, value)
            length = route.big if route.big is not None else len(route.body)
            if route.declare_length:
                self.send_header("Content-Length", str(length))
            else:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if route.big is None:
                self.wfile.write(route.body)
                return
            self._serve_big(route.body, route.big)

        def _serve_big(self, head: bytes, size: int) -> None:
            # A small send buffer so that a client that stops reading stops the writes quickly.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
            written = 0
            payload = head + bytes(CHUNK - len(head))
            try:
                while written < size:
                    piece = payload if written == 0 else bytes(CHUNK)
                    self.wfile.write(piece)
                    written += len(piece)
            except OSError:
                pass
            finally:
                site.recorder.written[self.path] = written
                site.recorder.finished[self.path].set()
                self.close_connection = True

    return Handler


@dataclass
class Web:
    recorder: Recorder
    a: Site  # 127.0.0.1
    b: Site  # 127.0.0.2
    lab: LabNetwork

    def url(self, host: str, path: str = "/") -> str:
        site = self.b if host == "site-b.test" else self.a
        return f"http://{host}:{site.port}{path}"


@contextmanager
def synthetic_web() -> Iterator[Web]:
    """site-a.test and site-c.test on 127.0.0.1, site-b.test on 127.0.0.2 (free ports)."""
    recorder = Recorder()
    a = Site("127.0.0.1", recorder)
    b = Site("127.0.0.2", recorder)
    lab = LabNetwork(
        hosts={"site-a.test": "127.0.0.1", "site-c.test": "127.0.0.1", "site-b.test": "127.0.0.2"},
        allow_ports=[a.port, b.port],
    )
    a.start()
    b.start()
    try:
        yield Web(recorder=recorder, a=a, b=b, lab=lab)
    finally:
        a.stop()
        b.stop()
