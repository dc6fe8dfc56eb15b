"""A loopback RDAP server serving the recorded fixtures in tests/node/fixtures/rdap/.

Routes: /rdap/ip/192.0.2.* -> the network with a nested abuse entity; /rdap/ip/198.51.100.* ->
a network without one; /rdap/ip/203.0.113.* -> malformed JSON; /rdap/autnum/64496 -> an autnum
with an abuse entity; /rdap/autnum/64500 -> a redirect off the machine (must not be followed);
anything else -> 404. Every request is counted, so tests can tell a cache hit from a query.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "rdap"


@dataclass
class FakeRdap:
    base: str
    requests: list[str] = field(default_factory=list)

    def bootstrap_text(self) -> str:
        return (FIXTURES / "bootstrap.template.json").read_text().replace("{base}", self.base)

    def write_bootstrap(self, path: Path) -> Path:
        path.write_text(self.bootstrap_text())
        return path


REDIRECT_AWAY = "http://192.0.2.1/rdap/autnum/64500"  # never followed: not loopback


def _route(path: str) -> tuple[int, bytes]:
    if path == "/rdap/autnum/64500":
        return 302, REDIRECT_AWAY.encode()
    if path.startswith("/rdap/ip/192.0.2."):
        return 200, (FIXTURES / "ip-192.0.2.0-24.json").read_bytes()
    if path.startswith("/rdap/ip/198.51.100."):
        return 200, (FIXTURES / "ip-198.51.100.0-24-no-abuse.json").read_bytes()
    if path.startswith("/rdap/ip/203.0.113."):
        return 200, b'{"objectClassName": "ip network", "entities": [ {"handle": '
    if path == "/rdap/autnum/64496":
        return 200, (FIXTURES / "autnum-64496.json").read_bytes()
    return 404, json.dumps({"errorCode": 404, "title": "Not Found"}).encode()


@contextmanager
def fake_rdap() -> Iterator[FakeRdap]:
    state: FakeRdap | None = None

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            assert state is not None
            state.requests.append(self.path)
            status, body = _route(self.path)
            self.send_response(status)
            if status == 302:
                self.send_header("Location", body.decode())
            self.send_header("Content-Type", "application/rdap+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state = FakeRdap(base=f"http://127.0.0.1:{server.server_address[1]}/rdap/")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
