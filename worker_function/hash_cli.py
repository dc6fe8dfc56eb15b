"""``libra hash FILE...``: local files through the function's exact decode rules, at the speed of
the hashing itself (issue 17).

What it cost before, measured on 200 generated 640x480 JPEGs (docs/benchmarks.md): a
multi-threaded BLAS fighting over two cores for 64-row matrix products (pinned to one thread
now: threadpools.py), then start-up, i.e. imports the command never used (the server's settings,
HTTP client and request keys; rich's progress bar when nobody watches). Large batches are hashed
by forked worker processes that inherit the warm interpreter (imports, PDQ matrices), so the
only per-worker cost is a fork; output stays in argument order.
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from .hashing import ImageDigest
    from .video.decode import VideoDigest

# Below this many files per extra process, forking costs more than it saves.
FILES_PER_WORKER = 32
# Files handed to a worker at a time: few round trips, yet the last chunks still spread out.
CHUNK = 8


def hash_command(
    files: Annotated[list[Path], typer.Argument(help="Image or video files to hash (read only).")],
    dihedral: Annotated[
        bool, typer.Option(help="Also print the 8 dihedral PDQ hashes (rotations and flips).")
    ] = False,
    regions: Annotated[
        bool, typer.Option(help="Also print PDQ of centred regions (list building: crops).")
    ] = False,
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs",
            "-j",
            help="Processes hashing at once; 0 = one per CPU for large batches, 1 = this one.",
        ),
    ] = 0,
    frame_interval: Annotated[
        float,
        typer.Option(
            min=0.0, help="Videos: seconds between sampled frames (by timestamp); 0 = every frame."
        ),
    ] = 1.0,
    vpdq_text: Annotated[
        bool,
        typer.Option(
            "--vpdq-text",
            help="Videos: print vPDQ's text form instead, one `frame,quality,pdq,timestamp` line "
            "per sampled frame (Meta's reference format); images keep their JSON line.",
        ),
    ] = False,
) -> None:
    """Hash local image and video files with the function's exact decode rules; one JSON line
    per file (a video's line carries its sampled frames under "video").

    Reads the files and writes nothing. Exits 1 if any file could not be hashed.
    """
    if jobs < 0:
        raise typer.BadParameter("must be 0 (one per CPU) or more", param_hint="--jobs")
    options = _Options(dihedral=dihedral, regions=regions, frame_interval=frame_interval)
    workers = worker_count(jobs, len(files))
    failed = False
    with _progress(len(files)) as advance:
        for line in hash_lines(files, options, workers):
            failed = failed or "error" in line
            # Progress draws on stderr; results go to stdout, one complete line each.
            if vpdq_text and "video" in line:
                sys.stdout.write(vpdq_lines(line))
            else:
                sys.stdout.write(json.dumps(line, sort_keys=False) + "\n")
            sys.stdout.flush()
            advance()
    if failed:
        raise typer.Exit(1)


class _Options:
    """What every file is hashed with (module-level and picklable: forked workers use it)."""

    def __init__(self, *, dihedral: bool, regions: bool, frame_interval: float = 1.0) -> None:
        from .hashing import DecodeLimits  # here, so that `libra hash --help` answers at once
        from .video.settings import VideoLimits

        self.dihedral = dihedral
        self.regions = regions
        self.limits = DecodeLimits()
        self.video_limits = VideoLimits(frame_interval_seconds=frame_interval)


_options: _Options | None = None  # set in the parent before forking; workers inherit it


def worker_count(jobs: int, files: int) -> int:
    """``jobs`` if given, else one per usable CPU, but none idle for lack of files."""
    if jobs > 0:
        return max(1, min(jobs, files))
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, files // FILES_PER_WORKER))


def hash_lines(files: list[Path], options: _Options, workers: int) -> Iterator[dict[str, object]]:
    """One result line per file, in the order given."""
    if workers <= 1 or len(files) < 2:
        yield from (hash_file(path, options) for path in files)
        return
    # The first file in this process: it loads scipy (pHash) and fills the PDQ matrix cache,
    # which the forked workers then inherit instead of each doing it again.
    yield hash_file(files[0], options)
    yield from _in_workers(files[1:], options, workers)


def _in_workers(files: list[Path], options: _Options, workers: int) -> Iterable[dict[str, object]]:
    global _options
    _options = options
    # fork: the workers start warm. Safe here: this process runs no thread (BLAS is pinned to
    # one, the progress bar starts after the pool), and the workers only hash and return lines.
    context = multiprocessing.get_context("fork")
    gc.freeze()  # keep the inherited heap shared: no collector pass touches its pages
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        try:
            yield from pool.map(_hash_in_worker, files, chunksize=CHUNK)
        except BrokenProcessPool:
            typer.echo(
                "error: a hashing process died (a decoder crash?); "
                "run with --jobs 1 to see which file",
                err=True,
            )
            raise typer.Exit(2) from None


@contextmanager
def _progress(total: int) -> Iterator[Callable[[], None]]:
    """A progress bar on stderr when a person watches it; otherwise nothing (rich not even
    imported). Refreshed by hand, not by rich's thread: the workers are forked after it."""
    if total < 2 or not sys.stderr.isatty():
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    columns = (TextColumn("hashing"), BarColumn(), MofNCompleteColumn())
    with Progress(
        *columns, console=Console(stderr=True), transient=True, auto_refresh=False
    ) as bar:
        task = bar.add_task("hash", total=total)
        shown = 0.0

        def advance() -> None:
            nonlocal shown
            bar.advance(task)
            if (now := time.monotonic()) - shown > 0.1:
                bar.refresh()
                shown = now

        yield advance


def _hash_in_worker(path: Path) -> dict[str, object]:
    assert _options is not None  # inherited from the parent at fork
    return hash_file(path, _options)


def hash_file(path: Path, options: _Options) -> dict[str, object]:
    from .errors import ImageError
    from .hashing import hash_image
    from .video.sniff import sniff_video

    try:
        data = path.read_bytes()
    except OSError as exc:
        return _error_line(path, "read_failed", f"cannot read file: {exc.strerror or exc}")
    if sniff_video(data) is not None:
        return _hash_video_file(path, data, options)
    try:
        digest = hash_image(
            data, dihedral=options.dihedral, limits=options.limits, regions=options.regions
        )
    except ImageError as exc:
        return _error_line(path, exc.code, exc.message)
    return _digest_line(path, digest, len(data))


def _digest_line(path: Path, digest: ImageDigest, size: int) -> dict[str, object]:
    return {
        "path": str(path),
        "format": digest.format,
        "width": digest.width,
        "height": digest.height,
        "bytes": size,
        "animated": digest.animated,
        "hashes": digest.hashes.model_dump(mode="json", exclude_none=True),
    }


def _hash_video_file(path: Path, data: bytes, options: _Options) -> dict[str, object]:
    """A video (issue 13): PyAV is imported only now, so images never pay for it."""
    from .errors import ImageError
    from .video.decode import hash_video

    try:
        digest = hash_video(data, limits=options.video_limits)
    except ImageError as exc:
        return _error_line(path, exc.code, exc.message)
    return _video_line(path, digest, len(data))


def _video_line(path: Path, digest: VideoDigest, size: int) -> dict[str, object]:
    line = _digest_line(path, digest, size)
    line["video"] = digest.video.model_dump(mode="json")
    return line


def vpdq_lines(line: dict[str, object]) -> str:
    """A video's frames in vPDQ's text form: ``frame,quality,pdq,timestamp`` per line."""
    video = line["video"]
    assert isinstance(video, dict)
    return "".join(
        f"{f['frame']},{f['quality']},{f['pdq']},{f['timestamp']:.3f}\n" for f in video["frames"]
    )


def _error_line(path: Path, code: str, message: str) -> dict[str, object]:
    return {"path": str(path), "error": {"code": code, "message": message}}
