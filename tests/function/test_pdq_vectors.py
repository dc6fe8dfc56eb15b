"""PDQ conformance against Meta's reference vectors (/work/shared/vectors/pdq, see its README).

Rule: within Hamming distance 10 of the reference hash wherever quality >= 80.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pdqhash
import pytest

from protocol.hashes import PDQ_MIN_QUALITY, hamming
from worker_function.hashing import hash_image, pdq_hex

VECTORS = Path(__file__).resolve().parents[2].parent / "shared" / "vectors" / "pdq"
MAX_DISTANCE = 10
MIN_QUALITY_FOR_RULE = 80

if not (VECTORS / "expected.csv").is_file():
    reason = f"PDQ vectors not found at {VECTORS}"
    if os.environ.get("CI", "").lower() == "true":
        raise RuntimeError(reason + " (required when CI=true)")
    pytest.skip(reason, allow_module_level=True)


@dataclass(frozen=True)
class Vector:
    path: str
    pdq: str
    quality: int | None
    source: str


def load_vectors() -> list[Vector]:
    # The path fields carry stray carriage returns ("...jpg\r,hash,..."): split on "\n" only and
    # strip every field. read_text() would turn each "\r" into a line break of its own.
    text = (VECTORS / "expected.csv").read_bytes().decode("utf-8")
    lines = [line for line in text.split("\n") if line.strip()]
    header = [field.strip() for field in lines[0].split(",")]
    assert header == ["path", "hash", "quality", "source"]
    vectors = []
    for line in lines[1:]:
        path, pdq, quality, source = (field.strip() for field in line.split(","))
        vectors.append(Vector(path, pdq.lower(), int(quality) if quality else None, source))
    return vectors


ALL_VECTORS = load_vectors()
DIHEDRAL_FILES = [
    "bridge-1-original.jpg",
    "bridge-2-rotate-90.jpg",
    "bridge-3-rotate-180.jpg",
    "bridge-4-rotate-270.jpg",
    "bridge-5-flipx.jpg",
    "bridge-6-flipy.jpg",
    "bridge-7-flip-plus-1.jpg",
    "bridge-8-flip-minus-1.jpg",
]


def test_csv_parsed_completely() -> None:
    assert len(ALL_VECTORS) == 28
    assert all(len(v.pdq) == 64 and "\r" not in v.path for v in ALL_VECTORS)
    assert all((VECTORS / v.path).is_file() for v in ALL_VECTORS)


@pytest.mark.parametrize("vector", ALL_VECTORS, ids=[v.path for v in ALL_VECTORS])
def test_reference_hash_within_rule(vector: Vector) -> None:
    digest = hash_image((VECTORS / vector.path).read_bytes())
    quality = digest.hashes.pdq_quality
    if vector.quality is not None:
        assert abs(quality - vector.quality) <= 10
    if min(quality, vector.quality or 100) < MIN_QUALITY_FOR_RULE:
        # Outside the conformance rule; such hashes must at least be flagged for the matcher.
        assert quality < PDQ_MIN_QUALITY
        return
    assert hamming(digest.hashes.pdq, vector.pdq) <= MAX_DISTANCE


def test_every_colour_mode_hashes_like_rgb() -> None:
    reference = hash_image((VECTORS / "images/modes/RGB.jpg").read_bytes()).hashes.pdq
    modes = sorted((VECTORS / "images/modes").iterdir())
    assert {p.name for p in modes} >= {
        "CMYK.jpg",
        "L.png",
        "LA.png",
        "P.png",
        "RGBA.png",
        "YCbCr.jpg",
    }
    for path in modes:
        digest = hash_image(path.read_bytes())
        assert hamming(digest.hashes.pdq, reference) <= MAX_DISTANCE, path.name
        assert digest.hashes.pdq_quality >= MIN_QUALITY_FOR_RULE, path.name


def test_low_quality_images_report_it() -> None:
    digest = hash_image((VECTORS / "images/misc/small.jpg").read_bytes())
    assert digest.hashes.pdq_quality < 50


def test_dihedral_hashes_match_transformed_files() -> None:
    expected = {Path(v.path).name: v.pdq for v in ALL_VECTORS if v.path.startswith("images/dih/")}
    original = (VECTORS / "images/dih" / DIHEDRAL_FILES[0]).read_bytes()
    variants = hash_image(original, dihedral=True).hashes.pdq_dihedral
    assert variants is not None and len(variants) == 8
    # pdqhash's order is: original, rot90, rot180, rot270, flip x, flip y, flip +1, flip -1.
    for name, variant in zip(DIHEDRAL_FILES, variants, strict=True):
        assert hamming(variant, expected[name]) <= MAX_DISTANCE, name
        others = [hamming(variant, expected[n]) for n in DIHEDRAL_FILES if n != name]
        assert min(others) > 64, name  # and it is not close to any other transform


def test_hex_convention_is_msb_first() -> None:
    # bit 0 of the vector is the top bit of the first hex digit (Meta's convention).
    vector = np.zeros(256, dtype=np.int64)
    vector[0] = 1
    vector[255] = 1
    assert pdq_hex(vector) == "8" + "0" * 62 + "1"
    pixels = np.zeros((64, 64, 3), dtype=np.uint8)
    pixels[:, 32:] = 255
    computed, _ = pdqhash.compute(pixels)
    as_int = int("".join("1" if b else "0" for b in computed), 2)
    assert pdq_hex(computed) == f"{as_int:064x}"
