"""Theta sketch checks of the offline conformance checker (docs/protocol.md §3, issue 16).

Written from the protocol text, not from the coordinator's code, so the two can disagree. The
header is read in Python first and must imply exactly the sketch's length (DataSketches'
deserialiser trusts the header and ignores trailing bytes); only then are the bytes decoded,
and that decoding runs in the checker's child process (protocol.conformance_sketch), so even
a decoder crash on hostile bytes becomes a finding.
"""

from __future__ import annotations

import struct
from typing import Any

from .sketch_bounds import SIGMAS, distinct_bounds

THETA_SEED = 9001
THETA_SEED_HASH = 0x93CC  # DataSketches' 16-bit hash of seed 9001, bytes 6-7 of the header
THETA_FAMILY = 3  # compact Theta sketch
NOMINAL_ENTRIES = 1 << 15  # lg_k 15: every member is kept up to this many
MAX_THETA = (1 << 63) - 1  # theta 1.0; every retained hash is below theta
# Header flag bits (byte 5).
BIG_ENDIAN, READ_ONLY, EMPTY, COMPACT, ORDERED = (1 << bit for bit in range(5))

Verdict = tuple[str, str] | None
_SHAPE = "not a compact, ordered DataSketches Theta sketch with seed 9001"


def theta_layout(data: bytes) -> tuple[int, int] | None:
    """(retained entries, theta as a 63-bit integer) stated by the header of a compact,
    ordered Theta sketch with seed 9001 in serial version 3 (plain) or 4 (compressed), if the
    bytes have exactly the length that header implies; else None. Never decodes entries."""
    if len(data) < 8 or data[2] != THETA_FAMILY:
        return None
    preamble, version, flags = data[0], data[1], data[5]
    seed_hash: int = struct.unpack_from("<H", data, 6)[0]
    if flags & BIG_ENDIAN or not flags & COMPACT:
        return None
    if flags & EMPTY:  # the empty set: version 3, one preamble long, nothing else
        return (0, MAX_THETA) if version == 3 and preamble == 1 and len(data) == 8 else None
    if seed_hash != THETA_SEED_HASH or not flags & ORDERED:
        return None
    theta = MAX_THETA
    if version == 3:
        if preamble == 1:  # exactly one entry, exact mode
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
        if count == 0:
            return None
        expected = 8 * preamble + count_bytes + (entry_bits * count + 7) // 8
    else:
        return None
    if not 0 < theta <= MAX_THETA or len(data) != expected:
        return None
    return count, theta


def check_theta(raw: bytes, count: int, counted: str) -> Verdict:
    """The verdict on one cell sketch: ``count`` is the cell's ``distinct`` (url_theta) or
    ``items`` (item_theta), named by ``counted``. Decodes: call it in the child process."""
    layout = theta_layout(raw)
    if layout is None:
        return ("malformed_payload", f"{_SHAPE} (header or length)")
    stated, theta = layout
    from datasketches import compact_theta_sketch

    try:
        sketch: Any = compact_theta_sketch.deserialize(raw, THETA_SEED)
        entries = list(sketch)
        estimating = bool(sketch.is_estimation_mode())
        estimate, lower_1, upper_1 = (
            sketch.get_estimate(),
            sketch.get_lower_bound(1),
            sketch.get_upper_bound(1),
        )
    except Exception:  # the binding raises IndexError, ValueError, RuntimeError...
        return ("malformed_payload", _SHAPE)
    if len(entries) != stated:
        return ("malformed_payload", "the Theta sketch does not hold the entries it states")
    previous = 0
    for entry in entries:  # strictly increasing and below theta: each member counted once
        if not previous < entry < theta:
            return ("malformed_payload", "the Theta sketch holds repeated or out-of-range entries")
        previous = entry
    if not estimating:
        if stated != count:
            return ("sketch_mismatch", f"{counted} {count}, but the Theta sketch holds {stated}")
        return None
    if stated < NOMINAL_ENTRIES:
        return (
            "malformed_payload",
            f"a Theta sketch in estimation mode must retain at least {NOMINAL_ENTRIES} entries "
            f"(lg_k 15), not {stated}",
        )
    low, high = distinct_bounds(estimate, lower_1, upper_1)
    if not low <= count <= high:
        return (
            "sketch_mismatch",
            f"{counted} {count} is outside the Theta sketch's {SIGMAS}-sigma bounds "
            f"[{low}, {high}]",
        )
    return None
