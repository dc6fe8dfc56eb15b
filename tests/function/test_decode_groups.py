"""Small images share a hand-off to a decode worker while the workers are busy (issue 17), and
a group with a crashing image still costs only that image."""

from __future__ import annotations

import asyncio

from tests.function import helpers as h
from tests.function import worker_tasks
from worker_function.hashing import DecodeLimits, ImageDigest, hash_image
from worker_function.isolation import (
    GROUP_MAX_BYTES,
    DecodePool,
    DecoderCrashed,
    WorkerLimits,
)

# Far from any wall-clock limit: a fresh worker's start-up counts in it (load 20 in CI).
LIMITS = WorkerLimits(memory_bytes=1024 * 1024 * 1024, cpu_seconds=5, wall_seconds=240.0)
SMALL = [h.encode(h.generated_image(60 + i, (96, 72)), "JPEG") for i in range(10)]


async def test_waiting_small_images_share_hand_offs() -> None:
    assert all(len(data) <= GROUP_MAX_BYTES for data in SMALL)
    pool = DecodePool(1, DecodeLimits(), LIMITS, "process")
    try:
        digests = await asyncio.gather(*(pool.hash(d, dihedral=True) for d in SMALL))
        # One worker: the first image went alone, the nine that waited went in groups.
        assert 1 <= pool.groups_sent < len(SMALL) - 1
    finally:
        pool.close()
    expected = [hash_image(d, dihedral=True).hashes for d in SMALL]
    assert [d.hashes for d in digests] == expected


async def test_a_crash_in_a_group_costs_only_its_image() -> None:
    pool = DecodePool(1, DecodeLimits(), LIMITS, "process", worker_tasks.segfault)
    items = [*SMALL[:4], b"crash", *SMALL[4:8]]
    try:
        answers = await asyncio.gather(
            *(pool.hash(d, dihedral=False) for d in items), return_exceptions=True
        )
        assert pool.groups_sent >= 1
    finally:
        pool.close()
    crashed = answers.pop(4)
    assert isinstance(crashed, DecoderCrashed)
    assert all(isinstance(a, ImageDigest) for a in answers), answers
    good = [*SMALL[:4], *SMALL[4:8]]
    assert [a.hashes for a in answers if isinstance(a, ImageDigest)] == [
        hash_image(d).hashes for d in good
    ]


async def test_image_errors_stay_with_their_image_in_a_group() -> None:
    pool = DecodePool(1, DecodeLimits(), LIMITS, "process")
    items = [SMALL[0], b"<html>no</html>", SMALL[1], SMALL[2][: len(SMALL[2]) // 3], SMALL[3]]
    try:
        answers = await asyncio.gather(
            *(pool.hash(d, dihedral=False) for d in items), return_exceptions=True
        )
    finally:
        pool.close()
    codes = [getattr(a, "code", "ok") for a in answers]
    assert codes == ["ok", "not_an_image", "ok", "decode_failed", "ok"]


async def test_large_images_go_alone() -> None:
    big = h.noise_png(1, (400, 400))
    assert len(big) > GROUP_MAX_BYTES
    pool = DecodePool(1, DecodeLimits(), LIMITS, "process")
    try:
        await asyncio.gather(*(pool.hash(big, dihedral=False) for _ in range(3)))
        assert pool.groups_sent == 0
    finally:
        pool.close()
