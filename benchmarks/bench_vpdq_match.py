"""vPDQ video matching: the listed-video index (node.matching.video_index: candidates through the
PDQ multi-index, then the exact vPDQ comparison) against a linear scan, in one run.

    .venv/bin/python benchmarks/bench_vpdq_match.py [--videos 100000] [--frames 60]
        [--queries 400] [--linear-queries 4] [--images 2000] [--linear-images 10]
        [--seed 1] [--json out.json]

Data (seeded, no video involved): each listed video is ``--frames`` PDQ frames in scenes (a
new scene with probability 0.1 a frame; frames of a scene drift ~4 bits from its base hash,
as consecutive frames sampled at 1 fps do). Quality: 85 % of frames 70-100, 10 % 50-69,
5 % 0-49 (fades, dark frames; filtered out by vPDQ). Queries: half near-duplicates of a
listed video (every frame moved ~8 bits, as a re-encode does, 10 % of frames dropped), half
new videos drawn the same way (no match). Image lookups (single frame, ``vpdq-frame``):
half a listed frame moved ~8 bits, half random.

Baseline: a linear scan with numpy's vectorised popcount over every listed frame (the same
distinct, quality-filtered frames the index holds), giving the same shares and verdicts; the
run checks that both give identical answers on the baseline's queries.
Reported: build seconds (parsing the frames' hex, and the frame index), memory (index bytes,
process RSS), queries per second (one video at a time, and as one batch), candidates per
query, and the ratio to the linear scan.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node.matching.video_index import VideoIndex, VideoMatch
from node.matching.vpdq import U64, Frame, VpdqResult, VpdqSettings, prepare

I64 = npt.NDArray[np.int64]


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def sparse_bits(rng: np.random.Generator, shape: tuple[int, ...], ands: int) -> U64:
    """Random words with each bit set with probability 2**-ands (256 bits: 256/2**ands)."""
    out = rng.integers(0, 2**64, size=shape, dtype=np.uint64)
    for _ in range(ands - 1):
        out &= rng.integers(0, 2**64, size=shape, dtype=np.uint64)
    return out


def make_videos(n: int, frames: int, rng: np.random.Generator) -> tuple[U64, I64]:
    """(n, frames, 4) codes and (n, frames) qualities."""
    new_scene = rng.random((n, frames)) < 0.1
    new_scene[:, 0] = True
    scene = np.cumsum(new_scene, axis=1) - 1
    bases = rng.integers(0, 2**64, size=(n, frames, 4), dtype=np.uint64)
    codes = np.take_along_axis(bases, scene[:, :, None], axis=1)
    codes ^= sparse_bits(rng, (n, frames, 4), 6)  # ~4 bits of drift within a scene
    band = rng.random((n, frames))
    quality = np.where(
        band < 0.85,
        rng.integers(70, 101, (n, frames)),
        np.where(band < 0.95, rng.integers(50, 70, (n, frames)), rng.integers(0, 50, (n, frames))),
    )
    return codes, quality.astype(np.int64)


def to_frames(codes: U64, quality: I64) -> list[Frame]:
    """One video's frames as the node receives them (hex strings)."""
    text = codes.astype(">u8").tobytes().hex()
    return [
        Frame(i, float(i), text[64 * i : 64 * i + 64], int(quality[i]))
        for i in range(codes.shape[0])
    ]


def near_copy(codes: U64, quality: I64, rng: np.random.Generator) -> list[Frame]:
    moved = codes ^ sparse_bits(rng, codes.shape, 5)  # ~8 bits per frame
    keep = rng.random((codes.shape[0],)) >= 0.1
    return [f for f, k in zip(to_frames(moved, quality), keep.tolist(), strict=True) if k]


