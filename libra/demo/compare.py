"""Compare the coordinator's picture with the ground truth of the synthetic world."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from libra.demo.world import Truth, World, report_family
from protocol.hashes import HashFamily

SECTIONS: dict[str, tuple[str, ...]] = {
    "by_country": ("country",),
    "by_hoster": ("hoster", "asn", "country"),
    "by_family": ("hash_family",),
}


def expected_picture(
    world: World, families: Mapping[str, tuple[HashFamily, HashFamily]]
) -> dict[str, Any]:
    """The picture the coordinator should show, from the world model alone."""
    return expected_from_truth(world.truth(), families)


def expected_from_truth(
    truth: Truth, families: Mapping[str, tuple[HashFamily, HashFamily]]
) -> dict[str, Any]:
    """The picture of `truth` (one period's matches per node).

    A node matches an exact copy by its exact family (the strongest family wins), a
    re-encoded or resized copy by PDQ, and a video copy or a still of a listed video by its
    video family (libra.demo.world.report_family).
    """
    picture: dict[str, Any] = truth.as_picture()
    family_matches: dict[str, int] = defaultdict(int)
    family_urls: dict[str, set[str]] = defaultdict(set)
    for node_id, matches in truth.per_node.items():
        exact, perceptual = families[node_id]
        for match in matches:
            family = report_family(match.kind, exact, perceptual)
            family_matches[family] += 1
            family_urls[family].add(match.url)
    picture["by_family"] = [
        {"hash_family": f, "matches": family_matches[f], "distinct": len(family_urls[f])}
        for f in sorted(family_matches)
    ]
    picture["totals"] = {"matches": truth.total.matches, "distinct": truth.total.distinct}
    return picture


@dataclass(frozen=True)
class Row:
    key: str
    actual: dict[str, int]
    expected: dict[str, int]


@dataclass
class Comparison:
    sections: dict[str, list[Row]] = field(default_factory=dict)
    differences: list[str] = field(default_factory=list)

    @property
    def agrees(self) -> bool:
        return not self.differences

    def rows(self, section: str) -> list[Row]:
        return self.sections.get(section, [])


def _counts(row: Mapping[str, Any] | None) -> dict[str, int]:
    if row is None:
        return {"matches": 0, "distinct": 0}
    return {"matches": int(row["matches"]), "distinct": int(row["distinct"])}


def compare_picture(picture: Mapping[str, Any], expected: Mapping[str, Any]) -> Comparison:
    comparison = Comparison()
    for section, key_fields in SECTIONS.items():

        def key_of(row: Mapping[str, Any], fields: tuple[str, ...] = key_fields) -> str:
            return " / ".join(str(row[f]) for f in fields)

        actual = {key_of(r): r for r in picture.get(section, [])}
        wanted = {key_of(r): r for r in expected.get(section, [])}
        rows = []
        for key in sorted(set(actual) | set(wanted)):
            row = Row(key, _counts(actual.get(key)), _counts(wanted.get(key)))
            rows.append(row)
            if row.actual != row.expected:
                comparison.differences.append(
                    f"{section} {key}: coordinator {row.actual}, truth {row.expected}"
                )
        comparison.sections[section] = rows
    totals = {k: int(picture.get("totals", {}).get(k, -1)) for k in ("matches", "distinct")}
    if totals != expected["totals"]:
        comparison.differences.append(f"totals: coordinator {totals}, truth {expected['totals']}")
    return comparison
