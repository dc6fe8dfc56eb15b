"""Decoding in resource-limited worker processes: a crash, a CPU hog, a hang or a memory hog
costs one image (a stable error code) and the pool keeps serving; workers cannot write files.
Overload is a 503 with Retry-After rather than an unbounded queue."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import httpx
import pytest

from protocol.lab import LabNetwork
from tests.function import helpers as h
from tests.function import worker_tasks
from tests.function.conftest import LAB_HOST
from worker_function.app import create_app
from worker_function.errors import AnalysisFailed, PixelLimit
from worker_function.hashing import DecodeLimits, hash_image
from worker_function.isolation import (
    DecodePool,
    DecoderCrashed,
    DecodeTimeout,
    WorkerLimits,
    WorkerTask,
)
from worker_function.settings import FunctionSettings

JPEG = h.encode(h.generated_image(11), "JPEG", quality=85)
# The wall-clock limit also covers a fresh worker's start-up (spawn + imports), which takes
# seconds at load 20: tests that do not test the wall limit keep it far away.
GENEROUS_WALL = 240.0
LIMITS = WorkerLimits(memory_bytes=1024 * 1024 * 1024, cpu_seconds=5, wall_seconds=GENEROUS_WALL)


async def _pool(task: WorkerTask, limits: WorkerLimits = LIMITS) -> AsyncIterator[DecodePool]:
    pool = DecodePool(1, DecodeLimits(), limits, "process", task)
    try:
        yield pool
    finally:
        pool.close()


async def test_a_crashing_decoder_costs_one_image_and_the_pool_recovers() -> None:
    async for pool in _pool(worker_tasks.segfault):
        with pytest.raises(DecoderCrashed, match="SIGSEGV") as crashed:
            await pool.hash(b"crash", dihedral=False)
        assert crashed.value.code == "decoder_crashed"
        digest = await pool.hash(JPEG, dihedral=False)  # a fresh worker took its place
        assert digest.hashes == hash_image(JPEG).hashes


async def test_abort_is_a_crash_not_a_server_error() -> None:
    async for pool in _pool(worker_tasks.abort):
        with pytest.raises(DecoderCrashed, match="SIGABRT"):
            await pool.hash(JPEG, dihedral=False)


async def test_a_cpu_hog_is_stopped_by_rlimit_cpu() -> None:
    # The wall limit is far away: only RLIMIT_CPU (1 s of CPU, however long that takes on a
    # loaded machine) can end this; a wall-clock stop would be DecodeTimeout and fail the match.
    limits = WorkerLimits(
        memory_bytes=LIMITS.memory_bytes, cpu_seconds=1, wall_seconds=GENEROUS_WALL
    )
    async for pool in _pool(worker_tasks.spin, limits):
        with pytest.raises(DecoderCrashed, match=r"SIGXCPU|SIGKILL"):
            await pool.hash(JPEG, dihedral=False)


async def test_a_hang_is_stopped_by_the_wall_clock_limit() -> None:
    # The task sleeps 60 s without CPU: only the 1 s wall limit can end it, at any load.
    limits = WorkerLimits(memory_bytes=LIMITS.memory_bytes, cpu_seconds=5, wall_seconds=1.0)
    async for pool in _pool(worker_tasks.sleep, limits):
        with pytest.raises(DecodeTimeout) as timed_out:
            await pool.hash(JPEG, dihedral=False)
        assert timed_out.value.code == "decode_timeout"


async def test_workers_cannot_write_files() -> None:
    async for pool in _pool(worker_tasks.write_file):
        with pytest.raises(AnalysisFailed, match="PermissionError"):
            await pool.hash(JPEG, dihedral=False)


async def test_memory_limit_turns_a_huge_image_into_pixel_limit() -> None:
    # 60 MP of one colour: a small PNG whose decode needs ~180 MB, over a 400 MiB address space
    # once the interpreter and libraries are counted.
    big = h.pixel_bomb_png(10_000, 6_000)
    limits = WorkerLimits(
        memory_bytes=400 * 1024 * 1024, cpu_seconds=10, wall_seconds=GENEROUS_WALL
    )
    pool = DecodePool(1, DecodeLimits(max_pixels=80_000_000), limits, "process")
    try:
        with pytest.raises((PixelLimit, DecoderCrashed)):
            await pool.hash(big, dihedral=False)
        assert (await pool.hash(JPEG, dihedral=True)).hashes == hash_image(
            JPEG, dihedral=True
        ).hashes
    finally:
        pool.close()


async def test_concurrent_decodes_share_the_pool() -> None:
    pool = DecodePool(2, DecodeLimits(), LIMITS, "process")
    try:
        images = [h.encode(h.generated_image(20 + i), "PNG") for i in range(6)]
        results = await asyncio.gather(*(pool.hash(data, dihedral=False) for data in images))
        assert [r.hashes for r in results] == [hash_image(data).hashes for data in images]
    finally:
        pool.close()


async def test_overload_is_503_with_retry_after() -> None:
    # The first analysis is held open by a gate the test controls (no timer), so the second
    # surely meets a full function, at any machine speed.
    gate = threading.Event()
    held = h.gated(JPEG, gate)
    with h.ImageServer({"/slow.jpg": held, "/a.jpg": h.Static(200, JPEG)}) as images:
        lab = LabNetwork(hosts={LAB_HOST: "127.0.0.1"}, allow_ports=[images.port])
        settings = FunctionSettings(
            lab=None,
            max_in_flight=1,
            overload_retry_after_seconds=7,
            deadline_seconds=GENEROUS_WALL,
            decode_isolation="thread",
        )
        app = create_app(settings, lab=lab)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://f.test") as client:
            base = f"http://{LAB_HOST}:{images.port}"
            first = asyncio.create_task(
                client.post("/v1/analyze", json={"url": f"{base}/slow.jpg"})
            )
            while app.state.admission.in_flight == 0:
                await asyncio.sleep(0.01)
            busy = await client.post("/v1/analyze", json={"url": f"{base}/a.jpg"})
            assert busy.status_code == 503
            assert busy.json()["error"]["code"] == "overloaded"
            assert busy.headers["retry-after"] == "7"
            gate.set()
            assert (await first).status_code == 200
            assert app.state.admission.in_flight == 0
            again = await client.post("/v1/analyze", json={"url": f"{base}/a.jpg"})
            assert again.status_code == 200
