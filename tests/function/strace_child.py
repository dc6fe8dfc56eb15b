"""Run under strace by test_strace: a real function server (decode worker processes included)
analyses a batch of generated images over HTTP, then exits. Prints the number analysed."""

from __future__ import annotations

import sys

import httpx

from libra.demo.videogen import make_video
from protocol.lab import LabNetwork
from tests.function import helpers as h
from worker_function.app import create_app
from worker_function.settings import FunctionSettings

FORMATS = [("JPEG", {"quality": 85}), ("PNG", {}), ("WEBP", {"quality": 80}), ("GIF", {})]


def main() -> int:
    batch = {
        f"/img-{seed}.{fmt.lower()}": h.encode(h.generated_image(300 + seed), fmt, **options)
        for seed in range(3)
        for fmt, options in FORMATS
    }
    # Issue 13: videos too, decoded by PyAV in the video decode worker.
    batch.update(
        {f"/clip.{kind}": make_video(160, 90, 2.0, 10, kind, 7) for kind in ("mp4", "mkv")}
    )
    routes: dict[str, h.Static | h.Handler] = {p: h.Static(200, d) for p, d in batch.items()}
    analysed = 0
    with h.ImageServer(routes) as images:
        lab = LabNetwork(hosts={"img.example.test": "127.0.0.1"}, allow_ports=[images.port])
        app = create_app(FunctionSettings(lab=None, max_concurrent_decodes=2), lab=lab)
        with (
            h.FunctionServer(app) as server,
            httpx.Client(base_url=server.url, trust_env=False, timeout=60) as client,
        ):
            for path in batch:
                url = f"http://img.example.test:{images.port}{path}"
                response = client.post("/v1/analyze", json={"url": url, "dihedral": True})
                assert response.status_code == 200, response.text
                analysed += 1
    print(analysed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
