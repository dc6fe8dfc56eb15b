"""Exact-hash tables (MD5, SHA-1, SHA-256) as sorted digest arrays, not Python dicts.

A table is a *base* of digests sorted bytewise (a numpy ``S<width>`` array) with their entry ids,
searched by binary search, plus a small *overlay* dict for entries added since the base was
built, and tombstones for removed base rows. A base loaded from the persisted index
(node.matching.index.persist) is a pair of zero-copy views on the decrypted file, so loading a
million digests costs no per-entry work and ~24-40 bytes each, where a dict of hex strings took
~1 s and ~150 MB per million (issue 17). ``compact()`` folds the overlay into a new base.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

Ids = npt.NDArray[np.int64]


class ExactTable:
    """Digest -> entry id for one exact family (digests of ``width`` bytes)."""

    def __init__(
        self,
        width: int,
        digests: npt.NDArray[np.bytes_] | None = None,
        ids: Ids | None = None,
    ) -> None:
        self.width = width
        self.dtype = np.dtype(f"S{width}")
        self.digests: npt.NDArray[np.bytes_] = (
            np.zeros(0, dtype=self.dtype) if digests is None else digests
        )
        self.ids: Ids = np.zeros(0, dtype=np.int64) if ids is None else ids
        if self.digests.shape[0] != self.ids.shape[0]:
            raise ValueError("digests and ids differ in length")
        self._dead: npt.NDArray[np.bool_] | None = None  # tombstones, made on first removal
        self._overlay: dict[bytes, int] = {}

    @classmethod
    def from_sorted(cls, width: int, digests: npt.NDArray[np.bytes_], ids: Ids) -> ExactTable:
        """A base from arrays already sorted bytewise with no repeats (as ``sorted_arrays``
        writes them); raises ValueError when they are not, so a bad file is never searched."""
        if digests.shape[0] > 1 and not bool((digests[1:] > digests[:-1]).all()):
            raise ValueError("exact digests are not strictly sorted")
        return cls(width, digests, ids)

    def _key(self, value: str) -> bytes:
        raw = bytes.fromhex(value)
        if len(raw) != self.width:
            raise ValueError(f"expected {self.width} bytes, got {len(raw)}")
        return raw

    def _base_rows(self, raw: npt.NDArray[np.bytes_]) -> npt.NDArray[np.int64]:
        """Row in the base of each query digest, or -1 (absent or removed)."""
        n = self.digests.shape[0]
        if n == 0 or raw.shape[0] == 0:
            return np.full(raw.shape[0], -1, dtype=np.int64)
        pos = np.searchsorted(self.digests, raw).astype(np.int64)
        inside = pos < n
        found = np.zeros(raw.shape[0], dtype=bool)
        found[inside] = self.digests[pos[inside]] == raw[inside]
        if self._dead is not None:
            found[found] = ~self._dead[pos[found]]
        return np.where(found, pos, -1)

    def lookup(self, values: Sequence[str]) -> list[int | None]:
        """The entry id of each normalised hex value, or None: one vectorised search."""
        if not values:
            return []
        raw = np.frombuffer(bytes.fromhex("".join(values)), dtype=self.dtype)
        if raw.shape[0] != len(values):
            raise ValueError(f"expected {self.width}-byte digests")
        rows = self._base_rows(raw).tolist()
        out: list[int | None] = []
        for value, row in zip(raw.tolist(), rows, strict=True):
            held = self._overlay.get(value.ljust(self.width, b"\0")) if self._overlay else None
            if held is not None:
                out.append(held)
            else:
                out.append(int(self.ids[row]) if row >= 0 else None)
        return out

    def get(self, value: str) -> int | None:
        return self.lookup([value])[0]

    def __contains__(self, value: object) -> bool:
        return isinstance(value, str) and self.get(value) is not None

    def set(self, value: str, entry_id: int) -> None:
        """Add (or re-point) one digest: it goes to the overlay, shadowing any base row."""
        raw = self._key(value)
        if self.digests.shape[0]:
            row = int(self._base_rows(np.frombuffer(raw, dtype=self.dtype))[0])
            if row >= 0:
                self._kill(np.asarray([row]))
        self._overlay[raw] = entry_id

    def add(self, pairs: Iterable[tuple[str, int]]) -> None:
        for value, entry_id in pairs:
            self.set(value, entry_id)

    def _kill(self, rows: npt.NDArray[np.int64]) -> None:
        if self._dead is None:
            self._dead = np.zeros(self.digests.shape[0], dtype=bool)
        self._dead[rows] = True

    def remove(self, entry_ids: Iterable[int]) -> int:
        """Drop every digest held by one of ``entry_ids``; returns how many were dropped."""
        doomed = set(entry_ids)
        removed = 0
        for raw in [r for r, i in self._overlay.items() if i in doomed]:
            del self._overlay[raw]
            removed += 1
        if doomed and self.ids.shape[0]:
            hit = np.isin(self.ids, np.fromiter(doomed, dtype=np.int64))
            if self._dead is not None:
                hit &= ~self._dead
            if hit.any():
                self._kill(np.flatnonzero(hit))
                removed += int(hit.sum())
        return removed

    def __len__(self) -> int:
        dead = 0 if self._dead is None else int(self._dead.sum())
        return int(self.digests.shape[0]) - dead + len(self._overlay)

    def sorted_arrays(self) -> tuple[npt.NDArray[np.bytes_], Ids]:
        """Every live digest sorted bytewise, and its id (what the index file stores)."""
        keep = slice(None) if self._dead is None else ~self._dead
        digests = [np.asarray(self.digests[keep], dtype=self.dtype)]
        ids = [np.asarray(self.ids[keep], dtype=np.int64)]
        if self._overlay:
            raws = list(self._overlay)
            digests.append(np.frombuffer(b"".join(raws), dtype=self.dtype))
            ids.append(np.asarray([self._overlay[r] for r in raws], dtype=np.int64))
        all_digests, all_ids = np.concatenate(digests), np.concatenate(ids)
        order = np.argsort(all_digests, kind="stable")
        return all_digests[order], all_ids[order]

    def compact(self) -> None:
        """Fold the overlay and tombstones into a new sorted base."""
        if self._overlay or self._dead is not None:
            self.digests, self.ids = self.sorted_arrays()
            self._overlay, self._dead = {}, None

    def items(self) -> list[tuple[str, int]]:
        """(hex digest, entry id) of every live digest, sorted (for tests and tools)."""
        digests, ids = self.sorted_arrays()
        return [
            (d.ljust(self.width, b"\0").hex(), int(i))
            for d, i in zip(digests.tolist(), ids.tolist(), strict=True)
        ]
