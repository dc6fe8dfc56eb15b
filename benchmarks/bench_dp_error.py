"""Issue 15: the error differential privacy adds to the demo's picture, against suppression.

The picture is the demo world's (libra.demo.world, the default seed): its ground truth per
node gives the matches per hoster, per family (exact copies by SHA-256, the rest by PDQ, as the
demo's nodes hash; every other family is in the domain with 0) and one period; the hoster
domain is every hoster of the world (all are crawled, so all carry coverage). Each release
noises that vector exactly as the viewer tier does (coordinator.dp.release: one discrete
Laplace measurement, L1 sensitivity 3, scale 3/epsilon, rows rounded to >= 0, countries as
sums of the unrounded noisy hosters, the total from the families and the period), repeated
--releases times. Reported per cell size class: mean absolute error and relative error
(MAE / true), the share of non-empty cells a viewer does not see (noisy 0), and the share of
pairs of cells with different true counts whose order flips; then how many cells small-cell
suppression withholds at the thresholds operators use.

    .venv/bin/python benchmarks/bench_dp_error.py [--scale 1.0] [--releases 2000]
        [--epsilon 1.0 --epsilon 0.5 ...]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass

from coordinator.dp.mechanism import noisy_counts, scale_for, standard_deviation
from coordinator.dp.release import SENSITIVITY, total_of
from libra.demo.world import KIND_EXACT, World
from protocol.hashes import ReportFamily

CLASSES = ((1, 9), (10, 19), (20, 49), (50, 10**9))


@dataclass(frozen=True)
class Cells:
    hosters: dict[tuple[str, str, int], int]  # (country, hoster, asn) -> matches
    nodes: dict[tuple[str, str, int], int]  # -> nodes that matched there
    families: dict[str, int]
    period: int  # the one period's matches


def demo_cells(scale: float) -> Cells:
    world = World.build(scale=scale, videos=False)
    truth = world.truth()
    hosters: dict[tuple[str, str, int], int] = {}
    for hoster in world.hosters:  # every hoster is crawled: the domain includes zeros
        country, name, asn = hoster.attribution()
        hosters[(country, name, asn)] = 0
    seen: dict[tuple[str, str, int], set[str]] = defaultdict(set)
    # Every family is in the release's domain (the viewer asks for all of them).
    families = {family.value: 0 for family in ReportFamily}
    for node_id, matches in truth.per_node.items():
        for match in matches:
            country, name, asn = world.hoster(match.hoster).attribution()
            hosters[(country, name, asn)] += 1
            seen[(country, name, asn)].add(node_id)
            families["sha256" if match.kind == KIND_EXACT else "pdq"] += 1
    nodes = {key: len(seen[key]) for key in hosters}
    return Cells(hosters, nodes, families, sum(families.values()))


def _class_of(count: int) -> str:
    for low, high in CLASSES:
        if low <= count <= high:
            return f"{low}-{high}" if high < 10**9 else f"{low}+"
    return "0"


def measure(cells: Cells, epsilon: float, releases: int) -> dict[str, dict[str, float]]:
    keys = sorted(cells.hosters)
    countries = sorted({k[0] for k in keys})
    true_h = [cells.hosters[k] for k in keys]
    true_c = [sum(cells.hosters[k] for k in keys if k[0] == c) for c in countries]
    true_total = cells.period
    vector = true_h + list(cells.families.values()) + [cells.period]
    errors: dict[str, list[float]] = defaultdict(list)
    hidden: dict[str, list[int]] = defaultdict(list)
    flips: dict[str, list[float]] = defaultdict(list)
    for _ in range(releases):
        # As coordinator.dp.release: rows rounded to >= 0, sums over the unrounded values.
        release = noisy_counts(vector, epsilon=epsilon, sensitivity=SENSITIVITY)
        raw = release.raw[: len(keys)]
        hosters = release.values[: len(keys)]
        country = [
            max(0, sum(h for k, h in zip(keys, raw, strict=True) if k[0] == c)) for c in countries
        ]
        families = release.raw[len(keys) : len(keys) + len(cells.families)]
        total = total_of(families, release.raw[len(keys) + len(cells.families) :])
        for section, truth, got in (("hoster", true_h, hosters), ("country", true_c, country)):
            for t, g in zip(truth, got, strict=True):
                if t == 0:
                    continue
                errors[f"{section} {_class_of(t)}"].append(abs(g - t))
                hidden[f"{section} {_class_of(t)}"].append(1 if g == 0 else 0)
            pairs = [
                (i, j)
                for i, j in itertools.combinations(range(len(truth)), 2)
                if truth[i] != truth[j]
            ]
            if pairs:
                flipped = sum(1 for i, j in pairs if (truth[i] - truth[j]) * (got[i] - got[j]) < 0)
                flips[section].append(flipped / len(pairs))
        errors["total"].append(abs(total - true_total))
    truths: dict[str, list[int]] = defaultdict(list)
    for section, values in (("hoster", true_h), ("country", true_c)):
        for t in values:
            if t:
                truths[f"{section} {_class_of(t)}"].append(t)
    truths["total"] = [true_total]
    out: dict[str, dict[str, float]] = {}
    for name, errs in sorted(errors.items()):
        mean_true = statistics.fmean(truths[name])
        out[name] = {
            "cells": len(truths[name]),
            "mean_true": mean_true,
            "mae": statistics.fmean(errs),
            "relative": statistics.fmean(errs) / mean_true,
            "hidden": statistics.fmean(hidden[name]) if name in hidden else 0.0,
        }
    for section, shares in flips.items():
        out[f"rank flips {section}"] = {"share": statistics.fmean(shares)}
    return out


def suppression(cells: Cells) -> list[tuple[str, int, int]]:
    """(rule, hoster rows withheld, of non-empty rows) for common thresholds."""
    rows = [(m, cells.nodes[k]) for k, m in cells.hosters.items() if m > 0]
    out = []
    for min_count, min_nodes in ((5, 1), (10, 1), (0, 2), (10, 2)):
        withheld = sum(1 for m, n in rows if m < min_count or n < min_nodes)
        out.append((f"min_count={min_count}, min_nodes={min_nodes}", withheld, len(rows)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--releases", type=int, default=2000)
    parser.add_argument("--epsilon", type=float, action="append")
    args = parser.parse_args()
    started = time.perf_counter()
    cells = demo_cells(args.scale)
    nonzero = sorted(m for m in cells.hosters.values() if m)
    print(
        f"demo world scale {args.scale}: {len(cells.hosters)} hosters ({len(nonzero)} with "
        f"matches: {nonzero}), families {cells.families}, total {cells.period}"
    )
    for epsilon in args.epsilon or [1.0]:
        scale = scale_for(epsilon, SENSITIVITY)
        print(
            f"\nepsilon {epsilon}: scale {scale:g}, noise sd {standard_deviation(scale):.2f} "
            f"per noisy cell, {args.releases} releases"
        )
        print(f"{'cells':<18}{'n':>4}{'mean true':>11}{'MAE':>8}{'rel. err':>10}{'unseen':>8}")
        for name, row in measure(cells, epsilon, args.releases).items():
            if "share" in row:
                print(f"{name:<30}{row['share']:>8.1%}")
                continue
            print(
                f"{name:<18}{row['cells']:>4.0f}{row['mean_true']:>11.1f}{row['mae']:>8.2f}"
                f"{row['relative']:>10.1%}{row['hidden']:>8.1%}"
            )
    print("\nsmall-cell suppression of the same hoster rows (exact counts, rows withheld):")
    for rule, withheld, rows in suppression(cells):
        print(f"  {rule:<26} {withheld} of {rows} rows withheld")
    print(f"\n({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
