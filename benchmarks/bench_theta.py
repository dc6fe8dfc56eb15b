"""Issue 16: distinct counts within 2 %, and the cost of measuring displacement.

1. Accuracy. Cells of 600-1,200 distinct keyed URLs (the hidden world's sizes) and of
   20,000-200,000, each split over three nodes with overlap, as the coordinator merges them:
   the HLL path (lg_k 12, what the picture used before) against the Theta path (lg_k 15) in the
   same run. Reported: the worst and mean relative error over all cells, and the share of
   cells outside 2 %.
2. Cost. Report-side: building one cell's Theta sketches (protocol.theta.make_theta) against
   its HLL sketch (node.federation.reporter.make_sketch) for the same members.
   Coordinator-side: the flows of a synthetic federation (hosters x periods, items moving
   between hosters) computed by coordinator.flows, wall time per step.

    .venv/bin/python benchmarks/bench_theta.py [--cells 200] [--seed 1]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from datetime import UTC, datetime, timedelta

from datasketches import hll_union

from coordinator.distinct import canonical_estimate
from coordinator.flows import ItemSets, compute_steps
from node.federation.reporter import HLL_LG_K, HLL_TYPE
from protocol.theta import THETA_LG_K, THETA_SEED, decode_theta, keyed, make_theta

KEY = b"bench-federation-key-0123456789ab"


def _hll(members: list[str]) -> bytes:
    from datasketches import hll_sketch

    sketch = hll_sketch(HLL_LG_K, HLL_TYPE)
    for m in members:
        sketch.update(keyed(KEY, m))
    return bytes(sketch.serialize_compact())


def _split(rng: random.Random, members: list[str]) -> list[list[str]]:
    """Three nodes' views of one cell: each sees ~60 % of it, so they overlap."""
    return [[m for m in members if rng.random() < 0.6] for _ in range(3)]


def accuracy(cells: int, seed: int) -> None:
    from datasketches import hll_sketch, theta_union

    rng = random.Random(seed)
    rows: list[tuple[str, float, float, float, float]] = []
    for label, low, high in (("600-1,200", 600, 1200), ("20k-200k", 20_000, 200_000)):
        count = cells if low < 10_000 else max(4, cells // 20)
        errors: dict[str, list[float]] = {"hll": [], "theta": []}
        for c in range(count):
            size = rng.randint(low, high)
            members = [f"https://c{c}.example.test/{i}" for i in range(size)]
            views = _split(rng, members)
            truth = len(set().union(*map(set, views)))
            h = hll_union(HLL_LG_K)
            t = theta_union(THETA_LG_K, seed=THETA_SEED)
            for view in views:
                h.update(hll_sketch.deserialize(_hll(view)))
                t.update(decode_theta(make_theta(KEY, view)))
            errors["hll"].append(abs(canonical_estimate(h) - truth) / truth)
            errors["theta"].append(abs(round(t.get_result().get_estimate()) - truth) / truth)
        for name in ("hll", "theta"):
            e = errors[name]
            rows.append(
                (
                    f"{label} ({count} cells), {name}",
                    max(e) * 100,
                    statistics.mean(e) * 100,
                    100 * sum(x > 0.02 for x in e) / len(e),
                    100 * sum(x == 0 for x in e) / len(e),
                )
            )
    print("| cells, path | worst error % | mean error % | cells over 2 % | cells exact |")
    print("|---|---|---|---|---|")
    for name, worst, mean, over, exact in rows:
        print(f"| {name} | {worst:.2f} | {mean:.2f} | {over:.1f} % | {exact:.1f} % |")


def build_cost() -> None:
    members = [f"https://img.example.test/{i}" for i in range(20_000)]
    started = time.perf_counter()
    _hll(members)
    hll_s = time.perf_counter() - started
    started = time.perf_counter()
    make_theta(KEY, members)
    theta_s = time.perf_counter() - started
    print(
        f"\nOne cell of 20,000 URLs: HLL sketch {hll_s * 1000:.0f} ms, Theta sketch "
        f"{theta_s * 1000:.0f} ms ({theta_s / hll_s:.2f}x)"
    )


def flows_cost(hosters: int, periods: int, items: int, seed: int) -> None:
    """Items start at random hosters; each period 10 % are removed and half of those reappear
    at another hoster."""
    rng = random.Random(seed)
    where = {i: rng.randrange(hosters) for i in range(items)}
    start = datetime(2026, 11, 1, tzinfo=UTC)
    sets = ItemSets()
    for p in range(periods):
        period = (start + timedelta(days=p), start + timedelta(days=p + 1))
        at: dict[int, list[str]] = {}
        for item, h in where.items():
            at.setdefault(h, []).append(f"pdq:{item:064x}")
        for h, members in at.items():
            sets.add(period, ("XX", str(h), f"hoster-{h}"), make_theta(KEY, members), "n1")
        for item in list(where):
            if rng.random() < 0.1:
                if rng.random() < 0.5:
                    where[item] = rng.randrange(hosters)
                else:
                    del where[item]
    started = time.perf_counter()
    _periods, steps, _skipped, _supp = compute_steps(sets)
    elapsed = time.perf_counter() - started
    flows = sum(len(s.flows) for s in steps)
    print(
        f"\nFlows: {hosters} hosters x {periods} periods, {items:,} items: {len(steps)} steps, "
        f"{flows:,} flows in {elapsed:.2f} s ({elapsed / max(1, len(steps)):.2f} s per step)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cells", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    accuracy(args.cells, args.seed)
    build_cost()
    flows_cost(hosters=100, periods=6, items=20_000, seed=args.seed)


if __name__ == "__main__":
    main()
