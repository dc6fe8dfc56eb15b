"""The LIBRA remote-hash function: safe fetch -> in-memory decode -> hashes.

Stateless by design: image bytes live only in memory for the duration of one analysis and are
never written to disk, logged or returned. Only ``protocol`` is imported from the rest of LIBRA.
"""

import os as _os
import sys as _sys

# The function writes no file, not even bytecode caches: set before any submodule is imported
# (this package is the first thing every entry point imports), and in the environment so that
# the spawned decode workers start with it too. docs/operations-function.md, "Never persisted".
_sys.dont_write_bytecode = True
_os.environ["PYTHONDONTWRITEBYTECODE"] = "1"

from . import threadpools as _threadpools  # noqa: E402  (after the bytecode switch above)

# One BLAS/OpenMP thread: set before numpy loads (and inherited by the decode workers), and
# applied to an OpenBLAS already loaded by a program that imported numpy first (threadpools.py).
_threadpools.pin_environment()
if "numpy" in _sys.modules:
    _threadpools.limit_loaded()
