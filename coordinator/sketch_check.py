"""Decode the sketches in a report without trusting their bytes.

DataSketches' deserialisers read lengths from the sketch header: a truncated HLL raises
IndexError, and a truncated KLL sketch can crash the whole process (observed: a segmentation
fault on a 20-byte KLL prefix, datasketches 5.2). So the header is checked here first (family,
shape, and the exact length the header implies) and only bytes of exactly that length reach
the C++ code; what it still raises on them (IndexError, ValueError, RuntimeError) is caught.

Theta sketches (issue 16) get the same treatment: their header (family, serial version 3 or 4,
flags, seed hash, preamble, bit width, entry count) must imply exactly their length before the
bytes are decoded.

Every check raises MalformedPayload; a well-formed sketch whose count cannot be the cell's
``distinct`` (or ``items``) raises SketchMismatch.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct

from datasketches import compact_theta_sketch, hll_sketch, kll_floats_sketch, tgt_hll_type

from protocol.errors import MalformedPayload, SketchMismatch
from protocol.sketch_bounds import SIGMAS, distinct_bounds
from protocol.theta import NOMINAL_ENTRIES, THETA_LG_K, THETA_SEED, theta_bounds

from .distinct import HLL_LG_K

HLL_FAMILY = 7
_HLL_8_MODE_BITS = 2 << 2  # the target type sits in bits 2-3 of the mode byte
_HLL_LIST, _HLL_SET, _HLL_DENSE = 0, 1, 2
KLL_K = 200
KLL_M = 8
KLL_FAMILY = 15
_KLL_MAX_LEVELS = 61
# What DataSketches raises on malformed bytes of a plausible length.
_DECODE_ERRORS = (IndexError, ValueError, RuntimeError)


def _decode_base64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:  # non-ASCII text raises ValueError
        raise MalformedPayload(f"{what} is not standard base64") from exc


def _hll_compact_length(data: bytes) -> int | None:
    """The exact length of a compact HLL_8, lg_k 12 sketch with this header, else None."""
    if len(data) < 8 or data[1] != 1 or data[2] != HLL_FAMILY or data[3] != HLL_LG_K:
        return None
    mode = data[7]
    if mode & 0b1100 != _HLL_8_MODE_BITS:
        return None
    current = mode & 0b11
    if current == _HLL_LIST and data[0] == 2:
        return 8 + 4 * data[6]
    if current == _HLL_SET and data[0] == 3 and len(data) >= 12:
        count: int = struct.unpack_from("<I", data, 8)[0]
        return 12 + 4 * count
    if current == _HLL_DENSE and data[0] == 10:
        return 40 + (1 << HLL_LG_K)  # HLL_8: one byte per register, no aux table
    return None


def check_cell_sketch(sketch_b64: str, distinct: int) -> None:
    """A cell's sketch: compact HLL_8 with lg_k 12, whose 6-sigma bounds hold ``distinct``."""
    data = _decode_base64(sketch_b64, "a cell sketch")
    if _hll_compact_length(data) != len(data):
        raise MalformedPayload(
            f"a cell sketch must be HLL_8 with lg_k {HLL_LG_K} (compact DataSketches bytes)"
        )
    try:
        sketch = hll_sketch.deserialize(data)
        low, estimate, high = (
            sketch.get_lower_bound(1),
            sketch.get_estimate(),
            sketch.get_upper_bound(1),
        )
        shape = (sketch.lg_config_k, sketch.tgt_type)
    except _DECODE_ERRORS as exc:
        raise MalformedPayload("a cell sketch is not a DataSketches HLL sketch") from exc
    if shape != (HLL_LG_K, tgt_hll_type.HLL_8):
        raise MalformedPayload(f"a cell sketch must be HLL_8 with lg_k {HLL_LG_K}")
    if not all(math.isfinite(v) and v >= 0 for v in (low, estimate, high)):
        raise MalformedPayload("a cell sketch has no usable estimate")
    accepted = distinct_bounds(estimate, low, high)
    if not accepted[0] <= distinct <= accepted[1]:
        raise SketchMismatch(
            f"a cell's distinct {distinct} lies outside its sketch's {SIGMAS}-sigma bounds "
            f"[{accepted[0]}, {accepted[1]}]"
        )


