"""The ``[video]`` settings of the function (docs/operations-function.md, Video) and the limits
they give the decoder. Environment: ``LIBRA_FUNCTION_VIDEO__<NAME>``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from ..hashing import DecodeLimits

if TYPE_CHECKING:
    from ..isolation import WorkerLimits


@dataclass(frozen=True)
class VideoLimits(DecodeLimits):
    """What one video may cost. A DecodeLimits (its ``max_pixels`` unused) so that the image
    DecodePool carries it to the video task unchanged."""

    frame_interval_seconds: float = 1.0  # 0 = every frame
    prune_distance: int | None = None  # drop a frame within this PDQ distance of the last kept
    max_duration_seconds: float = 600.0
    max_frames: int = 36_000  # frames decoded (every one costs decoding, sampled or not)
    max_frame_pixels: int = 4096 * 2160
    max_total_pixels: int = 20_000_000_000  # all decoded frames together


class VideoSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Off: videos are answered not_an_image, as before issue 13.
    enabled: bool = True
    # Seconds between sampled frames, by timestamp; 0 = every frame (as Meta's vPDQ reference).
    frame_interval_seconds: float = Field(default=1.0, ge=0, le=3600)
    # Drop a sampled frame within this PDQ distance of the last kept one; unset = keep all.
    prune_distance: int | None = Field(default=None, ge=0, le=256)
    # Longest video (declared or decoded): video_too_long.
    max_duration_seconds: float = Field(default=600.0, gt=0)
    # Most frames decoded: too_many_frames (also when more are sampled than a result carries).
    max_frames: int = Field(default=36_000, ge=1)
    # Largest frame (width * height, declared or decoded): frame_too_large.
    max_frame_pixels: int = Field(default=4096 * 2160, ge=1)
    # Most pixels decoded over all frames: video_too_many_pixels.
    max_total_pixels: int = Field(default=20_000_000_000, ge=1)
    # Video decode workers (a pool of their own beside the image decoders) and their limits.
    max_concurrent_decodes: int = Field(default=1, ge=1)
    decode_memory_mb: int = Field(default=2048, ge=256)
    decode_cpu_seconds: int = Field(default=60, ge=1)
    decode_timeout_seconds: float = Field(default=90.0, gt=0)

    def limits(self) -> VideoLimits:
        return VideoLimits(
            frame_interval_seconds=self.frame_interval_seconds,
            prune_distance=self.prune_distance,
            max_duration_seconds=self.max_duration_seconds,
            max_frames=self.max_frames,
            max_frame_pixels=self.max_frame_pixels,
            max_total_pixels=self.max_total_pixels,
        )

    def worker_limits(self) -> WorkerLimits:
        from ..isolation import WorkerLimits  # the pool's module: not for `libra hash`

        return WorkerLimits(
            memory_bytes=self.decode_memory_mb * 1024 * 1024,
            cpu_seconds=self.decode_cpu_seconds,
            wall_seconds=self.decode_timeout_seconds,
        )
