"""Start-up of `libra` commands against `python -c pass`, in the same run (issue 17).

Each command runs as the console script does (`python -m libra ...`) in a fresh process, best of
``--repeat`` runs (the minimum is the least noisy estimate of the work itself on a shared
machine), wall clock. Targets: `libra --help` and `libra <component> --help` under 0.3 s; any
command's start-up under 0.5 s. The ratio to `python -c pass` is printed too: it is what stays
comparable between machines.

    .venv/bin/python benchmarks/bench_cli_startup.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

COMMANDS: list[tuple[str, list[str], float]] = [
    ("python -c pass", ["-c", "pass"], 0.0),
    ("libra --version", ["-m", "libra", "--version"], 0.3),
    ("libra --help", ["-m", "libra", "--help"], 0.3),
    ("libra function --help", ["-m", "libra", "function", "--help"], 0.3),
    ("libra node --help", ["-m", "libra", "node", "--help"], 0.3),
    ("libra coordinator --help", ["-m", "libra", "coordinator", "--help"], 0.3),
    ("libra node crawl --help", ["-m", "libra", "node", "crawl", "--help"], 0.5),
    ("libra node list --help", ["-m", "libra", "node", "list", "--help"], 0.5),
    ("libra coordinator serve --help", ["-m", "libra", "coordinator", "serve", "--help"], 0.5),
    ("libra hash --help", ["-m", "libra", "hash", "--help"], 0.5),
    ("libra demo --help", ["-m", "libra", "demo", "--help"], 0.5),
]


def _once(args: list[str]) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIBRA_")}
    env["COLUMNS"] = "100"
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    for _name, argv, _target in COMMANDS:  # warm the OS file cache, untimed
        _once(argv)
    base = min(_once(COMMANDS[0][1]) for _ in range(args.repeat))
    print(f"| command | best of {args.repeat} (s) | vs `python -c pass` | target | met |")
    print("|---|---|---|---|---|")
    print(f"| python -c pass | {base:.3f} | 1.0x | | |")
    for name, argv, target in COMMANDS[1:]:
        best = min(_once(argv) for _ in range(args.repeat))
        met = "yes" if best < target else "**no**"
        print(f"| {name} | {best:.3f} | {best / base:.1f}x | < {target} s | {met} |")


if __name__ == "__main__":
    main()
