"""Discovery measured (issue 14): precision and recall of candidates on a world with new material.

The world: libra.demo.discovery_world (seeded, benign generated pictures, served on loopback by
libra.demo.web.SyntheticWeb): sites where listed ("known") items sit beside unlisted "new"
ones -- on the same page, or in the same album directory on another page -- with resized or
re-encoded copies of some new items, plus distractors (pages and directories of those sites
without a known item, and whole sites without any) and decorations (logos, icons, small
thumbnails, on the pages with known items too). Its truth says what each image URL is.

The node: a fresh SQLite database whose list holds the known items' SHA-256 and PDQ, hashed in
this process with the function's code (as libra/demo/lists.py does), imported as an ICSE file
would be. One real `libra function serve` in lab mode (signed requests), the real Crawler over
loopback, node.cycle.run with the discovery collector of node.service.discovery_of and the
node's default [discovery] settings.

Measured, on the candidates of the first cycle:
- at the default threshold (settings.discovery.min_score) and at others: clusters in the queue
  (representatives with a score at or above it), how many are new material (precision: a
  cluster is true when its representative is a new item), the distinct new items they hold
  (recall: near-duplicates counted once, over every new item in the world) and the reviews per
  confirmed item (clusters reviewed in queue order down to the threshold / new items they
  confirm). Thresholds other than the default are read from the same cycle's scored images,
  clustered and written by node.discovery.persist.write into a scratch database with
  min_score 0 (a cycle's clusters and scores do not depend on min_score, only which are kept);
  at the default, the scratch result is checked equal to the real queue. The queue is checked
  against the truth by DiscoveryWorld.check_queue (what the demo can use too).
- then an analyst with the truth: every queued cluster confirmed if new, rejected if not
  (node.discovery.verdicts, in queue order from node.discovery.queue), and a second cycle:
  the confirmed items' URLs (near-duplicates included) must now be sightings, the rejected
  ones must not be candidates (or sightings) again.

Exits 1 (after printing) when a guarantee is broken: a candidate the world does not serve, a
known item or an image of a site without known items as a candidate, a confirmed item's URL
not matched in the second cycle, a rejected one matched or pending again, or fewer known
matches in the second cycle.

    .venv/bin/python benchmarks/bench_discovery.py             # default world, ~1 min
    .venv/bin/python benchmarks/bench_discovery.py --json      # the same, as JSON
    .venv/bin/python benchmarks/bench_discovery.py --scale 0.5 --seed 7
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import tomli_w
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from libra.demo.defaults import DEFAULT_SEED
from libra.demo.discovery_world import (
    KIND_KNOWN,
    KIND_NEW,
    DiscoveryWorld,
    ImageTruth,
    QueueCheck,
)
from libra.demo.labgeo import write_lab_geoip
from libra.demo.web import SyntheticWeb
from node.attribution.attributor import Attributor
from node.config import NodeSettings
from node.crawl.crawler import Crawler, CrawlLimits
from node.cycle import CycleSummary, run
from node.db import make_engine
from node.discovery.collect import CandidateCollector
from node.discovery.models import PENDING, Candidate
from node.discovery.persist import Limits, write
from node.discovery.queue import Filters, list_candidates
from node.discovery.verdicts import confirm, reject
from node.dispatch import FunctionClient
from node.lists.base import get_importer
from node.lists.store import import_list
from node.matching.matcher import MatchIndex
from node.models import CrawlCycle, Sighting
from node.net import make_client
from node.service import discovery_of
from protocol.keys import NodeKey
from protocol.request_auth import RequestSigner

ROOT = Path(__file__).resolve().parent.parent
KEY_SEED = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="  # a fixed benchmark-only key
CALLER = "bench-discovery"
CONCURRENCY = 8  # the node's defaults: crawl.concurrency and dispatch.concurrency
BATCH = 32  # dispatch.batch_size's default
THRESHOLDS = (20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0)
ANALYST = "bench-analyst"
CATEGORY = "bench-new-material"


# ----------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class Cand:
    """One candidate row as the evaluation needs it."""

    id: int
    url: str
    score: float
    cluster_id: int | None  # None on a representative
    state: str
    first_cycle: int

    @property
    def head(self) -> int:
        """Its cluster's representative (itself for a representative)."""
        return self.id if self.cluster_id is None else self.cluster_id

    def row(self) -> dict[str, Any]:
        """As node.discovery.queue lists it (what DiscoveryWorld.check_queue reads)."""
        return {"id": self.id, "url": self.url, "score": self.score, "cluster_id": self.cluster_id}


