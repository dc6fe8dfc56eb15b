"""`libra node list ...`: import, export, show, remove and match private hash lists, rotate
the list key, read the audit log. Mounted on `libra node` by node/cli/main.py."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from node.config import NodeSettings
    from node.keys.list_encryption import ListKey
    from node.lists import ImportSummary
    from node.matching.index.persist import Rebuild
    from node.matching.matcher import Match, MatchIndex

from node.cli.common import ConfigOption, console, err, fail, settings_or_exit
from protocol.hashes import HashFamily, InvalidHash, family_from_length, normalize

# The registered list formats (node.lists.formats()) and export formats
# (node.lists.export.EXPORT_FORMATS), named here so that `--help` need not import them;
# tests/node/test_cli_help_names.py keeps them equal.
LIST_FORMATS = (
    "csv",
    "hma",
    "icse",
    "libra-hash",
    "ncmec",
    "plain",
    "stopncii",
    "tcap",
    "vics",
    "vpdq",
)
EXPORT_FORMATS = ("vics", "plain", "csv")

list_app = typer.Typer(help="Private hash lists (encrypted at rest).", no_args_is_help=True)
MATCH_BATCH = 10_000
# Below this many queries in a batch, `list match` searches with numpy rather than the
# compiled kernel (same results): the kernel's first call in a process imports numba and loads
# its machine code (~1-4 s at load), more than numpy takes for ~2,000 PDQ queries at 1M
# entries (~0.5 ms each); above it the kernel's ~0.05 ms per query wins (issue 17).
COMPILED_FROM = 2_000
LINE_FORMATS = ("plain", "csv", "hma", "icse")  # positions are line numbers; else records

ReasonOption = Annotated[
    str, typer.Option("--reason", help="Why (recorded in the audit log with the user).")
]
# issue 7: consultations and exports are audited with who (this, default the login name) and why
ActorOption = Annotated[
    str | None,
    typer.Option("--actor", help="Who (recorded in the audit log; default: the login name)."),
]


def _open(config: Path | None) -> tuple[NodeSettings, Engine, ListKey]:
    """The node's settings, database and list key (as node.service.open_engine opens them,
    without importing the crawl: `list match` answers within a second, issue 17)."""
    from node.db import make_engine
    from node.keys.list_encryption import ListKeyError, load_list_key

    settings = settings_or_exit(config)
    try:
        key = load_list_key(settings.list_key_path)
        return settings, make_engine(settings.effective_database_url, key), key
    except ListKeyError as exc:
        fail(str(exc), 2)


def _index_before(settings: NodeSettings, key: ListKey) -> tuple[MatchIndex, str] | None:
    from node.keys.list_encryption import ListKeyError
    from node.matching.index import IndexFormatError, persist
    from node.matching.matcher import Thresholds

    try:
        return persist.load(settings.index_dir, key, Thresholds.of(settings.match))
    except (IndexFormatError, ListKeyError):
        return None  # rebuilt after the change


@list_app.command("import")
def list_import(
    file: Annotated[Path, typer.Argument(help="List file to import.", exists=True, dir_okay=False)],
    format_name: Annotated[
        str, typer.Option("--format", help=f"List format ({', '.join(LIST_FORMATS)}).")
    ] = "plain",
    algorithm: Annotated[
        HashFamily | None,
        typer.Option("--algorithm", help="Hash family of every value (plain/csv/hma)."),
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
    reason: ReasonOption = "",
    config: ConfigOption = None,
) -> None:
    """Import a hash list file (one transaction): a broken file changes nothing."""
    from node import audit
    from node.lists import (
        ListFormatError,
        NothingToImport,
        UnknownFormat,
        get_importer,
        import_list,
    )
    from node.matching.index import persist

    try:
        importer = get_importer(format_name, algorithm)
    except UnknownFormat as exc:
        fail(str(exc.args[0]), 2)
    settings, engine, key = _open(config)
    before = _index_before(settings, key)
    before_stamp = persist.db_stamp(engine)
    version = list_version or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    size = file.stat().st_size
    with (
        file.open("rb") as stream,
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=True,
        ) as progress,
    ):
        task = progress.add_task(f"importing {file.name}", total=size)

        def tick(count: int) -> None:
            if count % 5000 == 0:
                progress.update(
                    task,
                    completed=stream.tell(),
                    description=f"importing {file.name}: {count} records",
                )

        try:
            summary = import_list(
                engine,
                importer,
                stream,
                source=source or file.name,
                version=version,
                label=label,
                category=category,
                on_record=tick,
                reason=reason,
            )
        except ListFormatError as exc:
            audit.log(
                engine,
                "list.import.failed",
                subject=file.name,
                reason=reason,
                details={"format": format_name, "where": exc.where, "error": exc.reason},
            )
            fail(f"{file.name} is not a valid {format_name} file at {exc}; the lists are unchanged")
        except NothingToImport as exc:
            # Nothing stored and nothing audited: the file did not change the lists.
            _print_rejected(exc.summary, format_name)
            fail(f"{file.name}: {exc}; the lists are unchanged")
    persist.apply_change(
        engine,
        settings.index_dir,
        key,
        before,
        before_stamp,
        added=_new_entries(engine, summary.list_version_id),
        removed=summary.removed_ids,
        regions_added=summary.regions_added,
    )
    console.print(
        f"list version {summary.list_version_id}: imported {summary.imported}, "
        f"duplicate {summary.duplicates}, rejected {summary.rejected}"
    )
    if summary.withdrawn or summary.reclassified:
        console.print(
            f"  withdrawn by the source {summary.withdrawn}, re-classified {summary.reclassified}"
        )
    for family, count in sorted(summary.by_family.items()):
        console.print(f"  {family.value}: {count} new")
    _print_rejected(summary, format_name)


def _new_entries(engine: Engine, version_id: int) -> Iterator[tuple[int, str, str]]:
    """The entries of one version, streamed: read only if the index is updated in place
    (a rebuild reads the database itself), never as one list of a million rows."""
    from sqlmodel import Session, col, select

    from node.models import ListEntry

    with Session(engine) as session:
        rows = session.exec(
            select(ListEntry.id, ListEntry.family, ListEntry.value)
            .where(ListEntry.list_version_id == version_id, col(ListEntry.retired).is_(False))
            .execution_options(yield_per=10_000)
        )
        yield from ((int(i), f, v) for i, f, v in rows if i is not None)


def _print_rejected(summary: ImportSummary, format_name: str) -> None:
    """Every kept rejected record (the first KEEP_REJECTED) with its position and reason."""
    if not summary.first_rejected:
        return
    shown = len(summary.first_rejected)
    heading = f"first {shown} of {summary.rejected}" if summary.rejected > shown else "all"
    console.print(f"rejected records ({heading}):")
    # JSON and XML have no useful line numbers: their positions count records.
    where = "line " if format_name in LINE_FORMATS else "record #"
    for record in summary.first_rejected:
        console.print(f"  {where}{record.line}: {record.text!r}: {record.reason}", markup=False)


@list_app.command("show")
def list_show(
    reason: ReasonOption = "", actor: ActorOption = None, config: ConfigOption = None
) -> None:
    """Show the imported list versions and the entries per hash family."""
    from node import audit
    from node.lists import list_versions

    _, engine, _ = _open(config)
    audit.log(engine, "list.show", reason=reason, actor=actor)  # issue 7: consultation
    versions = list_versions(engine)
    if not versions:
        console.print("no list entries")
        return
    table = Table(title="list versions")
    for column in (
        "id",
        "source",
        "version",
        "format",
        "imported at",
        "by",
        "new",
        "dup",
        "rejected",
        "withdrawn",
        "reclass.",
        "families",
        "removed",
    ):
        table.add_column(column)
    for v in versions:
        table.add_row(
            str(v.id),
            escape(v.source),
            escape(v.version),
            v.format,
            f"{v.imported_at:%Y-%m-%dT%H:%MZ}",
            escape(v.actor or ""),
            str(v.imported),
            str(v.duplicates),
            str(v.rejected),
            str(v.withdrawn),
            str(v.reclassified),
            ", ".join(f"{f} {n}" for f, n in json.loads(v.family_counts).items()),
            f"{v.removed_at:%Y-%m-%dT%H:%MZ} ({v.removed})" if v.removed_at else "",
        )
    console.print(table)
    from node.lists import entry_count

    for family, count in sorted(entry_count(engine).items()):
        console.print(f"{family:8} {count}")


@list_app.command("remove")
def list_remove(
    version_id: Annotated[int, typer.Argument(help="List version id (see `list show`).")],
    reason: ReasonOption = "",
    config: ConfigOption = None,
) -> None:
    """Remove one imported list version (recorded in the audit log)."""
    from node.lists import ListNotFound, remove_version
    from node.matching.index import persist

    settings, engine, key = _open(config)
    before = _index_before(settings, key)
    before_stamp = persist.db_stamp(engine)
    ids = [i for i, _, _ in persist.version_entries(engine, version_id)]
    try:
        summary = remove_version(engine, version_id, reason=reason)
    except ListNotFound as exc:
        fail(str(exc.args[0]))
    persist.apply_change(engine, settings.index_dir, key, before, before_stamp, removed=ids)
    console.print(
        f"list version {version_id} removed: {summary.deleted} entries deleted, "
        f"{summary.retired} retired (kept for sightings, never matched)"
    )


@list_app.command("export")
def list_export(
    output: Annotated[Path, typer.Argument(help="File to write ('-' = stdout).")],
    format_name: Annotated[
        str, typer.Option("--format", help=f"Export format ({', '.join(EXPORT_FORMATS)}).")
    ] = "vics",
    algorithm: Annotated[
        str | None, typer.Option("--algorithm", help="Only this family (plain needs one).")
    ] = None,
    version_id: Annotated[
        int | None, typer.Option("--list-version-id", help="Only this list version.")
    ] = None,
    reason: ReasonOption = "",
    actor: ActorOption = None,
    config: ConfigOption = None,
) -> None:
    """Export the lists as a VICS 2.0 hash set, a plain hex list or CSV (decrypted!)."""
    from node import audit
    from node.lists.export import ExportError, export

    _, engine, _ = _open(config)
    try:
        if str(output) == "-":
            count = export(engine, sys.stdout, format_name, family=algorithm, version_id=version_id)
        else:
            tmp = output.with_name(output.name + ".partial")
            with tmp.open("w", encoding="utf-8") as out:
                count = export(engine, out, format_name, family=algorithm, version_id=version_id)
            tmp.replace(output)
    except ExportError as exc:
        fail(str(exc), 2)
    audit.log(
        engine,
        "list.export",
        subject=str(output),
        reason=reason,
        actor=actor,
        details={"format": format_name, "family": algorithm, "entries": count},
    )
    err.print(f"exported {count} entries")


def _queries(
    path: Path, algorithm: HashFamily | None
) -> Iterator[tuple[int, str, HashFamily | str]]:
    """(line, value, family) per query line; family is an error message for a bad line."""
    with path.open("r", encoding="utf-8-sig", errors="replace") as stream:
        for number, raw in enumerate(stream, start=1):
            text = raw.split("#", 1)[0].strip()
            if not text:
                continue
            parts = text.split()
            try:
                if len(parts) == 2:
                    family = HashFamily(parts[0].lower())
                    value = parts[1]
                elif len(parts) == 1:
                    value = parts[0]
                    family = algorithm or family_from_length(value)
                else:
                    raise InvalidHash("expected `algorithm value` or a bare hex value")
                yield number, normalize(family, value), family
            except (InvalidHash, ValueError) as exc:
                yield number, text[:120], str(exc)


@list_app.command("match")
def list_match(
    file: Annotated[Path, typer.Argument(help="Hashes, one per line: `algorithm value` or hex.")],
    algorithm: Annotated[
        HashFamily | None, typer.Option("--algorithm", help="Family of bare hex values.")
    ] = None,
    max_distance: Annotated[
        int | None, typer.Option("--max-distance", help="Override the configured cut-off.")
    ] = None,
    reason: ReasonOption = "",
    actor: ActorOption = None,
    config: ConfigOption = None,
) -> None:
    """Match hashes against the lists (persisted index); one JSON line per query."""
    from node import audit
    from node.lists.store import entry_details
    from node.matching.index import persist
    from node.matching.matcher import Thresholds

    if not file.is_file():
        fail(f"{file} does not exist", 2)
    settings, engine, key = _open(config)
    # issue 7: a consultation of the lists (the queried values are not logged)
    audit.log(engine, "list.match", subject=file.name, reason=reason, actor=actor)
    # Issue 17: the saved index when current (decrypted, searched in place), else rebuilt
    # with progress; entry details come from the database for the hits only.
    index = persist.current(
        engine,
        settings.index_dir,
        key,
        Thresholds.of(settings.match),
        progress=_BuildProgress(),
    )
    batch: list[tuple[int, str, HashFamily | str]] = []

    def flush() -> None:
        by_family: dict[HashFamily, list[int]] = {}
        for n, (_, _, family) in enumerate(batch):
            if isinstance(family, HashFamily):
                by_family.setdefault(family, []).append(n)
        found: dict[int, list[Match]] = {}
        index.use_compiled_search(len(batch) >= COMPILED_FROM)
        for family, members in by_family.items():
            hits = index.lookup(family, [batch[n][1] for n in members], max_distance)
            found.update(zip(members, hits, strict=True))
        details = entry_details(engine, {m.entry_id for hits in found.values() for m in hits})
        for n, (line, value, family) in enumerate(batch):
            if isinstance(family, HashFamily):
                record: dict[str, object] = {
                    "line": line,
                    "algorithm": family.value,
                    "value": value,
                    "matches": [
                        {
                            **details.get(m.entry_id, {}),
                            "entry_id": m.entry_id,
                            "family": m.family.value,
                            "distance": m.distance,
                        }
                        for m in found.get(n, [])
                    ],
                }
            else:
                record = {"line": line, "input": value, "error": family}
            sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()  # a reader (or a pipe) sees each batch as soon as it is matched
        batch.clear()

    for query in _queries(file, algorithm):
        batch.append(query)
        if len(batch) >= MATCH_BATCH:
            flush()
    flush()


class _BuildProgress:
    """Shows a rebuild of the match index on stderr: why, entries read, where it was saved."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def rebuilding(self, rebuild: Rebuild) -> None:
        count = f"{rebuild.entries:,} {'entry' if rebuild.entries == 1 else 'entries'}"
        err.print(f"[yellow]{escape(rebuild.reason)}[/] ({count})")
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),  # "n/?" while the total is unknown (no entries yet)
            TextColumn("entries"),
            TimeRemainingColumn(),
            console=err,
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task("reading the lists", total=rebuild.entries or None)

    def rows(self, done: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=done)

    def saved(self, path: Path) -> None:
        if self._progress is not None:
            self._progress.stop()
        err.print(f"match index saved to {escape(str(path))} (encrypted)")


