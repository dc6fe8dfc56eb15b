"""The exact-digest table behind `list match` (issue 17): a sorted base searched in place plus
an overlay and tombstones behaves exactly like a dict through any sequence of changes."""

from __future__ import annotations

import random

import numpy as np
import pytest

from node.matching.index.exact import ExactTable
from tests.node.conftest import rand_hex


def test_random_changes_match_a_dict() -> None:
    rng = random.Random(11)
    pool = [rand_hex(rng, 128) for _ in range(60)] + ["00" * 16, "00" * 15 + "10"]
    reference: dict[str, int] = {}
    table = ExactTable(16)
    next_id = 1
    for step in range(400):
        action = rng.random()
        if action < 0.5:
            value = rng.choice(pool)
            table.set(value, next_id)
            reference[value] = next_id
            next_id += 1
        elif action < 0.8 and reference:
            doomed = set(rng.sample(sorted(reference.values()), k=min(3, len(reference))))
            expected = sum(1 for i in reference.values() if i in doomed)
            assert table.remove(doomed) == expected
            reference = {v: i for v, i in reference.items() if i not in doomed}
        else:
            table.compact()  # overlay and tombstones folded into a new sorted base
        if step % 7 == 0:
            # A reload: the base as the index file stores it, read-only views.
            digests, ids = table.sorted_arrays()
            digests.flags.writeable = False
            table = ExactTable.from_sorted(16, digests, ids)
        assert len(table) == len(reference)
        assert table.lookup(pool) == [reference.get(v) for v in pool]
    assert table.items() == sorted(reference.items())


def test_unsorted_or_repeated_digests_are_refused() -> None:
    digests = np.frombuffer(bytes.fromhex("22" * 16 + "11" * 16), dtype="S16")
    with pytest.raises(ValueError, match="not strictly sorted"):
        ExactTable.from_sorted(16, digests, np.asarray([1, 2], dtype=np.int64))
    twice = np.frombuffer(bytes.fromhex("11" * 32), dtype="S16")
    with pytest.raises(ValueError, match="not strictly sorted"):
        ExactTable.from_sorted(16, twice, np.asarray([1, 2], dtype=np.int64))


def test_a_value_of_the_wrong_width_is_refused() -> None:
    table = ExactTable(16)
    with pytest.raises(ValueError, match="expected 16 bytes"):
        table.set("ab" * 20, 1)
