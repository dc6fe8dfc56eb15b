"""Decoding in worker processes with resource limits, so a decoder crash or hang costs one URL.

Each worker runs ``hash_image`` under RLIMIT_AS (address space), RLIMIT_CPU (CPU seconds per
image), RLIMIT_FSIZE = 0 and RLIMIT_CORE = 0 (nothing, not even a core dump, reaches a disk),
plus an audit hook that refuses opening files for writing. Pebble's pool replaces a worker that
died or overran the wall-clock timeout; the request that caused it gets ``decoder_crashed`` or
``decode_timeout`` and every other request is served as usual.

Workers are started with ``spawn`` (pipes only): ``forkserver`` would create a socket in a
temporary directory, and ``fork`` would copy a threaded server.

Each worker has a pebble pool of its own and a task goes only to a worker known to be free
(issue 17): with one pool of N workers every idle worker woke up for each task and raced for it,
0.35 ms of CPU per image with 4 workers, more than a third of decoding a small image.

Fresh workers (issue 17): a worker is replaced before its next image once its resident memory
is above ``WorkerLimits.recycle_rss_bytes`` (heap growth and fragmentation left by what it
decoded: the measure of accumulated state that matters), and in any case after
``WorkerLimits.recycle_tasks`` tasks. It checks at the start of each task, before touching the
image, and exits with ``RETIRED_EXIT``; the parent hands the task to a fresh worker. Replacing
workers every 1,000 tasks regardless cost ~0.27 s of CPU each time (spawn and imports): 5 % of
the function's CPU on small images.

Small images share hand-offs (issue 17): while every worker is busy, images of at most
``GROUP_MAX_BYTES`` wait, and the next free worker takes up to ``GROUP_SIZE`` of them in one
task (a hand-off cost 0.45 ms of CPU per image, half the hashing of a small image). Each image in
a group still has its own CPU limit; a group that crashes or overruns the wall-clock limit is
decoded again one image per task, so only the image at fault gets ``decoder_crashed`` or
``decode_timeout``. Under light load every image goes alone, at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import os
import resource
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

import anyio
from pebble import ProcessExpired, ProcessPool

from .errors import AnalysisFailed, DecodeFailed, FunctionError
from .hashing import DecodeLimits, ImageDigest, hash_image

Isolation = Literal["process", "thread"]
_T = TypeVar("_T")
# Exit status of a worker that retired before starting its task (EX_TEMPFAIL): the task is run
# again on a fresh worker, at most _RETIRED_RETRIES times.
RETIRED_EXIT = 75
_RETIRED_RETRIES = 3
# Below this, a fresh worker (interpreter, numpy, Pillow) would retire at once.
MIN_RECYCLE_RSS_BYTES = 128 * 1024 * 1024
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


class DecoderCrashed(DecodeFailed):
    """The worker process died while decoding (segfault, abort, CPU limit, out of memory)."""

    code = "decoder_crashed"
    http_status = 422


class DecodeTimeout(DecodeFailed):
    """The decode did not finish within the wall-clock limit; its worker was killed."""

    code = "decode_timeout"
    http_status = 422


@dataclass(frozen=True)
class WorkerLimits:
    memory_bytes: int = 2048 * 1024 * 1024  # RLIMIT_AS of each worker
    cpu_seconds: int = 10  # RLIMIT_CPU per image (soft limit, re-armed per task)
    wall_seconds: float = 15.0  # the worker is killed after this long on one image
    # A worker retires before its next task once its resident memory is above this...
    recycle_rss_bytes: int = 512 * 1024 * 1024
    # ... and after this many tasks in any case (a group of small images is one task).
    recycle_tasks: int = 20_000

    def __post_init__(self) -> None:
        if self.recycle_rss_bytes < MIN_RECYCLE_RSS_BYTES:
            raise ValueError(
                f"recycle_rss_bytes must be at least {MIN_RECYCLE_RSS_BYTES} (a fresh worker "
                f"uses about half that), got {self.recycle_rss_bytes}"
            )
        if self.recycle_tasks < 1:
            raise ValueError(f"recycle_tasks must be at least 1, got {self.recycle_tasks}")


# Audit events that change the file system: refused in decode workers.
_WRITE_EVENTS = frozenset(
    {"os.remove", "os.rename", "os.mkdir", "tempfile.mkstemp", "tempfile.mkdtemp"}  # disk-guard
)


def _refuse_writes(event: str, args: tuple[object, ...]) -> None:
    # Second line of defence after RLIMIT_FSIZE: no decoder may even open a file for writing.
    if event == "open":
        mode, flags = ([*args, None, None][1:3]) if len(args) >= 2 else (None, None)
        if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _WRITE_FLAGS
        ):
            raise PermissionError("decode workers never write files")
    elif event in _WRITE_EVENTS:
        raise PermissionError("decode workers never write files")


class _Resident:
    """This worker's resident memory, from /proc/self/statm (opened once: a pread per task)."""

    def __init__(self, bound: int) -> None:
        self.bound = bound
        try:
            self._fd: int | None = os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self._fd = None  # no procfs: only the task count recycles workers
        self._page = os.sysconf("SC_PAGE_SIZE")

    def bytes(self) -> int | None:
        if self._fd is None:
            return None
        try:
            return int(os.pread(self._fd, 128, 0).split()[1]) * self._page
        except (OSError, ValueError, IndexError):
            return None

    def grown(self) -> bool:
        resident = self.bytes()
        return resident is not None and resident > self.bound


