"""An independent reading of RFC 9162 section 2.1, written from the RFC text alone.

Deliberately the simplest recursive transcription of the definitions (MTH, PATH, PROOF and
SUBPROOF), with verification done by rebuilding roots through the same recursion; it shares no
code with protocol/tlog.py, whose iterative algorithms (section 2.1.3.2 / 2.1.4.2) are checked
against it. Slow (O(n) per hash), for tests only.
"""

from __future__ import annotations

import hashlib


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    """The largest power of two smaller than n."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(entries: list[bytes]) -> bytes:
    """MTH(D[n]) over raw leaf *data* (not hashes)."""
    n = len(entries)
    if n == 0:
        return _h(b"")
    if n == 1:
        return _h(b"\x00" + entries[0])
    k = _k(n)
    return _h(b"\x01" + mth(entries[:k]) + mth(entries[k:]))


def path(m: int, entries: list[bytes]) -> list[bytes]:
    """PATH(m, D[n])."""
    n = len(entries)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*path(m, entries[:k]), mth(entries[k:])]
    return [*path(m - k, entries[k:]), mth(entries[:k])]


def proof(m: int, entries: list[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true)."""
    return _subproof(m, entries, True)


def _subproof(m: int, entries: list[bytes], b: bool) -> list[bytes]:
    n = len(entries)
    if m == n:
        return [] if b else [mth(entries)]
    k = _k(n)
    if m <= k:
        return [*_subproof(m, entries[:k], b), mth(entries[k:])]
    return [*_subproof(m - k, entries[k:], False), mth(entries[:k])]


def root_from_path(m: int, n: int, leaf_hash: bytes, audit: list[bytes]) -> bytes | None:
    """The root implied by PATH(m, D[n]) for this leaf hash, None if the path has the wrong
    length for (m, n)."""
    if n == 1:
        return leaf_hash if not audit else None
    if not audit:
        return None
    k = _k(n)
    *rest, sibling = audit
    if m < k:
        left = root_from_path(m, k, leaf_hash, rest)
        return None if left is None else _h(b"\x01" + left + sibling)
    right = root_from_path(m - k, n - k, leaf_hash, rest)
    return None if right is None else _h(b"\x01" + sibling + right)


def roots_from_proof(
    m: int, n: int, old_root: bytes, consistency: list[bytes], b: bool = True
) -> tuple[bytes, bytes] | None:
    """Mirror SUBPROOF(m, D[n], b): the (old subtree, new subtree) roots the proof implies.

    When b is true and m == n the old root is known (it is ``old_root``), so nothing is taken
    from the proof; otherwise the first proof element is that subtree's hash.
    """
    if m == n:
        if b:
            return (old_root, old_root) if not consistency else None
        return (consistency[0], consistency[0]) if len(consistency) == 1 else None
    if not consistency:
        return None
    k = _k(n)
    *rest, sibling = consistency
    if m <= k:
        sub = roots_from_proof(m, k, old_root, rest, b)
        if sub is None:
            return None
        # The old tree lies wholly inside the left part: its root is the left sub-result.
        return sub[0], _h(b"\x01" + sub[1] + sibling)
    sub = roots_from_proof(m - k, n - k, old_root, rest, False)
    if sub is None:
        return None
    return _h(b"\x01" + sibling + sub[0]), _h(b"\x01" + sibling + sub[1])


def verify_inclusion(m: int, n: int, leaf_hash: bytes, audit: list[bytes], root: bytes) -> bool:
    return 0 <= m < n and root_from_path(m, n, leaf_hash, audit) == root


def verify_consistency(
    m: int, n: int, old_root: bytes, new_root: bytes, consistency: list[bytes]
) -> bool:
    """For 0 < m < n as in the RFC."""
    if not 0 < m < n:
        return False
    roots = roots_from_proof(m, n, old_root, consistency)
    return roots == (old_root, new_root)
