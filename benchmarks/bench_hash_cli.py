"""`libra hash` end to end against hashing in process, in one run (issue 17).

    .venv/bin/python benchmarks/bench_hash_cli.py [--images 200] [--rounds 5] [--json out.json]

Generates ``--images`` JPEGs of 640x480 (libra.demo.imagegen, fixed seeds) into a temporary
directory, then per round, in rotating order:
- in-process: a fresh interpreter imports the hashing code, hashes one warm-up image, then
  reads and hashes every file with ``hash_image``; only that loop is timed: the speed of the
  hashing itself on one core, for the same work as the command (the named baseline);
- in-process, warm: the same loop again in this process, whose PDQ matrix caches already hold
  every image size (a second pass over the same files; the best case);
- ``libra hash FILES`` (the installed command, a fresh process: start-up included), once with
  ``--jobs 1`` (one process) and once with the default (forked workers, one per CPU). As
  installed: the function never writes bytecode, so in a source checkout its modules would be
  compiled at every start, while ``pip install`` compiles them once; the benchmark runs a
  byte-compiled copy of them (``PYTHONPATH``), and also times ``--jobs 1`` from the checkout;
- ``libra hash ONE`` and ``python -c pass``: the start-up alone, and the interpreter's floor;
- ``--before REV``: the same command from the code at git revision REV (default: the commit
  before issue 17's changes), for the improvement measured in the same run.
Images/s are medians over the rounds; CPU is user + sys of the child (os.wait4). Target:
`libra hash --jobs 1` >= 0.5x in-process images/s on 200 images.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The caller's environment, before worker_function pins BLAS threads in it: every command runs
# as it would from this shell (the code before issue 17 must not inherit the pinning).
SHELL_ENV = dict(os.environ)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from libra.demo.imagegen import encode, generate_image  # noqa: E402
from worker_function.hashing import hash_image  # noqa: E402  (pins BLAS to 1 thread)

LIBRA = Path(sys.executable).with_name("libra")
TARGET = 0.5
# The last commit before issue 17's function work (docs/benchmarks.md).
BEFORE = "232096c3153e8b54661e79bf3443db500a6a5efc"


def write_images(directory: Path, count: int) -> list[Path]:
    paths = []
    for seed in range(count):
        path = directory / f"img{seed:04d}.jpg"
        path.write_bytes(encode(generate_image(seed, 640, 480), "JPEG"))
        paths.append(path)
    return paths


def install_copy(site: Path) -> Path:
    """libra, protocol and worker_function copied to ``site`` and byte-compiled there, as
    ``pip install`` leaves them (the function itself never writes bytecode)."""
    root = Path(__file__).resolve().parents[1]
    for name in ("libra", "protocol", "worker_function"):
        shutil.copytree(root / name, site / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(site)], check=True)
    return site


def checkout(revision: str, site: Path) -> Path | None:
    """The three packages as they were at ``revision`` (git archive), or None without git."""
    root = Path(__file__).resolve().parents[1]
    site.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", revision, "libra", "protocol", "worker_function"],
        capture_output=True,
    )
    if archive.returncode != 0:
        return None
    subprocess.run(["tar", "-x", "-C", str(site)], input=archive.stdout, check=True)
    return site


def in_process(paths: list[Path]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) to read and hash every file in this process."""
    hash_image(paths[0].read_bytes())
    cpu, started = time.process_time(), time.perf_counter()
    for path in paths:
        hash_image(path.read_bytes())
    return time.perf_counter() - started, time.process_time() - cpu


FRESH = """
import json, sys, time
from pathlib import Path
from benchmarks.bench_hash_cli import in_process
print(json.dumps(in_process([Path(p) for p in sys.argv[1:]])))
"""


def in_fresh_process(paths: list[Path]) -> tuple[float, float]:
    """``in_process`` in a new interpreter: imports excluded, caches as cold as the command's."""
    root = Path(__file__).resolve().parents[1]
    output = subprocess.run(
        [sys.executable, "-c", FRESH, *map(str, paths)],
        cwd=root,
        env={**SHELL_ENV, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    wall, cpu = json.loads(output.strip().splitlines()[-1])
    return float(wall), float(cpu)


def child(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process and its children) of one command."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env or SHELL_ENV
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode not in (0,):
        raise SystemExit(f"{command[:3]} failed: {process.stderr.read().decode()[-500:]}")  # type: ignore[union-attr]
    process.stderr.close()  # type: ignore[union-attr]
    # wait4 counts the process itself; its forked workers are reaped by it, so they are in
    # its children's usage, which the kernel adds to the process's at exit.
    return wall, usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--before", default=BEFORE, help="git revision to compare with")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="libra-bench-hash-") as tmp:
        paths = write_images(Path(tmp), args.images)
        files = [str(p) for p in paths]
        installed = {**SHELL_ENV, "PYTHONPATH": str(install_copy(Path(tmp) / "site"))}
        source = SHELL_ENV
        hash_one = [str(LIBRA), "hash", "--jobs", "1", *files]
        runs: dict[str, object] = {
            "in-process": lambda: in_fresh_process(paths),
            "in-process, warm": lambda: in_process(paths),
            "libra hash --jobs 1": lambda: child(hash_one, installed),
            "libra hash (default jobs)": lambda: child([str(LIBRA), "hash", *files], installed),
            "libra hash --jobs 1, no .pyc": lambda: child(hash_one, source),
            "libra hash ONE (start-up)": lambda: child([str(LIBRA), "hash", files[0]], installed),
            "python -c pass": lambda: child([sys.executable, "-c", "pass"]),
        }
        old = checkout(args.before, Path(tmp) / "before")
        if old is not None:
            before = {**SHELL_ENV, "PYTHONPATH": str(old)}
            runs[f"libra hash at {args.before[:7]} (before)"] = lambda: child(
                [str(LIBRA), "hash", *files], before
            )
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
        names = list(runs)
        for round_ in range(args.rounds):
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                samples[name].append(runs[name]())  # type: ignore[operator]
    results: dict[str, dict[str, float]] = {}
    for name, values in samples.items():
        wall = statistics.median(v[0] for v in values)
        cpu = statistics.median(v[1] for v in values)
        count = 1 if "ONE" in name or "pass" in name else args.images
        results[name] = {"wall_s": wall, "cpu_s": cpu, "images_per_s": count / wall}
    base = results["in-process"]["images_per_s"]
    print(f"{args.images} images of 640x480, {args.rounds} rounds, medians; cpus={os.cpu_count()}")
    print(f"{'run':30} {'wall s':>8} {'CPU s':>7} {'images/s':>9} {'vs in-process':>14}")
    for name, row in results.items():
        row["ratio"] = row["images_per_s"] / base
        ratio = f"{row['ratio']:.2f}x" if "ONE" not in name and "pass" not in name else "-"
        print(
            f"{name:30} {row['wall_s']:8.3f} {row['cpu_s']:7.3f} "
            f"{row['images_per_s']:9.1f} {ratio:>14}"
        )
    print(f"load average: {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    ok = results["libra hash --jobs 1"]["ratio"] >= TARGET
    print("target met" if ok else "TARGET MISSED", f"(--jobs 1 >= {TARGET}x in-process)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
