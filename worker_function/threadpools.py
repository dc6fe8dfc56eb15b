"""One BLAS/OpenMP thread per process: the function parallelises across images, never inside one.

PDQ's filters and DCT are products of matrices of a few hundred rows; a multi-threaded BLAS
spends more on waking and synchronising its threads than on the arithmetic, and on a busy host
its spinning threads steal the cores the decode workers need (issue 17: 55 ms of CPU per image
instead of 16 ms on 2 busy cores). So every entry point pins the pools to one thread itself,
however the process was started (container, `libra function serve`, `libra hash`, Lambda, an
ASGI host, a spawned decode worker), not only where an image sets the environment.

Two steps, both without importing numpy:
- ``pin_environment`` sets the variables the libraries read when they load (in the process and so
  in every child it spawns). It must run before numpy is imported: worker_function/__init__.py.
- ``limit_loaded`` resizes OpenBLAS libraries already loaded (an embedding program imported numpy
  first) through their own ``*openblas_set_num_threads*`` entry points, as threadpoolctl does.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Any

# Variables read at library load time: OpenBLAS, OpenMP (also read by OpenBLAS builds without
# their own variable), MKL, BLIS, Apple Accelerate, numexpr.
THREAD_VARIABLES = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
THREADS = 1
# Exported names of OpenBLAS's thread-count functions across builds: plain, numpy/scipy wheels'
# scipy_openblas (32- and 64-bit integer interfaces).
_SETTERS = (
    "openblas_set_num_threads",
    "scipy_openblas_set_num_threads64_",
    "scipy_openblas_set_num_threads",
)
_GETTERS = (
    "openblas_get_num_threads",
    "scipy_openblas_get_num_threads64_",
    "scipy_openblas_get_num_threads",
)


def pin_environment() -> None:
    """Set every thread-count variable to 1 (overriding inherited values: threads never help
    here, and an operator's shell default such as OMP_NUM_THREADS=8 would cost 3x the CPU)."""
    for name in THREAD_VARIABLES:
        os.environ[name] = str(THREADS)


def loaded_openblas() -> list[str]:
    """Paths of the OpenBLAS libraries mapped into this process (Linux; elsewhere none)."""
    try:
        maps = Path("/proc/self/maps").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    paths = {line.split(None, 5)[-1] for line in maps.splitlines() if "openblas" in line.lower()}
    return sorted(p for p in paths if p.startswith("/") and ".so" in p)


def _function(library: ctypes.CDLL, names: tuple[str, ...]) -> Any:
    """The first of ``names`` that ``library`` exports (a ctypes function), or None."""
    for name in names:
        function = getattr(library, name, None)
        if function is not None:
            return function
    return None


def pool_sizes() -> dict[str, int]:
    """Live thread count of each loaded OpenBLAS (what the tests and benchmarks report)."""
    sizes: dict[str, int] = {}
    for path in loaded_openblas():
        getter = _function(ctypes.CDLL(path, mode=os.RTLD_NOLOAD), _GETTERS)
        if getter is not None:
            getter.restype = ctypes.c_int
            sizes[path] = int(getter())
    return sizes


def limit_loaded() -> int:
    """Set every loaded OpenBLAS to one thread; the number of libraries changed."""
    changed = 0
    for path in loaded_openblas():
        setter = _function(ctypes.CDLL(path, mode=os.RTLD_NOLOAD), _SETTERS)
        if setter is not None:
            setter.argtypes = [ctypes.c_int]
            setter(THREADS)
            changed += 1
    return changed
