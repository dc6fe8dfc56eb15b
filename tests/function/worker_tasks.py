"""Misbehaving decoders for test_isolation: run inside the pool's worker processes."""

from __future__ import annotations

import ctypes
import os
import time

from worker_function.hashing import DecodeLimits, ImageDigest
from worker_function.isolation import arm_cpu_limit, hash_in_worker


def segfault(data: bytes, dihedral: bool, limits: DecodeLimits, cpu: int) -> ImageDigest:
    if data == b"crash":
        ctypes.string_at(0)  # a NULL read: SIGSEGV, as a decoder bug would
    return hash_in_worker(data, dihedral, limits, cpu)


def abort(data: bytes, dihedral: bool, limits: DecodeLimits, cpu: int) -> ImageDigest:
    os.abort()


def spin(data: bytes, dihedral: bool, limits: DecodeLimits, cpu: int) -> ImageDigest:
    arm_cpu_limit(cpu)
    while True:  # burns CPU until RLIMIT_CPU kills the worker
        pass


def sleep(data: bytes, dihedral: bool, limits: DecodeLimits, cpu: int) -> ImageDigest:
    time.sleep(60)  # no CPU used: only the wall-clock timeout can stop it
    raise AssertionError("unreachable")


def write_file(data: bytes, dihedral: bool, limits: DecodeLimits, cpu: int) -> ImageDigest:
    with open("/tmp/libra-worker-write-probe", "wb") as handle:  # must be refused
        handle.write(data)
    raise AssertionError("the write was not refused")


def live_openblas_threads() -> dict[str, int]:
    """Thread count of every OpenBLAS mapped into this process, asked from the library itself
    (independent of worker_function.threadpools, whose effect the tests check)."""
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
        paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and ".so" in line}
    sizes = {}
    for path in sorted(paths):
        library = ctypes.CDLL(path, mode=os.RTLD_NOLOAD)
        for name in ("openblas_get_num_threads", "scipy_openblas_get_num_threads64_"):
            getter = getattr(library, name, None)
            if getter is not None:
                sizes[path] = int(getter())
                break
    return sizes


def report_threads(data: bytes, dihedral: bool, limits: DecodeLimits, cpu: int) -> ImageDigest:
    """Runs in a decode worker: its live pool sizes and environment instead of a digest."""
    hash_in_worker(data, dihedral, limits, cpu)  # numpy's BLAS is loaded and used
    report = {"sizes": live_openblas_threads(), "env": os.environ.get("OPENBLAS_NUM_THREADS")}
    return report  # type: ignore[return-value]


_HELD: list[bytearray] = []  # memory a "decoder" keeps after its image (heap growth)


def pid_and_grow(data: bytes, dihedral: bool, limits: DecodeLimits, cpu: int) -> ImageDigest:
    """Runs in a decode worker: its pid and resident bytes instead of a digest; ``b"grow:N"``
    first leaves N MiB resident in the worker, as a leaking or fragmented decoder would."""
    if data.startswith(b"grow:"):
        held = bytearray(int(data[5:]) * 1024 * 1024)
        held[:: os.sysconf("SC_PAGE_SIZE")] = b"\1" * len(held[:: os.sysconf("SC_PAGE_SIZE")])
        _HELD.append(held)
    with open("/proc/self/statm", "rb") as statm:
        resident = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return {"pid": os.getpid(), "resident": resident}  # type: ignore[return-value]


def retire_always(data: bytes, dihedral: bool, limits: DecodeLimits, cpu: int) -> ImageDigest:
    """A decoder that exits with the retirement status itself: its task must not loop."""
    from worker_function.isolation import RETIRED_EXIT

    os._exit(RETIRED_EXIT)
