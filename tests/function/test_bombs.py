"""Compressed-response bombs against the real function process (`libra function serve`).

A loopback server answers with bodies of a few hundred bytes to 1 MB that inflate to 1 GiB,
for every supported Content-Encoding and chains of them. Each must end as 413 ``too_large``
(the cap holds on the decoded stream) with the function's peak RSS (VmHWM, a high-water mark:
no timing involved) growing by less than the documented per-request bound, while /healthz keeps
answering. Unsupported encodings are 502 ``unsupported_encoding``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.function import bombs
from tests.function import helpers as h
from worker_function.content_coding import memory_bound

REPO = Path(__file__).resolve().parents[2]
LAB_HOST = "img.example.test"
# Above the 1 MB raw gzip/deflate bombs, so that only the decoded stream can trip the cap.
MAX_BYTES = 2 * 1024 * 1024
# Allocator slack on top of the bound: fragmentation, a few response objects.
SLACK = 16 * 1024 * 1024
HEALTH_TIMEOUT = 10.0  # a stalled event loop (the bug: 30 s) misses this by far


@dataclass
class Function:
    url: str
    pid: int
    images: h.ImageServer


def _vm_hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def function(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Function]:
    routes: dict[str, h.Static | h.Handler] = {
        f"/{name}": h.Static(200, body, "image/png", headers={"Content-Encoding": coding})
        for name, (coding, body) in bombs.bombs().items()
    }
    routes["/ok.png"] = h.Static(200, h.encode(h.generated_image(51), "PNG"), "image/png")
    small = bombs.gzip(bombs.PREFIX + bytes(4096))
    routes["/zstd"] = h.Static(200, small, "image/png", headers={"Content-Encoding": "zstd"})
    routes["/triple"] = h.Static(
        200,
        bombs.gzip(bombs.gzip(small)),
        "image/png",
        headers={"Content-Encoding": "gzip, gzip, gzip"},
    )
    routes["/corrupt"] = h.Static(
        200, b"\x1f\x8b\x08\x00" + b"\xff" * 600, "image/png", headers={"Content-Encoding": "gzip"}
    )
    with h.ImageServer(routes) as images:
        lab_file = tmp_path_factory.mktemp("bombs") / "lab.toml"
        lab_file.write_text(h.lab_toml({LAB_HOST: "127.0.0.1"}, [images.port]))
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIBRA_FUNCTION_")}
        env.update(
            PYTHONPATH=str(REPO),
            LIBRA_FUNCTION_MAX_BYTES=str(MAX_BYTES),
            LIBRA_FUNCTION_DECODE_ISOLATION="thread",
            LIBRA_FUNCTION_DEADLINE_SECONDS="120",
        )
        script = "import sys\nfrom libra.cli import main\nsys.argv[0] = 'libra'\nsys.exit(main())"
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                script,
                "function",
                "serve",
                "--lab",
                str(lab_file),
                "--port",
                str(port),
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_healthy(url, process)
            yield Function(url=url, pid=process.pid, images=images)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()


def _wait_healthy(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 180  # generous: start-up speed proves nothing here
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(process.communicate()[1][-2000:])
        try:
            if httpx.get(url + "/healthz", trust_env=False, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("the function did not become healthy")


def _analyze(function: Function, path: str) -> tuple[int, str]:
    url = f"http://{LAB_HOST}:{function.images.port}{path}"
    response = httpx.post(
        function.url + "/v1/analyze", json={"url": url}, trust_env=False, timeout=300
    )
    body = response.json()
    return response.status_code, body["error"]["code"] if "error" in body else "ok"


class HealthPoller(threading.Thread):
    """Asks /healthz over and over (each with a 10 s timeout) until stopped."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.answers: list[int | str] = []

    def run(self) -> None:
        with httpx.Client(trust_env=False, timeout=HEALTH_TIMEOUT) as client:
            while not self.stop.is_set():
                try:
                    self.answers.append(client.get(self.url + "/healthz").status_code)
                except httpx.HTTPError as exc:
                    self.answers.append(type(exc).__name__)
                self.stop.wait(0.05)


def test_bombs_are_too_large_in_bounded_memory_while_healthz_answers(
    function: Function,
) -> None:
    assert _analyze(function, "/ok.png") == (200, "ok")  # warm: imports, first allocations
    before = _vm_hwm(function.pid)
    poller = HealthPoller(function.url)
    poller.start()
    try:
        outcomes = {}
        for name in sorted(bombs.bombs()):
            answered_before = len(poller.answers)
            outcomes[name] = _analyze(function, f"/{name}")
            # Wait for one more health answer: the loop must answer between (and during) bombs.
            while len(poller.answers) == answered_before and poller.is_alive():
                time.sleep(0.01)
    finally:
        poller.stop.set()
        poller.join(timeout=60)
    growth = _vm_hwm(function.pid) - before
    assert outcomes == dict.fromkeys(bombs.bombs(), (413, "too_large"))
    assert poller.answers and set(poller.answers) == {200}, poller.answers[-5:]
    assert growth < memory_bound(MAX_BYTES) + SLACK, f"peak RSS grew by {growth} bytes"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/zstd", (502, "unsupported_encoding")),
        ("/triple", (502, "unsupported_encoding")),
        ("/corrupt", (502, "fetch_failed")),
    ],
)
def test_undecodable_encodings_have_their_own_codes(
    function: Function, path: str, expected: tuple[int, str]
) -> None:
    assert _analyze(function, path) == expected
