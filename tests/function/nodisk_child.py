"""Child process for test_no_disk_writes: hash a batch with every disk write forbidden.

The function server is started first (as in production: its decode worker processes and their
IPC semaphores, which live in /dev/shm, i.e. memory, are created at start-up). Then two
independent guards are installed before any image is seen:
- RLIMIT_FSIZE = 0: the kernel refuses to grow any file (SIGXFSZ ignored -> EFBIG error);
- an audit hook that raises on any open for writing, os.open with write flags, and on file
  creation, removal or renaming.
The decode workers run under their own RLIMIT_FSIZE = 0 and write-refusing audit hook. Then it
hashes generated images directly (hash_image) and through the HTTP endpoint (the app on loopback
fetching from a loopback image server) and prints a JSON summary on stdout.
"""

from __future__ import annotations

import os
import resource
import signal
import sys

sys.dont_write_bytecode = True

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_FORBIDDEN_EVENTS = {
    "os.mkdir",
    "os.remove",
    "os.rename",
    "os.rmdir",
    "os.truncate",
    "os.link",
    "os.symlink",
    "shutil.copyfile",
    "shutil.move",
    "tempfile.mkstemp",
    "tempfile.mkdtemp",
}
VIOLATIONS: list[str] = []


def _audit(event: str, args: tuple[object, ...]) -> None:
    if event == "open":
        path, mode, flags = [*args, None, None, None][:3]
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _WRITE_FLAGS
        )
        if writes:
            VIOLATIONS.append(f"open {path!r} mode={mode!r} flags={flags!r}")
            raise PermissionError(f"disk write attempted: open({path!r}, {mode!r})")
    elif event in _FORBIDDEN_EVENTS:
        VIOLATIONS.append(f"{event} {args!r}")
        raise PermissionError(f"disk write attempted: {event}")


def install_guards() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    sys.addaudithook(_audit)


import json  # noqa: E402

import httpx  # noqa: E402

from libra.demo.videogen import make_video  # noqa: E402
from protocol.lab import LabNetwork  # noqa: E402
from tests.function import helpers as h  # noqa: E402
from worker_function.app import create_app  # noqa: E402
from worker_function.hashing import hash_image  # noqa: E402
from worker_function.settings import FunctionSettings  # noqa: E402
from worker_function.video.decode import hash_video  # noqa: E402

FORMATS = [
    ("JPEG", {"quality": 85}),
    ("PNG", {}),
    ("WEBP", {"quality": 80}),
    ("GIF", {}),
    ("BMP", {}),
    ("TIFF", {}),
]


# Issue 13: videos too (decoded by PyAV from memory, in the video decode workers over HTTP).
VIDEOS = [("mp4", 0), ("webm", 1), ("avi", 2)]


def main() -> int:
    # Generated before the guards go up: the proof is about analysis, not the test's encoder.
    videos = {
        f"/clip-{seed}.{kind}": make_video(160, 90, 2.0, 10, kind, seed) for kind, seed in VIDEOS
    }
    with h.ImageServer() as images:
        lab = LabNetwork(hosts={"img.example.test": "127.0.0.1"}, allow_ports=[images.port])
        app = create_app(FunctionSettings(lab=None), lab=lab)
        with h.FunctionServer(app) as server:
            install_guards()
            return run_batch(images, server.url, videos)


def run_batch(images: h.ImageServer, function_url: str, videos: dict[str, bytes]) -> int:
    # The guard really bites: a write attempt must fail before we trust the result.
    try:
        with open("/tmp/libra-nodisk-probe", "w"):  # must be refused
            pass
    except PermissionError:
        probe_refused = True
    else:
        probe_refused = False
    VIOLATIONS.clear()

    batch: dict[str, bytes] = {}
    for seed in range(4):
        for fmt, options in FORMATS:
            batch[f"/img-{seed}.{fmt.lower()}"] = h.encode(
                h.generated_image(100 + seed), fmt, **options
            )
    direct = {path: hash_image(data, dihedral=True).hashes.sha256 for path, data in batch.items()}
    for path, data in videos.items():
        direct[path] = hash_video(data).hashes.pdq  # frames' PDQ: decoded, not just digested
    batch.update(videos)

    via_http: dict[str, str] = {}
    images.routes.update({path: h.Static(200, data) for path, data in batch.items()})
    with httpx.Client(base_url=function_url, trust_env=False, timeout=30) as client:
        for path in batch:
            url = f"http://img.example.test:{images.port}{path}"
            response = client.post("/v1/analyze", json={"url": url, "dihedral": True})
            assert response.status_code == 200, response.text
            key = "pdq" if path in videos else "sha256"
            via_http[path] = response.json()["hashes"][key]

    print(
        json.dumps(
            {
                "probe_refused": probe_refused,
                "direct": len(direct),
                "http": len(via_http),
                "agree": direct == via_http,
                "violations": VIOLATIONS,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
