"""A report's coverage: pages fetched and images hashed per hoster (issue 16).

Both are attributed exactly as sightings are (node/cycle.py): images by the attribution stored
with each AnalysedImage at record time, pages by the address that served them. Coverage is
given only when it is complete, as the protocol requires (protocol.models.Report): it sums to
the denominators, every cell's hoster has a row and no hoster has more matches than images
hashed. Cycles recorded before node migration n0005 carry no attribution of their effort; a
report that holds one (or any other inconsistency) goes without coverage, with a warning,
rather than with figures that would be wrong.
"""

from __future__ import annotations

import logging
from collections import Counter

from sqlalchemy import func
from sqlmodel import Session, col, select

from node.models import AnalysedImage, HosterPages
from protocol.models import Denominators, HosterCoverage, ReportCell

logger = logging.getLogger(__name__)

Where = tuple[str, int, str]  # (country, ASN, hoster)


def build_coverage(
    session: Session, cycle_ids: list[int], cells: list[ReportCell], denominators: Denominators
) -> list[HosterCoverage]:
    """Complete coverage of ``cycle_ids``, or [] when it cannot be complete."""
    if not cycle_ids:
        return []
    images: Counter[Where] = Counter()
    unplaced = 0
    rows = session.exec(
        select(AnalysedImage.country, AnalysedImage.asn, AnalysedImage.hoster, func.count())
        .where(col(AnalysedImage.cycle_id).in_(cycle_ids))
        .group_by(col(AnalysedImage.country), col(AnalysedImage.asn), col(AnalysedImage.hoster))
    ).all()
    for country, asn, hoster, count in rows:
        if country is None or asn is None or hoster is None:
            unplaced += int(count)  # analysed before migration n0005
        else:
            images[(country, asn, hoster)] += int(count)
    pages: Counter[Where] = Counter()
    for country, asn, hoster, count in session.exec(
        select(
            HosterPages.country,
            HosterPages.asn,
            HosterPages.hoster,
            func.sum(HosterPages.pages_fetched),
        )
        .where(col(HosterPages.cycle_id).in_(cycle_ids))
        .group_by(col(HosterPages.country), col(HosterPages.asn), col(HosterPages.hoster))
    ).all():
        pages[(country, asn, hoster)] += int(count or 0)
    coverage = [
        HosterCoverage(
            country=where[0],
            asn=where[1],
            hoster=where[2],
            pages_fetched=pages[where],
            images_hashed=images[where],
        )
        for where in sorted(set(images) | set(pages))
    ]
    problem = _incomplete(coverage, cells, denominators, unplaced)
    if problem is not None:
        logger.warning("report without coverage: %s", problem)
        return []
    return coverage


def _incomplete(
    coverage: list[HosterCoverage],
    cells: list[ReportCell],
    denominators: Denominators,
    unplaced: int,
) -> str | None:
    """Why ``coverage`` is not complete (the protocol's rules), or None."""
    if unplaced:
        return f"{unplaced} image(s) were analysed before their attribution was recorded"
    pages = sum(row.pages_fetched for row in coverage)
    images = sum(row.images_hashed for row in coverage)
    if pages != denominators.pages_fetched:
        return f"pages per hoster sum to {pages}, not {denominators.pages_fetched}"
    if images != denominators.images_hashed:
        return f"images per hoster sum to {images}, not {denominators.images_hashed}"
    hashed = {(r.country, r.asn, r.hoster): r.images_hashed for r in coverage}
    matched: Counter[Where] = Counter()
    for cell in cells:
        matched[(cell.country, cell.asn, cell.hoster)] += cell.matches
    for where, count in matched.items():
        if count > hashed.get(where, 0):
            return f"{count} match(es) at {where} but {hashed.get(where, 0)} image(s) hashed"
    return None
