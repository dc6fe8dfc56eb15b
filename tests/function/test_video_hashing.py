"""Video hashing in memory (issue 13, worker_function/video/): sniffing, sampling by timestamp,
the five containers, pruning, each limit's own error code, hostile containers refused."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import struct
import subprocess
import sys
from functools import cache
from pathlib import Path

import av
import numpy as np
import pytest

from libra.demo.videogen import make_video
from protocol.hashes import hamming
from tests.function import helpers as h
from worker_function.errors import ImageError
from worker_function.hashing import hash_image
from worker_function.sniff import could_be_image
from worker_function.video.decode import hash_video
from worker_function.video.luma import frame_luma
from worker_function.video.settings import VideoLimits, VideoSettings
from worker_function.video.sniff import sniff_video

REPO = Path(__file__).resolve().parents[2]
CONTAINERS = ("mp4", "mov", "webm", "mkv", "avi")


@cache
def clip(container: str = "mp4", seed: int = 1, seconds: float = 3.0, fps: int = 30) -> bytes:
    return make_video(160, 90, seconds, fps, container, seed)


def _code(data: bytes, **limits: object) -> str:
    with pytest.raises(ImageError) as caught:
        hash_video(data, limits=VideoLimits(**limits))  # type: ignore[arg-type]
    return caught.value.code


def _avi_declaring(data: bytes, width: int, height: int) -> bytes:
    """An AVI whose headers (avih and the stream's BITMAPINFOHEADER) declare another size."""
    patched = bytearray(data)
    struct.pack_into("<II", patched, patched.find(b"avih") + 40, width, height)
    struct.pack_into("<ii", patched, patched.find(b"strf") + 12, width, height)
    return bytes(patched)


# --------------------------------------------------------------------------- sniffing


@pytest.mark.parametrize("container", CONTAINERS)
def test_containers_are_sniffed_from_their_bytes(container: str) -> None:
    data = clip(container)
    assert sniff_video(data) == container
    assert could_be_image(data[:512])  # the fetcher does not stop reading a video early


def test_images_and_other_bytes_are_not_videos() -> None:
    assert sniff_video(h.encode(h.generated_image(1), "JPEG")) is None
    assert sniff_video(h.encode(h.generated_image(1), "WEBP")) is None  # RIFF, not AVI
    assert sniff_video(b"\x00\x00\x00\x1cftypavif" + b"\x00" * 40) is None  # AVIF: an image
    assert sniff_video(b"<html>" * 20) is None
    assert not could_be_image(b"<!doctype html>" + b" " * 500)


# --------------------------------------------------------------------------- sampling


def test_one_frame_per_second_by_default() -> None:
    data = clip()
    digest = hash_video(data)
    video = digest.video
    assert (digest.format, digest.width, digest.height, digest.animated) == ("mp4", 160, 90, True)
    assert video.frames_decoded == 90
    assert video.frame_interval == 1.0
    assert video.duration == pytest.approx(3.0, abs=0.1)
    assert [f.frame for f in video.frames] == [0, 30, 60]
    assert [f.timestamp for f in video.frames] == pytest.approx([0.0, 1.0, 2.0])
    # The ImageHashes every result carries: the bytes' digests, the best frame's PDQ.
    assert digest.hashes.sha256 == hashlib.sha256(data).hexdigest()
    assert digest.hashes.md5 == hashlib.md5(data, usedforsecurity=False).hexdigest()
    best = max(video.frames, key=lambda f: f.quality)
    assert (digest.hashes.pdq, digest.hashes.pdq_quality) == (best.pdq, best.quality)


def test_interval_zero_hashes_every_frame_and_half_seconds_twice_as_many() -> None:
    every = hash_video(clip(), limits=VideoLimits(frame_interval_seconds=0)).video
    assert every.frame_interval is None
    assert [f.frame for f in every.frames] == list(range(90))
    half = hash_video(clip(), limits=VideoLimits(frame_interval_seconds=0.5)).video
    assert [f.frame for f in half.frames] == [0, 15, 30, 45, 60, 75]
    # Sampling chooses frames; it does not change their hashes.
    assert {f.frame: f.pdq for f in half.frames}.items() <= {
        f.frame: f.pdq for f in every.frames
    }.items()


def test_sampling_follows_timestamps_not_frame_counts() -> None:
    video = hash_video(clip(fps=10, seconds=4.0)).video
    assert video.frames_decoded == 40
    assert [f.frame for f in video.frames] == [0, 10, 20, 30]


@pytest.mark.parametrize("container", CONTAINERS)
def test_every_container_gives_the_same_pictures(container: str) -> None:
    reference = hash_video(clip("mp4")).video.frames
    frames = hash_video(clip(container)).video.frames
    assert [f.frame for f in frames] == [f.frame for f in reference]
    for ours, theirs in zip(frames, reference, strict=True):
        # Another codec, the same scene: well within a vPDQ frame match (distance <= 31).
        assert hamming(ours.pdq, theirs.pdq) <= 16


def test_different_videos_are_far_apart() -> None:
    one, two = hash_video(clip(seed=1)).video.frames, hash_video(clip(seed=2)).video.frames
    assert min(hamming(a.pdq, b.pdq) for a in one for b in two) > 64


def test_full_range_motion_jpeg_agrees_with_h264() -> None:
    mjpeg = hash_video(make_video(160, 90, 3.0, 30, "avi", 1, codec="mjpeg")).video.frames
    h264 = hash_video(clip()).video.frames
    for ours, theirs in zip(mjpeg, h264, strict=True):
        assert hamming(ours.pdq, theirs.pdq) <= 16


def test_luma_of_a_yuv_frame_is_its_rgb_luminance() -> None:
    rgb = np.asarray(h.generated_image(5, (64, 48)).convert("RGB"))
    expected = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    from_rgb = frame_luma(av.VideoFrame.from_ndarray(rgb, format="rgb24"))
    assert np.allclose(from_rgb, expected, atol=0.01)
    yuv = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
    from_y = frame_luma(yuv)
    assert from_y.shape == (48, 64)
    assert float(np.abs(from_y - expected).mean()) < 2.0  # one rounding of Y, nothing more


def test_pruning_drops_near_identical_consecutive_frames() -> None:
    every = hash_video(clip(), limits=VideoLimits(frame_interval_seconds=0)).video
    pruned = hash_video(clip(), limits=VideoLimits(frame_interval_seconds=0, prune_distance=8))
    kept = pruned.video.frames
    assert 1 < len(kept) < len(every.frames)
    assert kept[0].frame == 0
    for before, after in itertools.pairwise(kept):
        assert hamming(before.pdq, after.pdq) > 8
    everything = hash_video(clip(), limits=VideoLimits(prune_distance=256)).video
    assert [f.frame for f in everything.frames] == [0]


# --------------------------------------------------------------------------- limits


def test_each_limit_has_its_own_code() -> None:
    data = clip()  # 3 s, 90 frames of 160 x 90
    assert _code(data, max_duration_seconds=2.0) == "video_too_long"
    assert _code(data, max_frames=50) == "too_many_frames"
    assert _code(data, max_frame_pixels=160 * 90 - 1) == "frame_too_large"
    assert _code(data, max_total_pixels=160 * 90 * 40) == "video_too_many_pixels"
    hash_video(data, limits=VideoLimits(max_frames=90, max_total_pixels=160 * 90 * 90))


def test_more_sampled_frames_than_a_result_carries_is_too_many_frames(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("worker_function.video.decode.MAX_VIDEO_FRAMES", 10)
    assert _code(clip(), frame_interval_seconds=0) == "too_many_frames"


def test_settings_give_the_limits() -> None:
    settings = VideoSettings(frame_interval_seconds=0, prune_distance=3, max_frames=7)
    limits = settings.limits()
    assert (limits.frame_interval_seconds, limits.prune_distance, limits.max_frames) == (0, 3, 7)
    assert settings.worker_limits().wall_seconds == 90.0


# --------------------------------------------------------------------------- hostile input


def test_huge_declared_dimensions_are_refused_before_decoding() -> None:
    small = make_video(64, 64, 1.0, 5, "avi", 1, codec="rawvideo")
    assert _code(_avi_declaring(small, 8000, 8000)) == "frame_too_large"
    # FFmpeg drops a size no image may have; the codec is then refused before any decoding.
    assert _code(_avi_declaring(small, 65535, 65535)) == "unsupported_format"
    # A supported codec's own headers win over the container's lie: decoded at its real size.
    lying = _avi_declaring(make_video(64, 64, 1.0, 5, "avi", 1), 65535, 65535)
    assert (hash_video(lying).width, hash_video(lying).height) == (64, 64)


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(lambda v: v[: len(v) // 2], id="truncated-mp4"),
        pytest.param(lambda v: v[:32] + bytes(range(256)) * 40, id="garbage-after-ftyp"),
        pytest.param(lambda v: b"\x1a\x45\xdf\xa3" + b"\x00" * 4000, id="garbage-after-ebml"),
        pytest.param(lambda v: b"RIFF\x00\x00\x00\x00AVI " + b"\xff" * 3000, id="empty-avi"),
        pytest.param(lambda v: v[:12], id="ftyp-only"),
    ],
)
def test_broken_containers_are_decode_failed(bad: object) -> None:
    assert callable(bad)
    assert _code(bad(clip())) == "decode_failed"


def test_unsupported_codec_is_refused() -> None:
    assert _code(make_video(64, 64, 1.0, 5, "avi", 1, codec="rawvideo")) == "unsupported_format"


def test_corrupt_packets_cost_their_frames_not_the_video() -> None:
    data = clip("mp4", seconds=3.0)
    third = len(data) // 3
    damaged = data[:third] + bytes(2000) + data[third + 2000 :]
    video = hash_video(damaged).video
    assert 0 < video.frames_decoded <= 90


def test_an_image_is_not_a_video_and_a_video_not_an_image() -> None:
    assert _code(h.encode(h.generated_image(1), "PNG")) == "not_an_image"
    with pytest.raises(ImageError) as caught:
        hash_image(clip())
    assert caught.value.code == "not_an_image"


# --------------------------------------------------------------------------- libra hash


def test_libra_hash_takes_videos(tmp_path: Path) -> None:
    video = tmp_path / "clip.webm"
    video.write_bytes(clip("webm"))
    image = tmp_path / "still.png"
    image.write_bytes(h.encode(h.generated_image(3), "PNG"))
    code = "import sys\nfrom libra.cli import main\nsys.argv[0] = 'libra'\nsys.exit(main())"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIBRA_")}
    env.update(PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1")

    def run(*args: str) -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", code, "hash", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.splitlines()

    lines = [json.loads(line) for line in run(str(video), str(image), "--frame-interval", "0.5")]
    assert lines[0]["format"] == "webm"
    assert [f["frame"] for f in lines[0]["video"]["frames"]] == [0, 15, 30, 45, 60, 75]
    assert "video" not in lines[1] and lines[1]["format"] == "PNG"
    text = run(str(video), "--vpdq-text")
    expected = hash_video(clip("webm")).video.frames
    assert text == [f"{f.frame},{f.quality},{f.pdq},{f.timestamp:.3f}" for f in expected]