class LinearScan:
    """Every listed frame in one array: vPDQ against all videos by vectorised popcount."""

    def __init__(self, index: VideoIndex, settings: VpdqSettings) -> None:
        listed = list(index.listed())  # the same distinct, quality-filtered frames
        self.ids = np.asarray([video_id for video_id, _ in listed], dtype=np.int64)
        counts = np.asarray([codes.shape[0] for _, codes in listed], dtype=np.int64)
        self.counts = counts
        self.owner = np.repeat(np.arange(len(self.ids)), counts)
        self.codes = np.concatenate([codes for _, codes in listed])
        self.settings = settings

    def match(self, frames: list[Frame]) -> list[VideoMatch]:
        s = self.settings
        query = prepare(frames, s.min_quality)
        listed_hit = np.zeros(self.codes.shape[0], dtype=bool)
        query_hits = np.zeros((query.shape[0], len(self.ids)), dtype=bool)
        for n in range(query.shape[0]):
            d = np.bitwise_count(self.codes ^ query[n]).sum(axis=1, dtype=np.uint16)
            near = d <= s.max_distance
            listed_hit |= near
            query_hits[n, self.owner[near]] = True
        c_count = np.bincount(self.owner[listed_hit], minlength=len(self.ids))
        q_count = query_hits.sum(axis=0)
        out = []
        for v in np.flatnonzero(q_count):
            q_pct = int(q_count[v]) * 100.0 / query.shape[0]
            c_pct = int(c_count[v]) * 100.0 / int(self.counts[v])
            ok = q_pct >= s.query_match_percent and c_pct >= s.compared_match_percent
            result = VpdqResult(q_pct, c_pct, query.shape[0], int(self.counts[v]), ok)
            if ok:
                out.append(VideoMatch(int(self.ids[v]), result))
        return sorted(
            out,
            key=lambda m: (
                -m.result.compared_match_percent,
                -m.result.query_match_percent,
                m.video_id,
            ),
        )

    def match_frame(self, pdq: str, quality: int) -> set[int]:
        if quality < self.settings.min_quality:
            return set()
        code = np.frombuffer(bytes.fromhex(pdq), dtype=">u8").astype(np.uint64)
        d = np.bitwise_count(self.codes ^ code).sum(axis=1, dtype=np.uint16)
        return {int(self.ids[v]) for v in np.unique(self.owner[d <= self.settings.max_distance])}


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


CPU: dict[str, float] = {}  # CPU seconds of each timed phase (the machine is shared)


