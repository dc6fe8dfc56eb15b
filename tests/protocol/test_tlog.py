"""protocol/tlog.py: RFC 9162 hashing and proofs, against published CT vectors and the
independent recursive reading of the RFC in rfc9162_reference.py."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.tlog import (
    EMPTY_ROOT,
    InvalidProof,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    leaf_list_subtrees,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from tests.protocol import rfc9162_reference as ref

# The certificate-transparency reference tree (8 leaves) used by every RFC 6962 implementation.
CT_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_INCLUSION = {
    (0, 8): [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (5, 8): [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
}
CT_CONSISTENCY = {
    (2, 8): [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (6, 8): [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
}
CT_HASHES = [leaf_hash(d) for d in CT_LEAVES]


def _tree(n: int, salt: int = 0) -> list[bytes]:
    return [leaf_hash(f"{salt}/{i}".encode()) for i in range(n)]


def test_ct_reference_roots() -> None:
    assert EMPTY_ROOT.hex() == CT_ROOTS[0]
    for n in range(9):
        assert root_from_leaf_hashes(CT_HASHES[:n]).hex() == CT_ROOTS[n]
        assert ref.mth(CT_LEAVES[:n]).hex() == CT_ROOTS[n]


@pytest.mark.parametrize(("index", "size"), sorted(CT_INCLUSION))
def test_ct_inclusion_vectors(index: int, size: int) -> None:
    proof = inclusion_proof(index, size, leaf_list_subtrees(CT_HASHES))
    assert [p.hex() for p in proof] == CT_INCLUSION[(index, size)]
    verify_inclusion(CT_HASHES[index], index, size, proof, bytes.fromhex(CT_ROOTS[size]))


@pytest.mark.parametrize(("first", "second"), sorted(CT_CONSISTENCY))
def test_ct_consistency_vectors(first: int, second: int) -> None:
    proof = consistency_proof(first, second, leaf_list_subtrees(CT_HASHES))
    assert [p.hex() for p in proof] == CT_CONSISTENCY[(first, second)]
    roots = bytes.fromhex(CT_ROOTS[first]), bytes.fromhex(CT_ROOTS[second])
    verify_consistency(first, second, *roots, proof)


def test_all_proofs_of_small_trees_match_the_reference() -> None:
    """Exhaustive for sizes 1..33: generation equals the RFC's PATH/PROOF, both verifiers agree."""
    for n in range(1, 34):
        data = [f"leaf {i}".encode() for i in range(n)]
        hashes = [leaf_hash(d) for d in data]
        subtree = leaf_list_subtrees(hashes)
        root = root_from_leaf_hashes(hashes)
        assert root == ref.mth(data)
        for m in range(n):
            proof = inclusion_proof(m, n, subtree)
            assert proof == ref.path(m, data)
            verify_inclusion(hashes[m], m, n, proof, root)
            assert ref.verify_inclusion(m, n, hashes[m], proof, root)
        for m in range(1, n):
            proof = consistency_proof(m, n, subtree)
            assert proof == ref.proof(m, data)
            old = root_from_leaf_hashes(hashes[:m])
            verify_consistency(m, n, old, root, proof)
            assert ref.verify_consistency(m, n, old, root, proof)


