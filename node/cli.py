"""`libra node ...`: set up a node, import lists, crawl, report, serve.

Every command reads the node's TOML file: ``--config``, else $LIBRA_NODE_CONFIG, else
./node.toml. Exit codes: 0 success, 1 an error or a report the coordinator refused, 2 bad
usage or configuration, 75 (EX_TEMPFAIL) reports still queued for the next run.
"""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import tomli_w
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn
from rich.table import Table
from sqlalchemy.engine import Engine

from protocol.hashes import HashFamily
from protocol.models import Period

from . import outbox
from .attribution import GeoDatabaseError
from .config import (
    DEFAULT_CONFIG_FILE,
    FEDERATION_KEY_FILE_NAME,
    SIGNING_KEY_FILE_NAME,
    ConfigError,
    NodeSettings,
    load_settings,
)
from .cycle import CycleError, CycleSummary, RichCycleProgress
from .keys import KeyFileError, create_federation_key, create_signing_key, load_federation_key
from .lists import UnknownFormat, entry_count, formats, get_importer, import_list
from .service import (
    CrawlBusy,
    ReportRun,
    crawl_once,
    flush_outbox,
    open_engine,
    report_once,
)

EX_TEMPFAIL = 75

app = typer.Typer(
    help="An agency's LIBRA node: lists, crawling, signed reports.",
    no_args_is_help=True,
    add_completion=False,
)
list_app = typer.Typer(help="Private hash lists.", no_args_is_help=True)
outbox_app = typer.Typer(help="Signed reports waiting for the coordinator.", no_args_is_help=True)
app.add_typer(list_app, name="list")
app.add_typer(outbox_app, name="outbox")

# soft_wrap: long lines (paths, error messages) stay whole for logs and grep.
console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help=f"Node TOML file (default: $LIBRA_NODE_CONFIG, else ./{DEFAULT_CONFIG_FILE}).",
        show_default=False,
    ),
]


def _fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def _settings(config: Path | None) -> NodeSettings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        _fail(str(exc), 2)


def _engine(settings: NodeSettings) -> Engine:
    return open_engine(settings)


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
) -> None:
    """Create a node directory: node.toml, a new signing key and a federation key.

    Prints the node id, key id and public key: give these to the coordinator's admin.
    """
    config_path = directory / DEFAULT_CONFIG_FILE.name
    signing_path = directory / SIGNING_KEY_FILE_NAME
    for existing in (config_path, signing_path):
        if existing.exists():
            _fail(f"{existing} already exists; refusing to overwrite a node", 1)
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
        _fail(f"invalid settings: {problems}", 2)
    try:
        if federation_key_file is not None:
            load_federation_key(federation_key_file)
        directory.mkdir(parents=True, exist_ok=True)
        key = create_signing_key(signing_path)
        if federation_key_file is None:
            create_federation_key(directory / FEDERATION_KEY_FILE_NAME)
    except KeyFileError as exc:
        _fail(str(exc))
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


# --------------------------------------------------------------------------- lists


