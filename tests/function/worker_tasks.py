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