def read_candidates(engine: Engine) -> list[Cand]:
    with Session(engine) as session:
        rows = session.exec(select(Candidate)).all()
    return [
        Cand(
            id=int(r.id or 0),
            url=r.url,
            score=r.score,
            cluster_id=r.cluster_id,
            state=r.state,
            first_cycle=r.first_cycle_id,
        )
        for r in rows
    ]


def _truth(world: DiscoveryWorld, url: str) -> ImageTruth:
    found = world.of(url)
    if found is None:  # the crawler found an image the world does not serve: a bench bug
        raise SystemExit(f"candidate {url} is not in the world's truth")
    return found


def evaluate(world: DiscoveryWorld, candidates: Sequence[Cand], threshold: float) -> QueueCheck:
    """The queue a node with ``min_score = threshold`` shows after the cycle, checked."""
    return world.check_queue([c.row() for c in candidates], threshold)


def scores_by_kind(world: DiscoveryWorld, candidates: Sequence[Cand]) -> dict[str, list[float]]:
    """Per truth kind of the representative: [lowest, median, highest] cluster score, over
    every scored cluster (the scratch database: nothing cut by min_score)."""
    scores: dict[str, list[float]] = defaultdict(list)
    for c in candidates:
        if c.id == c.head and c.score > 0:
            scores[_truth(world, c.url).kind].append(c.score)
    out = {}
    for kind, values in sorted(scores.items()):
        values.sort()
        out[kind] = [values[0], values[len(values) // 2], values[-1]]
    return out


def scratch_candidates(collector: CandidateCollector, directory: Path) -> list[Cand]:
    """Every image the cycle's collector scored, written by persist.write with min_score 0
    into a scratch database (a cycle's clusters and scores do not depend on min_score)."""
    engine = make_engine(f"sqlite:///{directory / 'scratch.sqlite3'}")
    try:
        found, _near = collector.found()
        negative = collector.negative.suppressed_many(found)
        allowed = [f for f, neg in zip(found, negative, strict=True) if not neg]
        s = collector.settings
        with Session(engine) as session, session.begin():
            cycle = CrawlCycle()
            session.add(cycle)
            session.flush()
            assert cycle.id is not None
            write(
                session,
                cycle.id,
                cycle.started_at,
                allowed,
                Limits(0.0, max(s.max_per_cycle, len(allowed)), s.cluster_max_distance),
            )
        return read_candidates(engine)
    finally:
        engine.dispose()


def same_queue(real: Sequence[Cand], scratch: Sequence[Cand], threshold: float) -> bool:
    """The scratch database's clusters at ``threshold`` are the real queue's: same URLs,
    scores and cluster memberships (compared by URL: the ids differ)."""

    def shape(cands: Sequence[Cand]) -> set[tuple[str, float, frozenset[str]]]:
        by_id = {c.id: c for c in cands}
        clusters: dict[int, set[str]] = defaultdict(set)
        for c in cands:
            clusters[c.head].add(c.url)
        return {
            (by_id[head].url, by_id[head].score, frozenset(urls))
            for head, urls in clusters.items()
            if by_id[head].score >= threshold
        }

    return shape(real) == shape(scratch)


# ----------------------------------------------------------------------------- the node


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def function_server(web: SyntheticWeb, directory: Path) -> Iterator[str]:
    """`libra function serve` in lab mode for the synthetic web; yields its URL."""
    lab = directory / "lab.toml"
    lab.write_text(tomli_w.dumps(web.lab_network().model_dump(mode="json")), encoding="utf-8")
    port = free_port()
    key = NodeKey.from_seed_b64(KEY_SEED)
    env = {**os.environ, "LIBRA_FUNCTION_AUTHORIZED_KEYS": json.dumps({CALLER: key.public_key_b64})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "libra", "function", "serve", "--lab", str(lab), "--host",
         "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(1200):  # up to 2 min on a loaded machine; the process's exit ends it
            if proc.poll() is not None:
                raise SystemExit(f"the function exited ({proc.returncode})")
            try:
                if httpx.get(f"{url}/healthz", timeout=1, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            raise SystemExit("the function did not start")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def node_settings() -> NodeSettings:
    """The node's defaults (its [discovery] section included)."""
    return NodeSettings.model_validate({"node_id": "bench-discovery", "country": "DE"})


def list_known(engine: Engine, world: DiscoveryWorld) -> int:
    """The known items' SHA-256 and PDQ as one ICSE file, imported (no file on disk)."""
    text = io.StringIO(world.icse_list())
    summary = import_list(engine, get_importer("icse"), text, source="bench-known", version="1")
    return summary.imported


async def cycle(
    engine: Engine,
    web: SyntheticWeb,
    world: DiscoveryWorld,
    function_url: str,
    geo: tuple[Path, Path],
    collector: CandidateCollector | None,
) -> CycleSummary:
    """One real cycle over every site of the world."""
    limits = CrawlLimits(max_pages=10_000, max_depth=50, sitemaps=False)
    signer = RequestSigner(CALLER, NodeKey.from_seed_b64(KEY_SEED).signing_key)
    function = FunctionClient(
        function_url, auth=signer, concurrency=CONCURRENCY, batch_size=BATCH, timeout_s=120
    )
    try:
        lab = web.lab_network()
        async with make_client(lab, timeout=30.0, user_agent=limits.user_agent) as client:
            with Attributor(*geo) as attributor:
                return await run(
                    engine=engine,
                    crawler=Crawler(client, limits),
                    function=function,
                    index=MatchIndex.from_db(engine),
                    attributor=attributor,
                    seeds=world.seed_urls(web.port),
                    concurrency=CONCURRENCY,
                    batch_size=BATCH,
                    discovery=collector,
                )
    finally:
        await function.aclose()


def sightings(engine: Engine, cycle_id: int) -> set[str]:
    with Session(engine) as session:
        urls = session.exec(select(Sighting.url).where(col(Sighting.cycle_id) == cycle_id))
        return set(urls.all())


def review(engine: Engine, world: DiscoveryWorld, threshold: float) -> dict[str, Any]:
    """The analyst: the pending queue down to ``threshold`` in queue order; confirm new
    material, reject the rest (the truth decides)."""
    confirmed: set[str] = set()
    rejected: set[str] = set()
    decisions = 0
    index = MatchIndex.from_db(engine)
    while True:
        rows = list_candidates(engine, Filters(min_score=threshold, limit=1000))
        if not rows:
            break
        for row in rows:
            truth = _truth(world, row["url"])
            decisions += 1
            if truth.kind == KIND_NEW:
                confirm(engine, row["id"], ANALYST, CATEGORY, "benchmark truth: new material")
                confirmed.add(truth.item)
            else:
                why = f"benchmark truth: {truth.kind} ({truth.setting})"
                reject(engine, row["id"], ANALYST, why, index=index)
                rejected.add(truth.item)
    return {
        "reviews": decisions,
        "confirmed": confirmed,
        "rejected": rejected,
        "threshold": threshold,
    }


def second_cycle_check(
    engine: Engine,
    world: DiscoveryWorld,
    first: CycleSummary,
    second: CycleSummary,
    verdicts: dict[str, Any],
) -> dict[str, Any]:
    """What the verdicts changed: confirmed items matched, rejected ones not candidates."""
    confirmed: set[str] = verdicts["confirmed"]
    rejected: set[str] = verdicts["rejected"]
    seen = {u for u in (world.of(url) for url in sightings(engine, second.cycle_id)) if u}
    before = {u for u in (world.of(url) for url in sightings(engine, first.cycle_id)) if u}
    expected_new = {t.url for t in world.images(KIND_NEW) if t.item in confirmed}
    matched_new = {t.url for t in seen if t.kind == KIND_NEW}
    known_urls = {t.url for t in world.images(KIND_KNOWN)}
    candidates = read_candidates(engine)
    again = [
        c
        for c in candidates
        if c.state == PENDING and _truth(world, c.url).item in rejected | confirmed
    ]
    fresh = Counter(
        f"{_truth(world, c.url).kind}/{_truth(world, c.url).setting}"
        for c in candidates
        if c.first_cycle == second.cycle_id and c.id == c.head
    )
    # The queue the analyst meets after the second cycle: what is pending now.
    pending = world.check_queue(
        [c.row() for c in candidates if c.state == PENDING], verdicts["threshold"]
    )
    return {
        "queue_second": {"clusters": pending.clusters, "true_clusters": pending.true_clusters},
        "known_urls": len(known_urls),
        "known_matched_first": len({t.url for t in before} & known_urls),
        "known_matched_second": len({t.url for t in seen} & known_urls),
        "confirmed_items": len(confirmed),
        "confirmed_urls": len(expected_new),
        "confirmed_urls_matched": len(expected_new & matched_new),
        "other_new_matched": len(matched_new - expected_new),
        "rejected_items": len(rejected),
        "rejected_matched": sum(1 for t in seen if t.item in rejected),
        "decided_pending_again": len(again),
        "states": dict(Counter(c.state for c in candidates if c.id == c.head)),
        "new_clusters_second": dict(sorted(fresh.items())),
        "suppressed_second": second.suppressed,
        "matches_first": first.matches,
        "matches_second": second.matches,
    }


# ----------------------------------------------------------------------------- the driver


async def measure(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    started = time.perf_counter()
    world = DiscoveryWorld.build(seed=args.seed, scale=args.scale)
    built_s = time.perf_counter() - started
    settings = node_settings()
    default = settings.discovery.min_score
    geo = write_lab_geoip(world.world, tmp / "geoip")
    engine = make_engine(f"sqlite:///{tmp / 'node.sqlite3'}")
    try:
        listed = list_known(engine, world)
        with SyntheticWeb(world.world) as web, function_server(web, tmp) as function_url:
            collector = discovery_of(settings, engine)
            assert collector is not None  # discovery is on by default
            clock = time.perf_counter()
            first = await cycle(engine, web, world, function_url, geo, collector)
            first_s = time.perf_counter() - clock
            real = read_candidates(engine)
            scratch = scratch_candidates(collector, tmp)
            if not same_queue(real, scratch, default):
                raise SystemExit("the scratch clusters differ from the real queue at the default")
            points = [evaluate(world, real, default)]
            points += [evaluate(world, scratch, t) for t in args.thresholds if t != default]
            points.sort(key=lambda p: p.threshold)
            spread = scores_by_kind(world, scratch)
            clock = time.perf_counter()
            verdicts = review(engine, world, default)
            review_s = time.perf_counter() - clock
            clock = time.perf_counter()
            second = await cycle(
                engine, web, world, function_url, geo, discovery_of(settings, engine)
            )
            second_s = time.perf_counter() - clock
            after = second_cycle_check(engine, world, first, second, verdicts)
    finally:
        engine.dispose()
    return {
        "seed": args.seed,
        "scale": args.scale,
        "world": world.stats(),
        "listed": listed,
        "default_threshold": default,
        "first_cycle": _cycle_row(first, first_s),
        "second_cycle": _cycle_row(second, second_s),
        "points": [p.as_dict() for p in points],
        "scores_by_kind": spread,
        "analyst": {"reviews": verdicts["reviews"], "seconds": round(review_s, 2)},
        "after_verdicts": after,
        "world_build_s": round(built_s, 1),
    }


def _cycle_row(summary: CycleSummary, seconds: float) -> dict[str, Any]:
    return {
        "pages": summary.pages_fetched,
        "images_hashed": summary.images_hashed,
        "failures": summary.analysis_failures,
        "matches": summary.matches,
        "candidates": summary.candidates,
        "wall_s": round(seconds, 1),
    }


def table(result: dict[str, Any]) -> list[str]:
    default = result["default_threshold"]
    lines = [
        "| min_score | clusters queued | new material | precision | new items found "
        "| recall | reviews per confirmed item |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in result["points"]:
        mark = " (default)" if p["threshold"] == default else ""
        per = p["reviews_per_confirmed"]
        lines.append(
            f"| {p['threshold']:g}{mark} | {p['clusters']} | {p['true_clusters']} | "
            f"{p['precision']:.2f} | {p['new_found']}/{p['new_total']} | {p['recall']:.2f} | "
            f"{'-' if per is None else f'{per:.2f}'} |"
        )
    return lines


def report(result: dict[str, Any]) -> str:
    w = result["world"]
    default = next(p for p in result["points"] if p["threshold"] == result["default_threshold"])
    after = result["after_verdicts"]
    c1, c2 = result["first_cycle"], result["second_cycle"]
    false = ", ".join(f"{k} {v}" for k, v in default["false_by_place"].items()) or "none"
    by_setting = ", ".join(f"{k} {a}/{b}" for k, (a, b) in default["found_by_setting"].items())
    out = [
        f"world (seed {result['seed']}, scale {result['scale']:g}, built in "
        f"{result['world_build_s']:.0f} s): {w['sites']} sites ({w['target_sites']} with known "
        f"items), {w['pages']} pages, {w['image_urls']} image URLs: {w['known_urls']} known "
        f"({w['known_items']} items, {result['listed']} listed), {w['new_urls']} new "
        f"({w['new_items']} items, {w['new_copies']} near-duplicate copies), "
        f"{w['distractor_urls']} distractors, {w['decoration_urls']} decorations",
        f"first cycle: {c1['pages']} pages, {c1['images_hashed']} images hashed, "
        f"{c1['matches']} matches, {c1['candidates']} candidates written, {c1['wall_s']:.1f} s",
        "",
        *table(result),
        "",
        f"at the default ({result['default_threshold']:g}): false clusters by truth {false}; "
        f"new items found by place {by_setting}; items split over clusters "
        f"{default['split_items']}, clusters merging items {default['merged_clusters']}; "
        f"broken guarantees: {'; '.join(default['problems']) or 'none'}",
        "cluster scores by the representative's truth (lowest/median/highest, clusters with "
        "something known beside them): "
        + "; ".join(
            f"{kind} {'/'.join(f'{v:g}' for v in values)}"
            for kind, values in result["scores_by_kind"].items()
        ),
        f"analyst: {result['analyst']['reviews']} reviews -> {after['confirmed_items']} items "
        f"confirmed, {after['rejected_items']} rejected",
        f"second cycle ({c2['wall_s']:.1f} s): confirmed items' URLs matched "
        f"{after['confirmed_urls_matched']}/{after['confirmed_urls']}, known URLs matched "
        f"{after['known_matched_second']}/{after['known_urls']} (first cycle "
        f"{after['known_matched_first']}), rejected items matched {after['rejected_matched']}, "
        f"decided items pending again {after['decided_pending_again']}; new clusters (beside "
        f"the items just confirmed, by their pre-verdict truth) "
        f"{after['new_clusters_second'] or 'none'}: the queue now holds "
        f"{after['queue_second']['clusters']} clusters, "
        f"{after['queue_second']['true_clusters']} of them new material",
    ]
    return "\n".join(out)


def broken(result: dict[str, Any]) -> list[str]:
    """The guarantees the run broke (see the module doc), one line each."""
    default = next(p for p in result["points"] if p["threshold"] == result["default_threshold"])
    after = result["after_verdicts"]
    out = list(default["problems"])
    if after["confirmed_urls_matched"] != after["confirmed_urls"]:
        out.append(
            f"second cycle matched {after['confirmed_urls_matched']} of the confirmed items' "
            f"{after['confirmed_urls']} URLs"
        )
    if after["rejected_matched"] or after["decided_pending_again"]:
        out.append(
            f"rejected items matched {after['rejected_matched']}, decided items pending again "
            f"{after['decided_pending_again']}"
        )
    if after["known_matched_second"] < after["known_matched_first"]:
        out.append("the second cycle matched fewer known URLs than the first")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--scale", type=float, default=1.0, help="world size, 0.1-4")
    parser.add_argument(
        "--thresholds",
        type=lambda text: tuple(float(v) for v in text.split(",")),
        default=THRESHOLDS,
        help="comma-separated min_score values to evaluate besides the default",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON only")
    args = parser.parse_args()
    if not 0.1 <= args.scale <= 4.0:
        raise SystemExit("--scale must be 0.1-4")
    if any(not 0 <= t <= 100 for t in args.thresholds):
        raise SystemExit("--thresholds must be 0-100")
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="libra-bench-discovery-") as tmp:
        result = asyncio.run(measure(args, Path(tmp)))
    result["total_s"] = round(time.perf_counter() - started, 1)
    result["load_average"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
    result["cpus"] = os.cpu_count()
    result["broken"] = broken(result)
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        print(report(result))
        print(
            f"total {result['total_s']:.0f} s; load average before "
            f"{result['load_average'][0]}, after {result['load_average'][1]}; "
            f"cpus={result['cpus']}"
        )
        for line in result["broken"]:
            print(f"BROKEN: {line}")
    if result["broken"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