def _kll_capacity_at(k: int, depth: int) -> int:
    # DataSketches kll_helper::int_cap_aux(_aux): k * (2/3)^depth, rounded as C++ does.
    def aux(k: int, depth: int) -> int:
        scaled: int = ((k << 1) << depth) // 3**depth
        return (scaled + 1) >> 1

    if depth <= 30:
        return aux(k, depth)
    half = depth // 2
    return aux(aux(k, half) & 0xFFFF, depth - half)


def kll_total_capacity(k: int, m: int, num_levels: int) -> int:
    """Items a KLL sketch with this many levels holds when full (kll_helper)."""
    return sum(max(m, _kll_capacity_at(k, num_levels - h - 1)) for h in range(num_levels))


def _kll_length_ok(data: bytes) -> bool:
    """Whether these are a KLL float sketch's bytes (k 200) of exactly the implied length."""
    if len(data) < 8 or data[2] != KLL_FAMILY or data[6] != KLL_M:
        return False
    k: int = struct.unpack_from("<H", data, 4)[0]
    if k != KLL_K:
        return False
    preamble, version, flags = data[0], data[1], data[3]
    if preamble == 2 and version == 1 and flags & 1:  # empty
        return len(data) == 8
    if preamble == 2 and version == 2:  # one item
        return len(data) == 12
    if preamble != 5 or version != 1 or len(data) < 20:
        return False
    num_levels = data[18]
    if not 1 <= num_levels <= _KLL_MAX_LEVELS or len(data) < 20 + 4 * num_levels:
        return False
    levels: tuple[int, ...] = struct.unpack_from(f"<{num_levels}I", data, 20)
    capacity = kll_total_capacity(KLL_K, KLL_M, num_levels)
    if list(levels) != sorted(levels) or levels[-1] > capacity:
        return False
    # levels, then min and max item, then the retained items (capacity - levels[0]).
    expected: int = 20 + 4 * num_levels + 8 + 4 * (capacity - levels[0])
    return len(data) == expected


def check_removal_sketch(sketch_b64: str, removed: int) -> None:
    """A KLL float sketch (k 200) holding exactly the ``removed`` times, each a finite,
    non-negative number of seconds: so merged quantiles across nodes can be trusted."""
    data = _decode_base64(sketch_b64, "a removal_sketch")
    if not _kll_length_ok(data):
        raise MalformedPayload(
            f"a removal_sketch is not a base64 DataSketches KLL float sketch with k {KLL_K}"
        )
    try:
        sketch = kll_floats_sketch.deserialize(data)
        n = sketch.n
        low, high = (
            (0.0, 0.0) if sketch.is_empty() else (sketch.get_min_value(), sketch.get_max_value())
        )
    except _DECODE_ERRORS as exc:
        raise MalformedPayload("a removal_sketch is not a DataSketches KLL float sketch") from exc
    if n != removed:
        raise MalformedPayload(
            f"a removal_sketch holds {n} times but the row reports {removed} removed"
        )
    if not (math.isfinite(low) and math.isfinite(high) and low >= 0):
        raise MalformedPayload("a removal_sketch holds negative or non-finite times")


# --- Theta (issue 16, protocol.theta) -------------------------------------------------------

THETA_FAMILY = 3  # DataSketches' compact Theta sketch
THETA_SEED_HASH = 0x93CC  # DataSketches' 16-bit hash of seed 9001 (protocol.theta.THETA_SEED)
MAX_THETA = (1 << 63) - 1  # theta and every retained hash lie below 2^63
_THETA_BIG_ENDIAN, _THETA_READ_ONLY, _THETA_EMPTY, _THETA_COMPACT, _THETA_ORDERED = (
    1 << bit for bit in range(5)
)


