"""Write one cycle's candidates: upsert by SHA-256, cluster, cap, in the caller's transaction.

``write`` is called once, when the cycle ends (node.cycle finishes the cycle row in the same
transaction), with every image the collector scored:

1. images with the same SHA-256 under several URLs are one image (the best-scoring URL);
2. an image already a candidate (any state) is not a new row: its ``last_seen_at``,
   ``last_cycle_id`` and ``times_seen`` move (once per cycle), and a pending one takes the
   new score and reasons when they are higher;
3. the new images are clustered with every pending candidate (node.discovery.cluster): each
   gets ``near_duplicates`` points for its cluster's size;
4. a cluster holding a pending candidate, or whose best score reaches ``min_score``, is kept
   whole (a near-duplicate rides along with the image it copies, so a verdict covers it);
   others are not stored;
5. at most ``max_per_cycle`` new rows, best clusters first; what is cut is counted;
6. in each cluster touched, the highest-scoring row (the oldest on ties) is the
   representative (``cluster_id`` None, ``members`` = cluster size), the others point to it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from sqlmodel import Session, col, select

from node.discovery.cluster import components, pack
from node.discovery.models import PENDING, Candidate
from node.discovery.score import Context, Reason, capped, context_reasons, near_duplicates

# SHA-256 values per IN (...) query: far below SQLite's and PostgreSQL's parameter limits.
_CHUNK = 500
_ZERO_PDQ = "0" * 64


# Offsets of each digest in a Found's packed ``digests`` (SHA-256, SHA-1, MD5, PDQ).
SHA256, SHA1, MD5, PDQ, DIGESTS = 0, 32, 52, 68, 100


@dataclass(frozen=True, slots=True)
class Found:
    """An unmatched image the cycle hashed, with its context (compact: the collector makes one
    per kept image when the cycle ends; reasons are built only for the images written)."""

    url: str
    final_url: str
    page_url: str
    host: str
    server_ip: str | None
    country: str
    asn: int
    hoster: str
    digests: bytes  # SHA-256, SHA-1, MD5 and PDQ, packed (DIGESTS bytes)
    pdq_quality: int
    width: int
    height: int
    format: str
    bytes: int
    context: Context
    min_pixels: int
    points: float  # score.context_points: 0 when nothing known is beside it
    near: Reason | None = None  # set by clustering

    @property
    def sha256(self) -> str:
        return self.digests[SHA256:SHA1].hex()

    @property
    def sha1(self) -> str:
        return self.digests[SHA1:MD5].hex()

    @property
    def md5(self) -> str:
        return self.digests[MD5:PDQ].hex()

    @property
    def pdq(self) -> str:
        return self.digests[PDQ:DIGESTS].hex()

    @property
    def score(self) -> float:
        """Equal to ``total(self.reasons())``, computed without them."""
        return capped(self.points + (self.near["points"] if self.near else 0.0))

    def reasons(self) -> list[Reason]:
        found = context_reasons(self.context, self.min_pixels)
        return [*found, self.near] if self.near else found


@dataclass(frozen=True)
class Written:
    """What ``write`` did."""

    created: int  # new candidate rows
    seen_again: int  # existing candidates found again
    duplicates: int  # images that were another URL of an image already counted
    cut: int  # new rows left out by max_per_cycle
    not_kept: int  # images whose cluster scored below min_score


@dataclass(frozen=True)
class Limits:
    min_score: float
    max_per_cycle: int
    cluster_max_distance: int


def _distinct(found: Sequence[Found]) -> tuple[list[Found], int]:
    best: dict[str, Found] = {}
    for item in found:
        key = item.sha256
        if key not in best or item.score > best[key].score:
            best[key] = item
    return list(best.values()), len(found) - len(best)


def _existing(session: Session, values: list[str]) -> dict[str, Candidate]:
    out: dict[str, Candidate] = {}
    for start in range(0, len(values), _CHUNK):
        chunk = values[start : start + _CHUNK]
        rows = session.exec(select(Candidate).where(col(Candidate.sha256).in_(chunk))).all()
        out.update({row.sha256: row for row in rows})
    return out


def _pdq_codes(items: Sequence[Found]) -> npt.NDArray[np.uint64]:
    """The items' PDQ as (n, 4) big-endian words, straight from their packed digests."""
    raw = b"".join(i.digests[PDQ:DIGESTS] for i in items)
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(len(items), 4)


class _Pending(NamedTuple):
    id: int
    pdq: str | None
    quality: int
    cluster_id: int | None


def _pending(session: Session) -> list[_Pending]:
    """Every pending candidate's clustering fields (its PDQ decrypted)."""
    rows = session.exec(
        select(Candidate.id, Candidate.pdq, Candidate.pdq_quality, Candidate.cluster_id).where(
            col(Candidate.state) == PENDING
        )
    ).all()
    return [_Pending(i, p, q or 0, c) for i, p, q, c in rows if i is not None]


