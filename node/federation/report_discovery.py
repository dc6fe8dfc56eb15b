"""What a report says about discovery (issue 14): its ``discovery`` rows and its held sightings.

``discovery`` gives per (country, ASN, hoster) three counts, never a hash, a URL or a host:

- ``candidates``: Candidate rows (images: a cluster's representative and its near-duplicates
  alike) first found in the report's cycles (``first_cycle_id``). Each cycle is reported exactly
  once, so each image is counted once, with the cycle that found it.
- ``confirmed`` / ``rejected``: candidates an analyst decided, counted by ``decided_at`` with the
  first crawl cycle that started after the verdict: a verdict decided between the starts of
  cycles c-1 and c is reported with cycle c. That is the cycle that first matches a confirmed
  image as a listed item (and first suppresses a rejected one), so the report that shows the
  verdict is also the first whose cells reflect it; and because each cycle is reported once, each
  verdict is too, however often the current period is reported. Crawl cycles are never erased
  (retention erases their rows, not the cycle), so the windows never move.

The rows are placed where the candidate was found (its attribution, made like a sighting's).

Held sightings (the flood guard): a sighting with a HeldSighting row in state ``held`` or
``discarded`` is left out of the cells when its cycle is reported; a ``released`` one is
reported like any other. A sighting released only after its cycle was reported stays out of the
picture: carrying it in a later report would place it in a period and beside a coverage it was
not found in (a report's matches must fit its images hashed per hoster). The node's own
sightings still hold it (notices never take a held sighting: node/notices/queue.py).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, or_
from sqlalchemy import select as sa_select
from sqlmodel import Session, col

from node.discovery.models import CONFIRMED, DISCARDED, HELD, REJECTED, Candidate, HeldSighting
from node.models import CrawlCycle, Sighting
from protocol.models import HosterDiscovery

Where = tuple[str, int, str]  # (country, ASN, hoster)


def unreported_held() -> ColumnElement[bool]:
    """A condition on Sighting: not held and not discarded by the flood guard."""
    kept_out = sa_select(col(HeldSighting.sighting_id)).where(
        col(HeldSighting.state).in_((HELD, DISCARDED))
    )
    return col(Sighting.id).not_in(kept_out)


def _verdict_windows(session: Session, cycle_ids: list[int]) -> list[ColumnElement[bool]]:
    """Per cycle, the condition on Candidate.decided_at of the verdicts it reports:
    [start of the cycle before it, its own start); the first cycle ever: before its start."""
    windows: list[ColumnElement[bool]] = []
    cycles = session.execute(
        sa_select(col(CrawlCycle.id), col(CrawlCycle.started_at)).where(
            col(CrawlCycle.id).in_(cycle_ids)
        )
    ).all()
    for cycle_id, started in cycles:
        # The cycle before: the latest start ordered by (started_at, id), ties broken by id.
        before = session.execute(
            sa_select(func.max(col(CrawlCycle.started_at))).where(
                or_(
                    col(CrawlCycle.started_at) < started,
                    and_(col(CrawlCycle.started_at) == started, col(CrawlCycle.id) < cycle_id),
                )
            )
        ).scalar_one()
        decided = col(Candidate.decided_at)
        upper = decided < started
        windows.append(upper if before is None else and_(decided >= before, upper))
    return windows


def build_discovery(session: Session, cycle_ids: list[int]) -> list[HosterDiscovery]:
    """The report's discovery rows for ``cycle_ids`` (its unreported cycles), sorted by place;
    places where all three counts are zero are left out."""
    if not cycle_ids:
        return []
    found: Counter[Where] = Counter()
    for country, asn, hoster, count in session.execute(
        sa_select(col(Candidate.country), col(Candidate.asn), col(Candidate.hoster), func.count())
        .where(col(Candidate.first_cycle_id).in_(cycle_ids))
        .group_by(col(Candidate.country), col(Candidate.asn), col(Candidate.hoster))
    ).all():
        found[(country, int(asn), hoster)] += int(count)
    verdicts: dict[str, Counter[Where]] = {CONFIRMED: Counter(), REJECTED: Counter()}
    windows = _verdict_windows(session, cycle_ids)
    if windows:
        for country, asn, hoster, state, count in session.execute(
            sa_select(
                col(Candidate.country),
                col(Candidate.asn),
                col(Candidate.hoster),
                col(Candidate.state),
                func.count(),
            )
            .where(col(Candidate.state).in_((CONFIRMED, REJECTED)), or_(*windows))
            .group_by(
                col(Candidate.country),
                col(Candidate.asn),
                col(Candidate.hoster),
                col(Candidate.state),
            )
        ).all():
            verdicts[state][(country, int(asn), hoster)] += int(count)
    places = set(found) | set(verdicts[CONFIRMED]) | set(verdicts[REJECTED])
    return [
        HosterDiscovery(
            country=where[0],
            asn=where[1],
            hoster=where[2],
            candidates=found[where],
            confirmed=verdicts[CONFIRMED][where],
            rejected=verdicts[REJECTED][where],
        )
        for where in sorted(places)
    ]


def verdict_cycle(session: Session, decided_at: datetime) -> int | None:
    """The cycle whose report counts a verdict decided at ``decided_at`` (the first cycle
    started after it), or None while no such cycle exists: for operators and tests."""
    row = session.execute(
        sa_select(col(CrawlCycle.id))
        .where(col(CrawlCycle.started_at) > decided_at)
        .order_by(col(CrawlCycle.started_at), col(CrawlCycle.id))
        .limit(1)
    ).first()
    return None if row is None else int(row[0])
