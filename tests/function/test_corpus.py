"""The shipped decoder fuzz corpus (tests/function/corpus, made by make_corpus.py): malformed,
truncated, bit-flipped and absurd-header files give their recorded stable code, in-process and
in the isolated worker pool, and never anything but an ImageError."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from worker_function.errors import FunctionError, ImageError
from worker_function.hashing import DecodeLimits, hash_image
from worker_function.isolation import DecodePool, WorkerLimits

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning"),
]

CORPUS = Path(__file__).with_name("corpus")
MANIFEST: dict[str, str] = json.loads((CORPUS / "manifest.json").read_text())
LIMITS = DecodeLimits(max_pixels=4_000_000)
CODES = {"ok", "not_an_image", "unsupported_format", "pixel_limit", "decode_failed"}


def _outcome(data: bytes) -> str:
    try:
        hash_image(data, limits=LIMITS)
    except ImageError as exc:  # any other exception fails the test
        return exc.code
    return "ok"


def test_corpus_is_shipped_and_complete() -> None:
    files = {p.name for p in CORPUS.iterdir() if p.name != "manifest.json"}
    assert files == set(MANIFEST)
    assert len(files) >= 100
    assert set(MANIFEST.values()) <= CODES
    assert {"ok", "decode_failed", "not_an_image", "pixel_limit"} <= set(MANIFEST.values())


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_corpus_file_in_process(name: str) -> None:
    assert _outcome((CORPUS / name).read_bytes()) == MANIFEST[name]


async def test_corpus_through_the_isolated_pool() -> None:
    pool = DecodePool(2, LIMITS, WorkerLimits(cpu_seconds=10, wall_seconds=20.0))
    names = sorted(MANIFEST)

    async def one(name: str) -> str:
        try:
            await pool.hash((CORPUS / name).read_bytes(), dihedral=False)
        except FunctionError as exc:
            return exc.code
        return "ok"

    try:
        codes = await asyncio.gather(*(one(name) for name in names))
    finally:
        pool.close()
    assert dict(zip(names, codes, strict=True)) == MANIFEST
