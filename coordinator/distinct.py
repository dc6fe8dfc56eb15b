"""Distinct counts of groups of cells, with their bounds (issue 16).

A group's distinct count comes from the union of its cells' Theta sketches (``url_theta``,
lg_k 15) when every cell of the group has one: exact while the union holds at most 2^15
members, else an estimate within 2 % (3-sigma bounds, protocol.theta.theta_bounds). Groups
with an older node's cell fall back to the HLL union (lg_k 12, about 1.6 % standard error)
plus the ``distinct`` of sketchless cells, never exact, with the HLL's 3-sigma bounds.

The same counter serves the raw cells and the rollups, whose rows hold unions of cells: both
unions are order-independent (Theta unions keep the 2^15 smallest hashes below the least theta;
HLL estimates are made canonical below), so both paths give identical figures.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass

from datasketches import (
    compact_theta_sketch,
    hll_sketch,
    hll_union,
    tgt_hll_type,
    theta_union,
)

from protocol.theta import BOUND_SIGMAS, NOMINAL_ENTRIES, THETA_LG_K, THETA_SEED, theta_bounds

HLL_LG_K = 12


@dataclass(frozen=True)
class DistinctCount:
    """A published distinct figure: ``exact`` when lower == estimate == upper is a count."""

    estimate: int
    lower: int
    upper: int
    exact: bool


EMPTY = DistinctCount(0, 0, 0, True)


def canonical_estimate(union: hll_union) -> int:
    """The HLL union's distinct estimate, independent of the order sketches were merged in.

    In HLL mode a union's own estimate depends on how it was built (the HIP accumulator of a
    gadget promoted from coupons, or the composite estimator once merged out of order), so the
    same items merged cell by cell or via rollups could differ. Marking the result "out of
    order" makes every path use the composite estimator over the same registers; list and set
    modes estimate from their coupon count, which merging never reorders. A union below
    ``_SURELY_COUPONS`` is in one of those (HLL mode starts at 385 coupons for lg_k 12, with
    an estimate within a few percent of that), so its own estimate is taken as is.
    """
    return hll_union_bounds(union)[0]


def canonical_estimate_bytes(sketch: bytes) -> int:
    """``canonical_estimate`` of one serialised sketch (a union of it alone)."""
    return hll_bytes_bounds(sketch)[0]


def hll_union_bounds(union: hll_union) -> tuple[int, int, int]:
    """(estimate, lower, upper) of an HLL union, canonical as in ``canonical_estimate``."""
    estimate: float = union.get_estimate()
    if estimate < _SURELY_COUPONS:
        lower, upper = union.get_lower_bound(BOUND_SIGMAS), union.get_upper_bound(BOUND_SIGMAS)
        return _rounded(estimate, lower, upper)
    return hll_bytes_bounds(union.get_result(tgt_hll_type.HLL_8).serialize_compact())


def hll_bytes_bounds(sketch: bytes) -> tuple[int, int, int]:
    """(estimate, lower, upper) of one serialised HLL sketch, canonical."""
    raw = bytearray(sketch)
    if raw[_HLL_MODE_BYTE] & 0x03 == _HLL_MODE:
        raw[_HLL_FLAGS_BYTE] |= _HLL_OUT_OF_ORDER
    decoded = hll_sketch.deserialize(bytes(raw))
    return _rounded(
        decoded.get_estimate(),
        decoded.get_lower_bound(BOUND_SIGMAS),
        decoded.get_upper_bound(BOUND_SIGMAS),
    )


def _rounded(estimate: float, lower: float, upper: float) -> tuple[int, int, int]:
    value = round(estimate)
    return value, min(value, math.floor(lower)), max(value, math.ceil(upper))


_SURELY_COUPONS = 256
# DataSketches HLL preamble: byte 5 flags, byte 7 low bits = current mode (0 list, 1 set, 2 HLL).
_HLL_FLAGS_BYTE = 5
_HLL_MODE_BYTE = 7
_HLL_MODE = 2
_HLL_OUT_OF_ORDER = 16


def theta_count(sketch: compact_theta_sketch) -> DistinctCount:
    estimate, lower, upper = theta_bounds(sketch)
    return DistinctCount(estimate, lower, upper, not sketch.is_estimation_mode())


def new_theta_union() -> theta_union:
    return theta_union(THETA_LG_K, seed=THETA_SEED)


class DistinctCounter:
    """Per group key: cells counted, Theta union of those that had url_theta, HLL union of
    those with a sketch, summed ``distinct`` of those without.

    A group's first sketch of each kind waits as bytes; a union is only built for a second
    one (most groups of a narrow query have one), and once a group has a cell without Theta
    its Theta union is dropped (the HLL decides).
    """

    def __init__(self) -> None:
        self._cells: dict[Hashable, int] = {}
        self._theta_cells: dict[Hashable, int] = {}
        self._theta_first: dict[Hashable, bytes] = {}
        self._theta_unions: dict[Hashable, theta_union] = {}
        self._hll_first: dict[Hashable, bytes] = {}
        self._hll_unions: dict[Hashable, hll_union] = {}
        self._plain: dict[Hashable, int] = {}

    def add(
        self,
        key: Hashable,
        *,
        cells: int,
        hll: bytes | None,
        plain: int,
        theta_cells: int = 0,
        theta: bytes | None = None,
    ) -> None:
        """Add ``cells`` cells (one raw cell, or a rollup row) to the group ``key``:
        ``hll`` their merged HLL, ``plain`` the distinct of those without one, ``theta`` the
        union of the ``theta_cells`` of them that had url_theta."""
        total = self._cells.get(key, 0) + cells
        self._cells[key] = total
        with_theta = self._theta_cells.get(key, 0) + theta_cells
        self._theta_cells[key] = with_theta
        if with_theta != total:
            self._theta_first.pop(key, None)
            self._theta_unions.pop(key, None)
        elif theta is not None:
            self._add_theta(key, theta)
        if hll is not None:
            self._add_hll(key, hll)
        if plain:
            self._plain[key] = self._plain.get(key, 0) + plain

    def _add_theta(self, key: Hashable, sketch: bytes) -> None:
        union = self._theta_unions.get(key)
        if union is None:
            waiting = self._theta_first.pop(key, None)
            if waiting is None:
                self._theta_first[key] = sketch
                return
            union = self._theta_unions[key] = new_theta_union()
            union.update(compact_theta_sketch.deserialize(waiting, THETA_SEED))
        union.update(compact_theta_sketch.deserialize(sketch, THETA_SEED))

    def _add_hll(self, key: Hashable, sketch: bytes) -> None:
        union = self._hll_unions.get(key)
        if union is None:
            waiting = self._hll_first.pop(key, None)
            if waiting is None:
                self._hll_first[key] = sketch
                return
            union = self._hll_unions[key] = hll_union(HLL_LG_K)
            union.update(hll_sketch.deserialize(waiting))
        union.update(hll_sketch.deserialize(sketch))

    def result(self, key: Hashable) -> DistinctCount:
        cells = self._cells.get(key, 0)
        if cells == 0:
            return EMPTY
        if self._theta_cells.get(key, 0) == cells:
            union = self._theta_unions.get(key)
            if union is not None:
                return theta_count(union.get_result())
            alone = self._theta_first.get(key)
            if alone is None:
                return EMPTY
            sketch = compact_theta_sketch.deserialize(alone, THETA_SEED)
            if sketch.num_retained > NOMINAL_ENTRIES:
                # Not trimmed (a node need not trim): count it as any union of it would.
                union = new_theta_union()
                union.update(sketch)
                sketch = union.get_result()
            return theta_count(sketch)
        plain = self._plain.get(key, 0)
        hll = self._hll_unions.get(key)
        first = self._hll_first.get(key)
        if hll is not None:
            estimate, lower, upper = hll_union_bounds(hll)
        elif first is not None:
            estimate, lower, upper = hll_bytes_bounds(first)
        else:
            estimate = lower = upper = 0
        return DistinctCount(estimate + plain, lower + plain, upper + plain, False)
