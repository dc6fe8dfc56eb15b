"""Theta sketches of keyed identities (docs/protocol.md §3, issue 16): the one definition
shared by nodes (which build them), the coordinator (which merges and intersects them) and the
conformance checker.

Two per cell, both over lowercase hex HMAC-SHA256(federation key, text), so that the
coordinator can count and compare sets across nodes and periods without learning a member:

- ``url_theta``: text = the final image URL (the same set as ``distinct`` counts);
- ``item_theta``: text = ``item_identity(family, value)`` of the matched list item.

Why Theta and lg_k 15: a Theta sketch holds every member exactly until it has more than 2^15
(32,768) of them, so a cell or a merge of cells below that size is counted exactly; above it the
relative standard error is 1/sqrt(2^15) = 0.55 %, so 2 % is 3.6 standard deviations, and it
supports the set differences and intersections that displacement needs (HLL does not).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable

from datasketches import compact_theta_sketch, update_theta_sketch

THETA_LG_K = 15
THETA_SEED = 9001  # DataSketches' default seed: every party must use the same one
NOMINAL_ENTRIES = 1 << THETA_LG_K
# The bound the protocol states for a published distinct count (docs/protocol.md §3).
BOUND_SIGMAS = 3

# Priority of families when one list item carries several hashes: the item's identity is the
# value of the first family it has (PDQ survives re-encoding, so a re-encoded copy elsewhere
# keeps its identity), so every copy of one listed item gets one key, whichever hash found it.
IDENTITY_PRIORITY = ("pdq", "sha256", "sha1", "md5")


def item_identity(family: str, value: str) -> str:
    """The text whose keyed hash identifies a listed item: ``"<family>:<lowercase value>"``."""
    return f"{family}:{value.strip().lower()}"


def keyed(federation_key: bytes, text: str) -> str:
    """Lowercase hex HMAC-SHA256 under the federation key (only nodes hold it)."""
    return hmac.new(federation_key, text.encode("utf-8"), hashlib.sha256).hexdigest()


def make_theta(federation_key: bytes, texts: Iterable[str]) -> str:
    """Base64 of the compact, ordered, compressed Theta sketch (lg_k 15, seed 9001) of the
    keyed texts."""
    sketch = update_theta_sketch(THETA_LG_K, seed=THETA_SEED)
    for text in texts:
        sketch.update(keyed(federation_key, text))
    sketch.trim()  # at most 2^15 retained: the stated precision, in the least space
    return base64.b64encode(sketch.compact(True).serialize(True)).decode("ascii")


class ThetaError(ValueError):
    """Bytes that are not a usable Theta sketch of this protocol."""


def decode_theta(b64: str) -> compact_theta_sketch:
    """Decode base64 compact Theta bytes. Callers that take untrusted input check the header
    first (coordinator.sketch_check): the C++ deserialiser trusts the lengths it reads."""
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ThetaError("not base64") from exc
    try:
        return compact_theta_sketch.deserialize(raw, THETA_SEED)
    except Exception as exc:  # the binding raises RuntimeError, ValueError, IndexError...
        raise ThetaError("not a compact DataSketches Theta sketch with seed 9001") from exc


def theta_bounds(sketch: compact_theta_sketch) -> tuple[int, int, int]:
    """(estimate, lower, upper): exact when the sketch is not in estimation mode, else the
    rounded estimate with its 3-sigma bounds."""
    estimate = round(sketch.get_estimate())
    if not sketch.is_estimation_mode():
        return estimate, estimate, estimate
    lower = int(sketch.get_lower_bound(BOUND_SIGMAS))
    upper = -(-sketch.get_upper_bound(BOUND_SIGMAS) // 1)
    return estimate, lower, int(upper)
