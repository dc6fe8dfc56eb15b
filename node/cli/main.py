"""`libra node ...`: set up a node, import lists, crawl, report, serve.

Every command reads the node's TOML file: ``--config``, else $LIBRA_NODE_CONFIG, else
./node.toml. Exit codes: 0 success, 1 an error or a report the coordinator refused (and a crawl
that could fetch no page or analyse no image), 2 bad usage or configuration, 75 (EX_TEMPFAIL)
reports still queued for the next run, 78 (EX_CONFIG) `serve` cannot open its GeoIP databases.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from node.attribution.attributor import Attributor
    from node.config import NodeSettings
    from node.crawl.crawler import CrawlStats
    from node.cycle import CycleSummary
    from node.federation import outbox
    from node.service import CrawlWatch, ReportRun
import typer
from rich.markup import escape
from rich.table import Table

from node.cli.candidates import candidates_app
from node.cli.common import (
    AtOption,
    ConfigOption,
    clock_or_exit,
    console,
    err,
    fail,
    lab_moment_or_exit,
    parse_time,
    settings_or_exit,
)
from node.cli.contacts import contacts_app, retention_app
from node.cli.db import db_app
from node.cli.federation import app as federation_app
from node.cli.keys import rotate_signing_key_cmd
from node.cli.lists import list_app
from node.cli.log import log_app
from node.cli.notices import notices_app
from node.cli.psi import psi_app
from node.clock import Clock

EX_TEMPFAIL = 75
EX_CONFIG = 78  # sysexits.h: `serve` cannot start on its configuration (a GeoIP database)

app = typer.Typer(
    help="An agency's LIBRA node: lists, crawling, signed reports.",
    no_args_is_help=True,
    add_completion=False,
)
outbox_app = typer.Typer(help="Signed reports waiting for the coordinator.", no_args_is_help=True)
app.add_typer(list_app, name="list")  # node/cli/lists.py
app.add_typer(outbox_app, name="outbox")
app.add_typer(federation_app, name="federation")  # node/cli/federation.py
app.add_typer(notices_app, name="notices")  # node/cli/notices.py (issue 7)
app.add_typer(contacts_app, name="contacts")  # node/cli/contacts.py (issue 7)
app.add_typer(retention_app, name="retention")  # node/cli/contacts.py (issue 7)
app.add_typer(db_app, name="db")  # node/cli/db.py
app.add_typer(log_app, name="log")  # node/cli/log.py (issue 15)
app.add_typer(psi_app, name="psi")  # node/cli/psi.py (issue 15)
app.add_typer(candidates_app, name="candidates")  # node/cli/candidates.py (issue 14)
app.command("rotate-signing-key")(rotate_signing_key_cmd)  # node/cli/keys.py


def _engine(settings: NodeSettings) -> Engine:
    from node.keys.list_encryption import ListKeyError
    from node.service import open_engine

    try:
        return open_engine(settings)
    except ListKeyError as exc:
        fail(str(exc), 2)


# --------------------------------------------------------------------------- init


@app.command()
def init(
    directory: Annotated[Path, typer.Option("--dir", help="Node directory to create.")],
    node_id: Annotated[str, typer.Option("--node-id", help="Node id, as registered.")],
    country: Annotated[str, typer.Option("--country", help="ISO-2 country of the agency.")],
    function_url: Annotated[
        str | None, typer.Option("--function-url", help="Remote-hash function base URL.")
    ] = None,
    coordinator_url: Annotated[
        str | None, typer.Option("--coordinator-url", help="Coordinator base URL.")
    ] = None,
    seed: Annotated[list[str] | None, typer.Option("--seed", help="Seed URL (repeatable).")] = None,
    lab: Annotated[
        Path | None, typer.Option("--lab", help="Lab network TOML (loopback test web only).")
    ] = None,
    country_db: Annotated[
        Path | None, typer.Option("--country-db", help="GeoLite2-Country-schema .mmdb.")
    ] = None,
    asn_db: Annotated[
        Path | None, typer.Option("--asn-db", help="GeoLite2-ASN-schema .mmdb.")
    ] = None,
    federation_key_file: Annotated[
        Path | None,
        typer.Option(
            "--federation-key-file",
            help="Existing federation key shared by the nodes (default: create a new one).",
        ),
    ] = None,
    function_key_file: Annotated[
        Path | None,
        typer.Option(
            "--function-key-file",
            help="Key that signs this node's requests to the function (written as "
            "function_key_file; make it with `libra function key create`). Default: unsigned.",
        ),
    ] = None,
) -> None:
    """Create a node directory: node.toml, a new signing key, a federation key and the
    key that encrypts the hash lists at rest (lists.key).

    Prints the node id, key id and public key: give these to the coordinator's admin.
    """
    import tomli_w
    from pydantic import ValidationError

    from node.config import (
        DEFAULT_CONFIG_FILE,
        FEDERATION_KEY_FILE_NAME,
        LIST_KEY_FILE_NAME,
        SIGNING_KEY_FILE_NAME,
        NodeSettings,
        load_settings,
    )
    from node.keys.files import (
        KeyFileError,
        create_federation_key,
        create_signing_key,
        load_federation_key,
    )
    from node.keys.list_encryption import ListKeyError, create_list_key
    from node.service import open_engine

    config_path = directory / DEFAULT_CONFIG_FILE.name
    signing_path = directory / SIGNING_KEY_FILE_NAME
    for existing in (config_path, signing_path, directory / LIST_KEY_FILE_NAME):
        if existing.exists():
            fail(f"{existing} already exists; refusing to overwrite a node", 1)
    values: dict[str, Any] = {"node_id": node_id, "country": country.upper(), "data_dir": "."}
    if function_url:
        values["function_url"] = function_url
    if coordinator_url:
        values["coordinator_url"] = coordinator_url
    if seed:
        values["seeds"] = list(seed)
    if lab is not None:
        values["lab"] = str(lab.resolve())
    if federation_key_file is not None:
        values["federation_key_file"] = str(federation_key_file.resolve())
    function_public_key = None
    if function_key_file is not None:
        function_public_key = _function_public_key(function_key_file)
        values["function_key_file"] = str(function_key_file.resolve())
    geoip = {
        name: str(path.resolve())
        for name, path in (("country_db", country_db), ("asn_db", asn_db))
        if path is not None
    }
    if geoip:
        values["geoip"] = geoip
    try:
        settings = NodeSettings(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        fail(f"invalid settings: {problems}", 2)
    try:
        if federation_key_file is not None:
            load_federation_key(federation_key_file)
        directory.mkdir(parents=True, exist_ok=True)
        key = create_signing_key(signing_path)
        if federation_key_file is None:
            create_federation_key(directory / FEDERATION_KEY_FILE_NAME)
        create_list_key(directory / LIST_KEY_FILE_NAME)
    except (KeyFileError, ListKeyError) as exc:
        fail(str(exc))
    document = {k: v for k, v in values.items() if k != "geoip"}
    # Write every section so operators see the knobs; [geoip] only with the paths given.
    for section in ("crawl", "match", "dispatch", "report", "schedule"):
        document[section] = getattr(settings, section).model_dump(mode="json")
    if geoip:
        document["geoip"] = geoip
    config_path.write_text(tomli_w.dumps(document), encoding="utf-8")
    open_engine(load_settings(config_path)).dispose()
    console.print(f"node directory  {directory.resolve()}")
    console.print(f"config          {config_path}")
    console.print(f"node id         {settings.node_id}")
    console.print(f"key id          {key.key_id}")
    console.print(f"public key      {key.public_key_b64}")
    console.print("Register the node id and public key at the coordinator before reporting.")
    if function_key_file is not None and function_public_key is None:
        err.print(
            f"[yellow]note:[/] {escape(str(function_key_file))} does not exist yet: create it "
            f"with `libra function key create` before the first crawl"
        )
    elif function_public_key is not None:
        console.print(f"function key    {function_public_key}")
        console.print(
            f"Add it to the function's authorized_keys as {settings.node_id!r} before crawling."
        )


def _function_public_key(path: Path) -> str | None:
    """The public half of an existing function request key, None if the file is not there yet
    (it may be made after `init`); exit 1 for a file that is not such a key."""
    from protocol.keys import NodeKey

    if not path.exists():
        return None
    try:
        return NodeKey.from_seed_b64(path.read_text(encoding="ascii")).public_key_b64
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        fail(f"{path}: not a function request key (a base64 Ed25519 seed): {exc}", 1)


# --------------------------------------------------------------------------- crawl


def _with_reasons(count: int, reasons: Mapping[str, int]) -> str:
    from node.cycle import breakdown

    why = breakdown(reasons)
    return f"{count}: {why}" if count and why else str(count)


def _print_cycle(
    summary: CycleSummary, examples: Mapping[str, str] | None = None, budget: str | None = None
) -> None:
    # Plain "label value" lines (no table): they stay whole in logs and grep.
    seconds = (summary.finished_at - summary.started_at).total_seconds()
    rows = [
        ("pages fetched", str(summary.pages_fetched)),
        ("pages skipped by robots.txt", str(summary.pages_robots_skipped)),
        ("pages failed", _with_reasons(summary.pages_failed, summary.page_failures)),
        ("hosts seen", str(summary.hosts_seen)),
        ("images found", str(summary.images_found)),
        ("images hashed", str(summary.images_hashed)),
        # Issue 13: the videos among the images found / hashed (each counts as one item).
        ("videos found", str(summary.videos_found)),
        ("videos hashed", str(summary.videos_hashed)),
        ("images failed", _with_reasons(summary.analysis_failures, summary.image_failures)),
        ("matches", str(summary.matches)),
        # Issue 14: new candidates for review; matches of images an analyst rejected.
        ("candidates", str(summary.candidates)),
        ("matches suppressed", str(summary.suppressed)),
        ("matches held (flood guard)", str(summary.held)),
        ("seconds", f"{seconds:.0f}"),
    ]
    if budget is not None:
        rows.insert(3, ("page budget", budget))
    console.print(f"crawl cycle {summary.cycle_id}: {summary.status}", highlight=False)
    for label, value in rows:
        console.print(f"  {label:<28} {escape(value)}", highlight=False)
        if label == "pages failed" and examples:
            # One page per failure reason: where to look (this run's pages only).
            for reason in sorted(summary.page_failures, key=lambda r: -summary.page_failures[r]):
                if (example := examples.get(reason)) is not None:
                    console.print(f"    {reason:<26} e.g. {escape(example)}", highlight=False)


async def _crawl(
    settings: NodeSettings, engine: Engine, show: bool, clock: Clock, watch: CrawlWatch
) -> CycleSummary:
    from node.cycle import RichCycleProgress
    from node.service import crawl_once

    def known_pages() -> int | None:
        # The in-process crawler's scheduled pages (capped by max_pages in the display);
        # unknown for the Redis frontier, whose crawler counts pages as their events arrive.
        return watch.pages_known() if watch.frontier_known else None

    if show:
        progress = RichCycleProgress(settings.crawl.max_pages, console=err, known_pages=known_pages)
        with progress:
            return await crawl_once(settings, engine, progress=progress, clock=clock, watch=watch)
    return await crawl_once(settings, engine, clock=clock, watch=watch)


def _lab_or_exit(settings: NodeSettings) -> None:
    """Exit 2 when the node's lab file is missing or invalid (before any crawl starts)."""
    from node.config import ConfigError, lab_of

    try:
        lab_of(settings)
    except ConfigError as exc:
        fail(str(exc), 2)


