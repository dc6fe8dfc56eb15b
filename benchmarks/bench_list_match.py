"""`libra node list match` at a million entries (issue 17): time to first answer and peak RSS.

    .venv/bin/python benchmarks/bench_list_match.py [--entries 1000000] [--families pdq,md5]
        [--queries 100] [--repeat 3] [--old-tree DIR] [--work DIR] [--json out.json]

A node directory is made by ``libra node init``; ``--entries`` synthetic entries (random
codes from a fixed seed, never real hashes; split evenly over ``--families``, each with a
label and a category, as an NCMEC list) are written straight into its encrypted database
(the same columns and encryption an import writes; importing is benchmarked by
bench_list_import.py). The query file holds ``--queries`` lines: half near a stored PDQ
code (or equal to a stored exact digest), half random.

Each row is a fresh child process; "first answer" is the wall time from spawning it to its
first line on stdout, peak RSS is ``ru_maxrss`` from ``os.wait4``:
  new, first build   ``libra node list match`` with no index file: builds it from the
                     database, saves it encrypted, then answers (reported apart: once per
                     change of the lists);
  new                ``libra node list match`` with the saved index current (median of
                     ``--repeat``): decrypt, views, search, details of the hits only;
  old path           the baseline the brief names, in one child: ``MatchIndex.from_db``
                     plus every entry's details (what the old command loaded), then the
                     same queries;
  old CLI            (``--old-tree DIR``: e.g. ``git archive`` of the commit before) the old
                     command on a copy of the same node directory, warm (its own index saved
                     first), as the issue measured it.
A last child times the new path's phases in-process (imports, open, stamp, load, search,
details) so the table shows where the time goes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIBRA = [sys.executable, "-m", "libra"]
BATCH = 50_000
WIDTH = {"pdq": 256, "md5": 128, "sha1": 160, "sha256": 256, "phash": 64, "dhash": 64}

POPULATE = """
import json, random, sys
from pathlib import Path
from sqlalchemy import insert
from sqlmodel import Session
from node.config import load_settings
from node.service import open_engine
from node.models import ListEntry, ListVersion
config, n, seed = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[4])
families, width = sys.argv[3].split(","), json.loads(sys.argv[5])
engine = open_engine(load_settings(config))
rng = random.Random(seed)
counts = {f: n // len(families) + (k < n % len(families)) for k, f in enumerate(families)}
with Session(engine) as session:
    version = ListVersion(source="bench-list.xml", version="1", format="ncmec",
                          imported=n, family_counts=json.dumps(counts))
    session.add(version)
    session.commit()
    vid = version.id
    record = 0
    for family, count in counts.items():
        bits = width[family]
        done = 0
        while done < count:
            rows = []
            for _ in range(min(50_000, count - done)):
                record += 1
                rows.append({"family": family, "value": f"{rng.getrandbits(bits):0{bits // 4}x}",
                             "list_version_id": vid, "label": f"I-{record}",
                             "category": "A1" if record % 3 else "B2", "record": record})
            session.execute(insert(ListEntry), rows)
            done += len(rows)
    session.commit()
print(json.dumps(counts))
"""

OLD_PATH = """
import json, sys
from pathlib import Path
from sqlmodel import Session, col, select
from node.cli.lists import _open
from node.matching.matcher import MatchIndex, Thresholds
from node.models import ListEntry, ListVersion
from protocol.hashes import HashFamily, normalize
settings, engine, _ = _open(Path(sys.argv[1]))
index = MatchIndex.from_db(engine, Thresholds.of(settings.match))
with Session(engine) as session:  # every entry's details, as the old command loaded them
    sources = {v.id: v.source for v in session.exec(select(ListVersion)).all()}
    rows = session.exec(select(ListEntry.id, ListEntry.label, ListEntry.category,
                               ListEntry.list_version_id)
                        .where(col(ListEntry.retired).is_(False))).all()
details = {int(i): {"list_version_id": v, "source": sources.get(v), "label": lab,
                    "category": cat} for i, lab, cat, v in rows}
for line in Path(sys.argv[2]).read_text().splitlines():
    name, value = line.split()
    family = HashFamily(name)
    hits = index.lookup(family, [normalize(family, value)])[0]
    print(json.dumps({"value": value, "matches": [
        {**details.get(m.entry_id, {}), "entry_id": m.entry_id, "distance": m.distance}
        for m in hits]}), flush=True)
"""

PHASES = """
import json, sys, time
t0 = time.perf_counter()
from pathlib import Path
from node.cli.lists import COMPILED_FROM, _open, _queries
from node.lists.store import entry_details
from node.matching.index import persist
from node.matching.matcher import Thresholds
marks = {"imports": time.perf_counter()}
settings, engine, key = _open(Path(sys.argv[1]))
marks["open node (settings, key, db)"] = time.perf_counter()
stamp = persist.db_stamp(engine)
marks["db stamp"] = time.perf_counter()
index, saved = persist.load(settings.index_dir, key, Thresholds.of(settings.match))
assert saved == stamp, "index not current"
marks["load index (read, decrypt, views)"] = time.perf_counter()
queries = list(_queries(Path(sys.argv[2]), None))
index.use_compiled_search(len(queries) >= COMPILED_FROM)  # as the command chooses
found = {}
for family in {f for _, _, f in queries}:
    values = [v for _, v, f in queries if f == family]
    found[family] = index.lookup(family, values)
marks["search"] = time.perf_counter()
ids = {m.entry_id for hits in found.values() for ms in hits for m in ms}
details = entry_details(engine, ids)
marks["details of the hits"] = time.perf_counter()
out, last = {}, t0
for name, at in marks.items():
    out[name] = round(at - last, 3)
    last = at
out["hits"] = len(ids)
print(json.dumps(out))
"""


def env_for(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree)}


def run_child(argv: list[str], tree: Path) -> tuple[float, float, float, list[str]]:
    """(seconds to the first stdout line, seconds in all, peak RSS MiB, stdout lines)."""
    start = time.perf_counter()
    child = subprocess.Popen(
        argv, cwd=tree, env=env_for(tree), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert child.stdout is not None and child.stderr is not None
    first_line = child.stdout.readline()
    first = time.perf_counter() - start
    rest = child.stdout.read()
    errors = child.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(child.pid, 0)
    total = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    child.returncode = code
    if code != 0:
        raise SystemExit(f"child failed ({code}): {' '.join(argv)}\n{errors}")
    lines = (first_line + rest).decode().splitlines()
    return first, total, usage.ru_maxrss / 1024, lines


def write_queries(path: Path, config: Path, families: list[str], count: int, seed: int) -> int:
    """Half the queries near (PDQ) or equal to (exact) a stored value, half random: the
    stored values are read back by one child (decrypted), a few hundred of them."""
    sample = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, json\n"
            "from pathlib import Path\n"
            "from sqlmodel import Session, select\n"
            "from node.config import load_settings\n"
            "from node.service import open_engine\n"
            "from node.models import ListEntry\n"
            "e = open_engine(load_settings(Path(sys.argv[1])))\n"
            "rows = []\n"
            "with Session(e) as s:\n"
            "    for f in sys.argv[3].split(','):\n"
            "        rows += s.exec(select(ListEntry.family, ListEntry.value)"
            ".where(ListEntry.family == f, ListEntry.id % 997 == 0)"
            ".limit(int(sys.argv[2]))).all()\n"
            "print(json.dumps([list(r) for r in rows]))\n",
            str(config),
            str(count),
            ",".join(families),
        ],
        check=True,
        capture_output=True,
        cwd=ROOT,
        env=env_for(ROOT),
    )
    stored: list[list[str]] = json.loads(sample.stdout)
    rng = random.Random(seed)
    lines = []
    planted = 0
    for n in range(count):
        family = families[(n // 2) % len(families)]
        bits = WIDTH[family]
        same = [v for f, v in stored if f == family]
        if n % 2 == 0 and same:
            value = int(rng.choice(same), 16)
            if family in ("pdq", "phash", "dhash"):
                for bit in rng.sample(range(bits), 8):  # 8 bits away: a near copy
                    value ^= 1 << bit
            planted += 1
        else:
            value = rng.getrandbits(bits)
        lines.append(f"{family} {value:0{bits // 4}x}")
    path.write_text("\n".join(lines) + "\n")
    return planted


def prepare(work: Path, entries: int, families: str, old_tree: Path | None) -> Path:
    """The node's config file: a node made and populated in ``work``, or reused from an
    earlier run with the same ``--work``, ``--entries`` and ``--families`` (its index file is
    removed, so the first run builds it again)."""
    node = work / "node"
    marker = work / "populated.json"
    wanted = {"entries": entries, "families": families}
    config = node / "node.toml"
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        for stale in work.rglob("match-index.bin"):
            stale.unlink()
        print(f"reusing the node in {work}", flush=True)
    else:
        shutil.rmtree(node, ignore_errors=True)
        init = [*LIBRA, "node", "init", "--dir", str(node), "--node-id", "n-bench"]
        subprocess.run([*init, "--country", "DE"], check=True, capture_output=True, cwd=ROOT)
        start = time.perf_counter()
        populate = [sys.executable, "-c", POPULATE, str(config), str(entries), families, "17"]
        counts = subprocess.run(
            [*populate, json.dumps(WIDTH)],
            check=True,
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env_for(ROOT),
        ).stdout.strip()
        print(f"populated {counts} in {time.perf_counter() - start:.1f} s", flush=True)
        marker.write_text(json.dumps(wanted))
    old_node = work / "old-node"
    shutil.rmtree(old_node, ignore_errors=True)
    if old_tree:
        shutil.copytree(node, old_node)  # without an index file: the old command builds its own
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--families", default="pdq,md5")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--old-tree", type=Path, help="source tree of the old command")
    parser.add_argument("--work", type=Path, help="keep (and reuse) the node here")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    families = args.families.split(",")
    rows: list[dict[str, object]] = []
    print(f"load average at start: {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="libra-bench-match-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        config = prepare(work, args.entries, args.families, args.old_tree)
        queries = work / "queries.txt"
        planted = write_queries(queries, config, families, args.queries, 23)
        print(f"{args.queries} queries, {planted} planted near/equal to stored values")
        match = [*LIBRA, "node", "list", "match", str(queries), "--config"]

        def record(name: str, first: float, total: float, rss: float, answers: int) -> None:
            row = {
                "path": name,
                "first_answer_s": round(first, 2),
                "all_answers_s": round(total, 2),
                "peak_rss_mib": round(rss, 1),
                "answers": answers,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)

        first, total, rss, out = run_child([*match, str(config)], ROOT)
        record("new, first build", first, total, rss, len(out))
        hits_new = sum(bool(json.loads(line)["matches"]) for line in out)
        runs = [run_child([*match, str(config)], ROOT) for _ in range(args.repeat)]
        median = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
        record(f"new (median of {args.repeat})", *median[:3], len(median[3]))
        first, total, rss, out = run_child(
            [sys.executable, "-c", OLD_PATH, str(config), str(queries)], ROOT
        )
        record("old path (from_db + all details)", first, total, rss, len(out))
        hits_old = sum(bool(json.loads(line)["matches"]) for line in out)
        if args.old_tree:
            old_match = [*match[:-1], "--config", str(work / "old-node" / "node.toml")]
            run_child(old_match, args.old_tree)  # builds and saves its own index first
            old_runs = [run_child(old_match, args.old_tree) for _ in range(args.repeat)]
            old = sorted(old_runs, key=lambda r: r[0])[len(old_runs) // 2]
            record(f"old CLI (median of {args.repeat})", *old[:3], len(old[3]))
        _, _, _, phases = run_child([sys.executable, "-c", PHASES, str(config), str(queries)], ROOT)
        print(f"queries with a hit: new {hits_new}, old path {hits_old}")
        print(f"new path phases (s): {phases[0]}")
        sizes = [p.stat().st_size for p in (work / "node").rglob("match-index.bin")]
        print(f"index file: {sum(sizes) / 2**20:.1f} MiB", flush=True)
    print(f"load average at end: {os.getloadavg()}")
    new_first = float(rows[1]["first_answer_s"])  # type: ignore[arg-type]
    print("\n| path | first answer s | all answers s | peak RSS MiB | x new |")
    print("|---|---|---|---|---|")
    for r in rows:
        ratio = float(r["first_answer_s"]) / new_first  # type: ignore[arg-type]
        print(
            f"| {r['path']} | {r['first_answer_s']} | {r['all_answers_s']} "
            f"| {r['peak_rss_mib']} | {ratio:.1f} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "phases": json.loads(phases[0])}, indent=1))


if __name__ == "__main__":
    main()