@given(st.integers(1, 300), st.data())
def test_inclusion_proofs_verify_and_any_flipped_bit_fails(n: int, data: st.DataObject) -> None:
    hashes = _tree(n)
    root = root_from_leaf_hashes(hashes)
    m = data.draw(st.integers(0, n - 1))
    proof = inclusion_proof(m, n, leaf_list_subtrees(hashes))
    verify_inclusion(hashes[m], m, n, proof, root)
    # Flip one bit of the leaf, of one proof element or of the root: always rejected.
    parts = [hashes[m], *proof, root]
    which = data.draw(st.integers(0, len(parts) - 1))
    bit = data.draw(st.integers(0, 255))
    flipped = bytearray(parts[which])
    flipped[bit // 8] ^= 1 << (bit % 8)
    parts[which] = bytes(flipped)
    with pytest.raises(InvalidProof):
        verify_inclusion(parts[0], m, n, parts[1:-1], parts[-1])
    assert not ref.verify_inclusion(m, n, parts[0], parts[1:-1], parts[-1])


@given(st.integers(1, 300), st.data())
def test_inclusion_with_wrong_index_fails(n: int, data: st.DataObject) -> None:
    hashes = _tree(n + 1)
    m = data.draw(st.integers(0, n - 1))
    proof = inclusion_proof(m, n, leaf_list_subtrees(hashes))
    root = root_from_leaf_hashes(hashes[:n])
    other_m = data.draw(st.integers(0, n).filter(lambda x: x != m))
    with pytest.raises(InvalidProof):
        verify_inclusion(hashes[m], other_m, n, proof, root)
    # Another size may share the path's shape (leaf 0 of 17 and of 18 leaves), which is why a
    # checkpoint signs the size with the root; the two verifiers must agree either way.
    other_n = data.draw(st.integers(1, 2 * n + 2).filter(lambda x: x != n))
    try:
        verify_inclusion(hashes[m], m, other_n, proof, root)
        accepted = True
    except InvalidProof:
        accepted = False
    assert accepted == ref.verify_inclusion(m, other_n, hashes[m], proof, root)


@given(st.integers(2, 300), st.data())
def test_consistency_proofs_verify_and_tampering_fails(n: int, data: st.DataObject) -> None:
    hashes = _tree(n)
    m = data.draw(st.integers(1, n - 1))
    subtree = leaf_list_subtrees(hashes)
    proof = consistency_proof(m, n, subtree)
    old, new = root_from_leaf_hashes(hashes[:m]), root_from_leaf_hashes(hashes)
    verify_consistency(m, n, old, new, proof)
    parts = [old, new, *proof]
    which = data.draw(st.integers(0, len(parts) - 1))
    bit = data.draw(st.integers(0, 255))
    flipped = bytearray(parts[which])
    flipped[bit // 8] ^= 1 << (bit % 8)
    parts[which] = bytes(flipped)
    with pytest.raises(InvalidProof):
        verify_consistency(m, n, parts[0], parts[1], parts[2:])
    assert not ref.verify_consistency(m, n, parts[0], parts[1], parts[2:])
    # Wrong sizes: the same proof does not prove another pair.
    other_m = data.draw(st.integers(1, n).filter(lambda x: x != m))
    with pytest.raises(InvalidProof):
        verify_consistency(other_m, n, old, new, proof)


@given(st.integers(1, 120), st.integers(1, 120), st.data())
def test_a_forked_log_fails_consistency(m: int, extra: int, data: st.DataObject) -> None:
    """A second history that rewrote any leaf of the first can never prove consistency."""
    n = m + extra
    honest = _tree(n)
    forked = list(honest)
    i = data.draw(st.integers(0, m - 1))
    forked[i] = leaf_hash(b"rewritten")
    old = root_from_leaf_hashes(honest[:m])
    proof = consistency_proof(m, n, leaf_list_subtrees(forked))
    with pytest.raises(InvalidProof):
        verify_consistency(m, n, old, root_from_leaf_hashes(forked), proof)


def test_edge_cases_of_consistency() -> None:
    hashes = _tree(5)
    r4, r5 = root_from_leaf_hashes(hashes[:4]), root_from_leaf_hashes(hashes)
    verify_consistency(0, 5, EMPTY_ROOT, r5, [])
    verify_consistency(4, 4, r4, r4, [])
    with pytest.raises(InvalidProof, match="split view"):
        verify_consistency(4, 4, r4, r5, [])
    with pytest.raises(InvalidProof, match="must be empty"):
        verify_consistency(4, 4, r4, r4, [r4])
    with pytest.raises(InvalidProof, match="only grows"):
        verify_consistency(5, 4, r5, r4, [])
    with pytest.raises(InvalidProof, match="empty"):
        verify_consistency(4, 5, r4, r5, [])
    with pytest.raises(InvalidProof, match="32 bytes"):
        verify_consistency(4, 5, r4[:31], r5, [r4])


def test_inclusion_bad_arguments() -> None:
    hashes = _tree(4)
    root = root_from_leaf_hashes(hashes)
    with pytest.raises(InvalidProof, match="not in a tree"):
        verify_inclusion(hashes[0], 4, 4, [], root)
    with pytest.raises(InvalidProof, match="32 bytes"):
        verify_inclusion(hashes[0][:5], 0, 4, [], root)
    with pytest.raises(InvalidProof, match="longer"):
        verify_inclusion(hashes[0], 0, 1, [root], hashes[0])
    with pytest.raises(ValueError, match="not in a tree"):
        inclusion_proof(4, 4, leaf_list_subtrees(hashes))
    with pytest.raises(ValueError, match="no consistency proof"):
        consistency_proof(5, 4, leaf_list_subtrees(hashes))


def test_deep_tree_needs_no_recursion() -> None:
    hashes = _tree(5000)
    root = root_from_leaf_hashes(hashes)
    proof = inclusion_proof(4321, 5000, leaf_list_subtrees(hashes))
    verify_inclusion(hashes[4321], 4321, 5000, proof, root)
