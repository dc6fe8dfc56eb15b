"""Write an importer's records into the node database, all in one transaction.

Either the whole file is imported (new entries, a ListVersion row with the counts) or, if
anything fails midway or nothing in it is usable, nothing is. A value already known for its
family (from an earlier list or earlier in the same file) counts as a duplicate and is not
stored twice. Records go to the database in batches of BATCH and only the current batch is
held in memory, so memory does not grow with the file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO, TextIO

from sqlalchemy import delete, exists, func, insert, or_, update
from sqlalchemy.engine import CursorResult, Engine
from sqlmodel import Session, col, select

from node import audit
from node.lists.base import (
    DeletedRecord,
    ImportedRecord,
    ListFamily,
    ListImporter,
    Record,
    RejectedRecord,
)
from node.models import AnalysedImage, ListEntry, ListVersion, Sighting
from protocol.models import utcnow

BATCH = 1000
KEEP_REJECTED = 20  # how many rejected records an import summary keeps for display


class NothingToImport(ValueError):
    """The file held nothing usable (no records, or every record rejected): nothing was
    stored, not even a list version or an audit event."""

    def __init__(self, summary: ImportSummary) -> None:
        if summary.deletions:
            text = f"nothing to import: {summary.deletions} deletions matched no held entry"
            if summary.rejected:
                text += f", {summary.rejected} records were rejected"
        elif summary.rejected:
            text = f"nothing to import: all {summary.rejected} records were rejected"
        else:
            text = "nothing to import: the file holds no records"
        super().__init__(text)
        self.summary = summary


@dataclass
class ImportSummary:
    list_version_id: int
    imported: int = 0
    duplicates: int = 0
    rejected: int = 0
    deletions: int = 0  # deletion records in the file (each may withdraw several entries)
    withdrawn: int = 0  # entries removed because the source deleted them
    reclassified: int = 0  # entries whose category the source changed
    first_rejected: list[RejectedRecord] = field(default_factory=list)
    by_family: dict[ListFamily, int] = field(default_factory=dict)
    # Entries the persisted match index must drop (deleted or retired by withdrawals).
    removed_ids: list[int] = field(default_factory=list)
    # Entries already held that gained region hashes from this file (a `libra hash --regions`
    # list imported after a list of the same images): the index must add their regions.
    regions_added: list[int] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        """Did the file hold anything valid? Duplicates count: a re-import is a fact."""
        return bool(self.imported or self.duplicates or self.withdrawn or self.reclassified)


def _versions_of(format_name: str) -> Any:
    """Ids of the list versions imported in ``format_name``: a source's deletions and
    updates name its own entries (an NCMEC id means nothing in a VICS list)."""
    return select(ListVersion.id).where(col(ListVersion.format) == format_name)


def _reclassify(
    session: Session, updates: dict[str, str], format_name: str, summary: ImportSummary
) -> None:
    """Give every entry held under a feed id (label) the category the feed now says."""
    by_category: dict[str, list[str]] = {}
    for label, category in updates.items():
        by_category.setdefault(category, []).append(label)
    for category, labels in by_category.items():
        summary.reclassified += _rowcount(
            session.execute(
                update(ListEntry)
                .where(
                    col(ListEntry.label).in_(labels),
                    or_(col(ListEntry.category).is_(None), col(ListEntry.category) != category),
                    col(ListEntry.list_version_id).in_(_versions_of(format_name)),
                )
                .values(category=category)
            )
        )


def write_records(
    session: Session,
    batch: list[ImportedRecord],
    version_id: int,
    format_name: str,
    summary: ImportSummary,
) -> None:
    """Write one batch of records of list version ``version_id`` in the caller's transaction
    (an import, or a confirmed candidate's hashes: node/discovery/verdicts.py), deduplicated
    against the database and counted in ``summary``."""
    # Only this batch is remembered: values of earlier batches are already in the
    # database (same transaction), so the lookup below finds them and memory stays flat.
    fresh: dict[tuple[str, str], ImportedRecord] = {}
    by_family: dict[str, list[str]] = {}
    updates: dict[str, str] = {}
    for record in batch:
        if record.updates and record.label is not None and record.category is not None:
            updates[record.label] = record.category
        key = (record.family.value, record.value)
        if key in fresh:
            summary.duplicates += 1
            continue
        fresh[key] = record
        by_family.setdefault(record.family.value, []).append(record.value)
    known: dict[tuple[str, str], tuple[int | None, bool]] = {}
    retired: dict[tuple[str, str], int] = {}
    for family, values in by_family.items():
        rows = session.exec(
            select(
                ListEntry.id, ListEntry.value, ListEntry.retired, col(ListEntry.regions).is_(None)
            ).where(ListEntry.family == family, col(ListEntry.value).in_(values))
        )
        for entry_id, value, is_retired, no_regions in rows:
            if is_retired and entry_id is not None:
                retired[(family, value)] = entry_id
            else:
                known[(family, value)] = (entry_id, bool(no_regions))
    rows_to_insert = []
    for key, record in fresh.items():
        if key in known:
            summary.duplicates += 1
            entry_id, no_regions = known[key]
            if record.regions and no_regions and entry_id is not None:
                # Derived data for an image already listed (issue 18): kept, not dropped.
                session.execute(
                    update(ListEntry)
                    .where(col(ListEntry.id) == entry_id)
                    .values(regions=" ".join(record.regions))
                )
                summary.regions_added.append(entry_id)
            continue
        summary.imported += 1
        summary.by_family[record.family] = summary.by_family.get(record.family, 0) + 1
        if key in retired:  # removed earlier but kept for a sighting: bring it back
            session.execute(
                update(ListEntry)
                .where(col(ListEntry.id) == retired[key])
                .values(
                    retired=False,
                    list_version_id=version_id,
                    label=record.label,
                    category=record.category,
                    media=record.media.value,
                    record=record.line,
                    regions=" ".join(record.regions) or None,
                )
            )
            continue
        rows_to_insert.append(
            {
                "family": record.family.value,
                "value": record.value,
                "list_version_id": version_id,
                "label": record.label,
                "category": record.category,
                "media": record.media.value,
                "record": record.line,
                "regions": " ".join(record.regions) or None,  # derived data (issue 18)
            }
        )
    if rows_to_insert:
        session.execute(insert(ListEntry), rows_to_insert)
    if updates:
        _reclassify(session, updates, format_name, summary)


def _withdraw(
    session: Session, deletions: list[DeletedRecord], format_name: str, summary: ImportSummary
) -> None:
    """Remove the entries a source deleted (by id = label, or by value); like `list remove`,
    entries a sighting or analysed image refers to are retired rather than deleted."""
    of_source = col(ListEntry.list_version_id).in_(_versions_of(format_name))
    alive = col(ListEntry.retired).is_(False)
    ids: set[int] = set()
    by_media: dict[str, list[str]] = {}  # an image id and a video id may coincide
    for d in deletions:
        if d.value is None and d.label is not None:
            by_media.setdefault(d.media.value, []).append(d.label)
    for media, labels in by_media.items():
        rows = session.exec(
            select(ListEntry.id).where(
                col(ListEntry.label).in_(labels), ListEntry.media == media, alive, of_source
            )
        )
        ids.update(i for i in rows if i is not None)
    by_family: dict[str, list[str]] = {}
    for d in deletions:
        if d.value is not None and d.family is not None:
            by_family.setdefault(d.family.value, []).append(d.value)
    for family, values in by_family.items():
        rows = session.exec(
            select(ListEntry.id).where(
                ListEntry.family == family, col(ListEntry.value).in_(values), alive, of_source
            )
        )
        ids.update(i for i in rows if i is not None)
    if not ids:
        return
    chosen = col(ListEntry.id).in_(sorted(ids))
    referenced = or_(
        exists().where(col(Sighting.entry_id) == col(ListEntry.id)),
        exists().where(col(AnalysedImage.entry_id) == col(ListEntry.id)),
    )
    session.execute(update(ListEntry).where(chosen, referenced).values(retired=True))
    session.execute(delete(ListEntry).where(chosen, col(ListEntry.retired).is_(False)))
    summary.withdrawn += len(ids)
    summary.removed_ids.extend(sorted(ids))


def import_records(
    engine: Engine,
    records: Iterable[Record],
    *,
    source: str,
    version: str,
    format_name: str,
    label: str | None = None,
    category: str | None = None,
    on_record: Callable[[int], None] | None = None,
    actor: str | None = None,
    reason: str = "",
) -> ImportSummary:
    """Store records in one transaction and return the counts.

    An exception from ``records`` (ListFormatError: a broken file) rolls everything back:
    the lists stay exactly as they were. So does a file with nothing usable
    (NothingToImport): no list version, no audit event. Otherwise the import is recorded
    in the audit log in the same transaction.

    Records are applied in file order, in batches: additions, and for change feeds
    deletions (DeletedRecord) and re-classifications (``ImportedRecord.updates``).
    ``label``/``category`` apply to records that carry none of their own. ``on_record`` is
    called with the running record count (for progress displays).
    """
    with Session(engine) as session, session.begin():
        who = actor or audit.default_actor()
        version_row = ListVersion(source=source, version=version, format=format_name, actor=who)
        session.add(version_row)
        session.flush()
        assert version_row.id is not None
        summary = ImportSummary(list_version_id=version_row.id)
        batch: list[ImportedRecord] = []
        deletions: list[DeletedRecord] = []
        for count, record in enumerate(records, start=1):
            if isinstance(record, RejectedRecord):
                summary.rejected += 1
                if len(summary.first_rejected) < KEEP_REJECTED:
                    summary.first_rejected.append(record)
            elif isinstance(record, DeletedRecord):
                if batch:  # keep file order: what came before the deletion is stored first
                    write_records(session, batch, version_row.id, format_name, summary)
                    batch = []
                summary.deletions += 1
                deletions.append(record)
                if len(deletions) >= BATCH:
                    _withdraw(session, deletions, format_name, summary)
                    deletions = []
            else:
                if deletions:
                    _withdraw(session, deletions, format_name, summary)
                    deletions = []
                if (label is not None and record.label is None) or (
                    category is not None and record.category is None
                ):
                    record = replace(
                        record, label=record.label or label, category=record.category or category
                    )
                batch.append(record)
                if len(batch) >= BATCH:
                    write_records(session, batch, version_row.id, format_name, summary)
                    batch = []
            if on_record is not None:
                on_record(count)
        write_records(session, batch, version_row.id, format_name, summary)
        if deletions:
            _withdraw(session, deletions, format_name, summary)
        if not summary.usable:
            raise NothingToImport(summary)  # rolls back the version row: nothing changes
        version_row.imported = summary.imported
        version_row.duplicates = summary.duplicates
        version_row.rejected = summary.rejected
        version_row.withdrawn = summary.withdrawn
        version_row.reclassified = summary.reclassified
        counts = {f.value: n for f, n in sorted(summary.by_family.items())}
        version_row.family_counts = json.dumps(counts)
        session.add(version_row)
        audit.record(
            session,
            "list.import",
            subject=f"list_version:{version_row.id}",
            reason=reason,
            actor=who,
            details={
                "source": source,
                "version": version,
                "format": format_name,
                "imported": summary.imported,
                "duplicates": summary.duplicates,
                "rejected": summary.rejected,
                "withdrawn": summary.withdrawn,
                "reclassified": summary.reclassified,
                "by_family": counts,
            },
        )
    return summary


def import_list(
    engine: Engine,
    importer: ListImporter,
    stream: BinaryIO | TextIO,
    *,
    source: str,
    version: str,
    label: str | None = None,
    category: str | None = None,
    on_record: Callable[[int], None] | None = None,
    actor: str | None = None,
    reason: str = "",
) -> ImportSummary:
    """Run ``importer`` over ``stream`` and store the result in one transaction."""
    return import_records(
        engine,
        importer.records(stream),
        source=source,
        version=version,
        format_name=importer.name,
        label=label,
        category=category,
        on_record=on_record,
        actor=actor,
        reason=reason,
    )


def _rowcount(result: object) -> int:
    assert isinstance(result, CursorResult)  # DML statements return a cursor result
    return int(result.rowcount)


class ListNotFound(LookupError):
    """No list version with that id (or it was removed already)."""


@dataclass(frozen=True)
class RemoveSummary:
    list_version_id: int
    deleted: int  # entries gone from the database
    retired: int  # entries kept (a sighting refers to them) but never matched again


def remove_version(
    engine: Engine, version_id: int, *, reason: str = "", actor: str | None = None
) -> RemoveSummary:
    """Remove one imported list version in one transaction, recorded in the audit log.

    Entries a sighting or analysed image refers to are retired instead of deleted, so past
    evidence stays intact; either way they never match again.
    """
    with Session(engine) as session, session.begin():
        row = session.get(ListVersion, version_id)
        if row is None or row.removed_at is not None:
            raise ListNotFound(f"no list version {version_id} (see `libra node list show`)")
        of_version = col(ListEntry.list_version_id) == version_id
        referenced = or_(
            exists().where(col(Sighting.entry_id) == col(ListEntry.id)),
            exists().where(col(AnalysedImage.entry_id) == col(ListEntry.id)),
        )
        retired = _rowcount(
            session.execute(
                update(ListEntry)
                .where(of_version, referenced, col(ListEntry.retired).is_(False))
                .values(retired=True)
            )
        )
        deleted = _rowcount(
            session.execute(delete(ListEntry).where(of_version, col(ListEntry.retired).is_(False)))
        )
        row.removed_at = utcnow()
        row.removed = int(deleted) + int(retired)
        session.add(row)
        audit.record(
            session,
            "list.remove",
            subject=f"list_version:{version_id}",
            reason=reason,
            actor=actor,
            details={"source": row.source, "deleted": deleted, "retired": retired},
        )
    return RemoveSummary(version_id, int(deleted), int(retired))


def list_versions(engine: Engine) -> list[ListVersion]:
    with Session(engine) as session:
        return list(session.exec(select(ListVersion).order_by(col(ListVersion.id))).all())


def entry_count(engine: Engine) -> dict[str, int]:
    """Number of list entries per family."""
    with Session(engine) as session:
        rows = session.exec(
            select(ListEntry.family, func.count())
            .where(col(ListEntry.retired).is_(False))
            .group_by(col(ListEntry.family))
        ).all()
    return {family: int(count) for family, count in rows}


DETAILS_CHUNK = 500  # ids per `IN (...)` query (SQLite's variable limit is far above)


def entry_details(engine: Engine, entry_ids: Iterable[int]) -> dict[int, dict[str, object]]:
    """entry id -> list version id, source, label, category, for these entries only (an
    analyst's hits: issue 17 -- never every entry's details at a million entries)."""
    wanted = sorted(set(entry_ids))
    out: dict[int, dict[str, object]] = {}
    if not wanted:
        return out
    with Session(engine) as session:
        rows: list[tuple[int | None, int, str | None, str | None]] = []
        for start in range(0, len(wanted), DETAILS_CHUNK):
            chunk = wanted[start : start + DETAILS_CHUNK]
            rows.extend(
                session.exec(
                    select(
                        ListEntry.id, ListEntry.list_version_id, ListEntry.label, ListEntry.category
                    ).where(col(ListEntry.id).in_(chunk))
                ).all()
            )
        versions = {v for _, v, _, _ in rows}
        sources = dict(
            session.exec(
                select(ListVersion.id, ListVersion.source).where(col(ListVersion.id).in_(versions))
            ).all()
        )
    for entry_id, version_id, label, category in rows:
        if entry_id is not None:
            out[int(entry_id)] = {
                "list_version_id": version_id,
                "source": sources.get(version_id),
                "label": label,
                "category": category,
            }
    return out
