"""Build the crawl cycle's VideoIndex from the node's live ``vpdq`` list entries (issue 13).

A ``vpdq`` entry's value is pytx's signal string (node.lists stores every vPDQ format that
way); its entry id is the listed video's id, so a ``vpdq`` sighting names the entry like any
other. Retired entries and entries an analyst disabled (issue 14) never match (as in
MatchIndex.from_db). A node without ``vpdq`` entries gets no index at all (one query on the
indexed ``family`` column finds no row), so an image-only node's cycle pays next to nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from node.lists.base import VideoFamily
from node.matching.matcher import matchable
from node.matching.video_index import VideoIndex
from node.matching.vpdq import Frame, VpdqSettings
from node.matching.vpdq_text import VpdqTextError, parse_pytx
from node.models import ListEntry

if TYPE_CHECKING:
    from node.config import MatchSettings


def _live_vpdq(session: Session) -> list[tuple[int, str]]:
    rows = session.exec(
        select(ListEntry.id, ListEntry.value).where(
            matchable(), col(ListEntry.family) == VideoFamily.VPDQ.value
        )
    ).all()
    return [(entry_id, value) for entry_id, value in rows if entry_id is not None]


def vpdq_settings(match: MatchSettings) -> VpdqSettings:
    """The node's ``[match] vpdq_*`` settings as the comparison's parameters."""
    return VpdqSettings(
        max_distance=match.vpdq_max_distance,
        min_quality=match.vpdq_min_quality,
        query_match_percent=match.vpdq_query_match_percent,
        compared_match_percent=match.vpdq_compared_match_percent,
    )


def video_index_from_db(engine: Engine, settings: VpdqSettings | None = None) -> VideoIndex | None:
    """The VideoIndex of every live ``vpdq`` entry; None when there is none.

    An entry whose stored string no longer parses (it was validated at import, so only a
    damaged database does this) is skipped rather than ending the cycle: one bad row must not
    stop every other entry from matching."""
    with Session(engine) as session:
        rows = _live_vpdq(session)
    if not rows:
        return None
    videos: list[tuple[int, list[Frame]]] = []
    for entry_id, value in rows:
        try:
            videos.append((entry_id, parse_pytx(value)))
        except VpdqTextError:
            continue
    return VideoIndex.build(videos, settings)
