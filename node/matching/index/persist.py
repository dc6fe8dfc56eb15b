"""The node's match index on disk: one AES-GCM-encrypted file, no pickle.

Plaintext layout: ``LIBRAIDX``, a little-endian u32 header length, a JSON header (format
version, the database ``stamp`` it was built from, and one section per family; padded so the
sections start 8-aligned), then the sections back to back, each padded to 8 bytes: for exact
families the int64 ids followed by the raw digests sorted bytewise
(node.matching.index.exact), for perceptual families a MultiIndex image
(node.matching.index.mih). The stamp tells whether the lists changed since the file was
written. A file of another format version, or one that fails AES-GCM authentication
(damaged, tampered with, or sealed under another key), is rebuilt from the database with a
warning, never trusted.

Why "decrypt into one buffer, then zero-copy views" rather than ``mmap`` (issue 17): the list
hashes must stay encrypted at rest, so a mapped plaintext file is ruled out, and mapping the
ciphertext gains nothing: every byte must pass through AES-GCM, and GCM authenticates the file
as a whole, so no byte may be used before the last one is read and the tag checked. Per-page
encryption with per-page tags would allow lazy decryption, but a single query already touches
pages of every chunk table, and a crawl touches all of them. So a load is one read, one
decryption (~1 GB/s with AES-NI) and ``np.frombuffer`` views on the plaintext, with no
per-entry work in Python: every table -- exact digests included -- is searched in place, and
the list CLI fetches entry details from the database only for hits. Peak memory is the
ciphertext plus the plaintext (the ciphertext is dropped once decrypted); resident memory is
the plaintext, ~115 bytes per PDQ entry and ~24-40 per exact digest.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from node.discovery.models import EntryFlag
from node.keys.list_encryption import ListKey, ListKeyError
from node.matching.index.exact import ExactTable
from node.matching.index.mih import IndexFormatError, MultiIndex
from node.matching.matcher import MatchIndex, Thresholds, entry_regions
from node.models import ListEntry, ListVersion
from protocol.hashes import FAMILIES, HashFamily

MAGIC = b"LIBRAIDX"
# 2: 8-aligned sections, MultiIndex format 2 (fingerprinted tables); 3: a "regions" section
# (PDQ region hashes derived from entries, issue 18); 4: exact sections hold their ids first
# (8-aligned) and their digests sorted bytewise, searched in place (issue 17).
FORMAT_VERSION = 4
INDEX_FILE = "match-index.bin"
CONTEXT = b"libra match index v1"

logger = logging.getLogger(__name__)


def _pad(raw: bytes) -> bytes:
    return raw + b"\0" * (-len(raw) % 8)


def db_stamp(engine: Engine) -> str:
    """Changes whenever an import, a removal, or an analyst disabling or enabling an entry
    (issue 14, ``EntryFlag.disabled_at``) changes the matchable entries.

    The live-entry count is all rows minus the retired ones, and the largest live id a
    lookup at the end of the ``retired`` index: each query reads a few index pages (a plain
    ``count(*) WHERE retired = 0`` walks a million index entries: ~0.1-0.4 s at 1M, issue 17).

    Disabled entries are summed up by count, id sum and latest disabling time: enabling one
    lowers the count, and disabling one (again) sets a later time, so each change is seen.
    """
    with Session(engine) as session:
        versions = session.exec(
            select(func.count(), func.max(ListVersion.id)).select_from(ListVersion)
        ).one()
        removed = session.exec(
            select(func.count()).where(col(ListVersion.removed_at).is_not(None))
        ).one()
        rows = session.exec(select(func.count()).select_from(ListEntry)).one()
        retired = session.exec(select(func.count()).where(col(ListEntry.retired).is_(True))).one()
        last = session.exec(
            select(func.max(ListEntry.id)).where(col(ListEntry.retired).is_(False))
        ).one()
        disabled = session.exec(
            select(
                func.count(), func.sum(EntryFlag.entry_id), func.max(EntryFlag.disabled_at)
            ).where(col(EntryFlag.disabled_at).is_not(None))
        ).one()
    stamp = f"v{versions[0]}:{versions[1]}:r{removed}:e{rows - retired}:{last}"
    if disabled[0]:
        latest = disabled[2]
        when = f"{latest.timestamp():.6f}" if isinstance(latest, datetime) else str(latest)
        stamp += f":d{disabled[0]}:{disabled[1]}:{when}"
    return stamp


def encode(index: MatchIndex, stamp: str) -> bytes:
    sections: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for family, table in index.exact_tables.items():
        digests, ids = table.sorted_arrays()
        raw = ids.astype("<i8").tobytes() + digests.tobytes()
        sections.append({"family": family.value, "kind": "exact", "n": len(ids)})
        blobs.append(_pad(raw))
    for family, hamming in index.hamming_tables.items():
        raw = hamming.to_bytes()
        sections.append({"family": family.value, "kind": "mih", "size": len(raw)})
        blobs.append(_pad(raw))
    raw = index.region_table.to_bytes()
    sections.append({"family": HashFamily.PDQ.value, "kind": "regions", "size": len(raw)})
    blobs.append(_pad(raw))
    header = json.dumps({"version": FORMAT_VERSION, "stamp": stamp, "sections": sections})
    head = header.encode()
    head += b" " * (-(12 + len(head)) % 8)
    return b"".join([MAGIC, struct.pack("<I", len(head)), head, *blobs])


def decode(data: bytes, thresholds: Thresholds | None = None) -> tuple[MatchIndex, str]:
    view = memoryview(data)
    if bytes(view[:8]) != MAGIC:
        raise IndexFormatError("not a LIBRA match index")
    (hlen,) = struct.unpack("<I", view[8:12])
    try:
        header = json.loads(bytes(view[12 : 12 + hlen]))
        version = header["version"]
        sections = header["sections"]
        stamp = str(header["stamp"])
    except (ValueError, KeyError, TypeError) as exc:
        raise IndexFormatError(f"bad match index header: {exc}") from exc
    if version != FORMAT_VERSION:
        raise IndexFormatError(f"match index format {version} (expected {FORMAT_VERSION})")
    at = 12 + hlen
    exact: dict[HashFamily, ExactTable] = {}
    tables: dict[HashFamily, MultiIndex] = {}
    regions: MultiIndex | None = None
    for section in sections:
        family = HashFamily(section["family"])
        if section["kind"] == "exact":
            n, width = int(section["n"]), FAMILIES[family].bits // 8
            if n < 0 or at + n * (width + 8) > len(view):
                raise IndexFormatError("match index is truncated")
            # Views on the decrypted buffer (no copies): ids first, so they are 8-aligned.
            ids = np.frombuffer(view, dtype="<i8", count=n, offset=at).astype(np.int64, copy=False)
            digests = np.frombuffer(view, dtype=f"S{width}", count=n, offset=at + 8 * n)
            try:
                exact[family] = ExactTable.from_sorted(width, digests, ids)
            except ValueError as exc:
                raise IndexFormatError(f"match index {family.value} section: {exc}") from exc
            at += n * (width + 8)
        else:
            size = int(section["size"])
            table = MultiIndex.from_bytes(view[at : at + size])
            if section["kind"] == "regions":
                regions = table
            else:
                tables[family] = table
            at += size
        at += -at % 8
    if at != len(view):
        raise IndexFormatError("match index has trailing bytes")
    return MatchIndex.from_parts(exact, tables, thresholds, regions), stamp


def save(directory: Path, key: ListKey, index: MatchIndex, stamp: str) -> Path:
    """Write atomically (temp file + rename), readable by the node's user only."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / INDEX_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.encrypt_blob(encode(index, stamp), CONTEXT))
    os.replace(tmp, path)
    return path


