"""The synthetic web on loopback: one HTTP server per hoster IP, all on one port.

Each server answers from the in-memory world only (nothing touches the disk), and only for the
sites of the hoster that owns its IP, as a real shared hoster would: the Host header picks the
site; an unknown host, or a site that lives on another hoster's IP, gets a 404. So a crawler
that resolves names wrongly sees no content, and attribution by IP is always right.
"""

from __future__ import annotations

import errno
import logging
import random
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from libra.demo.live import LiveWorld
from libra.demo.world import Response, World
from protocol.lab import LabNetwork

LAB_RANGE = "127.0.1.0/24"
# One line per failed request, never a traceback: the demo's console is for its steps and
# summary (issue 17). Without a handler configured, Python prints warnings as the bare line.
log = logging.getLogger("libra.demo.web")
_PORT_ATTEMPTS = 20
_PORT_RANGE = (20000, 60000)


class WebError(RuntimeError):
    """The synthetic web could not start, or was used before it started."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], world: World, ip: str, live: LiveWorld | None = None
    ) -> None:
        self.world = world
        self.live = live
        self.ip = ip
        self.errors = 0  # requests that failed other than by the client hanging up
        self._errors_lock = threading.Lock()  # handler threads count them
        # The hosts this IP serves: those of the hoster that owns it (its abuse webhook too).
        names = world.site_ips() if live is None else live.dns()
        self.hosts = frozenset(host for host, site_ip in names.items() if site_ip == ip)
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (a crawler cancelling a fetch, the demo stopping) is normal
        # on the web: quiet. Anything else is a fault of this server: one line that says what,
        # where the base class would print a whole traceback.
        error = sys.exc_info()[1]
        if error is None or isinstance(error, ConnectionError | TimeoutError):
            return
        with self._errors_lock:
            self.errors += 1
        client = client_address[0] if isinstance(client_address, tuple) else client_address
        log.warning(
            "synthetic web on %s: a request from %s failed: %s: %s",
            self.ip,
            client,
            type(error).__name__,
            error,
        )

    def respond(self, host: str, path: str) -> Response:
        if self.live is not None:
            return self.live.respond(host, path)
        return self.world.respond(host, path)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "libra-synthetic-web/1"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, keep-alive clients wait ~40 ms
    # for each response.
    disable_nagle_algorithm = True
    # Guards against a client that never finishes its request or idles on keep-alive.
    timeout = 10.0

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def do_POST(self) -> None:
        # A hoster's abuse webhook (history worlds only): notices arrive here.
        host = _host_name(self.headers.get("Host", ""))
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.send_error(400, "bad Content-Length")
            return
        body = self.rfile.read(min(length, 8_000_000))
        status = 404
        if self.server.live is not None and host in self.server.hosts:
            headers = {k.lower(): v for k, v in self.headers.items()}
            status = self.server.live.webhook(host, self.path, headers, body)
        answer = b'{"ok": true}' if status == 200 else b'{"error": "refused"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def _answer(self, send_body: bool) -> None:
        host = _host_name(self.headers.get("Host", ""))
        if host in self.server.hosts:
            response = self.server.respond(host, self.path)
        else:
            response = Response(404, "text/plain; charset=utf-8", b"no such site here\n")
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        if response.location is not None:
            # Absolute, built from the Host header the client sent (it carries the port).
            self.send_header(
                "Location", f"http://{self.headers.get('Host', host)}{response.location}"
            )
        self.end_headers()
        if send_body:
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        # Quiet: the demo prints its own progress; request lines would drown it.
        return


def _host_name(header: str) -> str:
    """The host part of a Host header, lower case, without port or trailing dot."""
    text = header.strip().lower()
    if text.startswith("["):  # an IPv6 literal; never one of our sites
        return text
    return text.rsplit(":", 1)[0].rstrip(".") if ":" in text else text.rstrip(".")


class SyntheticWeb:
    """Serves `world` on every hoster IP (127.0.1.x) at one common port.

    Use as a context manager, or call `start()` and `stop()`.
    """

    def __init__(
        self, world: World, port: int | None = None, live: LiveWorld | None = None
    ) -> None:
        self.world = world
        self.live = live
        self._requested_port = port
        self._port: int | None = None
        self._servers: list[_Server] = []
        self._threads: list[threading.Thread] = []

    @property
    def ips(self) -> list[str]:
        return sorted({h.ip for h in self.world.hosters})

    @property
    def port(self) -> int:
        if self._port is None:
            raise WebError("the synthetic web is not running")
        return self._port

    @property
    def running(self) -> bool:
        return self._port is not None

    def start(self) -> SyntheticWeb:
        if self._port is not None:
            return self
        if self._requested_port is not None:
            try:
                self._servers = self._bind_all(self._requested_port)
            except OSError as exc:
                raise WebError(f"cannot listen on port {self._requested_port}: {exc}") from exc
        else:
            self._servers = self._bind_free_port()
        self._port = self._servers[0].server_address[1]
        for server in self._servers:
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.1},
                name=f"synthetic-web-{server.ip}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        return self

    def _bind_all(self, port: int) -> list[_Server]:
        servers: list[_Server] = []
        try:
            for ip in self.ips:
                servers.append(_Server((ip, port), self.world, ip, self.live))
        except OSError:
            for server in servers:
                server.server_close()
            raise
        return servers

    def _bind_free_port(self) -> list[_Server]:
        # Port 0 would give each IP a different port; the lab needs one port for all, so take
        # the first IP's free port and try it on the others, retrying a few times.
        rng = random.Random()  # noqa: S311 (not security relevant)
        last: OSError | None = None
        for attempt in range(_PORT_ATTEMPTS):
            port = _free_port(self.ips[0]) if attempt % 2 == 0 else rng.randint(*_PORT_RANGE)
            try:
                return self._bind_all(port)
            except OSError as exc:
                if exc.errno not in (errno.EADDRINUSE, errno.EACCES):
                    raise WebError(f"cannot listen on {self.ips}: {exc}") from exc
                last = exc
        raise WebError(f"no port free on all of {self.ips}: {last}")

    def stop(self) -> None:
        # shutdown() waits up to one poll interval per server: stop them all at once.
        stoppers = [threading.Thread(target=server.shutdown) for server in self._servers]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join(timeout=5.0)
        for server in self._servers:
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5.0)
        self._servers = []
        self._threads = []
        self._port = None

    def __enter__(self) -> SyntheticWeb:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def base_url(self, site: str) -> str:
        """`http://<site>:<port>/`."""
        if site not in self.world.site_ips():
            raise WebError(f"no site {site!r} in this world")
        return self.world.url(site, "/", self.port)

    def seed_urls(self, node_id: str) -> list[str]:
        """The start URLs of a node's crawl, with this web's port."""
        return self.world.seed_urls(node_id, self.port)

    def lab_network(self) -> LabNetwork:
        """Lab DNS (every site -> its hoster IP) and what the lab may reach."""
        hosts = self.world.site_ips() if self.live is None else self.live.dns()
        return LabNetwork(hosts=hosts, allow_ranges=[LAB_RANGE], allow_ports=[self.port])


def _free_port(ip: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((ip, 0))
        port: int = sock.getsockname()[1]
        return port
