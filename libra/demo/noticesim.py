"""The scripted notice behaviour of the demo's history, simulated from the world model alone.

This is the truth the demo checks the federation against: which URL each node matches in each
period, which notices it sends (docs/notices.md: one notice per hoster per run, re-checks,
re-notice after 24 h while still there, escalation after three), when each hoster removes
what it was told about (`history.REMOVES_AFTER`), and therefore what each node measures as time
to removal. It uses no hash: only the placements, the nodes' lists and the crawl model.

The runner drives the real nodes in the same order (each day: every node crawls, then each
node's notices run, in `World.nodes` order), so the real hosters, which react to the webhooks
they actually receive (`libra.demo.live`), remove what this simulation says, or the check
fails.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from libra.demo.policy import REMOVES_AFTER, PlacementKey
from libra.demo.world import ExpectedMatch

if TYPE_CHECKING:  # the history builder runs this simulation: no import back at run time
    from libra.demo.history import History

ESCALATE_AFTER: Final = 3  # the nodes' notices.escalate_after

SENT: Final = "sent"
ESCALATED: Final = "escalated"
CLOSED: Final = "closed"
HELD: Final = "held"  # no abuse contact: never sent


@dataclass
class SimUrl:
    key: PlacementKey
    first_day: int | None = None  # the day of the first round naming it
    removed_day: int | None = None  # the day a re-check found it gone
    present_day: int | None = None  # the last day a re-check found it there


@dataclass
class SimNotice:
    node_id: str
    hoster: str  # Hoster.key
    urls: dict[PlacementKey, SimUrl]
    rounds: int = 0
    last_sent_day: int | None = None
    state: str = HELD


@dataclass(frozen=True)
class RemovalFact:
    """One URL a node saw removed: noticed first on `first_day`, found gone on `seen_day`."""

    node_id: str
    hoster: str
    first_day: int
    seen_day: int


@dataclass
class HosterNotices:
    """What the nodes' statistics say about one hoster, summed over nodes and periods."""

    notices_sent: int = 0
    urls_noticed: int = 0
    removals: list[RemovalFact] = field(default_factory=list)
    escalated: int = 0


class NoticeSimulation:
    def __init__(self, history: History) -> None:
        self.history = history
        self.order = [plan.node_id for plan in history.world.nodes]
        self.removed: dict[PlacementKey, int] = {}  # the day the hoster deleted the file
        self.notices: dict[str, list[SimNotice]] = {n: [] for n in self.order}
        self.matches: dict[int, dict[str, frozenset[ExpectedMatch]]] = {}
        self.by_hoster: dict[str, HosterNotices] = {}
        # (day, node, hoster key) -> webhook deliveries: what each hoster's desk must receive
        # from each node's run (the runner checks it after every run).
        self.delivered: Counter[tuple[int, str, str]] = Counter()
        self.day_done = -1

    def run(self, until: int) -> NoticeSimulation:
        for day in range(self.day_done + 1, until + 1):
            self.day(day)
        return self

    def day(self, day: int) -> None:
        # Every node crawls first (removals of this day happen after the crawls).
        per_node = {n: self.history.matches(n, day, self.removed_before(day)) for n in self.order}
        self.matches[day] = per_node
        for node_id in self.order:
            self.node_run(node_id, day, per_node[node_id])
        self.day_done = day

    def removed_before(self, day: int) -> dict[PlacementKey, int]:
        """The removals as they stood when `day`'s crawls ran."""
        return {k: d for k, d in self.removed.items() if d < day}

    def stats(self, hoster: str) -> HosterNotices:
        return self.by_hoster.setdefault(hoster, HosterNotices())

    def node_run(self, node_id: str, day: int, matches: frozenset[ExpectedMatch]) -> None:
        notices = self.notices[node_id]
        # 1. Re-check every noticed URL not yet seen removed.
        for notice in notices:
            if notice.state not in (SENT, ESCALATED):
                continue
            for url in notice.urls.values():
                if url.first_day is None or url.removed_day is not None:
                    continue
                if url.key in self.removed:
                    url.removed_day = day
                    self.stats(notice.hoster).removals.append(
                        RemovalFact(node_id, notice.hoster, url.first_day, day)
                    )
                else:
                    url.present_day = day
            if all(u.removed_day is not None for u in notice.urls.values()):
                notice.state = CLOSED
        # 2. Re-notice what is still there a day after the last round, or escalate.
        for notice in notices:
            if notice.state != SENT or notice.last_sent_day is None:
                continue
            if notice.last_sent_day >= day:
                continue
            present = [
                u for u in notice.urls.values() if u.removed_day is None and u.present_day == day
            ]
            if not present:
                continue
            if notice.rounds >= ESCALATE_AFTER:
                notice.state = ESCALATED
                self.stats(notice.hoster).escalated += 1
                continue
            self.deliver(notice, present, day)
        # 3. New notices, one per hoster, for this day's matches that no notice covers.
        covered = {u.key for n in notices for u in n.urls.values() if u.removed_day is None}
        fresh: dict[str, list[PlacementKey]] = {}
        for match in sorted(matches):
            key = (match.site, match.path)
            if key not in covered:
                fresh.setdefault(match.hoster, []).append(key)
        for hoster, keys in sorted(fresh.items()):
            notice = SimNotice(node_id, hoster, {k: SimUrl(k) for k in keys})
            notices.append(notice)
            if hoster in REMOVES_AFTER:  # an abuse contact (the operator table's webhook)
                notice.state = SENT
                self.deliver(notice, list(notice.urls.values()), day)

    def deliver(self, notice: SimNotice, urls: list[SimUrl], day: int) -> None:
        """One round to the hoster's webhook; the hoster reacts as scripted."""
        notice.rounds += 1
        notice.last_sent_day = day
        self.delivered[(day, notice.node_id, notice.hoster)] += 1
        stats = self.stats(notice.hoster)
        stats.notices_sent += 1
        threshold = REMOVES_AFTER[notice.hoster]
        for url in urls:
            if url.first_day is None:
                url.first_day = day
                stats.urls_noticed += 1
            if threshold is not None and notice.rounds >= threshold:
                self.removed.setdefault(url.key, day)

    # -- views for the checks --

    def items(self, day: int) -> dict[str, set[str]]:
        """Hoster key -> the listed items (pool ids) matched there on `day` by any node."""
        out: dict[str, set[str]] = {}
        for matches in self.matches[day].values():
            for match in matches:
                out.setdefault(match.hoster, set()).add(match.base_id)
        return out
