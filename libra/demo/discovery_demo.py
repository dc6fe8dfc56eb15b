"""The demo's new-material step (issue 14): a fourth node crawls the discovery world
(libra/demo/discovery_world.py), its candidate queue is checked against the world's truth, an
analyst confirms two true clusters and rejects a false one by the CLI, and a second crawl shows
what the verdicts changed.

The node ("node-discovery") is not registered at the coordinator and never reports, so the
federation's picture and its truth stay as they are. Everything is read the operator's way
(`libra node crawl`, `libra node candidates ...`), except the second crawl's sightings, which
are read from the node's own database (the exact check; the crawl only prints a count).
Nothing here hard-codes a measured figure: the lines say what this run measured.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from libra.demo.discovery_world import KIND_NEW, DiscoveryWorld, QueueCheck, without_port
from libra.demo.processes import DemoStepFailed, ProcessGroup

# The discovery world is small whatever the demo's scale (about 85 image URLs at 0.5).
MAX_SCALE: Final = 0.5
MIN_SCALE: Final = 0.1  # DiscoveryWorld.build's floor
MIN_RECALL: Final = 0.75  # below this the step fails (the e2e test's floor)
TOP_ROWS: Final = 8  # queue rows shown with their truth
CONFIRMS: Final = 2  # true clusters the analyst confirms
ACTOR: Final = "demo-analyst"
CATEGORY: Final = "demo"
LIST_LIMIT: Final = 1000  # the CLI's largest page


def discovery_world(seed: int, scale: float) -> DiscoveryWorld:
    """The demo's discovery world: the demo's seed, its scale capped at MAX_SCALE."""
    return DiscoveryWorld.build(seed=seed, scale=max(MIN_SCALE, min(scale, MAX_SCALE)))


def truth_label(world: DiscoveryWorld, url: str) -> str:
    """What an image URL is, e.g. "new (album)", "decoration (page)"; "not in the world"."""
    truth = world.of(url)
    return "not in the world" if truth is None else f"{truth.kind} ({truth.setting})"


def short_url(url: str) -> str:
    """``http://host:port/path`` -> ``host/path`` (the port is the run's; not news)."""
    return without_port(url).removeprefix("http://").removeprefix("https://")


@dataclass(frozen=True)
class QueueRow:
    """One representative of the queue as the analyst meets it, with its truth."""

    id: int
    score: float
    members: int
    url: str
    truth: str
    new: bool  # its truth is new material


@dataclass(frozen=True)
class VerdictCheck:
    """What the second crawl shows after the verdicts."""

    confirmed_items: tuple[str, ...]
    confirmed_urls: int  # every URL of the confirmed items (near-duplicates included)
    confirmed_matched: int  # of those, sightings of the second crawl
    rejected_item: str
    rejected_rows: int  # candidate rows of the rejected cluster
    rejected_still: int  # of those, still in state "rejected"
    rejected_pending: int  # pending rows showing the rejected item after the second crawl
    rejected_matched: int  # sightings of the rejected item in the second crawl
    matches: tuple[int, int]  # the crawls' printed matches, first and second

    @property
    def confirmed_ok(self) -> bool:
        return self.confirmed_urls > 0 and self.confirmed_matched == self.confirmed_urls

    @property
    def rejected_ok(self) -> bool:
        return (
            self.rejected_rows > 0
            and self.rejected_still == self.rejected_rows
            and not self.rejected_pending
            and not self.rejected_matched
        )

    def lines(self) -> list[str]:
        first, second = self.matches
        return [
            f"confirmed: {len(self.confirmed_items)} items -> {self.confirmed_matched}/"
            f"{self.confirmed_urls} of their URLs matched in the second crawl (matches "
            f"{first} -> {second})",
            f"rejected: 1 item -> its {self.rejected_still}/{self.rejected_rows} rows stay "
            f"rejected, {self.rejected_pending} pending again, {self.rejected_matched} matched",
        ]

    def differences(self) -> list[str]:
        out = []
        if not self.confirmed_ok:
            out.append(
                f"new material: {self.confirmed_matched} of the confirmed items' "
                f"{self.confirmed_urls} URLs matched in the second crawl"
            )
        if not self.rejected_ok:
            out.append(
                f"new material: the rejected item {self.rejected_item}: "
                f"{self.rejected_still}/{self.rejected_rows} rows rejected, "
                f"{self.rejected_pending} pending again, {self.rejected_matched} matched"
            )
        return out


@dataclass(frozen=True)
class DiscoveryResult:
    """The new-material step: the queue against the truth, the verdicts and what they did."""

    queue: QueueCheck
    top: tuple[QueueRow, ...]
    commands: tuple[str, ...]  # the verdicts, as the analyst typed them
    verdicts: VerdictCheck

    def check_line(self) -> str:
        return queue_line(self.queue)

    def lines(self) -> list[str]:
        return [self.check_line(), *self.verdicts.lines()]

    @property
    def differences(self) -> list[str]:
        return self.verdicts.differences()

    @property
    def agrees(self) -> bool:
        return not self.differences