def theta_layout(data: bytes) -> tuple[int, int] | None:
    """(retained entries, theta) that a compact, ordered Theta sketch's header (seed 9001,
    serial version 3 or 4) states, if the bytes have exactly the length it implies; else None.

    Checked before ``compact_theta_sketch.deserialize``, which trusts the header: a bit width
    above 64 or an entry-count field wider than 4 bytes would make it read out of bounds.
    """
    if len(data) < 8 or data[2] != THETA_FAMILY:
        return None
    preamble, version, flags = data[0], data[1], data[5]
    seed_hash: int = struct.unpack_from("<H", data, 6)[0]
    if flags & _THETA_BIG_ENDIAN or not flags & _THETA_COMPACT:
        return None
    if version == 3 and flags & _THETA_EMPTY:
        return (0, MAX_THETA) if preamble == 1 and len(data) == 8 else None
    if seed_hash != THETA_SEED_HASH or not flags & _THETA_ORDERED or flags & _THETA_EMPTY:
        return None
    theta = MAX_THETA
    if version == 3:
        if preamble == 1:  # a single entry, exact mode
            return (1, theta) if len(data) == 16 else None
        if preamble not in (2, 3) or len(data) < 8 * preamble:
            return None
        count: int = struct.unpack_from("<I", data, 8)[0]
        if preamble == 3:
            theta = struct.unpack_from("<Q", data, 16)[0]
        expected = 8 * preamble + 8 * count
    elif version == 4:
        entry_bits, count_bytes = data[3], data[4]
        if preamble not in (1, 2) or not 1 <= entry_bits <= 64 or not 1 <= count_bytes <= 4:
            return None
        if len(data) < 8 * preamble + count_bytes:
            return None
        if preamble == 2:
            theta = struct.unpack_from("<Q", data, 8)[0]
        count = int.from_bytes(data[8 * preamble : 8 * preamble + count_bytes], "little")
        if count == 0:  # version 4 always holds entries
            return None
        expected = 8 * preamble + count_bytes + (entry_bits * count + 7) // 8
    else:
        return None
    if not 0 < theta <= MAX_THETA or len(data) != expected:
        return None
    return count, theta


def decode_theta_checked(sketch_b64: str, what: str) -> compact_theta_sketch:
    """A base64 compact Theta sketch of this protocol, header checked before decoding and its
    entries after (strictly increasing, below theta: each member counted once)."""
    data = _decode_base64(sketch_b64, what)
    layout = theta_layout(data)
    if layout is None:
        raise MalformedPayload(
            f"{what} is not a compact, ordered DataSketches Theta sketch with seed {THETA_SEED}"
        )
    count, theta = layout
    try:
        sketch = compact_theta_sketch.deserialize(data, THETA_SEED)
        previous = 0
        for entry in sketch:
            if not previous < entry < theta:
                raise MalformedPayload(f"{what} holds repeated or out-of-range entries")
            previous = entry
        retained = sketch.num_retained
    except _DECODE_ERRORS as exc:
        raise MalformedPayload(f"{what} is not a DataSketches Theta sketch") from exc
    if retained != count:
        raise MalformedPayload(f"{what} does not hold the entries its header states")
    return sketch


def check_theta_count(sketch_b64: str, count: int, what: str, counted: str) -> None:
    """``count`` (a cell's distinct or items) must be the sketch's exact count, or, once the
    sketch is in estimation mode (which needs at least 2^15 retained entries, as lg_k 15
    gives), lie within its 6-sigma bounds."""
    sketch = decode_theta_checked(sketch_b64, what)
    estimate, _, _ = theta_bounds(sketch)
    if not sketch.is_estimation_mode():
        if count != estimate:
            raise SketchMismatch(f"a cell's {counted} {count} differs from its {what}'s {estimate}")
        return
    if sketch.num_retained < NOMINAL_ENTRIES:
        raise MalformedPayload(
            f"{what} is in estimation mode with fewer than {NOMINAL_ENTRIES} entries (lg_k "
            f"{THETA_LG_K} keeps every member up to that)"
        )
    low, high = _theta_six_sigma(sketch)
    if not low <= count <= high:
        raise SketchMismatch(
            f"a cell's {counted} {count} lies outside its {what}'s {SIGMAS}-sigma bounds "
            f"[{low}, {high}]"
        )


def _theta_six_sigma(sketch: compact_theta_sketch) -> tuple[int, int]:
    # DataSketches gives bounds for 1 to 3 standard deviations; 6 follows from 1 by scaling,
    # as for the HLL check (protocol.sketch_bounds).
    return distinct_bounds(
        sketch.get_estimate(), sketch.get_lower_bound(1), sketch.get_upper_bound(1)
    )
