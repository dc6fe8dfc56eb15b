"""Keyed identities of matched list items, for a report cell's ``items`` and ``item_theta``
(issue 16, protocol.theta, docs/protocol.md §3).

One listed item often carries several hashes (a VICS Media with MD5, SHA-1 and PDQ; a CSV row
with MD5 and PDQ), and a copy may be found by any of them: an exact copy by MD5 here, a
re-encoded one by PDQ there. So an item is named by the record its matched entry belongs to
(the node's ListEntry rows with the same list_version_id and record): the value of the first
family in IDENTITY_PRIORITY that the record has (the smallest such value, should it hold two),
else the matched entry's own family and value. Every copy of one item then has one identity,
and two agencies listing the same hashes produce the same one. Only its keyed form leaves the
node, inside a Theta sketch.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import and_
from sqlalchemy import select as sa_select
from sqlalchemy.orm import aliased
from sqlmodel import Session, col

from node.models import ListEntry
from protocol.theta import IDENTITY_PRIORITY, item_identity

# Matched entries per query (an IN list every supported database accepts comfortably).
_CHUNK = 2000


def item_identities(session: Session, entry_ids: Iterable[int]) -> dict[int, str]:
    """Identity text (``protocol.theta.item_identity``) of each matched entry id."""
    wanted = sorted(set(entry_ids))
    matched = aliased(ListEntry)
    sibling = aliased(ListEntry)
    own: dict[int, tuple[str, str]] = {}
    # entry id -> family -> values of its record (itself included; decrypted on load)
    record: dict[int, dict[str, set[str]]] = {}
    for start in range(0, len(wanted), _CHUNK):
        rows = session.execute(
            sa_select(
                col(matched.id),
                col(matched.family),
                col(matched.value),
                col(sibling.family),
                col(sibling.value),
            )
            .select_from(matched)
            # An entry without a record number stands alone: NULL = NULL joins nothing.
            .outerjoin(
                sibling,
                and_(
                    col(sibling.list_version_id) == col(matched.list_version_id),
                    col(sibling.record) == col(matched.record),
                ),
            )
            .where(col(matched.id).in_(wanted[start : start + _CHUNK]))
        )
        for entry_id, family, value, sib_family, sib_value in rows:
            own[entry_id] = (family, value)
            if sib_family is not None and sib_value is not None:
                families = record.setdefault(entry_id, {})
                families.setdefault(sib_family, set()).add(sib_value.strip().lower())
    return {entry_id: _identity(*own[entry_id], record.get(entry_id)) for entry_id in own}


def _identity(family: str, value: str, siblings: dict[str, set[str]] | None) -> str:
    for candidate in IDENTITY_PRIORITY:
        if siblings and siblings.get(candidate):
            return item_identity(candidate, min(siblings[candidate]))
    return item_identity(family, value)
