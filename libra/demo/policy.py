"""How the demo's hosters treat notices: the abuse desks' policies, shared by the world's
history, its simulation (libra.demo.noticesim) and the live webhooks (libra.demo.live)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

PlacementKey = tuple[str, str]  # (site host, path)

# How each hoster's abuse desk reacts: it removes the URLs a notice names when that notice
# comes for the k-th time (its round k: the first notice, or the second or third reminder of
# the same node's notice); None: never (the nodes escalate). A hoster missing here has no known
# abuse contact (the unknown one): its notices are held, never sent.
REMOVES_AFTER: Final[Mapping[str, int | None]] = {
    "hoster-a": 1,
    "hoster-b": 3,
    "hoster-c": 2,
    "hoster-d": None,
    "hoster-e": 1,
    "hoster-f": None,
    "hoster-h": 2,
}


def policy_text(key: str) -> str:
    """How the hoster reacts, for the summary."""
    if key not in REMOVES_AFTER:
        return "no contact"
    k = REMOVES_AFTER[key]
    if k is None:
        return "never"
    return f"after {k}"