def _seeds_or_exit(settings: NodeSettings, seeds_file: Path | None) -> NodeSettings:
    """The settings with the seeds of ``--seeds-file`` (they replace the TOML's ``seeds`` for
    this run); exit 2 on a bad file or when there is no seed at all."""
    from node.crawl.seeds import SeedsFileError, read_seeds_file

    if seeds_file is not None:
        try:
            seeds = read_seeds_file(seeds_file)
        except SeedsFileError as exc:
            fail(str(exc), 2)
        settings = settings.model_copy(update={"seeds": seeds})
    if not settings.seeds:
        fail("no seeds configured (set `seeds` in the node TOML file or give --seeds-file)", 2)
    return settings


def _warn_refused_seeds(settings: NodeSettings) -> None:
    """Seeds the lab refuses (a port missing from allow_ports, a host missing from the map)
    are named before the crawl: every page under them would fail as blocked_destination."""
    from node.crawl.setup import destination_problems

    problems = destination_problems(settings, settings.seeds)
    for seed, why in list(problems.items())[:10]:
        err.print(f"[yellow]warning:[/] seed {escape(seed)} cannot be crawled: {escape(why)}")
    if len(problems) > 10:
        err.print(f"[yellow]warning:[/] and {len(problems) - 10} more seeds the lab refuses")