_resident: _Resident | None = None  # set in each worker by _init_worker


def _init_worker(memory_bytes: int, recycle_rss_bytes: int | None = None) -> None:
    """Runs once in each new worker, before any image is seen."""
    global _resident
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers stop
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write attempt fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    if recycle_rss_bytes is not None:
        _resident = _Resident(recycle_rss_bytes)
    sys.addaudithook(_refuse_writes)


def _retire_if_grown() -> None:
    """At the start of a task, before its image is touched: a worker whose resident memory
    grew past its bound exits, and the parent gives the task to a fresh worker."""
    if _resident is not None and _resident.grown():
        os._exit(RETIRED_EXIT)


def run_in_worker(
    task: WorkerTask, data: bytes, dihedral: bool, limits: DecodeLimits, cpu_seconds: int
) -> ImageDigest:
    """Runs in a worker: ``task`` for one image, unless this worker retires first."""
    _retire_if_grown()
    return task(data, dihedral, limits, cpu_seconds)


def arm_cpu_limit(cpu_seconds: int) -> None:
    """Allow ``cpu_seconds`` more CPU time; beyond it the kernel sends SIGXCPU (fatal here)."""
    # RLIMIT_CPU counts the whole life of the process: arm it relative to what is used so far.
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = int(usage.ru_utime + usage.ru_stime) + 1
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    resource.setrlimit(resource.RLIMIT_CPU, (used + cpu_seconds, hard))


def hash_in_worker(
    data: bytes, dihedral: bool, limits: DecodeLimits, cpu_seconds: int
) -> ImageDigest:
    arm_cpu_limit(cpu_seconds)
    return hash_image(data, dihedral=dihedral, limits=limits)


# What a worker runs for one image (tests substitute misbehaving decoders with the same shape).
WorkerTask = Callable[[bytes, bool, DecodeLimits, int], ImageDigest]

# Images up to this size may share one hand-off with others, at most GROUP_SIZE per task.
GROUP_MAX_BYTES = 256 * 1024
GROUP_SIZE = 8


def hash_group_in_worker(
    task: WorkerTask, items: list[tuple[bytes, bool]], limits: DecodeLimits, cpu_seconds: int
) -> list[ImageDigest | FunctionError]:
    """Runs in a worker: ``task`` for each image (each arms its own CPU limit); an image's
    own verdict (an ImageError) is its answer, not the group's."""
    _retire_if_grown()
    answers: list[ImageDigest | FunctionError] = []
    for data, dihedral in items:
        try:
            answers.append(task(data, dihedral, limits, cpu_seconds))
        except FunctionError as exc:
            answers.append(exc)
    return answers


@dataclass
class _Waiting:
    data: bytes
    dihedral: bool
    answer: asyncio.Future[ImageDigest]