def timed(fn: Any, *args: Any, name: str = "") -> tuple[float, Any]:
    start, cpu = time.perf_counter(), cpu_s()
    out = fn(*args)
    if name:
        CPU[name] = round(cpu_s() - cpu, 2)
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=100_000)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--linear-queries", type=int, default=4)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--linear-images", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    settings = VpdqSettings()
    started = time.perf_counter()
    rss0 = rss_mb()

    t, (codes, quality) = timed(make_videos, args.videos, args.frames, rng)
    print(f"data: {args.videos:,} videos x {args.frames} frames in {t:.1f} s", flush=True)

    def listed() -> Iterator[tuple[int, list[Frame]]]:
        for v in range(args.videos):
            yield v, to_frames(codes[v], quality[v])

    t_build, index = timed(VideoIndex.build, listed(), settings, name="build")
    rss_built = rss_mb()
    print(
        f"build: {t_build:.1f} s, {index.frame_count:,} frames indexed, "
        f"index {index.nbytes / 2**20:,.0f} MiB, RSS {rss_built:,.0f} MiB",
        flush=True,
    )

    half = args.queries // 2
    sources = rng.choice(args.videos, size=half, replace=False)
    queries = [near_copy(codes[v], quality[v], rng) for v in sources]
    new_codes, new_quality = make_videos(args.queries - half, args.frames, rng)
    queries += [to_frames(c, q) for c, q in zip(new_codes, new_quality, strict=True)]

    index.match(queries[0])  # warm-up: loads the compiled search kernel
    t_single, single = timed(lambda: [index.match(q) for q in queries], name="index_single")
    t_batch, batch = timed(index.match_many, queries, name="index_batch")
    candidates = [len(found) for found in index.compare_many(queries)]
    assert single == batch
    found_sources = sum(any(m.video_id == v for m in single[i]) for i, v in enumerate(sources))
    false_hits = sum(bool(found) for found in single[half:])
    print(
        f"index: {len(queries) / t_single:,.1f} videos/s one at a time, "
        f"{len(queries) / t_batch:,.1f} batched; near copies found {found_sources}/{half}, "
        f"matches among new videos {false_hits}",
        flush=True,
    )

    scan = LinearScan(index, settings)
    n_lin = min(args.linear_queries, len(queries))
    chosen = [*range(min(n_lin // 2, half)), *range(half, half + n_lin - min(n_lin // 2, half))]
    t_linear, linear = timed(lambda: [scan.match(queries[i]) for i in chosen], name="linear")
    agree = all(linear[k] == single[i] for k, i in enumerate(chosen))
    video_qps_linear = len(chosen) / t_linear
    print(
        f"linear: {video_qps_linear:.3f} videos/s on {len(chosen)} queries; same answers: {agree}"
    )

    # Single frames (images): half near a listed frame, half random.
    m = args.images
    pick = rng.integers(0, args.videos, m // 2), rng.integers(0, args.frames, m // 2)
    near = codes[pick] ^ sparse_bits(rng, (m // 2, 4), 5)
    far = rng.integers(0, 2**64, size=(m - m // 2, 4), dtype=np.uint64)
    hexes = np.concatenate([near, far]).astype(">u8").tobytes().hex()
    images = [(hexes[64 * i : 64 * i + 64], 100) for i in range(m)]
    t_img, found_img = timed(index.match_frames, images, name="images_index")
    n_li = min(args.linear_images, m)
    img_pick = [*range(n_li // 2), *range(m // 2, m // 2 + n_li - n_li // 2)]
    t_img_lin, lin_img = timed(
        lambda: [scan.match_frame(*images[i]) for i in img_pick], name="images_linear"
    )
    img_agree = all(
        {f.video_id for f in found_img[i]} == lin_img[k] for k, i in enumerate(img_pick)
    )
    print(
        f"images: index {m / t_img:,.0f}/s batched, linear {n_li / t_img_lin:.2f}/s; "
        f"same answers: {img_agree}"
    )

    result = {
        "videos": args.videos,
        "frames_per_video": args.frames,
        "frames_indexed": index.frame_count,
        "build_s": round(t_build, 2),
        "index_mib": round(index.nbytes / 2**20, 1),
        "rss_mib_before": round(rss0, 1),
        "rss_mib_built": round(rss_built, 1),
        "rss_peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "queries": len(queries),
        "video_qps_single": round(len(queries) / t_single, 2),
        "video_qps_batch": round(len(queries) / t_batch, 2),
        "candidates_per_query_mean": round(float(np.mean(candidates)), 2),
        "near_copies_found": f"{found_sources}/{half}",
        "false_matches_new_videos": false_hits,
        "linear_queries": len(chosen),
        "video_qps_linear": round(video_qps_linear, 4),
        "video_ratio_single": round((len(queries) / t_single) / video_qps_linear, 1),
        "linear_agrees": agree,
        "image_qps_batch": round(m / t_img, 1),
        "image_qps_linear": round(n_li / t_img_lin, 3),
        "image_ratio": round((m / t_img) / (n_li / t_img_lin), 1),
        "image_linear_agrees": img_agree,
        "cpu_s": CPU,
        # The same ratios by CPU time (a loaded shared machine stretches wall time unevenly).
        "video_ratio_single_cpu": round(
            (len(queries) / max(CPU["index_single"], 1e-9)) / (len(chosen) / CPU["linear"]), 1
        ),
        "image_ratio_cpu": round(
            (m / max(CPU["images_index"], 1e-9)) / (n_li / CPU["images_linear"]), 1
        ),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "total_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if not (agree and img_agree):
        raise SystemExit("the index and the linear scan disagree")


if __name__ == "__main__":
    main()
