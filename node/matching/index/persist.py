"""The node's match index on disk: one AES-GCM-encrypted file, no pickle.

Plaintext layout: ``LIBRAIDX``, a little-endian u32 header length, a JSON header (format
version, the database ``stamp`` it was built from, and one section per family; padded so the
sections start 8-aligned), then the sections back to back, each padded to 8 bytes: for exact
families the raw digests followed by int64 ids, for perceptual families a MultiIndex image
(node.matching.index.mih). Loading is decryption plus ``np.frombuffer`` (aligned views, no copies);
the stamp tells whether the lists changed since the file was written. A file of another
format version is rebuilt from the database (with a warning), never trusted.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from node.keys.list_encryption import ListKey
from node.matching.index.mih import IndexFormatError, MultiIndex
from node.matching.matcher import MatchIndex, Thresholds, entry_regions
from node.models import ListEntry, ListVersion
from protocol.hashes import FAMILIES, HashFamily

MAGIC = b"LIBRAIDX"
# 2: 8-aligned sections, MultiIndex format 2 (fingerprinted tables); 3: a "regions" section
# (PDQ region hashes derived from entries, issue 18).
FORMAT_VERSION = 3
INDEX_FILE = "match-index.bin"
CONTEXT = b"libra match index v1"

logger = logging.getLogger(__name__)


def _pad(raw: bytes) -> bytes:
    return raw + b"\0" * (-len(raw) % 8)


def db_stamp(engine: Engine) -> str:
    """Changes whenever an import or removal changes the matchable entries."""
    with Session(engine) as session:
        versions = session.exec(
            select(func.count(), func.max(ListVersion.id)).select_from(ListVersion)
        ).one()
        removed = session.exec(
            select(func.count()).where(col(ListVersion.removed_at).is_not(None))
        ).one()
        entries = session.exec(
            select(func.count(), func.max(ListEntry.id)).where(col(ListEntry.retired).is_(False))
        ).one()
    return f"v{versions[0]}:{versions[1]}:r{removed}:e{entries[0]}:{entries[1]}"


def encode(index: MatchIndex, stamp: str) -> bytes:
    sections: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for family, table in index.exact_tables.items():
        values = sorted(table)
        raw = (
            bytes.fromhex("".join(values))
            + np.asarray([table[v] for v in values], dtype="<i8").tobytes()
        )
        sections.append({"family": family.value, "kind": "exact", "n": len(values)})
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
    exact: dict[HashFamily, dict[str, int]] = {}
    tables: dict[HashFamily, MultiIndex] = {}
    regions: MultiIndex | None = None
    for section in sections:
        family = HashFamily(section["family"])
        if section["kind"] == "exact":
            n, width = int(section["n"]), FAMILIES[family].bits // 8
            digests = bytes(view[at : at + n * width])
            ids = np.frombuffer(view[at + n * width : at + n * (width + 8)], dtype="<i8")
            if len(digests) != n * width or len(ids) != n:
                raise IndexFormatError("match index is truncated")
            exact[family] = {
                digests[i * width : (i + 1) * width].hex(): int(ids[i]) for i in range(n)
            }
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
    path = directory / INDEX_FILE
    if not path.is_file():
        return None
    return decode(key.decrypt_blob(path.read_bytes(), CONTEXT), thresholds)


def current(
    engine: Engine, directory: Path, key: ListKey, thresholds: Thresholds | None = None
) -> MatchIndex:
    """The persisted index if it matches the database, else rebuilt from it and saved."""
    stamp = db_stamp(engine)
    try:
        loaded = load(directory, key, thresholds)
    except IndexFormatError as exc:
        # A damaged or older-format cache is rebuilt, not trusted.
        logger.warning("match index file not used (%s): rebuilding it from the lists", exc)
        loaded = None
    if loaded is not None and loaded[1] == stamp:
        return loaded[0]
    index = MatchIndex.from_db(engine, thresholds)
    save(directory, key, index, stamp)
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
