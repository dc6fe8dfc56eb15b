"""The negative list in memory: does an image equal (or nearly equal) a rejected one?

``NegativeIndex.from_db`` loads every NegativeEntry (written by node.discovery.verdicts when an
analyst rejects a candidate); ``suppresses`` answers for one image's hashes, ``suppressed_many``
for a batch. An image is suppressed when its SHA-256, SHA-1 or MD5 equals a negative value, or
its PDQ (quality >= 50) is within ``max_distance`` (settings.discovery.cluster_max_distance) of
a negative PDQ: a rejected image's near-duplicates are the same picture, rejected once.

Entries of other families (e.g. pHash) are kept by the table but not used here: only the
families a candidate is stored with decide.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from node.discovery.cluster import pack
from node.discovery.models import NegativeEntry
from node.matching.index import MultiIndex
from node.matching.vpdq import PDQ_BITS
from protocol.hashes import PDQ_MIN_QUALITY, HashFamily
from protocol.models import ImageHashes

DEFAULT_MAX_DISTANCE = 16  # settings.discovery.cluster_max_distance's default
INDEX_FROM = 4096  # negative PDQ hashes from which they are searched through a multi-index
_EXACT = (HashFamily.SHA256, HashFamily.SHA1, HashFamily.MD5)


class HashesLike(Protocol):
    """An image's digests and PDQ: protocol.models.ImageHashes, or a kept candidate."""

    @property
    def sha256(self) -> str: ...
    @property
    def sha1(self) -> str: ...
    @property
    def md5(self) -> str: ...
    @property
    def pdq(self) -> str: ...
    @property
    def pdq_quality(self) -> int: ...


class NegativeIndex:
    """Exact sets for the digests, an exact Hamming index for PDQ."""

    def __init__(
        self, entries: Sequence[tuple[str, str]], max_distance: int = DEFAULT_MAX_DISTANCE
    ) -> None:
        """``entries``: (family, value) pairs, e.g. ("sha256", "ab12..."); values of any case."""
        if not 0 <= max_distance <= PDQ_BITS:
            raise ValueError(f"a PDQ distance is 0..{PDQ_BITS}, got {max_distance}")
        self.max_distance = max_distance
        self._exact: dict[str, set[str]] = {f.value: set() for f in _EXACT}
        pdq: list[str] = []
        for family, value in entries:
            text = value.strip().lower()
            if family in self._exact:
                self._exact[family].add(text)
            elif family == HashFamily.PDQ.value:
                pdq.append(text)
        self._codes = pack(sorted(set(pdq)))
        # A multi-index only for a long list: a short one is scanned whole with numpy (no
        # index to build, no compiled kernel to load in a process that has not used it).
        self._pdq = (
            MultiIndex.build(PDQ_BITS, np.arange(len(self._codes)), self._codes)
            if len(self._codes) > INDEX_FROM
            else None
        )

    @classmethod
    def from_db(cls, engine: Engine, max_distance: int = DEFAULT_MAX_DISTANCE) -> NegativeIndex:
        with Session(engine) as session:
            rows = session.exec(select(NegativeEntry.family, NegativeEntry.value)).all()
        return cls([(family, value) for family, value in rows], max_distance)

    def __len__(self) -> int:
        return sum(len(v) for v in self._exact.values()) + len(self._codes)

    def suppresses(self, hashes: ImageHashes) -> bool:
        return self.suppressed_many([hashes])[0]

    def suppressed_many(self, batch: Sequence[HashesLike]) -> list[bool]:
        """For each image: is it on the negative list? One PDQ search for the whole batch."""
        out = [
            any(getattr(h, f.value).lower() in self._exact[f.value] for f in _EXACT) for h in batch
        ]
        if not len(self._codes):
            return out
        rows = [
            n
            for n, h in enumerate(batch)
            if not out[n] and h.pdq and h.pdq_quality >= PDQ_MIN_QUALITY
        ]
        if rows:
            queries = pack([batch[n].pdq.lower() for n in rows])
            for n, near in zip(rows, self._near(queries), strict=True):
                out[n] = near
        return out

    def _near(self, queries: npt.NDArray[np.uint64]) -> list[bool]:
        if self._pdq is not None:
            return [bool(found) for found in self._pdq.search(queries, self.max_distance)]
        out: list[bool] = []
        step = max(1, 1_000_000 // len(self._codes))  # XOR words held at once
        for start in range(0, len(queries), step):
            block = queries[start : start + step]
            distance = np.bitwise_count(block[:, None, :] ^ self._codes[None, :, :]).sum(axis=2)
            out.extend(bool(b) for b in (distance <= self.max_distance).any(axis=1))
        return out
