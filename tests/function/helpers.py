"""Test helpers: generated images, a loopback image server, the function app on loopback.

Everything here is benign and synthetic: images come from numpy with fixed seeds, and every
socket binds to 127.0.0.1.
"""

from __future__ import annotations

import io
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
from PIL import Image

LOOPBACK = "127.0.0.1"


# --------------------------------------------------------------------------- images


def generated_image(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A structured RGB image, distinct for every seed.

    A 24x32 random grid, upscaled: enough detail at every frequency PDQ looks at (so its bits are
    stable under re-encoding), and pairwise PDQ distances near 128 between seeds.
    """
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
    return Image.fromarray(coarse, "RGB").resize(size, Image.Resampling.BICUBIC)


def encode(img: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    return buffer.getvalue()


def noise_png(seed: int, size: tuple[int, int]) -> bytes:
    """An incompressible PNG (for size-cap tests)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels, "RGB"), "PNG", compress_level=0)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def pixel_bomb_png(width: int, height: int) -> bytes:
    """A valid 1-bit greyscale PNG of width x height, built without allocating the pixels."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\x00" * (1 + (width + 7) // 8)
    packer = zlib.compressobj(9)
    parts = [packer.compress(row) for _ in range(height)]
    parts.append(packer.flush())
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", b"".join(parts))
        + _png_chunk(b"IEND", b"")
    )


# --------------------------------------------------------------------------- image server

Handler = Callable[[BaseHTTPRequestHandler], None]


@dataclass
class Static:
    status: int
    body: bytes
    content_type: str = "application/octet-stream"
    headers: dict[str, str] | None = None
    # False: no Content-Length, the body ends when the connection closes.
    length: bool = True


class _Handler(BaseHTTPRequestHandler):
    server: _ImageHTTPServer

    def do_GET(self) -> None:
        self.server.hits.append((self.path, self.headers.get("Host", "")))
        route = self.server.routes.get(self.path.split("?")[0])
        if route is None:
            route = Static(404, b"<html>not found</html>", "text/html")
        try:
            if isinstance(route, Static):
                self._static(route)
            else:
                route(self)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _static(self, route: Static) -> None:
        self.send_response(route.status)
        self.send_header("Content-Type", route.content_type)
        for name, value in (route.headers or {}).items():
            self.send_header(name, value)
        if route.length:
            self.send_header("Content-Length", str(len(route.body)))
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(route.body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass


class _ImageHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    routes: dict[str, Static | Handler]
    hits: list[tuple[str, str]]


class ImageServer:
    """A tiny HTTP server on 127.0.0.1 serving ``routes`` (path -> Static or handler)."""

    def __init__(self, routes: dict[str, Static | Handler] | None = None) -> None:
        self.httpd = _ImageHTTPServer((LOOPBACK, 0), _Handler)
        self.httpd.routes = dict(routes or {})
        self.httpd.hits = []
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def routes(self) -> dict[str, Static | Handler]:
        return self.httpd.routes

    @property
    def hits(self) -> list[tuple[str, str]]:
        return self.httpd.hits

    def __enter__(self) -> ImageServer:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def slow_drip(prefix: bytes, chunk: int = 64, pause: float = 0.2, total: float = 300.0) -> Handler:
    """A handler that sends ``prefix`` a few bytes at a time, far slower than any deadline.

    It never completes the declared body before ``total`` (far beyond any test's deadline), so
    only the fetch deadline can end the request, however slow the machine is; it stops as soon
    as the client hangs up (BrokenPipe)."""

    def handle(request: BaseHTTPRequestHandler) -> None:
        request.send_response(200)
        request.send_header("Content-Type", "image/jpeg")
        request.send_header("Content-Length", str(len(prefix)))
        request.end_headers()
        deadline = time.monotonic() + total
        offset = 0
        while time.monotonic() < deadline:
            request.wfile.write(prefix[offset : offset + chunk] or b"\x00" * chunk)
            request.wfile.flush()
            offset += chunk
            time.sleep(pause)

    return handle


def gated(body: bytes, gate: threading.Event, content_type: str = "image/jpeg") -> Handler:
    """A handler that sends its headers, then holds the body until ``gate`` is set: the test,
    not a timer, decides when the request may finish."""

    def handle(request: BaseHTTPRequestHandler) -> None:
        request.send_response(200)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.flush()
        gate.wait(timeout=300)
        request.wfile.write(body)

    return handle


def redirect_to(location: str, status: int = 302) -> Static:
    return Static(status, b"", "text/plain", headers={"Location": location})


# --------------------------------------------------------------------------- function server


class FunctionServer:
    """Runs an ASGI app with uvicorn in a background thread on 127.0.0.1:<free port>."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((LOOPBACK, 0))
        # Keep-alive far beyond any pause of a test: with uvicorn's 5 s, a loaded machine let a
        # client send its next request just as the server closed the idle connection, and a
        # client without retries (tests often use retries=0) saw a ReadError (seen in CI).
        config = uvicorn.Config(
            app, log_level="warning", lifespan="on", access_log=False, timeout_keep_alive=600
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.sock.getsockname()[1]}"

    def __enter__(self) -> FunctionServer:
        self.thread.start()
        # Generous: start-up time says nothing about the function (CI runs at load 20).
        deadline = time.monotonic() + 120
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def lab_toml(hosts: dict[str, str], ports: list[int]) -> str:
    lines = ['allow_ranges = ["127.0.0.0/8"]', f"allow_ports = {ports!r}", "", "[hosts]"]
    lines += [f'"{name}" = "{ip}"' for name, ip in hosts.items()]
    return "\n".join(lines) + "\n"
