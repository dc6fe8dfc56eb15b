"""Video decoding in isolated workers: a DecodePool of its own, running ``hash_video_in_worker``.

Its own pool, not the image decoders': a video takes seconds where an image takes milliseconds,
so it gets its own (few) workers and its own CPU and wall-clock limits (``[video]`` settings),
and cannot hold up the images queued behind it. The workers are the image decoders' kind
(isolation.py): spawned, RLIMIT_AS/CPU/FSIZE, a write-refusing audit hook, killed on timeout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from ..errors import AnalysisFailed
from ..hashing import DecodeLimits, ImageDigest
from ..isolation import DecodePool, Isolation, arm_cpu_limit
from .settings import VideoLimits, VideoSettings

if TYPE_CHECKING:
    from .decode import VideoDigest


def hash_video_in_worker(
    data: bytes, dihedral: bool, limits: DecodeLimits, cpu_seconds: int
) -> ImageDigest:
    """The worker task (DecodePool's WorkerTask shape; ``dihedral`` does not apply to frames)."""
    from .decode import hash_video  # PyAV (FFmpeg) loads in the workers, not with the app

    del dihedral
    arm_cpu_limit(cpu_seconds)
    return hash_video(data, limits=limits if isinstance(limits, VideoLimits) else None)


class VideoPool:
    """Hashes videos in isolated workers (or threads, for trusted local input)."""

    def __init__(self, settings: VideoSettings, isolation: Isolation = "process") -> None:
        self.limits = settings.limits()
        self.isolation = isolation
        self._threads = anyio.CapacityLimiter(settings.max_concurrent_decodes)
        self._pool = DecodePool(
            settings.max_concurrent_decodes,
            self.limits,
            settings.worker_limits(),
            isolation,
            task=hash_video_in_worker,
        )

    async def hash(self, data: bytes) -> VideoDigest:
        from .decode import VideoDigest, hash_video

        if self.isolation == "thread":
            # DecodePool's thread mode runs the image hasher: call ours here instead.
            def work() -> VideoDigest:
                return hash_video(data, limits=self.limits)

            return await anyio.to_thread.run_sync(work, limiter=self._threads)
        digest = await self._pool.hash(data, dihedral=False)
        if not isinstance(digest, VideoDigest):
            raise AnalysisFailed("the video decoder answered with an image digest")
        return digest

    def warm_up(self) -> None:
        self._pool.warm_up()

    def close(self) -> None:
        self._pool.close()
