"""The pure helpers of benchmarks/bench_node_photo_cycle.py: its web's pictures and its ratio."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_node_photo_cycle as bench


def test_every_picture_of_the_web_has_its_own_number() -> None:
    hosts, pages = 7, 9
    numbers = {
        bench.image_number(h, p, s, pages)
        for h in range(hosts)
        for p in range(pages)
        for s in (0, 1)
    }
    assert numbers == set(range(hosts * pages * 2))


def test_the_web_is_mostly_jpeg_photos_with_some_webp_and_png() -> None:
    kinds = [bench.image_kind(n) for n in range(1000)]
    counts = {ext: sum(k[0] == ext for k in kinds) for ext in ("jpg", "webp", "png")}
    assert counts == {"jpg": 850, "webp": 100, "png": 50}
    megapixels = {w * h / 1e6 for _, (w, h) in kinds}
    assert min(megapixels) >= 0.75 and max(megapixels) <= 3.0


def test_the_list_names_a_dozen_distinct_pictures_of_the_web() -> None:
    chosen = bench.matched_numbers(1000)
    assert len(chosen) == bench.MATCHED_IMAGES == len(set(chosen))
    assert all(0 <= n < 1000 for n in chosen)
    assert bench.matched_numbers(5) == [0, 1, 2, 3, 4]  # a tiny web: every picture


def test_pictures_are_photo_sized_and_far_apart_in_pdq() -> None:
    maker = bench.PhotoMaker()
    jpeg, webp = 0, 3  # image_kind: numbers 0 and 3 are a JPEG and a WebP
    made = {n: maker.make(n) for n in (jpeg, 1, webp)}
    for number, data in made.items():
        ext, size = bench.image_kind(number)
        with Image.open(io.BytesIO(data)) as image:
            assert image.size == size
            assert image.format == bench.FORMATS[ext][0]
    assert 200_000 <= len(made[jpeg]) <= 900_000  # a real photo's JPEG size
    assert maker.make(jpeg) == made[jpeg]  # deterministic: the list is made from it again
    pdq = [int(bench.pdq_hex(data), 16) for data in made.values()]
    assert min(bin(a ^ b).count("1") for i, a in enumerate(pdq) for b in pdq[i + 1 :]) > 64


def _step(node: float, function: float, images: int = 100) -> dict[str, Any]:
    return {"wall_s": 1.0, "node_cpu_s": node, "function_cpu_s": function, "images": images}


def test_the_ratio_compares_the_cycle_with_the_sum_of_its_parts() -> None:
    parts = {
        "crawl": _step(0.5, 0.0),
        "function": _step(0.1, 3.0),
        "match": _step(0.2, 0.0),
        "attribute": _step(0.0, 0.0),
        "record": _step(0.2, 0.0),
    }  # 4.0 CPU-s for 100 images: 25 images/CPU-s
    same = bench.table({**_step(1.0, 3.0), "images": 100}, parts)
    assert "ratio 1.00" in same[-2] and "25.0" in same[-2]
    slower = bench.table({**_step(5.0, 3.0), "images": 100}, parts)  # 8 CPU-s: half the rate
    assert "ratio 0.50" in slower[-2]
    assert "ratio 0.20" in slower[-1]  # node side: 1.0 CPU-s in the parts, 5.0 in the cycle
    assert sum(line.startswith("| ") for line in same) == 8  # header, cycle, 5 parts, sum
