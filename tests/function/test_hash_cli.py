"""`libra hash` at the speed of hashing (issue 17): forked workers give the same lines in the same
order as one process, and the command loads none of the server's modules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.function import helpers as h
from worker_function.hash_cli import FILES_PER_WORKER, worker_count

REPO = Path(__file__).resolve().parents[2]
LIBRA = "import sys\nfrom libra.cli import main\nsys.argv[0] = 'libra'\nsys.exit(main())"


def _libra(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIBRA_")}
    env.update(PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run(
        [sys.executable, "-c", LIBRA, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("hash-cli")
    paths = []
    for seed in range(40):
        fmt = ("JPEG", "PNG", "GIF")[seed % 3]
        path = root / f"{seed:02d}.{fmt.lower()}"
        path.write_bytes(h.encode(h.generated_image(seed, (64 + seed, 48)), fmt))
        paths.append(str(path))
    broken = root / "broken.jpg"
    broken.write_bytes(b"<html>not an image</html>")
    paths.insert(17, str(broken))
    paths.insert(30, str(root / "missing.png"))
    return paths


def test_forked_workers_print_what_one_process_prints(files: list[str]) -> None:
    one = _libra("hash", "--jobs", "1", "--dihedral", *files)
    many = _libra("hash", "--jobs", "3", "--dihedral", *files)
    assert one.returncode == many.returncode == 1  # the broken and the missing file
    assert many.stdout == one.stdout
    lines = [json.loads(line) for line in many.stdout.splitlines()]
    assert [line["path"] for line in lines] == files
    codes = [line["error"]["code"] for line in lines if "error" in line]
    assert codes == ["not_an_image", "read_failed"]


def test_worker_count() -> None:
    cpus = len(os.sched_getaffinity(0))
    assert worker_count(0, 10) == 1  # too few files to be worth a fork
    assert worker_count(0, 100_000) == cpus
    assert worker_count(0, 2 * FILES_PER_WORKER) == min(cpus, 2)
    assert worker_count(3, 2) == 2 and worker_count(1, 100_000) == 1


def test_negative_jobs_is_a_usage_error(files: list[str]) -> None:
    result = _libra("hash", "--jobs", "-1", files[0])
    assert result.returncode == 2 and "--jobs" in result.stderr


def test_hash_loads_nothing_of_the_server(files: list[str]) -> None:
    code = (
        "import json, sys\n"
        f"sys.argv = ['libra', 'hash', {files[0]!r}]\n"
        "from libra.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    modules = set(json.loads(completed.stdout.strip().splitlines()[-1]))
    server_side = {"pydantic_settings", "httpx", "nacl", "uvicorn", "fastapi", "pebble", "scipy"}
    assert {m.split(".")[0] for m in modules} & server_side == set()
    assert "rich.progress" not in modules  # no progress bar without a terminal
