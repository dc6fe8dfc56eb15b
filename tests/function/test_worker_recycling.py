"""Decode workers are replaced when their resident memory grew past a bound, and after a
(large) number of tasks in any case (issue 17: not every 1,000 tasks regardless, which cost 5 %
of the function's CPU on small images). The task a retiring worker held is answered by a fresh
worker, never lost."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest
from pydantic import ValidationError

from tests.function import helpers as h
from tests.function import worker_tasks
from worker_function.errors import AnalysisFailed
from worker_function.hashing import DecodeLimits, hash_image
from worker_function.isolation import (
    MIN_RECYCLE_RSS_BYTES,
    DecodePool,
    WorkerLimits,
    WorkerTask,
)
from worker_function.settings import FunctionSettings

MIB = 1024 * 1024
# Far from any wall-clock limit: a fresh worker's start-up counts in it (load 20 in CI).
BASE = WorkerLimits(memory_bytes=1024 * MIB, cpu_seconds=5, wall_seconds=240.0)


async def _run(pool: DecodePool, data: bytes) -> dict[str, Any]:
    report: Any = await pool.hash(data, dihedral=False)
    return dict(report)


def _pool(task: WorkerTask, **limits: int) -> DecodePool:
    return DecodePool(1, DecodeLimits(), replace(BASE, **limits), "process", task)


async def test_a_worker_whose_memory_grew_past_the_bound_is_replaced_before_its_next_task() -> None:
    bound = MIN_RECYCLE_RSS_BYTES + 64 * MIB
    pool = _pool(worker_tasks.pid_and_grow, recycle_rss_bytes=bound)
    try:
        first = await _run(pool, b"small")
        assert first["resident"] < bound  # a fresh worker is well below the bound
        again = await _run(pool, b"small")
        assert again["pid"] == first["pid"]  # not grown: the same worker serves on
        grown = await _run(pool, f"grow:{bound // MIB}".encode())
        assert grown["pid"] == first["pid"] and grown["resident"] > bound
        # The next task is answered, by a fresh worker that took the retired one's place.
        after = await _run(pool, b"small")
        assert after["pid"] != first["pid"]
        assert after["resident"] < bound
    finally:
        pool.close()


async def test_a_grown_worker_retires_before_a_group_too() -> None:
    bound = MIN_RECYCLE_RSS_BYTES + 64 * MIB
    pool = _pool(worker_tasks.pid_and_grow, recycle_rss_bytes=bound)
    try:
        grown = await _run(pool, f"grow:{bound // MIB}".encode())
        # Several small images at once: one alone, the rest wait and go as a group.
        answers = await asyncio.gather(*(_run(pool, f"s{i}".encode()) for i in range(5)))
        assert pool.groups_sent >= 1
        assert all(a["pid"] != grown["pid"] for a in answers)
    finally:
        pool.close()


async def test_workers_are_replaced_after_recycle_tasks_in_any_case() -> None:
    pool = _pool(worker_tasks.pid_and_grow, recycle_tasks=2)
    try:
        pids = [(await _run(pool, b"small"))["pid"] for _ in range(5)]
    finally:
        pool.close()
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]


async def test_real_images_hash_the_same_across_a_retirement() -> None:
    images = [h.encode(h.generated_image(70 + i, (96, 72)), "PNG") for i in range(3)]
    pool = DecodePool(1, DecodeLimits(), replace(BASE, recycle_tasks=1), "process")
    try:
        digests = [await pool.hash(data, dihedral=False) for data in images]
    finally:
        pool.close()
    assert [d.hashes for d in digests] == [hash_image(data).hashes for data in images]


async def test_a_decoder_that_exits_with_the_retirement_status_does_not_loop() -> None:
    pool = _pool(worker_tasks.retire_always)
    try:
        with pytest.raises(AnalysisFailed, match="retired"):
            await pool.hash(b"anything", dihedral=False)
    finally:
        pool.close()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("recycle_rss_bytes", MIN_RECYCLE_RSS_BYTES - 1, "recycle_rss_bytes must be at least"),
        ("recycle_tasks", 0, "recycle_tasks must be at least 1"),
    ],
)
def test_recycling_bounds_that_would_retire_every_worker_are_refused(
    field: str, value: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        WorkerLimits(**{field: value})


def test_settings_carry_the_recycling_bounds_to_the_workers() -> None:
    limits = FunctionSettings(decode_recycle_rss_mb=300, decode_recycle_tasks=50).worker_limits()
    assert (limits.recycle_rss_bytes, limits.recycle_tasks) == (300 * MIB, 50)
    defaults = FunctionSettings().worker_limits()
    assert (defaults.recycle_rss_bytes, defaults.recycle_tasks) == (512 * MIB, 20_000)
    with pytest.raises(ValidationError, match="decode_recycle_rss_mb"):
        FunctionSettings(decode_recycle_rss_mb=64)
