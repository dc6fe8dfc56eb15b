"""Hashing throughput per core (images per CPU-second): decode-only vs naive vs ours, in one run.

    .venv/bin/python benchmarks/bench_hashing.py [--seconds 4] [--json out.json]

Benign generated JPEGs (fixed seeds) of 0.26 MP, 0.8 MP and 12 MP, and the node-cycle
benchmark's 64 x 48 PNGs (benchmarks/bench_crawler.png: a small picture on a uniform ground,
so the trimmed PDQ is computed too; issue 17). Every pipeline except
decode-only computes MD5, SHA-256, PDQ, pHash and dHash:
- decode-only: ``Image.open(...).load()`` at full size; the cost of just getting pixels.
- naive: full decode to RGB, then ``pdqhash``, ``imagehash.phash`` and ``imagehash.dhash``, each
  on its own copy of the full image (what a straightforward implementation does).
- ours: ``worker_function.hashing.hash_image`` (shared decode, JPEG draft, one 512 px copy).
Targets (per core): ours >= 300 img/s at 0.26 MP and >= 200 img/s at 0.8 MP. PDQ conformance
(Meta's rule) is checked by tests/function/test_pdq_vectors.py; here ours is also compared to
the naive PDQ on each image (Hamming distance reported).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from io import BytesIO
from pathlib import Path

import imagehash
import numpy as np
import pdqhash
from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker_function.hashing import hash_image, pdq_hex

SIZES = {"64x48PNG": (64, 48), "0.26MP": (624, 416), "0.8MP": (1096, 730), "12MP": (4240, 2832)}
TARGETS = {"0.26MP": 300.0, "0.8MP": 200.0}


def benign_jpeg(seed: int, size: tuple[int, int]) -> bytes:
    """A photo-like JPEG: smooth gradients, shapes, mild noise, blur. Deterministic."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack(
        [
            127 + 100 * np.sin(x / (w / (2 + seed % 3)) + seed),
            127 + 100 * np.cos(y / (h / 3) + seed / 2),
            127 + 80 * np.sin((x + y) / (w / 4)),
        ],
        axis=-1,
    )
    base += rng.normal(0, 6, base.shape)
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        r = int(rng.integers(w // 40, w // 6))
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.ellipse((x0 - r, y0 - r, x0 + r, y0 + r), fill=color)
    img = img.filter(ImageFilter.GaussianBlur(1.2))
    out = BytesIO()
    img.save(out, "JPEG", quality=90)
    return out.getvalue()


def cycle_pngs() -> list[bytes]:
    """The 64 small PNGs of bench_node_cycle.py's web."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_crawler import png

    return [png(n) for n in range(64)]


def decode_only(data: bytes) -> None:
    with Image.open(BytesIO(data)) as img:
        img.load()


def naive(data: bytes) -> str:
    hashlib.md5(data, usedforsecurity=False).hexdigest()
    hashlib.sha256(data).hexdigest()
    with Image.open(BytesIO(data)) as img:
        rgb = img.convert("RGB")
    vector, _quality = pdqhash.compute(np.asarray(rgb.copy()))
    imagehash.phash(rgb.copy())
    imagehash.dhash(rgb.copy())
    return pdq_hex(vector)


def ours(data: bytes) -> str:
    return hash_image(data).hashes.pdq


def rate(fn: Callable[[bytes], object], images: list[bytes], seconds: float) -> float:
    """Images per CPU-second of this process (per core): on a shared machine the CPU time, not
    the wall time, is what other work does not change."""
    fn(images[0])  # warm caches and lazy imports
    done = 0
    started = time.process_time()
    while (elapsed := time.process_time() - started) < seconds:
        fn(images[done % len(images)])
        done += 1
    return done / elapsed


def pdq_distance(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="time per pipeline and size")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    results: dict[str, dict[str, float]] = {}
    ok = True
    print(
        f"{'size':8} {'decode-only':>12} {'naive':>8} {'ours':>8} {'ours/naive':>10} "
        f"{'target':>7} {'max PDQ dist':>12}"
    )
    for label, size in SIZES.items():
        images = cycle_pngs() if label == "64x48PNG" else [benign_jpeg(s, size) for s in range(6)]
        seconds = args.seconds if label != "12MP" else max(args.seconds, 6.0)
        row = {
            "decode_only": rate(decode_only, images, seconds),
            "naive": rate(naive, images, seconds),
            "ours": rate(ours, images, seconds),
        }
        row["ratio"] = row["ours"] / row["naive"]
        row["max_pdq_distance_vs_naive"] = max(pdq_distance(ours(d), naive(d)) for d in images)
        target = TARGETS.get(label)
        row["target"] = target or 0.0
        if target is not None and row["ours"] < target:
            ok = False
        results[label] = row
        print(
            f"{label:8} {row['decode_only']:12.1f} {row['naive']:8.1f} {row['ours']:8.1f} "
            f"{row['ratio']:10.2f} {target or '-':>7} {row['max_pdq_distance_vs_naive']:12.0f}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    print("targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