def _failure_examples(settings: NodeSettings, crawled: CrawlStats) -> dict[str, str]:
    """reason -> one page that failed with it; a page the lab refused says why."""
    from node.crawl.setup import destination_problems

    examples = dict(crawled.failure_examples)
    blocked = examples.get("blocked_destination")
    why = destination_problems(settings, [blocked]).get(blocked) if blocked else None
    if blocked is not None and why is not None:
        examples["blocked_destination"] = f"{blocked}: {why}"
    return examples


@app.command()
def crawl(
    config: ConfigOption = None,
    at: AtOption = None,
    seeds_file: Annotated[
        Path | None,
        typer.Option(
            "--seeds-file",
            help="Crawl the URLs of this file (one per line; blank lines and # comments "
            "ignored) instead of the TOML's seeds.",
        ),
    ] = None,
) -> None:
    """Run one crawl cycle in the foreground over the configured seeds.

    With --at (lab mode only) the cycle is recorded as if it ran at that moment. Exit 0 when
    the cycle ran (a page budget reached included), 1 when not one page could be fetched or
    images were found but none could be analysed (the reasons are printed), 2 bad usage.
    """
    import asyncio

    from node.attribution.attributor import GeoDatabaseError
    from node.crawl.budget import describe_budget
    from node.cycle import CycleError, breakdown
    from node.lists import entry_count
    from node.service import CrawlBusy, CrawlWatch

    settings = _seeds_or_exit(settings_or_exit(config), seeds_file)
    clock = clock_or_exit(settings, at)
    _lab_or_exit(settings)
    _warn_refused_seeds(settings)
    engine = _engine(settings)
    if not entry_count(engine):
        err.print("[yellow]warning:[/] the node holds no list entries: nothing can match")
    watch = CrawlWatch()
    try:
        summary = asyncio.run(_crawl(settings, engine, show=True, clock=clock, watch=watch))
    except (CrawlBusy, CycleError, GeoDatabaseError) as exc:
        fail(str(exc))
    crawled = watch.stats
    examples = _failure_examples(settings, crawled)
    limits = settings.crawl
    budget = describe_budget(crawled, limits.max_pages, limits.max_pages_per_site)
    _print_cycle(summary, examples, budget if watch.frontier_known else None)
    if summary.pages_fetched == 0 and summary.pages_failed > 0:
        # Not one page read: the cycle measured nothing (robots.txt refusals alone are not this:
        # they are the site's choice, not a failure).
        first = max(summary.page_failures, key=lambda r: summary.page_failures[r])
        hint = f"; e.g. {examples[first]}" if first in examples else ""
        fail(
            f"no page could be fetched: {summary.pages_failed} page(s) failed "
            f"({breakdown(summary.page_failures)}){hint}"
        )
    if summary.nothing_analysed:
        # A cycle that hashed nothing measured nothing: not a success a script may rely on.
        fail(
            f"{summary.images_found} image(s) found but none could be analysed "
            f"({breakdown(summary.image_failures)}); check that the function at "
            f"{settings.function_url} runs and accepts this node's function_key_file"
        )