class DecodePool:
    """Runs ``hash_image`` in isolated worker processes (or threads, for trusted local input)."""

    def __init__(
        self,
        workers: int,
        decode_limits: DecodeLimits,
        worker_limits: WorkerLimits | None = None,
        isolation: Isolation = "process",
        task: WorkerTask = hash_in_worker,
    ) -> None:
        self.workers = workers
        self.decode_limits = decode_limits
        self.worker_limits = worker_limits or WorkerLimits()
        self.isolation = isolation
        self.task = task
        self._threads = anyio.CapacityLimiter(workers)
        # One single-worker pebble pool per worker: a task goes to a worker known to be free.
        # With one pool of N workers, every idle worker woke up for every task and raced for
        # it (0.35 ms of CPU per image with 4 workers, a third of a small image's decode).
        self._pools: list[ProcessPool | None] = [None] * workers
        self._free: list[int] = list(range(workers))  # workers without a task
        self._free_count: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None
        self._lock = threading.Lock()
        self._waiting: list[_Waiting] = []  # small images waiting for a free worker
        self._running = 0  # small-image tasks (alone or grouped) in the workers now
        self.groups_sent = 0  # hand-offs that carried more than one image (tests, metrics)
        self._tasks: set[asyncio.Task[None]] = set()

    def _process_pool(self, index: int) -> ProcessPool:
        """Worker ``index``'s pool. Started on first use so that building an app (tests, CLI
        --help) spawns nothing; started again if it broke."""
        with self._lock:
            pool = self._pools[index]
            if pool is None or not pool.active:
                limits = self.worker_limits
                pool = self._pools[index] = ProcessPool(
                    max_workers=1,
                    # Fresh workers when memory grew (_retire_if_grown) and after many tasks:
                    # no decoder state or heap growth accumulates.
                    max_tasks=limits.recycle_tasks,
                    initializer=_init_worker,
                    initargs=(limits.memory_bytes, limits.recycle_rss_bytes),
                    context=multiprocessing.get_context("spawn"),
                )
                # Reading ``active`` starts the pool: its pipes and semaphores (/dev/shm, memory
                # only) are made now, at start-up, not while a request waits.
                if not pool.active:
                    raise AnalysisFailed("the decode pool did not start")
            return pool

    def _free_workers(self) -> asyncio.Semaphore:
        """Counts the free workers (``_free``) for the running event loop."""
        loop = asyncio.get_running_loop()
        if self._free_count is None or self._free_count[0] is not loop:
            # asyncio primitives belong to one loop; a pool is used by one loop at a time.
            self._free_count = (loop, asyncio.Semaphore(self.workers))
            self._free = list(range(self.workers))
        return self._free_count[1]

    async def hash(self, data: bytes, *, dihedral: bool) -> ImageDigest:
        if self.isolation == "thread":

            def work() -> ImageDigest:
                return hash_image(data, dihedral=dihedral, limits=self.decode_limits)

            return await anyio.to_thread.run_sync(work, limiter=self._threads)
        if len(data) > GROUP_MAX_BYTES:
            return await self._alone(data, dihedral)
        waiting = _Waiting(data, dihedral, asyncio.get_running_loop().create_future())
        self._waiting.append(waiting)
        self._dispatch()
        return await waiting.answer

    def _dispatch(self) -> None:
        """Hand waiting small images to free workers: alone when a worker is idle, in groups
        when they had to wait (no timer: grouping happens only under load)."""
        while self._waiting and self._running < self.workers:
            group, self._waiting = self._waiting[:GROUP_SIZE], self._waiting[GROUP_SIZE:]
            group = [w for w in group if not w.answer.done()]  # callers that gave up
            if group:
                self._running += 1
                task = asyncio.get_running_loop().create_task(self._run_group(group))
                self._tasks.add(task)  # the loop keeps only a weak reference
                task.add_done_callback(self._tasks.discard)

    async def _run_group(self, group: list[_Waiting]) -> None:
        try:
            if len(group) == 1:
                answers = [await _answer(self._alone(group[0].data, group[0].dihedral))]
            else:
                self.groups_sent += 1
                answers = await self._grouped(group)
        except BaseException:
            for waiting in group:  # never leave a caller waiting (shutdown, cancellation)
                if not waiting.answer.done():
                    waiting.answer.cancel()
            raise
        finally:
            self._running -= 1
            self._dispatch()
        for waiting, answer in zip(group, answers, strict=True):
            if waiting.answer.done():
                continue
            if isinstance(answer, BaseException):
                waiting.answer.set_exception(answer)
            else:
                waiting.answer.set_result(answer)

    async def _grouped(self, group: list[_Waiting]) -> list[ImageDigest | BaseException]:
        limits = self.worker_limits
        items = [(w.data, w.dihedral) for w in group]
        try:
            # Tiny images: the group takes milliseconds, far within the wall-clock limit.
            done: list[ImageDigest | FunctionError] = await self._schedule(
                hash_group_in_worker, (self.task, items, self.decode_limits, limits.cpu_seconds)
            )
            return list(done)
        except (concurrent.futures.TimeoutError, ProcessExpired):
            # Someone in the group crashed or hung: each image again on its own, so that only
            # the image at fault is answered decoder_crashed / decode_timeout.
            return [await _answer(self._alone(w.data, w.dihedral)) for w in group]
        except concurrent.futures.CancelledError:
            raise
        except Exception as exc:
            failure = AnalysisFailed(f"decoding failed unexpectedly ({type(exc).__name__})")
            return [failure for _ in group]

    async def _schedule(self, function: Callable[..., _T], args: tuple[object, ...]) -> _T:
        """``function(*args)`` in a worker under the wall-clock limit. A worker that retired
        before starting it (RETIRED_EXIT) is replaced by the pool: the task goes to the next."""
        async with self._free_workers():
            index = self._free.pop()
            try:
                for _ in range(_RETIRED_RETRIES + 1):
                    future = self._process_pool(index).schedule(
                        function, args=args, timeout=self.worker_limits.wall_seconds
                    )
                    try:
                        result: _T = await asyncio.wrap_future(future)
                        return result
                    except ProcessExpired as exc:
                        if exc.exitcode != RETIRED_EXIT:
                            raise
                    finally:
                        # A cancelled request must not keep a worker busy (pebble stops it).
                        future.cancel()  # type: ignore[no-untyped-call]
            finally:
                self._free.append(index)
        raise AnalysisFailed(f"{_RETIRED_RETRIES + 1} decode workers in a row retired at once")

    async def _alone(self, data: bytes, dihedral: bool) -> ImageDigest:
        limits = self.worker_limits
        try:
            digest: ImageDigest = await self._schedule(
                run_in_worker, (self.task, data, dihedral, self.decode_limits, limits.cpu_seconds)
            )
            return digest
        except concurrent.futures.TimeoutError:
            raise DecodeTimeout(
                f"decoding did not finish within {limits.wall_seconds:g} s"
            ) from None
        except ProcessExpired as exc:
            raise DecoderCrashed(f"the decoder process died ({_describe_exit(exc)})") from None
        except FunctionError:
            raise  # hash_image's own verdicts (ImageError) cross the process boundary intact
        except concurrent.futures.CancelledError:
            raise
        except Exception as exc:
            raise AnalysisFailed(f"decoding failed unexpectedly ({type(exc).__name__})") from None

    def warm_up(self) -> None:
        """Start the worker processes now (server start-up) rather than on the first image."""
        if self.isolation == "process":
            for index in range(self.workers):
                self._process_pool(index)

    def close(self) -> None:
        with self._lock:
            pools, self._pools = self._pools, [None] * self.workers
            for pool in pools:
                if pool is not None:
                    pool.stop()  # type: ignore[no-untyped-call]
            for pool in pools:
                if pool is not None:
                    pool.join(timeout=10)


async def _answer(work: Awaitable[ImageDigest]) -> ImageDigest | BaseException:
    """The digest, or the exception that is this image's answer."""
    try:
        return await work
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        return exc


def _describe_exit(exc: ProcessExpired) -> str:
    code = exc.exitcode
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
