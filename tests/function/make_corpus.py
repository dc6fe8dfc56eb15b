"""Writes the decoder fuzz corpus shipped in tests/function/corpus/ (run once; files are kept).

    PYTHONPATH=. .venv/bin/python tests/function/make_corpus.py

Every file is generated from fixed seeds: truncations at many lengths, byte flips, header fields
set to absurd values, magic-only files, polyglots and small bombs, for each allowed format. The
manifest records the outcome code of each file; test_corpus.py checks that it stays the same.
"""

from __future__ import annotations

import json
import random
import struct
import sys
import zlib
from pathlib import Path

from tests.function import helpers as h

CORPUS = Path(__file__).with_name("corpus")
FORMATS = {
    "jpeg": ("JPEG", {"quality": 85}),
    "png": ("PNG", {}),
    "gif": ("GIF", {}),
    "webp": ("WEBP", {"quality": 80}),
    "bmp": ("BMP", {}),
    "tiff": ("TIFF", {}),
}


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def corpus() -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    rng = random.Random(20261124)
    for ext, (fmt, options) in FORMATS.items():
        valid = h.encode(h.generated_image(77, (48, 32)), fmt, **options)
        files[f"valid.{ext}"] = valid
        for keep in (1, 4, 8, 16, 32, 64, 128):
            files[f"trunc-{keep:03d}.{ext}"] = valid[:keep]
        for fraction in (0.25, 0.5, 0.9):
            files[f"trunc-{int(fraction * 100):02d}pct.{ext}"] = valid[: int(len(valid) * fraction)]
        for n in range(4):
            data = bytearray(valid)
            for _ in range(1 + n * 3):
                data[rng.randrange(len(data))] = rng.randrange(256)
            files[f"flip-{n}.{ext}"] = bytes(data)
        header_garbage = bytearray(valid)
        for i in range(8, min(64, len(valid))):
            header_garbage[i] = 0xFF
        files[f"header-ff.{ext}"] = bytes(header_garbage)
        files[f"magic-then-html.{ext}"] = valid[:16] + b"<html><body>not an image</body></html>"
    ihdr = struct.pack(">IIBBBBB", 0x7FFFFFFF, 0x7FFFFFFF, 8, 2, 0, 0, 0)
    files["png-huge-ihdr.png"] = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IEND", b"")
    zero = struct.pack(">IIBBBBB", 0, 0, 8, 2, 0, 0, 0)
    files["png-zero-size.png"] = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", zero) + _chunk(b"IEND", b"")
    files["png-bomb-12k.png"] = h.pixel_bomb_png(12_000, 12_000)
    files["gif-huge-screen.gif"] = b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\x00\x00\x00;"
    files["bmp-negative-height.bmp"] = (
        b"BM"
        + struct.pack("<IHHI", 70, 0, 0, 54)
        + struct.pack("<IiiHHIIiiII", 40, 4, -(2**31), 1, 24, 0, 16, 0, 0, 0, 0)
    )
    files["tiff-ifd-loop.tiff"] = (
        b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 0) + struct.pack("<I", 8)
    )
    files["webp-bad-riff-size.webp"] = b"RIFF\xff\xff\xff\x7fWEBPVP8 " + b"\x00" * 32
    files["jpeg-only-soi.jpeg"] = b"\xff\xd8\xff"
    files["jpeg-sof-zero.jpeg"] = (
        b"\xff\xd8\xff\xc0\x00\x11\x08\x00\x00\x00\x00\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01"
        b"\xff\xd9"
    )
    files["svg.svg"] = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>'
    files["html.html"] = b"<!doctype html><title>x</title>"
    files["empty.bin"] = b""
    files["zeros.bin"] = b"\x00" * 256
    return files


def outcome(data: bytes) -> str:
    from worker_function.errors import ImageError
    from worker_function.hashing import DecodeLimits, hash_image

    try:
        hash_image(data, limits=DecodeLimits(max_pixels=4_000_000))
    except ImageError as exc:
        return exc.code
    return "ok"


def main() -> int:
    CORPUS.mkdir(exist_ok=True)
    manifest = {}
    for name, data in sorted(corpus().items()):
        (CORPUS / name).write_bytes(data)
        manifest[name] = outcome(data)
    (CORPUS / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    print(f"{len(manifest)} files in {CORPUS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
