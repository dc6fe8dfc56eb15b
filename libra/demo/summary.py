"""The demo's printed summary: tables that fit 80 columns, each figure next to its truth.

Everything the coordinator or the world named (hosters, differences) is escaped before Rich
sees it: a name with square brackets is text, not markup. On a console that is not a terminal
Rich writes no colour codes, so the same calls give a clean log.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from libra.demo.checks import FlowCheck, RemovalCheck, VideoCheck
from libra.demo.discovery_demo import DiscoveryResult
from libra.demo.runner import DemoResult, PeriodResult

OK = "[green]ok[/green]"
BAD = "[red]DIFFERS[/red]"


def _mark(ok: bool) -> str:
    return OK if ok else BAD


def _periods_table(result: DemoResult) -> Table:
    table = Table(title="Per period: the picture (coordinator = truth in every cell)")
    for name in ("period", "matches", "distinct", "countries", "hosters", "check"):
        table.add_column(name, justify="left" if name == "period" else "right")
    for period in result.periods:
        totals = period.picture.get("totals", {})
        table.add_row(
            f"{period.start:%a %Y-%m-%d}",
            str(totals.get("matches")),
            str(totals.get("distinct")),
            str(len(period.picture.get("by_country", []))),
            str(len(period.picture.get("by_hoster", []))),
            _mark(period.comparison.agrees),
        )
    return table


def _series(periods: list[PeriodResult], section: str, key: str) -> dict[str, list[str]]:
    """Matches per period per row, "coordinator" or "coordinator/truth" when they differ."""
    rows: dict[str, list[str]] = {}
    for index, period in enumerate(periods):
        for row in period.comparison.rows(section):
            name = row.key.split(" / ")[0] if key == "hoster" else row.key
            cells = rows.setdefault(name, ["-"] * len(periods))
            actual, wanted = row.actual["matches"], row.expected["matches"]
            cells[index] = str(actual) if actual == wanted else f"[red]{actual}/{wanted}[/red]"
    return rows


def _trend_table(result: DemoResult, section: str, key: str, title: str) -> Table:
    table = Table(title=title)
    table.add_column(key)
    for period in result.periods:
        table.add_column(f"{period.start:%d %b}", justify="right")
    for name, cells in sorted(_series(result.periods, section, key).items()):
        table.add_row(escape(name), *cells)
    return table


def _hours(seconds: int | None) -> str:
    return "-" if seconds is None else f"{seconds / 3600:.1f}"


def _removals_table(checks: list[RemovalCheck], tolerance: int) -> Table:
    table = Table(title=f"Time to removal, all days (median hours; truth +/- {tolerance} s)")
    # The figures never wrap; a hoster's name may, should the table be too wide for it.
    table.add_column("hoster")
    for name in ("removes", "sent", "urls", "gone", "median", "truth", ""):
        table.add_column(name, justify="left" if name == "removes" else "right", no_wrap=True)
    for check in checks:
        truth = check.nominal_median
        table.add_row(
            escape(check.hoster),
            check.policy,
            f"{check.actual['notices_sent']}",
            f"{check.actual['urls_noticed']}",
            f"{check.actual['removed']}",
            _hours(check.actual_median),
            _hours(truth),
            _mark(check.agrees),
        )
    return table


def _flows_table(check: FlowCheck, labels: Mapping[int, str]) -> Table:
    table = Table(title=f"Flows by {check.by} (items; exact)")
    for name in ("step", "from", "to", "items", "truth", ""):
        table.add_column(name, justify="right" if name in ("items", "truth") else "left")
    for (day, source, target), (got, want) in sorted(check.flows.items(), key=str):
        table.add_row(
            labels[day],
            escape(str(source[-1])),
            escape(str(target[-1])),
            "-" if got is None else str(got),
            str(want),
            _mark(got == want),
        )
    return table


def _prevalence_table(result: DemoResult) -> Table:
    last = result.periods[-1].start if result.periods else None
    table = Table(
        title=f"Prevalence on {last:%d %b} (matches per 10k images, 95 % CI)"
        if last
        else "Prevalence"
    )
    for name in ("hoster", "images", "matches", "per 10k", "interval"):
        table.add_column(name, justify="left" if name == "hoster" else "right")
    for hoster, (images, matches, per_10k, lower, upper) in sorted(result.coverage.last.items()):
        table.add_row(
            escape(hoster), str(images), str(matches), f"{per_10k:.0f}", f"{lower:.0f}-{upper:.0f}"
        )
    return table


def _videos_table(check: VideoCheck) -> Table:
    table = Table(title="Videos: the picture with media=video, and stills (issue 13)")
    for name in ("cell", "matches", "truth", ""):
        table.add_column(name, justify="left" if name == "cell" else "right")
    for section in ("by_family", "by_country", "by_hoster"):
        for row in check.comparison.rows(section):
            got, want = row.actual["matches"], row.expected["matches"]
            table.add_row(escape(row.key), str(got), str(want), _mark(got == want))
    got, want = check.stills
    table.add_row("vpdq-frame (stills)", str(got), str(want), _mark(got == want))
    for media, (got, want) in sorted(check.by_media.items()):
        table.add_row(f"all {media} matches", str(got), str(want), _mark(got == want))
    return table


def print_videos(console: Console, check: VideoCheck) -> None:
    """The video cells next to their truth, and one line saying whether all agree."""
    console.print(_videos_table(check))
    if check.agrees:
        console.print("Every video cell equals the truth.")
    else:
        console.print(f"[red]{len(check.differences)} video cells differ.[/red]")


def print_discovery(console: Console, result: DiscoveryResult) -> None:
    """The "New material" block: the queue against the truth and what the verdicts did."""
    console.print("New material (issue 14: node-discovery, not reporting):", markup=False)
    for line in result.lines():
        console.print(_bullet(line, console.width), markup=False, soft_wrap=True)
    verdict = "agree with the truth" if result.agrees else "DIFFER from the truth"
    console.print(f"The queue and the verdicts' effects {verdict}.", markup=False)


def print_result(console: Console, result: DemoResult) -> None:
    console.print(_periods_table(result))
    console.print(_trend_table(result, "by_country", "country", "Trend: matches per country"))
    console.print(_trend_table(result, "by_hoster", "hoster", "Trend: matches per hoster"))
    console.print(_removals_table(result.removals, result.tolerance_s))
    labels = {
        p.index: f"{p.start:%d}->{result.periods[p.index + 1].start:%d %b}"
        for p in result.periods[:-1]
    }
    for check in result.flows:
        console.print(_flows_table(check, labels))
    console.print(_prevalence_table(result))
    if result.videos:  # the last period's video cells (every period's differences are listed)
        print_videos(console, result.videos[-1])
    if result.discovery is not None:
        print_discovery(console, result.discovery)
    coverage = result.coverage
    console.print(
        f"Coverage (/v1/coverage, every period): {coverage.rows} hoster rows of images hashed, "
        "matches and prevalence, "
        + ("all equal the truth." if coverage.agrees else f"{len(coverage.differences)} differ.")
    )
    trends = result.trends
    console.print(
        f"Waterbed view (/v1/picture/shifts, {len(result.periods) - 1} steps): "
        f"{trends.rows} country and hoster rows, "
        + ("all equal the truth." if trends.agrees else f"{len(trends.differences)} differ.")
    )
    last = result.periods[-1].picture if result.periods else {}
    totals: Any = last.get("totals", {})
    console.print(
        f"{len(result.periods)} periods; last: {last.get('reports')} reports from "
        f"{last.get('nodes')} nodes, pages fetched {totals.get('pages_fetched')}, images "
        f"hashed {totals.get('images_hashed')}; notices received by the hosters' webhooks: "
        f"{sum(result.notices_received.values())}; {result.seconds:.1f} s."
    )
    differences = result.differences
    if not differences:
        console.print(
            "[bold green]Every period's picture, the trends, the times to removal, the "
            "displacement flows and the video cells equal the ground truth.[/bold green]"
        )
    else:
        console.print("[bold red]The federation differs from the ground truth:[/bold red]")
        for line in differences:
            console.print(_bullet(line, console.width), markup=False, soft_wrap=True)


def _bullet(line: str, width: int) -> str:
    """A bullet whose long line wraps under its own text, not under the bullet (and with no
    padding to the console's width, as a table's cell would have)."""
    return textwrap.fill(line, width=max(width, 40), initial_indent=" - ", subsequent_indent="   ")