@list_app.command("import")
def list_import(
    file: Annotated[Path, typer.Argument(help="List file to import.", exists=True, dir_okay=False)],
    format_name: Annotated[
        str, typer.Option("--format", help=f"List format ({', '.join(formats())}).")
    ] = "plain",
    algorithm: Annotated[
        HashFamily | None,
        typer.Option(
            "--algorithm", help="Hash family of every line (needed for 64/16 hex digits)."
        ),
    ] = None,
    source: Annotated[
        str | None, typer.Option("--source", help="List source name (default: file name).")
    ] = None,
    list_version: Annotated[
        str | None,
        typer.Option("--list-version", help="Version of the list (default: import time)."),
    ] = None,
    label: Annotated[str | None, typer.Option("--label", help="Label for the entries.")] = None,
    category: Annotated[
        str | None, typer.Option("--category", help="Category for the entries.")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Import a hash list file into the node database (one transaction)."""
    settings = _settings(config)
    try:
        importer = get_importer(format_name, algorithm)
    except UnknownFormat as exc:
        _fail(str(exc.args[0]), 2)
    engine = _engine(settings)
    version = list_version or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with (
        file.open("r", encoding="utf-8", errors="replace", newline=None) as stream,
        Progress(
            SpinnerColumn(), TextColumn("{task.description}"), console=err, transient=True
        ) as progress,
    ):
        task = progress.add_task(f"importing {file.name}", total=None)

        def tick(count: int) -> None:
            if count % 1000 == 0:
                progress.update(task, description=f"importing {file.name}: {count} lines")

        summary = import_list(
            engine,
            importer,
            stream,
            source=source or file.name,
            version=version,
            label=label,
            category=category,
            on_record=tick,
        )
    console.print(
        f"imported {summary.imported}, duplicate {summary.duplicates}, rejected {summary.rejected}"
    )
    for family, count in sorted(summary.by_family.items()):
        console.print(f"  {family.value}: {count} new")
    if summary.first_rejected:
        console.print("first rejected lines:")
        for record in summary.first_rejected[:10]:
            console.print(f"  line {record.line}: {record.text!r}: {record.reason}", markup=False)
    if summary.rejected and not (summary.imported or summary.duplicates):
        raise typer.Exit(1)


@list_app.command("show")
def list_show(config: ConfigOption = None) -> None:
    """Show how many list entries the node holds per hash family."""
    counts = entry_count(_engine(_settings(config)))
    if not counts:
        console.print("no list entries")
        return
    for family, count in sorted(counts.items()):
        console.print(f"{family:8} {count}")


# --------------------------------------------------------------------------- crawl


def _print_cycle(summary: CycleSummary) -> None:
    table = Table(title=f"crawl cycle {summary.cycle_id}: {summary.status}")
    table.add_column("count")
    table.add_column("value", justify="right")
    for name in (
        "pages_fetched",
        "pages_failed",
        "hosts_seen",
        "images_found",
        "images_hashed",
        "analysis_failures",
        "matches",
    ):
        table.add_row(name.replace("_", " "), str(getattr(summary, name)))
    seconds = (summary.finished_at - summary.started_at).total_seconds()
    table.add_row("seconds", f"{seconds:.0f}")
    console.print(table)


async def _crawl(settings: NodeSettings, engine: Engine, show: bool) -> CycleSummary:
    if show:
        with RichCycleProgress(settings.crawl.max_pages, console=err) as progress:
            return await crawl_once(settings, engine, progress=progress)
    return await crawl_once(settings, engine)


@app.command()
def crawl(config: ConfigOption = None) -> None:
    """Run one crawl cycle in the foreground over the configured seeds."""
    settings = _settings(config)
    if not settings.seeds:
        _fail("no seeds configured (set `seeds` in the node TOML file)", 2)
    engine = _engine(settings)
    if not entry_count(engine):
        err.print("[yellow]warning:[/] the node holds no list entries: nothing can match")
    try:
        summary = asyncio.run(_crawl(settings, engine, show=True))
    except (CrawlBusy, CycleError, GeoDatabaseError) as exc:
        _fail(str(exc))
    _print_cycle(summary)


# --------------------------------------------------------------------------- report


def _parse_time(text: str, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        _fail(f"{name}: {text!r} is not an ISO 8601 timestamp", 2)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _explain_flush(result: outbox.FlushResult, engine: Engine) -> int:
    """Print the outcome and return the exit code."""
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
        err.print(
            f"[yellow]{len(result.pending)} report(s) still queued[/] "
            f"({escape(result.last_error or '')}); "
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
) -> None:
    """Build, sign and queue the report, then send everything queued to the coordinator.

    Without a period: the current UTC day (or hour, per `report.period`), plus any earlier
    period that still holds unreported crawl cycles. Exit 0 when all was delivered, 75 when
    reports stay queued (coordinator unreachable), 1 when the coordinator refused one.
    """
    settings = _settings(config)
    period: Period | None = None
    if (period_start is None) != (period_end is None):
        _fail("give both --period-start and --period-end, or neither", 2)
    if period_start is not None and period_end is not None:
        try:
            period = Period(
                start=_parse_time(period_start, "--period-start"),
                end=_parse_time(period_end, "--period-end"),
            )
        except ValidationError as exc:
            _fail(f"invalid period: {exc.errors()[0]['msg']}", 2)
    engine = _engine(settings)
    try:
        run = asyncio.run(report_once(settings, engine, period))
    except KeyFileError as exc:
        _fail(str(exc))
    _print_queued(run)
    raise typer.Exit(_explain_flush(run.flushed, engine))


# --------------------------------------------------------------------------- outbox


@outbox_app.command("show")
def outbox_show(config: ConfigOption = None) -> None:
    """List the reports waiting in the outbox (oldest first)."""
    items = outbox.pending_items(_engine(_settings(config)), include_rejected=True)
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
    settings = _settings(config)
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
    count = outbox.retry_rejected(_engine(_settings(config)), report_id)
    console.print(f"{count} report(s) will be sent on the next flush")


# --------------------------------------------------------------------------- serve


@app.command()
def serve(config: ConfigOption = None) -> None:
    """Run crawl cycles and reports on the intervals in [schedule] until stopped."""
    from .scheduler import run_forever  # APScheduler is only needed here

    settings = _settings(config)
    if not settings.seeds:
        _fail("no seeds configured (set `seeds` in the node TOML file)", 2)
    engine = _engine(settings)
    console.print(
        f"serving node {settings.node_id}: crawl every {settings.schedule.crawl_minutes:g} min, "
        f"report every {settings.schedule.report_minutes:g} min (Ctrl-C stops)"
    )
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        asyncio.run(run_forever(settings, engine, console))
    except KeyboardInterrupt:
        console.print("stopped")