def load(
    directory: Path, key: ListKey, thresholds: Thresholds | None = None
) -> tuple[MatchIndex, str] | None:
    """The persisted index and its stamp, or None when there is no file. Raises
    IndexFormatError for a file of another format and ListKeyError for one that fails
    authentication (damaged, tampered with, or sealed under another key)."""
    path = directory / INDEX_FILE
    if not path.is_file():
        return None
    # The ciphertext is a temporary: only the plaintext, viewed in place, stays in memory.
    return decode(key.decrypt_blob(path.read_bytes(), CONTEXT), thresholds)


@dataclass(frozen=True)
class Rebuild:
    """Why the persisted index is being rebuilt, and how many entries the build reads."""

    reason: str
    entries: int = 0
    damaged: bool = False  # the file exists but is unusable (format, integrity): logged


class BuildProgress(Protocol):
    """What ``current`` tells a caller that shows progress of a rebuild (the list CLI)."""

    def rebuilding(self, rebuild: Rebuild) -> None:
        """A rebuild starts (the file is missing, stale, damaged or of another format)."""

    def rows(self, done: int) -> None:
        """``done`` entries read from the database so far."""

    def saved(self, path: Path) -> None:
        """The rebuilt index was written."""


class _Quiet:
    def rebuilding(self, rebuild: Rebuild) -> None:
        pass

    def rows(self, done: int) -> None:
        pass

    def saved(self, path: Path) -> None:
        pass