def queue_line(q: QueueCheck) -> str:
    """The queue against the truth, in one line (the figures this run measured)."""
    per = q.reviews_per_confirmed
    return (
        f"candidates: {q.clusters} clusters, {q.true_clusters} new material (precision "
        f"{q.precision:.2f}), {q.new_found}/{q.new_total} new items found (recall "
        f"{q.recall:.2f}), "
        + ("no item confirmed" if per is None else f"{per:.2f} reviews per confirmed item")
    )


def queue_rows(world: DiscoveryWorld, rows: Sequence[Mapping[str, Any]]) -> list[QueueRow]:
    """The representatives (``cluster_id`` None) in the order the CLI listed them."""
    out = []
    for row in rows:
        if row.get("cluster_id") is not None:
            continue
        url = str(row["url"])
        truth = world.of(url)
        out.append(
            QueueRow(
                id=int(row["id"]),
                score=float(row["score"]),
                members=int(row.get("members") or 1),
                url=url,
                truth=truth_label(world, url),
                new=truth is not None and truth.kind == KIND_NEW,
            )
        )
    return out


def pick_verdicts(rows: Sequence[QueueRow]) -> tuple[list[QueueRow], QueueRow]:
    """The best CONFIRMS true clusters and the best false one (queue order)."""
    true = [r for r in rows if r.new][:CONFIRMS]
    false = [r for r in rows if not r.new][:1]
    if len(true) < CONFIRMS or not false:
        raise DemoStepFailed(
            f"new material: the queue holds {sum(r.new for r in rows)} true and "
            f"{sum(not r.new for r in rows)} false clusters; the demo confirms {CONFIRMS} "
            "and rejects 1"
        )
    return true, false[0]


def _two_lines(place: str) -> str:
    """``host/path`` as the host on one line and the path on the next: both stay whole in
    80 columns (a cut in the middle of a host name would be hard to read)."""
    host, slash, path = place.partition("/")
    return f"{host}\n{slash}{path}" if slash else host


def queue_table(rows: Sequence[QueueRow], total: int) -> Table:
    """The top of the queue with a truth column; the image's place is its host over its path
    (a path too long for its column wraps, never cut)."""
    table = Table(title=f"New material: the top {len(rows)} of {total} clusters, with the truth")
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("imgs", justify="right", no_wrap=True)
    table.add_column("image", overflow="fold")
    table.add_column("truth", no_wrap=True)
    for row in rows:
        table.add_row(
            str(row.id),
            f"{row.score:.0f}",
            str(row.members),
            escape(_two_lines(short_url(row.url))),
            escape(row.truth),
        )
    return table


def check_queue(
    world: DiscoveryWorld, rows: Sequence[Mapping[str, Any]], threshold: float
) -> QueueCheck:
    """The queue against the truth; fails on a broken guarantee or recall below MIN_RECALL."""
    check = world.check_queue(rows, threshold)
    problems = check.problems()
    if problems:
        raise DemoStepFailed("new material: " + "; ".join(problems))
    if check.recall < MIN_RECALL:
        raise DemoStepFailed(
            f"new material: recall {check.recall:.2f} ({check.new_found}/{check.new_total} new "
            f"items) is below {MIN_RECALL}"
        )
    return check


_MATCHES = re.compile(r"^\s*matches\s+(\d+)\s*$", re.MULTILINE)
_CYCLE = re.compile(r"crawl cycle (\d+):")


def crawl_figures(output: str) -> tuple[int, int]:
    """(cycle id, matches) from `libra node crawl`'s printed summary."""
    cycle, matches = _CYCLE.search(output), _MATCHES.search(output)
    if cycle is None or matches is None:
        raise DemoStepFailed("`libra node crawl` printed no cycle summary for node-discovery")
    return int(cycle.group(1)), int(matches.group(1))