@list_app.command("rotate-key")
def list_rotate_key(
    new_key_file: Annotated[
        Path | None,
        typer.Option("--new-key-file", help="Use this key file (default: generate a new key)."),
    ] = None,
    reason: ReasonOption = "",
    config: ConfigOption = None,
) -> None:
    """Re-encrypt every list value and the index under a new key, in one transaction.

    The old key file is kept as <key>.retired-<time> until you delete it. If the key comes
    from $LIBRA_NODE_LIST_KEY, put the new key (printed path) there afterwards.
    """
    from node.config import ConfigError, load_settings
    from node.keys.list_encryption import LIST_KEY_ENV, ListKeyError
    from node.keys.list_key_rotation import rotate_list_key

    try:
        settings = load_settings(config)
    except ConfigError as exc:
        fail(str(exc), 2)
    try:
        result = rotate_list_key(settings, new_key_file, reason=reason)
    except ListKeyError as exc:
        fail(str(exc))
    console.print(
        f"re-encrypted {result.values} list values; key {result.old_key_id} -> {result.new_key_id}"
    )
    if result.retired_key_file is not None:
        console.print(f"old key kept at {result.retired_key_file} (delete it once backups rotate)")
    console.print(f"new key in {result.key_file}")
    if os.environ.get(LIST_KEY_ENV):
        err.print(
            f"[yellow]warning:[/] ${LIST_KEY_ENV} is set and wins over the key file: put the "
            "new key into it before the node starts again"
        )


@list_app.command("create-key")
def list_create_key(config: ConfigOption = None) -> None:
    """Create the list key of a node made before lists were encrypted (no lists yet)."""
    from node.config import ConfigError, load_settings
    from node.keys.list_encryption import ListKeyError, create_list_key

    try:
        settings = load_settings(config)
    except ConfigError as exc:
        fail(str(exc), 2)
    try:
        key = create_list_key(settings.list_key_path)
    except ListKeyError as exc:
        fail(str(exc))
    console.print(f"list key {key.key_id} written to {settings.list_key_path}")


@list_app.command("audit")
def list_audit(
    limit: Annotated[int, typer.Option("--limit", help="How many events.")] = 50,
    all_events: Annotated[
        bool, typer.Option("--all", help="Every event, not only list operations.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Show the node's audit log, newest first, one JSON object per line (grep-able)."""
    from node import audit

    _, engine, _ = _open(config)
    for e in audit.entries(engine, "" if all_events else "list.", limit):
        record = {
            "id": e.id,
            "at": e.at.isoformat(),
            "actor": e.actor,
            "action": e.action,
            "subject": e.subject,
            "reason": e.reason,
            "details": e.details,
        }
        sys.stdout.write(json.dumps(record) + "\n")