def _entries_of(stamp: str) -> int:
    """The matchable entry count recorded in a ``db_stamp`` (``...:e<count>:<max id>``)."""
    for part in stamp.split(":"):
        if part.startswith("e") and part[1:].isdigit():
            return int(part[1:])
    return 0


def _current_or_why(
    directory: Path, key: ListKey, thresholds: Thresholds | None, stamp: str
) -> MatchIndex | Rebuild:
    """The persisted index when it is current, else why it is rebuilt."""
    entries = _entries_of(stamp)
    try:
        loaded = load(directory, key, thresholds)
    except IndexFormatError as exc:
        # An older-format or malformed cache is rebuilt, not trusted.
        why = f"match index file not used ({exc}): rebuilding it from the lists"
        return Rebuild(why, entries, damaged=True)
    except ListKeyError:
        why = (
            "match index file refused: it fails its integrity check (damaged, tampered with, "
            "or sealed under another list key): rebuilding it from the lists"
        )
        return Rebuild(why, entries, damaged=True)
    if loaded is None:
        return Rebuild("no match index file yet: building it from the lists", entries)
    if loaded[1] != stamp:
        why = "the lists changed since the match index was saved: rebuilding it"
        return Rebuild(why, entries)
    return loaded[0]


def current(
    engine: Engine,
    directory: Path,
    key: ListKey,
    thresholds: Thresholds | None = None,
    progress: BuildProgress | None = None,
) -> MatchIndex:
    """The persisted index if it matches the database, else rebuilt from it and saved."""
    stamp = db_stamp(engine)
    found = _current_or_why(directory, key, thresholds, stamp)
    if isinstance(found, MatchIndex):
        return found
    if found.damaged and progress is None:
        logger.warning("%s", found.reason)  # a progress sink shows the reason itself
    sink: BuildProgress = progress or _Quiet()
    sink.rebuilding(found)
    index = MatchIndex.from_db(engine, thresholds, on_rows=sink.rows)
    sink.saved(save(directory, key, index, stamp))
    return index


def version_entries(engine: Engine, version_id: int) -> list[tuple[int, str, str]]:
    with Session(engine) as session:
        rows = session.exec(
            select(ListEntry.id, ListEntry.family, ListEntry.value).where(
                ListEntry.list_version_id == version_id, col(ListEntry.retired).is_(False)
            )
        ).all()
    return [(int(i), f, v) for i, f, v in rows if i is not None]


def apply_change(
    engine: Engine,
    directory: Path,
    key: ListKey,
    before: tuple[MatchIndex, str] | None,
    before_stamp: str,
    *,
    added: Iterable[tuple[int, str, str]] | None = None,  # consumed only if incremental
    removed: list[int] | None = None,
    regions_added: list[int] | None = None,
) -> MatchIndex:
    """Bring the persisted index up to date after one import or removal: incrementally when
    the file was current before the change, else by a rebuild."""
    if before is None or before[1] != before_stamp:
        return current(engine, directory, key)
    index = before[0]
    if removed:
        index.remove(removed)
    if added:
        rows = list(added)
        index.add(rows)
        # Derived region hashes of the new entries (issue 18) live beside them in the database.
        index.add_regions(entry_regions(engine, [i for i, _, _ in rows]))
    if regions_added:  # entries held before that gained region hashes
        index.add_regions(entry_regions(engine, regions_added))
    save(directory, key, index, db_stamp(engine))
    return index