class DiscoveryNode:
    """The fourth node, driven by the CLI through the demo's process group."""

    def __init__(self, procs: ProcessGroup, config: Path, crawl_timeout: float) -> None:
        self.procs = procs
        self.config = config
        self.crawl_timeout = crawl_timeout

    def libra(self, name: str, *args: str, timeout: float | None = None) -> str:
        return self.procs.run(
            f"discovery-{name}", [*args, "--config", str(self.config)], timeout=timeout
        )

    def crawl(self, name: str) -> tuple[int, int]:
        return crawl_figures(self.libra(name, "node", "crawl", timeout=self.crawl_timeout))

    def candidates(self, state: str) -> list[dict[str, Any]]:
        output = self.libra(
            f"candidates-{state}",
            "node",
            "candidates",
            "list",
            "--json",
            "--members",
            "--state",
            state,
            "--limit",
            str(LIST_LIMIT),
            "--actor",
            ACTOR,
        )
        try:
            rows: list[dict[str, Any]] = json.loads(output)["candidates"]
        except (ValueError, KeyError, TypeError) as exc:
            raise DemoStepFailed(
                f"`libra node candidates list --json` printed no candidates: {exc}"
            ) from exc
        if len(rows) >= LIST_LIMIT:  # a cut list would make the check wrong, not just short
            raise DemoStepFailed(f"node-discovery holds {LIST_LIMIT} candidates or more")
        return rows

    def threshold(self) -> float:
        from node.config import load_settings

        return float(load_settings(self.config).discovery.min_score)

    def sightings(self, cycle_id: int) -> set[str]:
        """The URLs the node recorded as matches in ``cycle_id`` (its own database)."""
        from sqlmodel import Session, col, select

        from node.config import load_settings
        from node.models import Sighting
        from node.service import open_engine

        engine = open_engine(load_settings(self.config))
        try:
            with Session(engine) as session:
                query = select(Sighting.url).where(col(Sighting.cycle_id) == cycle_id)
                return set(session.exec(query).all())
        finally:
            engine.dispose()


def _say(console: Console, line: str) -> None:
    """One of the step's lines, indented under the step; a long one wraps under its text."""
    width = max(console.width, 40)
    text = textwrap.fill(line, width=width, initial_indent="  ", subsequent_indent="    ")
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def run_discovery(node: DiscoveryNode, world: DiscoveryWorld, console: Console) -> DiscoveryResult:
    """Crawl, check the queue, confirm two and reject one by the CLI, crawl again, check."""
    _, first_matches = node.crawl("crawl-1")
    pending = node.candidates("pending")
    queue = check_queue(world, pending, node.threshold())
    _say(console, queue_line(queue))
    rows = queue_rows(world, pending)
    console.print(queue_table(rows[:TOP_ROWS], len(rows)))
    confirmed, rejected = pick_verdicts(rows)
    commands = []
    for row in confirmed:
        args = ["node", "candidates", "confirm", str(row.id), "--category", CATEGORY]
        args += ["--reason", "demo analyst", "--actor", ACTOR]
        node.libra(f"confirm-{row.id}", *args)
        commands.append(f"libra {' '.join(args[:4])} --category {CATEGORY} --actor {ACTOR}")
    why = f"demo analyst: {rejected.truth}"  # the truth decides, as the analyst would
    args = ["node", "candidates", "reject", str(rejected.id), "--reason", why, "--actor", ACTOR]
    node.libra(f"reject-{rejected.id}", *args)
    commands.append(f"libra {' '.join(args[:4])} --reason '{why}' --actor {ACTOR}")
    for command in commands:
        _say(console, f"$ {command}")
    cycle, second_matches = node.crawl("crawl-2")
    verdicts = verdict_check(
        world,
        [r.url for r in confirmed],
        rejected,
        node.candidates("all"),
        node.sightings(cycle),
        (first_matches, second_matches),
    )
    for line in verdicts.lines():
        _say(console, line)
    result = DiscoveryResult(queue, tuple(rows[:TOP_ROWS]), tuple(commands), verdicts)
    if not result.agrees:
        raise DemoStepFailed("; ".join(result.differences))
    return result


def verdict_check(
    world: DiscoveryWorld,
    confirmed_urls: Sequence[str],
    rejected: QueueRow,
    rows: Sequence[Mapping[str, Any]],
    sightings: set[str],
    matches: tuple[int, int],
) -> VerdictCheck:
    """The second crawl against the verdicts: every URL of a confirmed item is a sighting;
    the rejected cluster's rows stay rejected and its item is neither pending nor matched."""
    items = []
    for url in confirmed_urls:
        truth = world.of(url)
        if truth is None:
            raise DemoStepFailed(f"new material: confirmed {url} is not in the world")
        items.append(truth.item)
    wanted = {t.url for t in world.images(KIND_NEW) if t.item in items}
    seen = {without_port(url) for url in sightings}
    truth = world.of(rejected.url)
    rejected_item = "" if truth is None else truth.item

    def item_of(url: str) -> str | None:
        found = world.of(url)
        return None if found is None else found.item

    cluster = [r for r in rows if int(r["id"]) == rejected.id or r.get("cluster_id") == rejected.id]
    return VerdictCheck(
        confirmed_items=tuple(items),
        confirmed_urls=len(wanted),
        confirmed_matched=len(wanted & seen),
        rejected_item=rejected_item,
        rejected_rows=len(cluster),
        rejected_still=sum(1 for r in cluster if r.get("state") == "rejected"),
        rejected_pending=sum(
            1
            for r in rows
            if r.get("state") == "pending" and item_of(str(r["url"])) == rejected_item
        ),
        rejected_matched=sum(1 for url in sightings if item_of(url) == rejected_item),
        matches=matches,
    )