def _seen_again(row: Candidate, item: Found, cycle_id: int, now: datetime) -> None:
    if row.last_cycle_id != cycle_id:
        row.times_seen += 1
    row.last_cycle_id = cycle_id
    row.last_seen_at = now
    if row.state == PENDING and item.score > row.score:
        row.score = item.score
        row.reasons = json.dumps(item.reasons())


def _row(item: Found, cycle_id: int, now: datetime) -> Candidate:
    return Candidate(
        first_cycle_id=cycle_id,
        last_cycle_id=cycle_id,
        first_seen_at=now,
        last_seen_at=now,
        url=item.url,
        final_url=item.final_url,
        page_url=item.page_url,
        host=item.host,
        server_ip=item.server_ip,
        country=item.country,
        asn=item.asn,
        hoster=item.hoster,
        sha256=item.sha256,
        sha1=item.sha1,
        md5=item.md5,
        pdq=item.pdq,
        pdq_quality=item.pdq_quality,
        width=item.width,
        height=item.height,
        format=item.format,
        bytes=item.bytes,
        score=item.score,
        reasons=json.dumps(item.reasons()),
    )


def write(
    session: Session, cycle_id: int, now: datetime, found: Sequence[Found], limits: Limits
) -> Written:
    """Upsert, cluster and cap ``found`` in ``session``'s transaction (see the module doc)."""
    items, duplicates = _distinct(found)
    existing = _existing(session, [i.sha256 for i in items])
    for item in items:
        if (row := existing.get(item.sha256)) is not None:
            _seen_again(row, item, cycle_id, now)
            session.add(row)
    new = [i for i in items if i.sha256 not in existing]
    pending = _pending(session)
    # Rows 0..len(pending)-1: pending candidates; then the new images.
    codes = np.concatenate([pack([p.pdq or _ZERO_PDQ for p in pending]), _pdq_codes(new)])
    qualities = [p.quality if p.pdq else 0 for p in pending] + [i.pdq_quality for i in new]
    old_groups: dict[int, list[int]] = defaultdict(list)
    for row_number, p in enumerate(pending):
        old_groups[p.cluster_id if p.cluster_id is not None else p.id].append(row_number)
    first_new = len(pending)
    labels = components(
        codes,
        np.asarray(qualities, dtype=np.int64),
        limits.cluster_max_distance,
        search=range(first_new, first_new + len(new)),
        groups=old_groups.values(),
    )
    clusters: dict[int, list[int]] = defaultdict(list)
    for row_number, label in enumerate(labels):
        clusters[label].append(row_number)
    kept: list[tuple[float, list[int], list[Found]]] = []
    not_kept = 0
    for rows in clusters.values():
        fresh = [r - first_new for r in rows if r >= first_new]
        if not fresh:
            continue
        near = near_duplicates(len(rows), limits.cluster_max_distance)
        if near is None:
            scored = [new[n] for n in fresh]
        else:  # (a copy only for the few images in a cluster: most stand alone)
            scored = [replace(new[n], near=near) for n in fresh]
        best = max(s.score for s in scored)
        if len(rows) == len(fresh) and best < limits.min_score:
            not_kept += len(fresh)
            continue
        kept.append((best, [pending[r].id for r in rows if r < first_new], scored))
    kept.sort(key=lambda k: -k[0])
    created = cut = 0
    chosen: list[tuple[list[int], list[Candidate]]] = []
    for _best, old_ids, scored in kept:
        if created + len(scored) > limits.max_per_cycle:
            cut += len(scored)
            continue
        chosen.append((old_ids, [_row(s, cycle_id, now) for s in scored]))
        created += len(scored)
    session.add_all(row for _old, rows_new in chosen for row in rows_new)
    session.flush()  # one flush: the new rows' ids, for the clusters
    old_rows = _by_id(session, [i for old_ids, _new in chosen for i in old_ids])
    for old_ids, rows_new in chosen:
        if len(old_ids) + len(rows_new) > 1:
            _link([*(old_rows[i] for i in old_ids if i in old_rows), *rows_new])
    return Written(created, len(existing), duplicates, cut, not_kept)


def _by_id(session: Session, ids: list[int]) -> dict[int, Candidate]:
    out: dict[int, Candidate] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        rows = session.exec(select(Candidate).where(col(Candidate.id).in_(chunk))).all()
        out.update({row.id: row for row in rows if row.id is not None})
    return out


def _link(rows: list[Candidate]) -> None:
    """Make the highest-scoring row (oldest on ties) the cluster's representative."""
    rep = min(rows, key=lambda r: (-r.score, r.id or 0))
    for row in rows:
        if row is rep:
            row.cluster_id = None
            row.members = len(rows)
        else:
            row.cluster_id = rep.id
            row.members = 1