@app.command("crawl-worker")
def crawl_worker(
    config: ConfigOption = None,
    name: str = typer.Option("", help="Worker (consumer) name; default host-pid."),
    hosts_at_once: int = typer.Option(
        0, min=0, help="Hosts this worker owns at once at most; 0: crawl.concurrency."
    ),
    forever: bool = typer.Option(
        False,
        "--forever",
        help="Keep waiting for new seeds and jobs when the frontier is empty, until Ctrl-C or "
        "SIGTERM (jobs in flight finish, unstarted ones go back to the frontier).",
    ),
    stop_grace: float = typer.Option(
        10.0, min=0, help="Seconds jobs in flight may take to finish on stop; then requeued."
    ),
) -> None:
    """Work this node's shared Redis frontier (crawl.frontier = "redis") until it is empty
    (with --forever: until Ctrl-C or SIGTERM)."""
    import asyncio

    from redis.exceptions import RedisError

    from node.crawl.worker import run_worker  # issue 5: Redis Streams frontier

    settings = settings_or_exit(config)
    if settings.crawl.frontier != "redis":
        fail('crawl-worker needs crawl.frontier = "redis"', 2)
    try:
        stats = asyncio.run(
            run_worker(
                settings, name or None, hosts_at_once, forever=forever, stop_grace_s=stop_grace
            )
        )
    except RedisError as exc:
        fail(f"Redis frontier at {settings.crawl.redis_url}: {exc}")
    err.print(
        f"worker {'stopped' if forever else 'done'}: {stats.jobs_done} pages, "
        f"{len(stats.hosts_owned)} hosts ({len(stats.hosts_taken_over)} taken over), "
        f"{stats.jobs_reclaimed} jobs reclaimed, {stats.jobs_returned} returned unfinished"
    )


