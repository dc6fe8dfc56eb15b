"""The function runs its BLAS with one thread however it is started (issue 17).

Each case starts a fresh interpreter the way one entry point starts, with a shell that asks for
8 BLAS/OpenMP threads, makes numpy do a matrix product, and reports the live thread count of
every loaded OpenBLAS, asked from the library itself (tests/function/worker_tasks.py). Before
the function pinned its pools, every case reported the machine's core count.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

ENTRY_POINTS = {
    "libra hash": ("import libra.cli\nlibra.cli.build_app(['hash', '--help'])\nimport numpy\n"),
    "libra function serve": (
        "import libra.cli\nlibra.cli.build_app(['function', 'serve'])\n"
        "from worker_function.app import create_app\nimport numpy\n"
    ),
    "lambda handler": "import worker_function.lambda_handler\nimport numpy\n",
    # An ASGI host (or a test runner) that loaded numpy before the function: the already
    # running OpenBLAS is resized, not only the environment set.
    "asgi app, numpy first": "import numpy\nfrom worker_function.app import create_app\n",
}
REPORT = (
    "import json, numpy\n"
    "from tests.function.worker_tasks import live_openblas_threads\n"
    "a = numpy.ones((300, 300)); a @ a\n"
    "print(json.dumps(live_openblas_threads()))\n"
)
# A decode worker spawned by the server: the parent's environment is changed back to 8 threads
# after the function was imported, so the worker must pin its own pools.
DECODE_WORKER = """
import io, json, os
from PIL import Image
from worker_function.hashing import DecodeLimits
from worker_function.isolation import DecodePool
from tests.function.worker_tasks import report_threads
import anyio
os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = "8"
buffer = io.BytesIO()
Image.linear_gradient("L").save(buffer, "PNG")
pool = DecodePool(1, DecodeLimits(), isolation="process", task=report_threads)
try:
    report = anyio.run(lambda: pool.hash(buffer.getvalue(), dihedral=False))
finally:
    pool.close()
print(json.dumps(report))
"""


def _run(code: str) -> object:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIBRA_")}
    # An operator's shell (or a base image) asking for many threads.
    env.update(OPENBLAS_NUM_THREADS="8", OMP_NUM_THREADS="8", PYTHONPATH=str(REPO))
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # this test must not leave caches in the tree
    completed = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_entry_point_runs_blas_with_one_thread(entry: str) -> None:
    sizes = _run(ENTRY_POINTS[entry] + REPORT)
    assert isinstance(sizes, dict)
    assert sizes, "numpy's OpenBLAS was not found in the process"
    assert set(sizes.values()) == {1}, sizes


def test_decode_worker_pins_its_own_pools() -> None:
    report = _run(DECODE_WORKER)
    assert isinstance(report, dict)
    assert report["sizes"] and set(report["sizes"].values()) == {1}, report
    assert report["env"] == "1"  # and children it might start inherit one thread
