"""Merkle tree hashing, inclusion and consistency proofs of RFC 9162 section 2.1 (= RFC 6962).

The transparency log of reports and picture snapshots (issue 15) is an append-only list of leaves.
Its root commits to every leaf in order; an inclusion proof shows one leaf is in a tree of a given
size, a consistency proof shows a tree of size ``first`` is a prefix of a tree of size ``second``.

Proof *generation* takes a callback ``subtree(start, end) -> hash`` so the coordinator can answer
from stored node hashes without loading every leaf; :func:`leaf_list_subtrees` adapts a plain list.
Proof *verification* follows the iterative algorithms of RFC 9162 section 2.1.3.2 and 2.1.4.2
step by step (tests/protocol/rfc9162_reference.py checks it against a recursive reading of the RFC).

Pure: imports nothing of node or coordinator.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from .errors import ProtocolError

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"

SubtreeHash = Callable[[int, int], bytes]
"""``subtree(start, end)``: MTH of leaves ``[start, end)``; always called with a power-of-two
aligned left part or the right edge of the tree, ``0 <= start < end``."""


class InvalidProof(ProtocolError):
    """A Merkle proof does not prove what it claims (or its sizes are impossible)."""

    code = "invalid_proof"
    http_status = 422


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162: MTH({d}) = SHA-256(0x00 || d)."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162: interior node = SHA-256(0x01 || left || right)."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


EMPTY_ROOT = hashlib.sha256(b"").digest()
"""MTH({}) = SHA-256() of the empty string."""


def split_point(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n >= 2): RFC 9162's ``k``."""
    if n < 2:
        raise ValueError("split needs at least two leaves")
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaf_hashes(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of a list of leaf hashes, level by level (a lone last node moves up unchanged).

    Pairing adjacent nodes and promoting an odd last one builds exactly RFC 9162's left-balanced
    tree, without recursion (so a 10^6-leaf log does not hit Python's recursion limit).
    """
    if not leaf_hashes:
        return EMPTY_ROOT
    level = list(leaf_hashes)
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def leaf_list_subtrees(leaf_hashes: Sequence[bytes]) -> SubtreeHash:
    """A ``subtree`` callback over an in-memory list of leaf hashes."""

    def subtree(start: int, end: int) -> bytes:
        if not 0 <= start < end <= len(leaf_hashes):
            raise ValueError(f"subtree [{start}, {end}) outside a tree of {len(leaf_hashes)}")
        return root_from_leaf_hashes(leaf_hashes[start:end])

    return subtree


def inclusion_proof(index: int, size: int, subtree: SubtreeHash) -> list[bytes]:
    """PATH(index, D[size]) of RFC 9162 section 2.1.3.1, leaf-side hash first."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is not in a tree of size {size}")
    path: list[bytes] = []
    start, end, m = 0, size, index
    while end - start > 1:  # walk down from the root, collecting siblings root-side first
        k = split_point(end - start)
        if m < k:
            path.append(subtree(start + k, end))
            end = start + k
        else:
            path.append(subtree(start, start + k))
            start, m = start + k, m - k
    path.reverse()
    return path


def consistency_proof(first: int, second: int, subtree: SubtreeHash) -> list[bytes]:
    """PROOF(first, D[second]) of RFC 9162 section 2.1.4.1 (empty when first is 0 or second)."""
    if not 0 <= first <= second:
        raise ValueError(f"no consistency proof from size {first} to size {second}")
    if first in (0, second):
        return []
    proof: list[bytes] = []
    start, end, m, whole = 0, second, first, True
    while m != end - start:  # SUBPROOF(m, D[start:end], whole), walking down
        k = split_point(end - start)
        if m <= k:
            proof.append(subtree(start + k, end))
            end = start + k
        else:
            proof.append(subtree(start, start + k))
            start, m, whole = start + k, m - k, False
    if not whole:
        proof.append(subtree(start, end))
    proof.reverse()
    return proof


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise InvalidProof(f"{what} must be {HASH_SIZE} bytes, got {len(value)}")


def root_from_inclusion_proof(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """RFC 9162 section 2.1.3.2 steps 1-4: the root that ``proof`` implies for ``leaf``."""
    _check_hash(leaf, "leaf hash")
    if not 0 <= index < size:
        raise InvalidProof(f"leaf index {index} is not in a tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        _check_hash(p, "proof hash")
        if sn == 0:
            raise InvalidProof("inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InvalidProof("inclusion proof is shorter than the tree is deep")
    return r


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise InvalidProof unless ``proof`` shows leaf ``index`` of tree ``size`` is ``leaf``."""
    _check_hash(root, "root hash")
    if root_from_inclusion_proof(leaf, index, size, proof) != root:
        raise InvalidProof(f"leaf {index} is not in the tree of size {size} with that root")


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 section 2.1.4.2: raise InvalidProof unless tree ``first`` prefixes ``second``.

    The RFC covers ``0 < first < second``; the edge cases follow from the definitions: every tree
    extends the empty tree (empty proof), and equal sizes need equal roots (empty proof).
    """
    _check_hash(first_root, "first root hash")
    _check_hash(second_root, "second root hash")
    for c in proof:
        _check_hash(c, "proof hash")
    if not 0 <= first <= second:
        raise InvalidProof(f"size {second} cannot extend size {first}: a log only grows")
    if first == 0 or first == second:
        if proof:
            raise InvalidProof("consistency proof must be empty for these sizes")
        if first == second and first_root != second_root:
            raise InvalidProof(f"two different roots for the same size {first}: split view")
        return
    if not proof:
        raise InvalidProof("consistency proof is empty")
    path = list(proof)
    if first & (first - 1) == 0:  # first is an exact power of two
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise InvalidProof("consistency proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InvalidProof("consistency proof is shorter than the tree is deep")
    if fr != first_root or sr != second_root:
        raise InvalidProof(f"tree of size {second} does not extend the tree of size {first}")
