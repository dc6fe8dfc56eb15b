"""One notices run, wired from the node's settings: re-check, re-notice/escalate, build new
notices, plan first rounds, deliver. `libra node notices ...` and the `serve` job call it.

``now`` is a parameter everywhere below (the caller's clock), so the world test drives days
of re-checks in seconds.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import Engine

from node.config import NodeSettings, NoticeSettings, lab_of
from node.contacts.model import NO_CONTACT, ContactResolver
from node.contacts.resolver import contact_resolver
from node.dispatch import FunctionClient, load_request_signer
from node.matching.index.persist import current as persisted_index
from node.matching.matcher import MatchIndex
from node.matching.video_lists import vpdq_settings
from node.matching.vpdq import VpdqSettings
from node.notices.delivery import (
    Channels,
    DeliveryOutcome,
    deliver_due,
    first_round_targets,
    open_round,
)
from node.notices.queue import Created, build_notices
from node.notices.recheck import FunctionLike, RecheckSummary, due_rounds, recheck
from node.service import list_key_of, thresholds
from protocol.models import utcnow

NOTICES_LOCK_FILE = "notices.lock"


class NoticesBusy(Exception):
    """Another notices run of this node is in progress (`serve` and a manual run at once)."""


@contextmanager
def notices_lock(data_dir: Path) -> Iterator[None]:
    """One notices run at a time per node, so a round is never planned or sent twice."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / NOTICES_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise NoticesBusy(
                f"another notices run of this node is in progress ({data_dir})"
            ) from exc
        yield
    finally:
        os.close(fd)


@dataclass
class NoticesRun:
    created: list[Created] = field(default_factory=list)
    rechecked: RecheckSummary = field(default_factory=RecheckSummary)
    rounds_opened: int = 0
    escalations: int = 0
    blocked: int = 0
    delivered: DeliveryOutcome = field(default_factory=DeliveryOutcome)


async def run_notices(
    engine: Engine,
    settings: NoticeSettings,
    *,
    resolver: ContactResolver,
    function: FunctionLike,
    index: MatchIndex,
    channels: Channels,
    now: datetime,
    build: bool = True,
    check: bool = True,
    dihedral: bool = False,
    clock: Callable[[], datetime] | None = None,
    vpdq: VpdqSettings | None = None,
) -> NoticesRun:
    run = NoticesRun()
    targets = []
    if check:
        run.rechecked = await recheck(
            engine, settings, function, index, now, dihedral=dihedral, vpdq=vpdq
        )
        targets += due_rounds(engine, settings, now)
    if build:
        run.created = build_notices(engine, settings, now)
    targets += first_round_targets(engine)
    for target in targets:
        if target.escalation:
            run.escalations += 1
            contact = NO_CONTACT
        else:
            # RDAP look-ups block: keep them off the event loop.
            contact = await asyncio.to_thread(
                resolver.resolve, target.identity, ip=target.ip, domain=target.domain
            )
        if open_round(engine, settings, channels, target, contact, now):
            run.rounds_opened += 0 if target.escalation else 1
        else:
            run.blocked += 1
    run.delivered = await deliver_due(engine, settings, channels, now, clock)
    return run


async def notices_once(
    settings: NodeSettings,
    engine: Engine,
    *,
    build: bool = True,
    check: bool = True,
    now: datetime | None = None,
    clock: Callable[[], datetime] | None = None,
) -> NoticesRun:
    """One run with the real function client, match index, contacts and channels.

    ``clock`` (node.clock; a lab clock under ``--at``) stamps the run: ``now`` is read from it
    at the start, deliveries are stamped by it as they happen."""
    with notices_lock(settings.data_dir):
        return await _notices_once(settings, engine, build=build, check=check, now=now, clock=clock)


async def _notices_once(
    settings: NodeSettings,
    engine: Engine,
    *,
    build: bool,
    check: bool,
    now: datetime | None,
    clock: Callable[[], datetime] | None,
) -> NoticesRun:
    if clock is not None and now is None:
        now = clock()
    elif clock is None and now is None:
        clock = utcnow
    index = persisted_index(engine, settings.index_dir, list_key_of(settings), thresholds(settings))
    function = FunctionClient(
        settings.function_url,
        concurrency=settings.dispatch.concurrency,
        retries=settings.dispatch.retries,
        timeout_s=settings.dispatch.timeout_s,
        auth=load_request_signer(settings.node_id, settings.function_key_file),
    )
    channels = Channels(settings.notices, lab_of(settings))
    try:
        return await run_notices(
            engine,
            settings.notices,
            resolver=contact_resolver(settings, engine),
            function=function,
            index=index,
            channels=channels,
            now=now or utcnow(),
            build=build,
            check=check,
            dihedral=settings.match.dihedral,
            clock=clock,
            vpdq=vpdq_settings(settings.match),  # re-checks vPDQ copies as the crawl matches them
        )
    finally:
        await channels.aclose()
        await function.aclose()
