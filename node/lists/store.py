"""Write an importer's records into the node database, all in one transaction.

Either the whole file is imported (new entries, a ListVersion row with the counts) or, if
anything fails midway, nothing is. A value already known for its family (from an earlier list
or earlier in the same file) counts as a duplicate and is not stored twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import BinaryIO, TextIO

from sqlalchemy import delete, exists, func, insert, or_, update
from sqlalchemy.engine import CursorResult, Engine
from sqlmodel import Session, col, select

from protocol.models import utcnow

from .. import audit
from ..models import AnalysedImage, ListEntry, ListVersion, Sighting
from .base import ImportedRecord, ListFamily, ListImporter, RejectedRecord

BATCH = 1000
KEEP_REJECTED = 20  # how many rejected lines an import summary keeps for display


@dataclass
class ImportSummary:
    list_version_id: int
    imported: int = 0
    duplicates: int = 0
    rejected: int = 0
    first_rejected: list[RejectedRecord] = field(default_factory=list)
    by_family: dict[ListFamily, int] = field(default_factory=dict)


def _flush(
    session: Session,
    batch: list[ImportedRecord],
    version_id: int,
    seen: set[tuple[str, str]],
    summary: ImportSummary,
) -> None:
    fresh: list[ImportedRecord] = []
    by_family: dict[str, list[str]] = {}
    for record in batch:
        key = (record.family.value, record.value)
        if key in seen:
            summary.duplicates += 1
            continue
        seen.add(key)
        fresh.append(record)
        by_family.setdefault(record.family.value, []).append(record.value)
    known: set[tuple[str, str]] = set()
    retired: dict[tuple[str, str], int] = {}
    for family, values in by_family.items():
        rows = session.exec(
            select(ListEntry.id, ListEntry.value, ListEntry.retired).where(
                ListEntry.family == family, col(ListEntry.value).in_(values)
            )
        )
        for entry_id, value, is_retired in rows:
            if is_retired and entry_id is not None:
                retired[(family, value)] = entry_id
            else:
                known.add((family, value))
    rows_to_insert = []
    for record in fresh:
        key = (record.family.value, record.value)
        if key in known:
            summary.duplicates += 1
            continue
        if key in retired:  # removed earlier but kept for a sighting: bring it back
            session.execute(
                update(ListEntry)
                .where(col(ListEntry.id) == retired[key])
                .values(retired=False, list_version_id=version_id)
            )
            summary.imported += 1
            summary.by_family[record.family] = summary.by_family.get(record.family, 0) + 1
            continue
        rows_to_insert.append(
            {
                "family": record.family.value,
                "value": record.value,
                "list_version_id": version_id,
                "label": record.label,
                "category": record.category,
            }
        )
        summary.imported += 1
        summary.by_family[record.family] = summary.by_family.get(record.family, 0) + 1
    if rows_to_insert:
        session.execute(insert(ListEntry), rows_to_insert)


def import_records(
    engine: Engine,
    records: Iterable[ImportedRecord | RejectedRecord],
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
    the lists stay exactly as they were. The import is recorded in the audit log in the
    same transaction.

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
        seen: set[tuple[str, str]] = set()
        batch: list[ImportedRecord] = []
        for count, record in enumerate(records, start=1):
            if isinstance(record, RejectedRecord):
                summary.rejected += 1
                if len(summary.first_rejected) < KEEP_REJECTED:
                    summary.first_rejected.append(record)
            else:
                if label is not None and record.label is None:
                    record = ImportedRecord(
                        record.family, record.value, record.line, label, record.category
                    )
                if category is not None and record.category is None:
                    record = ImportedRecord(
                        record.family, record.value, record.line, record.label, category
                    )
                batch.append(record)
                if len(batch) >= BATCH:
                    _flush(session, batch, version_row.id, seen, summary)
                    batch = []
            if on_record is not None:
                on_record(count)
        _flush(session, batch, version_row.id, seen, summary)
        version_row.imported = summary.imported
        version_row.duplicates = summary.duplicates
        version_row.rejected = summary.rejected
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