# --------------------------------------------------------------------------- report


def _explain_flush(result: outbox.FlushResult, engine: Engine) -> int:
    """Print the outcome and return the exit code."""
    from node.federation import outbox

    for report_id in result.delivered:
        console.print(f"delivered  {report_id}")
    for report_id in result.duplicates:
        console.print(f"delivered  {report_id} (coordinator already had it)")
    for rejection in result.rejected:
        err.print(
            f"[bold red]REJECTED[/] report {rejection.report_id} (sequence "
            f"{rejection.sequence}): HTTP {rejection.http_status} {escape(rejection.code)}: "
            f"{escape(rejection.message)}"
        )
    held = [i for i in outbox.pending_items(engine, include_rejected=True) if i.rejected_code]
    if held:
        err.print(
            f"[bold red]{len(held)} rejected report(s) held in the outbox[/]; fix the cause, "
            "then `libra node outbox retry` (see `libra node outbox show`)"
        )
        return 1
    if result.pending:
        wait = (
            f" (the coordinator asks to wait {result.retry_after_s:.0f} s)"
            if result.retry_after_s is not None
            else ""
        )
        err.print(
            f"[yellow]{len(result.pending)} report(s) still queued[/] "
            f"({escape(result.last_error or '')}){wait}; "
            "they are sent on the next run"
        )
        return EX_TEMPFAIL
    return 0


def _print_queued(run: ReportRun) -> None:
    for queued in run.queued:
        report = queued.report
        matches = sum(c.matches for c in report.cells)
        d = report.denominators
        console.print(
            f"queued     {report.report_id} sequence {report.sequence} "
            f"period {report.period.start:%Y-%m-%dT%H:%MZ}..{report.period.end:%Y-%m-%dT%H:%MZ}: "
            f"{len(queued.cycle_ids)} cycle(s), {len(report.cells)} cell(s), {matches} match(es), "
            f"{d.pages_fetched} pages, {d.images_hashed} images, {d.hosts_seen} hosts"
        )


@app.command()
def report(
    config: ConfigOption = None,
    period_start: Annotated[
        str | None, typer.Option("--period-start", help="ISO timestamp (UTC if no zone).")
    ] = None,
    period_end: Annotated[
        str | None, typer.Option("--period-end", help="ISO timestamp, exclusive.")
    ] = None,
    at: AtOption = None,
) -> None:
    """Build, sign and queue the report, then send everything queued to the coordinator.

    Without a period: the current UTC period (`report.period`: 5m, 15m, hour or day), plus any
    earlier period that still holds unreported crawl cycles. --at (lab mode only) decides which
    period is current; the reports are still signed at the real time. Exit 0 when all was
    delivered, 75 when reports stay queued (coordinator unreachable), 1 when the coordinator
    refused one.
    """
    import asyncio

    from pydantic import ValidationError

    from node.keys.files import KeyFileError
    from node.service import report_once
    from protocol.models import Period

    settings = settings_or_exit(config)
    now = lab_moment_or_exit(settings, at)
    period: Period | None = None
    if (period_start is None) != (period_end is None):
        fail("give both --period-start and --period-end, or neither", 2)
    if period_start is not None and period_end is not None:
        try:
            period = Period(
                start=parse_time(period_start, "--period-start"),
                end=parse_time(period_end, "--period-end"),
            )
        except ValidationError as exc:
            fail(f"invalid period: {exc.errors()[0]['msg']}", 2)
    engine = _engine(settings)
    try:
        run = asyncio.run(report_once(settings, engine, period, now=now))
    except KeyFileError as exc:
        fail(str(exc))
    _print_queued(run)
    raise typer.Exit(_explain_flush(run.flushed, engine))


