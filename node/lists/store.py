"""Write an importer's records into the node database, all in one transaction.

Either the whole file is imported (new entries, a ListVersion row with the counts) or, if
anything fails midway, nothing is. A value already known for its family (from an earlier list
or earlier in the same file) counts as a duplicate and is not stored twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TextIO

from sqlalchemy import func, insert
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from protocol.hashes import HashFamily

from ..models import ListEntry, ListVersion
from .base import ImportedRecord, ListImporter, RejectedRecord

BATCH = 1000
KEEP_REJECTED = 20  # how many rejected lines an import summary keeps for display


@dataclass
class ImportSummary:
    list_version_id: int
    imported: int = 0
    duplicates: int = 0
    rejected: int = 0
    first_rejected: list[RejectedRecord] = field(default_factory=list)
    by_family: dict[HashFamily, int] = field(default_factory=dict)


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
    for family, values in by_family.items():
        rows = session.exec(
            select(ListEntry.value).where(
                ListEntry.family == family, col(ListEntry.value).in_(values)
            )
        )
        known.update((family, value) for value in rows)
    rows_to_insert = []
    for record in fresh:
        if (record.family.value, record.value) in known:
            summary.duplicates += 1
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
) -> ImportSummary:
    """Store records in one transaction and return the counts.

    ``label``/``category`` apply to records that carry none of their own. ``on_record`` is
    called with the running record count (for progress displays).
    """
    with Session(engine) as session, session.begin():
        version_row = ListVersion(source=source, version=version, format=format_name)
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
        session.add(version_row)
    return summary


def import_list(
    engine: Engine,
    importer: ListImporter,
    stream: TextIO,
    *,
    source: str,
    version: str,
    label: str | None = None,
    category: str | None = None,
    on_record: Callable[[int], None] | None = None,
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
    )


def entry_count(engine: Engine) -> dict[str, int]:
    """Number of list entries per family."""
    with Session(engine) as session:
        rows = session.exec(
            select(ListEntry.family, func.count()).group_by(col(ListEntry.family))
        ).all()
    return {family: int(count) for family, count in rows}
