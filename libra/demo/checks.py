"""The history's checks beyond each period's picture: time to removal per hoster (the
coordinator's removal statistics) and displacement flows (GET /v1/flows), each against the
truth of `noticesim`, the per-period series (trends) the summary prints, and the video cells
(issue 13: the picture filtered to videos, the stills found as frames, the split by media).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from libra.demo.compare import Comparison, compare_picture
from libra.demo.history import History
from libra.demo.noticesim import NoticeSimulation
from libra.demo.world import ExpectedMatch, Truth, World, report_family
from protocol.hashes import MEDIA, HashFamily, Media, ReportFamily, media_of

Place = tuple[Any, ...]  # (country, asn, hoster) or (country,)


# --- time to removal ------------------------------------------------------------------------


@dataclass(frozen=True)
class RemovalCheck:
    hoster: str  # name, as the coordinator shows it
    policy: str
    expected: dict[str, int]  # notices_sent, urls_noticed, removed
    actual: dict[str, int]
    # Truth of each quantile as an interval in seconds (None: nothing removed) and the
    # coordinator's figure.
    median: tuple[int, int] | None
    p90: tuple[int, int] | None
    actual_median: int | None
    actual_p90: int | None
    nominal_median: int | None  # the scripted value without elapsed seconds

    @property
    def agrees(self) -> bool:
        return (
            self.actual == self.expected
            and _within(self.actual_median, self.median)
            and _within(self.actual_p90, self.p90)
        )


def _within(value: int | None, bounds: tuple[int, int] | None) -> bool:
    if bounds is None:
        return value is None
    return value is not None and bounds[0] <= value <= bounds[1]


def _quantile_bounds(values: Sequence[int], q: float, tolerance: int) -> tuple[int, int]:
    """Where a q-quantile of `values` may lie: between the order statistics next to rank
    q(n-1) (the node's median averages the middle two; the coordinator's merged KLL sketch
    returns one of the values), widened by `tolerance` seconds."""
    ordered = sorted(values)
    n = len(ordered)
    low = max(0, math.floor(q * (n - 1)) - 1)
    high = min(n - 1, math.ceil(q * n))
    return ordered[low] - tolerance, ordered[high] + tolerance


def check_removals(
    sim: NoticeSimulation,
    world: World,
    policies: Mapping[str, str],
    rows: Sequence[Mapping[str, Any]],
    notice_at: Sequence[int],
    tolerance: int,
) -> list[RemovalCheck]:
    """`notice_at[d]`: the --at moment (epoch seconds) of day d's notices runs; `tolerance`:
    seconds a measured time may differ from the scripted one (the runs' real durations)."""
    actual = {(r["country"], r["asn"], r["hoster"]): r for r in rows}
    checks: list[RemovalCheck] = []
    keys = sorted(set(sim.by_hoster) | {k for k in policies if k in {h.key for h in world.hosters}})
    for key in keys:
        hoster = world.hoster(key)
        stats = sim.by_hoster.get(key)
        country, name, asn = hoster.attribution()
        where = (country, asn, name)
        row = actual.pop(where, None)
        if (stats is None or stats.notices_sent == 0) and row is None:
            continue
        seconds = (
            [notice_at[f.seen_day] - notice_at[f.first_day] for f in stats.removals]
            if stats is not None
            else []
        )
        expected = {
            "notices_sent": stats.notices_sent if stats else 0,
            "urls_noticed": stats.urls_noticed if stats else 0,
            "removed": len(seconds),
        }
        got = {k: int(row[k]) if row else 0 for k in expected}
        checks.append(
            RemovalCheck(
                hoster=name,
                policy=policies.get(key, "no contact"),
                expected=expected,
                actual=got,
                median=_quantile_bounds(seconds, 0.5, tolerance) if seconds else None,
                p90=_quantile_bounds(seconds, 0.9, tolerance) if seconds else None,
                actual_median=None if row is None else row.get("median_seconds"),
                actual_p90=None if row is None else row.get("p90_seconds"),
                nominal_median=sorted(seconds)[len(seconds) // 2] if seconds else None,
            )
        )
    for where, row in sorted(actual.items()):  # a hoster the truth has no notices for
        checks.append(
            RemovalCheck(
                hoster=str(where[2]),
                policy="?",
                expected={"notices_sent": 0, "urls_noticed": 0, "removed": 0},
                actual={k: int(row[k]) for k in ("notices_sent", "urls_noticed", "removed")},
                median=None,
                p90=None,
                actual_median=row.get("median_seconds"),
                actual_p90=row.get("p90_seconds"),
                nominal_median=None,
            )
        )
    return checks


# --- displacement flows ---------------------------------------------------------------------


def place_of(world: World, hoster_key: str, by: str) -> Place:
    country, name, asn = world.hoster(hoster_key).attribution()
    return (country, asn, name) if by == "hoster" else (country,)


def items_by_place(sim: NoticeSimulation, world: World, day: int, by: str) -> dict[Place, set[str]]:
    out: dict[Place, set[str]] = {}
    for key, items in sim.items(day).items():
        out.setdefault(place_of(world, key, by), set()).update(items)
    return out


@dataclass
class StepTruth:
    day: int  # the step from `day` to `day + 1`
    places: dict[Place, tuple[int, int, int, int]]  # before, after, removed, new
    flows: dict[tuple[Place, Place], int]


def flow_truth(sim: NoticeSimulation, world: World, by: str, periods: int) -> list[StepTruth]:
    steps = []
    for day in range(periods - 1):
        before = items_by_place(sim, world, day, by)
        after = items_by_place(sim, world, day + 1, by)
        places = {}
        flows: dict[tuple[Place, Place], int] = {}
        for place in sorted(set(before) | set(after), key=str):
            b, a = before.get(place, set()), after.get(place, set())
            places[place] = (len(b), len(a), len(b - a), len(a - b))
            for target, there in after.items():
                if target != place and (count := len((b - a) & there)) > 0:
                    flows[(place, target)] = count
        steps.append(StepTruth(day, places, flows))
    return steps


def _place(data: Mapping[str, Any], by: str) -> Place:
    if by == "hoster":
        return (data["country"], int(data["asn"]), data["hoster"])
    return (data["country"],)


@dataclass
class FlowCheck:
    by: str
    steps: list[StepTruth]
    # (day, source, target) -> (coordinator estimate or None, truth)
    flows: dict[tuple[int, Place, Place], tuple[int | None, int]] = field(default_factory=dict)
    differences: list[str] = field(default_factory=list)

    @property
    def agrees(self) -> bool:
        return not self.differences


def _estimate(value: Mapping[str, Any] | None, truth: int, what: str, out: list[str]) -> int:
    """The estimate; a difference when the truth is outside its bounds or an exact figure
    (every set here is far below 2^15) is not exact or not equal."""
    if value is None:
        out.append(f"{what}: withheld, truth {truth}")
        return -1
    estimate, lower, upper = (int(value[k]) for k in ("estimate", "lower", "upper"))
    if not lower <= truth <= upper:
        out.append(f"{what}: {estimate} [{lower}, {upper}] excludes the truth {truth}")
    elif not value.get("exact") or estimate != truth:
        out.append(f"{what}: {estimate} (exact {value.get('exact')}), truth {truth}")
    return estimate


def check_flows(
    answer: Mapping[str, Any] | None,
    sim: NoticeSimulation,
    history: History,
    by: str,
    period_keys: Sequence[tuple[str, str]],
) -> FlowCheck:
    """`period_keys`: the periods' (start, end) as the API writes them (ISO, Z)."""
    truth = flow_truth(sim, history.world, by, history.periods)
    check = FlowCheck(by, truth)
    if answer is None:
        check.differences.append(f"/v1/flows?by={by}: no answer")
        return check
    if answer.get("skipped"):
        check.differences.append(f"flows by {by}: steps skipped: {answer['skipped']}")
    steps = {}
    for step in answer.get("steps", []):
        start = step.get("from") or step.get("from_")
        steps[(_iso(start["start"]), _iso(step["to"]["start"]))] = step
    for want in truth:
        key = (period_keys[want.day][0], period_keys[want.day + 1][0])
        step = steps.get(key)
        label = f"flows by {by} {key[0][:10]}->{key[1][:10]}"
        if step is None:
            check.differences.append(f"{label}: step missing")
            continue
        rows = {_place(r["place"], by): r for r in step.get("places", [])}
        for place, figures in want.places.items():
            row = rows.pop(place, None)
            for name, value in zip(("before", "after", "removed", "new"), figures, strict=True):
                got = None if row is None else row.get(name)
                if row is None and value == 0:
                    continue
                _estimate(
                    got, value, f"{label} {'/'.join(map(str, place))} {name}", check.differences
                )
        for place, row in rows.items():
            if any(row.get(n) and int(row[n]["estimate"]) for n in ("before", "after")):
                check.differences.append(f"{label}: unexpected place {place}")
        flows = {
            (_place(f["source"], by), _place(f["target"], by)): f["items"]
            for f in step.get("flows", [])
        }
        for (source, target), count in want.flows.items():
            got = flows.pop((source, target), None)
            what = f"{label} flow {source[-1]}->{target[-1]}"
            estimate = _estimate(got, count, what, check.differences) if got else None
            if got is None:
                check.differences.append(f"{what}: missing, truth {count}")
            check.flows[(want.day, source, target)] = (estimate, count)
        for (source, target), got in flows.items():
            check.differences.append(
                f"{label} flow {source[-1]}->{target[-1]}: {got['estimate']}, truth 0"
            )
            check.flows[(want.day, source, target)] = (int(got["estimate"]), 0)
    return check


def _iso(text: str) -> str:
    return text.replace("+00:00", "Z")


# --- trends: the waterbed view between consecutive periods ----------------------------------


@dataclass
class TrendCheck:
    """GET /v1/picture/shifts for each pair of consecutive periods: matches before and after
    per country and hoster, against each period's truth."""

    rows: int = 0  # rows compared
    differences: list[str] = field(default_factory=list)

    @property
    def agrees(self) -> bool:
        return not self.differences


def _matches_by(expected: Mapping[str, Any], section: str) -> dict[Place, int]:
    if section == "by_country":
        return {(r["country"],): int(r["matches"]) for r in expected[section]}
    return {
        (r["country"], int(r["asn"]), r["hoster"]): int(r["matches"]) for r in expected[section]
    }


def check_shifts(
    answers: Sequence[Mapping[str, Any]], expected: Sequence[Mapping[str, Any]]
) -> TrendCheck:
    """`answers[i]`: the shifts from period i to i+1; `expected[i]`: period i's picture truth."""
    check = TrendCheck()
    for day, answer in enumerate(answers):
        for section in ("by_country", "by_hoster"):
            before = _matches_by(expected[day], section)
            after = _matches_by(expected[day + 1], section)
            rows = {}
            for row in answer.get(section, []):
                key: Place = (
                    (row["country"],)
                    if section == "by_country"
                    else (row["country"], int(row["asn"]), row["hoster"])
                )
                rows[key] = (row.get("matches_before") or 0, row.get("matches_after") or 0)
            for key in sorted(set(before) | set(after) | set(rows), key=str):
                want = (before.get(key, 0), after.get(key, 0))
                got = rows.get(key, (0, 0))
                check.rows += 1
                if got != want:
                    check.differences.append(
                        f"shifts {day}->{day + 1} {section} {'/'.join(map(str, key))}: "
                        f"coordinator {got}, truth {want}"
                    )
    return check


# --- coverage and prevalence ----------------------------------------------------------------


@dataclass
class CoverageCheck:
    """GET /v1/coverage per period: images hashed and matches per hoster, and the prevalence
    (matches per 10,000 images hashed), against the truth."""

    rows: int = 0
    differences: list[str] = field(default_factory=list)
    # Last period: hoster name -> (images hashed, matches, per 10k, lower, upper).
    last: dict[str, tuple[int, int, float, float, float]] = field(default_factory=dict)

    @property
    def agrees(self) -> bool:
        return not self.differences


def images_by_hoster(sim: NoticeSimulation, day: int) -> dict[Place, int]:
    """Images hashed per hoster on `day`, summed over nodes (as the reports' coverage)."""
    world = sim.history.world
    out: dict[Place, int] = {}
    for node_id in sim.order:
        for key in sim.history.hashed(node_id, day, sim.removed_before(day)):
            place = place_of(world, world.hoster_of(key[0]).key, "hoster")
            out[place] = out.get(place, 0) + 1
    return out


def check_coverage(
    answers: Sequence[Mapping[str, Any]],
    sim: NoticeSimulation,
    expected: Sequence[Mapping[str, Any]],
) -> CoverageCheck:
    check = CoverageCheck()
    for day, answer in enumerate(answers):
        images = images_by_hoster(sim, day)
        matches = _matches_by(expected[day], "by_hoster")
        rows = {(r["country"], int(r["asn"]), r["hoster"]): r for r in answer.get("hosters", [])}
        for place in sorted(set(images) | set(rows), key=str):
            row = rows.get(place)
            want = (images.get(place, 0), matches.get(place, 0))
            got = (0, 0) if row is None else (int(row["images_hashed"]), int(row["matches"] or 0))
            check.rows += 1
            label = f"coverage day {day} {place[2]}"
            if got != want:
                check.differences.append(f"{label}: coordinator {got}, truth {want}")
                continue
            prevalence = None if row is None else row.get("prevalence")
            per_10k = round(want[1] / want[0] * 10_000, 4) if want[0] else None
            if (prevalence or {}).get("per_10k") != per_10k:
                check.differences.append(f"{label}: prevalence {prevalence}, truth {per_10k}")
            elif prevalence is not None and day == len(answers) - 1:
                check.last[str(place[2])] = (
                    want[0],
                    want[1],
                    float(prevalence["per_10k"]),
                    float(prevalence["lower"]),
                    float(prevalence["upper"]),
                )
        total = int(answer.get("totals", {}).get("images_hashed", -1))
        if total != sum(images.values()):
            check.differences.append(
                f"coverage day {day} total images hashed: {total}, truth {sum(images.values())}"
            )
    return check


# --- videos (issue 13) ----------------------------------------------------------------------


def expected_media_picture(
    world: World,
    truth: Truth,
    families: Mapping[str, tuple[HashFamily, HashFamily]],
    media: Media | None = None,
) -> dict[str, Any]:
    """The picture of `truth` as the coordinator shows it with `?media=` (None: unfiltered):
    rows by country and hoster, by report family and the totals, counting only matches whose
    family is of `media` (vpdq-frame is an image: a still was found)."""
    kept: dict[str, frozenset[ExpectedMatch]] = {}
    # Per family: matches summed over nodes, and the distinct URLs (one URL may be matched
    # under different families by nodes with different lists).
    counts: dict[str, int] = {}
    urls: dict[str, set[str]] = {}
    for node_id, matches in truth.per_node.items():
        exact, perceptual = families[node_id]
        chosen = []
        for match in matches:
            family = report_family(match.kind, exact, perceptual)
            if media is None or media_of(ReportFamily(family)) == media:
                chosen.append(match)
                counts[family] = counts.get(family, 0) + 1
                urls.setdefault(family, set()).add(match.url)
        kept[node_id] = frozenset(chosen)
    subset = world.tally(kept)
    picture: dict[str, Any] = subset.as_picture()
    picture["by_family"] = [
        {"hash_family": f, "matches": counts[f], "distinct": len(urls[f])} for f in sorted(counts)
    ]
    picture["totals"] = {"matches": subset.total.matches, "distinct": subset.total.distinct}
    return picture


@dataclass
class VideoCheck:
    """The coordinator's video cells (GET /v1/picture?media=video: by country, hoster and
    family), its vpdq-frame cells (the unfiltered picture's family row) and its split of the
    matches by media, each against the truth."""

    comparison: Comparison
    expected: dict[str, Any]  # the video picture of the truth
    stills: tuple[int, int]  # vpdq-frame matches: (coordinator, truth)
    by_media: dict[str, tuple[int, int]]  # media -> (coordinator, truth)
    differences: list[str] = field(default_factory=list)

    @property
    def agrees(self) -> bool:
        return not self.differences


def check_videos(
    world: World,
    truth: Truth,
    families: Mapping[str, tuple[HashFamily, HashFamily]],
    video_picture: Mapping[str, Any],
    picture: Mapping[str, Any],
) -> VideoCheck:
    """`video_picture`: the coordinator's picture with media=video; `picture`: unfiltered."""
    expected = expected_media_picture(world, truth, families, "video")
    comparison = compare_picture(video_picture, expected)
    differences = [f"video picture: {d}" for d in comparison.differences]
    full = expected_media_picture(world, truth, families)
    frame = ReportFamily.VPDQ_FRAME.value

    def frame_matches(rows: Any) -> int:
        return sum(int(r["matches"]) for r in rows if r["hash_family"] == frame)

    stills = (frame_matches(picture.get("by_family", [])), frame_matches(full["by_family"]))
    if stills[0] != stills[1]:
        differences.append(f"vpdq-frame matches: coordinator {stills[0]}, truth {stills[1]}")
    split = picture.get("totals", {}).get("by_media") or {}
    by_media: dict[str, tuple[int, int]] = {}
    for media in MEDIA:
        want = int(expected_media_picture(world, truth, families, media)["totals"]["matches"])
        by_media[media] = (int(split.get(media, -1)), want)
        if by_media[media][0] != want:
            differences.append(f"{media} matches: coordinator {by_media[media][0]}, truth {want}")
    return VideoCheck(comparison, expected, stills, by_media, differences)