# --------------------------------------------------------------------------- outbox


@outbox_app.command("show")
def outbox_show(config: ConfigOption = None) -> None:
    """List the reports waiting in the outbox (oldest first)."""
    from node.federation import outbox

    items = outbox.pending_items(_engine(settings_or_exit(config)), include_rejected=True)
    if not items:
        console.print("outbox is empty")
        return
    table = Table()
    for column in ("seq", "report id", "period start", "attempts", "rejected", "last error"):
        table.add_column(column)
    for item in items:
        table.add_row(
            str(item.sequence),
            item.report_id,
            f"{item.period_start:%Y-%m-%dT%H:%MZ}",
            str(item.attempts),
            item.rejected_code or "",
            escape((item.last_error or "")[:80]),
        )
    console.print(table)


@outbox_app.command("flush")
def outbox_flush(config: ConfigOption = None) -> None:
    """Send the queued reports now (same exit codes as `report`)."""
    import asyncio

    from node.service import flush_outbox

    settings = settings_or_exit(config)
    engine = _engine(settings)
    raise typer.Exit(_explain_flush(asyncio.run(flush_outbox(settings, engine)), engine))


@outbox_app.command("retry")
def outbox_retry(
    report_id: Annotated[
        str | None, typer.Argument(help="Report id (default: every rejected report).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Clear the rejected mark so the next flush sends the report(s) again."""
    from node.federation import outbox

    count = outbox.retry_rejected(_engine(settings_or_exit(config)), report_id)
    console.print(f"{count} report(s) will be sent on the next flush")


# --------------------------------------------------------------------------- serve


def _observability(settings: NodeSettings, engine: Engine) -> None:
    """Traces and the Prometheus server of `serve` (node/telemetry.py, node/metrics.py)."""
    from node import metrics, telemetry

    tel = settings.telemetry
    telemetry.configure(tel.tracing, tel.otlp_endpoint)
    try:
        metrics.start(settings, engine)
    except (OSError, ValueError) as exc:
        fail(f"cannot serve metrics on {tel.metrics_listen}: {exc}", 2)
    if tel.metrics_listen:
        console.print(f"metrics: http://{tel.metrics_listen}/metrics")


@app.command()
def serve(config: ConfigOption = None) -> None:
    """Run crawl cycles and reports on the `schedule` intervals until stopped.

    The GeoIP/ASN databases and the operator table are opened once, at start: one that cannot
    be opened stops `serve` at once with exit 78 (EX_CONFIG), not a failure every cycle.
    """
    from node.attribution.attributor import GeoDatabaseError
    from node.service import open_attributor

    settings = settings_or_exit(config)
    if not settings.seeds:
        fail("no seeds configured (set `seeds` in the node TOML file)", 2)
    _lab_or_exit(settings)
    try:
        attributor = open_attributor(settings)
    except GeoDatabaseError as exc:
        fail(f"{exc} (check [geoip] and [attribution] in the node TOML file)", EX_CONFIG)
    try:
        _serve(settings, attributor)
    finally:
        attributor.close()


def _serve(settings: NodeSettings, attributor: Attributor) -> None:
    import asyncio
    import signal

    from node.scheduler import report_interval_minutes, run_forever  # APScheduler only here

    engine = _engine(settings)
    _observability(settings, engine)  # issue 8
    console.print(
        f"serving node {settings.node_id}: crawl every {settings.schedule.crawl_minutes:g} min, "
        f"report every {report_interval_minutes(settings):g} min (Ctrl-C stops)"
    )
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        asyncio.run(run_forever(settings, engine, console, attributor))
    except KeyboardInterrupt:
        console.print("stopped")
