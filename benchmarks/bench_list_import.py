"""List import memory (issue 12): peak RSS of a list import for N codes, in a child process.

    .venv/bin/python benchmarks/bench_list_import.py [--sizes 100000,1000000]
        [--formats plain,ncmec] [--modes store,cli] [--tree DIR] [--json out.json]

The list files hold synthetic random codes (seeded; no real hashes), written before any
measurement starts: ``plain`` = one PDQ hex per line (``--algorithm pdq``), ``ncmec`` = an
NCMEC v2 ``queryResult`` with one ``<image>`` per code (id, classification, md5 + pdq).

Modes, each a fresh child process whose peak RSS (``ru_maxrss`` from ``os.wait4``) is taken:
  store  parse + store only: ``node.lists.import_list`` into a fresh encrypted SQLite node
         database (what the importers and the store cost);
  cli    ``libra node list import`` on a node directory made by ``libra node init``: the same,
         plus the persisted match index built for the new codes (the index itself lives in
         memory, ~113 bytes per PDQ code, see docs/hash-lists.md).
A child that loads the same code and opens a node database without importing anything is
measured per mode (``baseline``), so the table shows what the import adds. ``--tree DIR``
runs the children against another source tree (e.g. an export of the previous commit) for
a before/after comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NS = "https://hashsharing.ncmec.org/hashsharing/v2"

STORE_CHILD = """
import sys
from pathlib import Path
from node.keys.list_encryption import create_list_key
from node.db import make_engine
from node.lists import get_importer, import_list
from protocol.hashes import HashFamily
path, fmt, work = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
key = create_list_key(work / "lists.key")
engine = make_engine(f"sqlite:///{work / 'node.sqlite3'}", key)
importer = get_importer(fmt, HashFamily.PDQ if fmt == "plain" else None)
with path.open("rb") as stream:
    summary = import_list(engine, importer, stream, source=path.name, version="1")
print(summary.imported)
"""
STORE_BASELINE = """
import sys
from pathlib import Path
from node.keys.list_encryption import create_list_key
from node.db import make_engine
from node.lists import get_importer, import_list
work = Path(sys.argv[1])
make_engine(f"sqlite:///{work / 'node.sqlite3'}", create_list_key(work / "lists.key"))
print(0)
"""


def write_plain(path: Path, n: int, rng: random.Random) -> None:
    with path.open("w") as out:
        for _ in range(n):
            out.write(f"{rng.getrandbits(256):064x}\n")


def write_ncmec(path: Path, n: int, rng: random.Random) -> None:
    with path.open("w") as out:
        out.write(f'<?xml version="1.0" encoding="UTF-8"?>\n<queryResult xmlns="{NS}"><images>\n')
        for i in range(n):
            out.write(
                f"<image><id>I-{i}</id><classification>A1</classification><fingerprints>"
                f"<md5>{rng.getrandbits(128):032x}</md5><pdq>{rng.getrandbits(256):064x}</pdq>"
                "</fingerprints></image>\n"
            )
        out.write("</images></queryResult>\n")


def measure(argv: list[str], tree: Path) -> tuple[float, float, str]:
    """(peak RSS MiB, seconds, stdout) of one child process."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    start = time.perf_counter()
    child = subprocess.Popen(argv, cwd=tree, env=env, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"child failed ({child.returncode}): {' '.join(argv)}\n{output}")
    return usage.ru_maxrss / 1024, elapsed, output.strip()  # ru_maxrss is KiB on Linux


LIBRA = [sys.executable, "-m", "libra"]


def node_config(work: Path, tree: Path) -> list[str]:
    node = work / "node"
    init = [*LIBRA, "node", "init", "--dir", str(node), "--node-id", "n-bench", "--country", "DE"]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    subprocess.run(init, check=True, capture_output=True, cwd=tree, env=env)
    return ["--config", str(node / "node.toml")]


def cli_argv(work: Path, listfile: Path, fmt: str, tree: Path) -> list[str]:
    extra = ["--algorithm", "pdq"] if fmt == "plain" else []
    config = node_config(work, tree)
    return [*LIBRA, "node", "list", "import", str(listfile), "--format", fmt, *extra, *config]


def baselines(tree: Path) -> dict[str, float]:
    """Peak RSS of a child that loads the same code and opens a node database, importing
    nothing: `store` as the store child does, `cli` by `libra node list show`."""
    with tempfile.TemporaryDirectory(prefix="libra-bench-lists-") as tmp:
        store, _, _ = measure([sys.executable, "-c", STORE_BASELINE, tmp], tree)
        cli, _, _ = measure([*LIBRA, "node", "list", "show", *node_config(Path(tmp), tree)], tree)
    return {"store": store, "cli": cli}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--formats", default="plain,ncmec")
    parser.add_argument("--modes", default="store,cli")
    parser.add_argument("--tree", type=Path, default=ROOT, help="source tree to measure")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows: list[dict[str, object]] = []
    base = baselines(args.tree)
    for mode, rss in base.items():
        rows.append(
            {"mode": f"{mode} baseline", "format": "-", "codes": 0, "rss_mib": round(rss, 1)}
        )
        print(f"{mode} baseline (code loaded, nothing imported): {rss:.1f} MiB", flush=True)
    for fmt in args.formats.split(","):
        for n in sizes:
            with tempfile.TemporaryDirectory(prefix="libra-bench-lists-") as tmp:
                work = Path(tmp)
                listfile = work / f"list-{n}.{'xml' if fmt == 'ncmec' else 'txt'}"
                (write_ncmec if fmt == "ncmec" else write_plain)(listfile, n, random.Random(n))
                size_mib = listfile.stat().st_size / 2**20
                for mode in args.modes.split(","):
                    if mode == "store":
                        run = work / "store"
                        run.mkdir()
                        argv = [sys.executable, "-c", STORE_CHILD, str(listfile), fmt, str(run)]
                    else:
                        argv = cli_argv(work, listfile, fmt, args.tree)
                    rss, seconds, out = measure(argv, args.tree)
                    row = {
                        "mode": mode,
                        "format": fmt,
                        "codes": n,
                        "file_mib": round(size_mib, 1),
                        "rss_mib": round(rss, 1),
                        "over_baseline_mib": round(rss - base[mode], 1),
                        "seconds": round(seconds, 1),
                    }
                    rows.append(row)
                    print(json.dumps(row), "|", out.splitlines()[0] if out else "", flush=True)
    print("\n| mode | format | codes | file MiB | peak RSS MiB | over baseline MiB | s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if "file_mib" not in r:
            print(f"| {r['mode']} | - | 0 | - | {r['rss_mib']} | 0 | - |")
            continue
        print(
            f"| {r['mode']} | {r['format']} | {r['codes']:,} | {r['file_mib']} | {r['rss_mib']} "
            f"| {r['over_baseline_mib']} | {r['seconds']} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
