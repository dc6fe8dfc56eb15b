"""Crawler workers sharing one node's frontier through Redis Streams (frontier/redis_streams.py).

``RedisWorker`` owns up to ``hosts_at_once`` hosts at a time (default ``crawl.concurrency``),
works each owned host with up to ``crawl.per_host_concurrency`` jobs at once, and has at most
``crawl.concurrency`` requests in flight overall (the page logic and its semaphores are the
in-process crawler's, ``crawler.Run.process``). Issue 17: a worker that fetched one page per host
at a time, 8 hosts at most, with four Redis round trips per page, was 4x slower with two
workers than one SQLite process. Now the Redis work per page is a share of a batch: a host's
jobs are read 16 at a time, the results of all jobs that finish while a write is under way go
in the next single atomic write, one heartbeat renews every lease, and nothing polls with
sleeps: an idle worker blocks on the host stream. Each worker owns at most its fair share of
the hosts with work (hosts / live workers, rounded up) and hands the excess back, so the hosts
spread over the workers that are running, including ones started late.

``RedisCrawler`` is what the node's cycle uses when ``crawl.frontier = "redis"``: it queues the
seeds, runs a local worker and yields the events that all workers (local or on other machines,
``libra node crawl-worker``) write to the run's event stream. Start extra workers with
``libra node crawl-worker`` (``--forever`` to keep waiting for work) or
``python -m node.crawl.worker --config node.toml``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import AsyncGenerator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

from node.config import NodeSettings
from node.crawl.crawler import (
    AuditHook,
    CrawlEvent,
    CrawlLimits,
    CrawlStats,
    ImageFound,
    PageFailed,
    PageFetched,
    Run,
    run_key,
)
from node.crawl.frontier import FrontierItem, MemoryFrontier
from node.crawl.frontier.redis_streams import Completion, Job, RedisFrontier
from node.crawl.links import canonical_key, normalize_url, url_host
from node.crawl.politeness import HostPolicy
from node.crawl.scope import Scope

logger = logging.getLogger(__name__)

READ_BATCH = 16  # jobs of one host read per round trip
BALANCE_S = 1.0  # how often a worker recomputes its fair share of the hosts
IDLE_BLOCK_MS = 500  # longest wait on the host stream (then: run over? a lease to take over?)
STOP_GRACE_S = 10.0  # default: on stop, jobs in flight get this long to finish, then are requeued


def event_to_dict(event: CrawlEvent) -> dict[str, Any]:
    kind = {PageFetched: "fetched", PageFailed: "failed", ImageFound: "image"}[type(event)]
    return {"t": kind, **asdict(event)}


def event_from_dict(data: dict[str, Any]) -> CrawlEvent:
    kind = data.pop("t")
    if kind == "fetched":
        return PageFetched(**data)
    if kind == "failed":
        return PageFailed(**data)
    return ImageFound(**data)


@dataclass
class WorkerStats:
    hosts_owned: list[str] = field(default_factory=list)
    hosts_taken_over: list[str] = field(default_factory=list)
    jobs_done: int = 0
    jobs_reclaimed: int = 0  # jobs a dead worker had read but not finished
    jobs_returned: int = 0  # jobs read but given back unfinished (stop, lost lease)
    leases_lost: int = 0


@dataclass
class _Owned:
    entry_id: str
    host: str
    lost: asyncio.Event = field(default_factory=asyncio.Event)  # another worker has it now
    give_back: asyncio.Event = field(default_factory=asyncio.Event)  # over this worker's share


class _Completer:
    """Writes finished jobs to Redis in batches: every job that finishes while a write is under
    way goes in the next one (no timer: a lone job is written at once)."""

    def __init__(self, frontier: RedisFrontier, limits: CrawlLimits) -> None:
        self._frontier = frontier
        self._limits = limits
        self._queue: list[tuple[Completion, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._loop())

    async def complete(self, done: Completion) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((done, future))
        self._wake.set()
        await future

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._queue = self._queue, []
            if not batch:
                continue
            try:
                await self._frontier.complete(
                    [c for c, _ in batch], self._limits.max_pages, self._limits.max_pages_per_site
                )
            except Exception as exc:  # every waiting job sees the error
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                _reraise_cancellation(exc)
            else:
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        for _, future in self._queue:
            if not future.done():
                future.set_exception(RuntimeError("worker stopped"))


def _reraise_cancellation(exc: Exception) -> None:
    """Raise CancelledError if this task is being cancelled and ``exc`` stands in for it.

    A cancellation that lands inside a Redis call can come out as another error (the client's
    connection handling, or Python 3.11's ``asyncio.timeout`` when its deadline passes at the
    same moment). A background loop that logged it and went on slept again with its
    cancellation spent, and the worker's shutdown, which awaits the cancelled loop, waited
    forever (seen once in CI: `crawl-worker --forever` never exited on SIGTERM)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from exc


class RedisWorker:
    def __init__(
        self,
        frontier: RedisFrontier,
        client: httpx.AsyncClient,
        limits: CrawlLimits,
        *,
        name: str | None = None,
        hosts_at_once: int | None = None,
        lease_s: float = 30.0,
        audit: AuditHook | None = None,
        stop_grace_s: float = STOP_GRACE_S,
    ) -> None:
        self.frontier = frontier
        self.limits = limits
        self.stop_grace_s = stop_grace_s
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        # One host works at most per_host_concurrency jobs, so this many hosts can fill
        # crawl.concurrency; Run's global semaphore bounds the requests in flight.
        self.hosts_at_once = max(1, hosts_at_once or limits.concurrency)
        self.lease_s = lease_s
        self.stats = WorkerStats()
        self._owned: dict[str, _Owned] = {}
        self._share = self.hosts_at_once  # hosts this worker may own now (fair share)
        self._stop = asyncio.Event()
        self._client = client
        self._audit = audit or (lambda host, reason: None)
        self._epoch = "0"  # P:epoch of the run the caches below belong to
        self._sent, self._run = self._fresh_run()

    def _fresh_run(self) -> tuple[MemoryFrontier, Run]:
        """The page logic of the in-process crawler with empty per-run caches (images emitted,
        links sent, robots.txt): a worker that outlives a run (``--forever``) starts each run
        afresh, like the in-process crawler. The shared seen-set and budgets are in Redis."""
        sent = MemoryFrontier()  # links already sent to Redis: Run skips these "seen" ones
        run = Run(
            self._client,
            self.limits,
            CrawlStats(),
            sent,
            Scope(self.limits.scope_rules()),
            self._audit,
        )
        return sent, run

    def stop(self) -> None:
        """Stop taking work; jobs in flight finish (or are queued again after a grace)."""
        self._stop.set()

    async def run(self, idle_exit: bool = True) -> WorkerStats:
        """Work until the run has nothing outstanding (or, with ``idle_exit`` False, until
        ``stop()``)."""
        await self.frontier.setup()
        await self.frontier.register(self.name)
        completer = _Completer(self.frontier, self.limits)
        heartbeat = asyncio.create_task(self._heartbeat())
        balancer = asyncio.create_task(self._balance())
        stopping: asyncio.Task[Any] = asyncio.create_task(self._stop.wait())
        tasks: set[asyncio.Task[None]] = set()
        last_take_over = float("-inf")
        try:
            while not self._stop.is_set():
                free = self._share - len(tasks)
                if free <= 0:
                    await asyncio.wait({*tasks, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    continue
                # Expired leases are looked for a few times per lease, not on every take.
                now = time.monotonic()
                take_over = now - last_take_over >= self.lease_s / 4
                if take_over:
                    last_take_over = now
                taking = asyncio.create_task(
                    self.frontier.take_hosts(
                        self.name, free, block_ms=IDLE_BLOCK_MS, take_over=take_over
                    )
                )
                await asyncio.wait({taking, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not taking.done():
                    taking.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await taking
                    break
                got = taking.result()
                for entry_id, host, taken_over in got:
                    task = asyncio.create_task(
                        self._work_host(entry_id, host, taken_over, completer)
                    )
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                if got:
                    continue
                if idle_exit and not tasks and await self.frontier.outstanding() <= 0:
                    break
        finally:
            self._stop.set()  # host tasks return their unstarted jobs and stop
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for result in results:
                if isinstance(result, Exception):
                    logger.error("worker %s: host task failed: %r", self.name, result)
            for task in (heartbeat, balancer, stopping):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await completer.close()
            with contextlib.suppress(Exception):
                await self.frontier.unregister(self.name)
        return self.stats

    async def _work_host(
        self, entry_id: str, host: str, taken_over: bool, completer: _Completer
    ) -> None:
        self.stats.hosts_owned.append(host)
        if taken_over:
            self.stats.hosts_taken_over.append(host)
            logger.warning("worker %s took over host %s (lease expired)", self.name, host)
        owned = self._owned[entry_id] = _Owned(entry_id, host)
        policy = self._run.host_policy(host)
        buffer: deque[Job] = deque()
        running: dict[asyncio.Task[None], Job] = {}
        unfinished: list[Job] = []
        try:
            buffer.extend(await self.frontier.claim_jobs(self.name, host))
            self.stats.jobs_reclaimed += len(buffer)
            drained = False
            lost: asyncio.Task[Any] = asyncio.create_task(owned.lost.wait())
            stopping: asyncio.Task[Any] = asyncio.create_task(self._stop.wait())
            try:
                while not owned.lost.is_set() and not self._stop.is_set():
                    while (
                        len(running) < self.limits.per_host_concurrency
                        and not owned.give_back.is_set()
                    ):
                        if not buffer and not drained:
                            epoch, got = await self.frontier.read_jobs(self.name, host, READ_BATCH)
                            if epoch != self._epoch:  # a new run: forget the last one's caches
                                self._epoch = epoch
                                self._sent, self._run = self._fresh_run()
                            buffer.extend(got)
                            drained = not got
                        if not buffer:
                            break
                        job = buffer.popleft()
                        running[asyncio.create_task(self._job(job, host, policy, completer))] = job
                    if not running:
                        break  # nothing read, nothing in flight (or given back)
                    done, _ = await asyncio.wait(
                        {*running, lost, stopping}, return_when=asyncio.FIRST_COMPLETED
                    )
                    for task in done & running.keys():
                        job = running.pop(task)
                        if (error := task.exception()) is not None:
                            unfinished.append(job)  # not recorded: given back below
                            raise error
                    drained = False  # a finished job may have queued links to this host
            finally:
                for waiter in (lost, stopping):
                    waiter.cancel()
            if running:  # stopping or lost: let them finish, within a grace
                _, late = await asyncio.wait(running, timeout=self.stop_grace_s)
                for task in late:
                    task.cancel()
                await asyncio.gather(*running, return_exceptions=True)
                unfinished += [running[t] for t in late]
        except BaseException:
            unfinished += running.values()
            for task in running:
                task.cancel()
            raise
        finally:
            unfinished += buffer
            del self._owned[entry_id]
            self.stats.jobs_returned += len(unfinished)
            with contextlib.suppress(Exception):
                # Shielded: a cancelled worker still hands its host and unfinished jobs back.
                await asyncio.shield(self.frontier.release(self.name, entry_id, host, unfinished))

    async def _job(self, job: Job, host: str, policy: HostPolicy, completer: _Completer) -> None:
        events, new, outcome = await self._run.process(job.item, policy)
        links = [(key, url_host(child.url), child) for key, child in new]
        await completer.complete(
            Completion(
                host=host,
                entry_id=job.entry_id,
                key=canonical_key(job.item.url),
                outcome=outcome,
                events=json.dumps([event_to_dict(e) for e in events], separators=(",", ":"))
                if events
                else "",
                new=links,
            )
        )
        for key, _host, child in links:
            self._sent.add(key, child)
        self.stats.jobs_done += 1

    async def _balance(self) -> None:
        """Keeps this worker within its fair share of the hosts with work: the hosts it owns
        beyond it go back to the pool once their jobs in flight are done."""
        while True:
            await asyncio.sleep(BALANCE_S)
            try:
                workers, hosts = await self.frontier.workers_and_hosts()
            except Exception as exc:  # Redis away for a moment: keep the last share
                _reraise_cancellation(exc)
                logger.warning("worker %s: cannot compute its share of hosts: %r", self.name, exc)
                continue
            self._share = max(1, min(self.hosts_at_once, -(-hosts // workers)))
            keeping = [o for o in self._owned.values() if not o.give_back.is_set()]
            for owned in keeping[self._share :]:
                owned.give_back.set()

    async def _heartbeat(self) -> None:
        """Renews every owned host's lease in one call, three times per lease."""
        while True:
            await asyncio.sleep(self.lease_s / 3)
            owned = list(self._owned.values())
            try:
                renewed = await self.frontier.renew_all(self.name, [o.entry_id for o in owned])
            except Exception as exc:  # retried at the next beat, well within the lease
                _reraise_cancellation(exc)
                logger.warning("worker %s: lease renewal failed: %r", self.name, exc)
                continue
            for host, ok in zip(owned, renewed, strict=True):
                if not ok and self._owned.get(host.entry_id) is host:
                    self.stats.leases_lost += 1
                    logger.warning("worker %s lost host %s (lease expired)", self.name, host.host)
                    host.lost.set()


class RedisCrawler:
    """A crawler (for node.cycle) whose frontier is in Redis, shared with other workers."""

    def __init__(
        self,
        frontier: RedisFrontier,
        client: httpx.AsyncClient,
        limits: CrawlLimits,
        *,
        local_workers: int = 1,
        lease_s: float = 30.0,
        audit: AuditHook | None = None,
        owns_redis: bool = False,
    ) -> None:
        self.frontier = frontier
        self.limits = limits
        self._owns_redis = owns_redis
        self._workers = [
            RedisWorker(
                frontier,
                client,
                limits,
                name=f"{socket.gethostname()}-{os.getpid()}-{n}",
                lease_s=lease_s,
                audit=audit,
                stop_grace_s=0.0,  # a cycle left early requeues its jobs in flight at once
            )
            for n in range(local_workers)
        ]
        self.stats = CrawlStats()

    async def crawl(self, seeds: Sequence[str]) -> AsyncGenerator[CrawlEvent, None]:
        await self.frontier.setup()
        scope = Scope(self.limits.scope_rules())
        items = []
        for seed in seeds:
            url = normalize_url(seed)
            if url is None:
                yield PageFailed(url=seed, host="", reason="invalid_url")
                continue
            item = FrontierItem(url=url, depth=0, site=scope.site_of(url), referrer=url)
            items.append((canonical_key(url), url_host(url), item))
        r = self.frontier.r
        key = run_key([i.url for _, _, i in items])
        # A run crawled to the end is over: this cycle starts a new one (as with SQLite).
        current = await r.get(self.frontier.key("run"))
        if current is not None and current == await r.get(self.frontier.key("done")):
            await self.frontier.reset_run()
            current = None
        if current not in (None, key.encode(), key):
            raise RuntimeError(
                f"Redis prefix {self.frontier.prefix} holds a run of other seeds: use another "
                "crawl.redis_prefix or reset it"
            )
        await r.set(self.frontier.key("run"), key)
        await self.frontier.add(items, self.limits.max_pages, self.limits.max_pages_per_site)
        tasks = [asyncio.create_task(w.run()) for w in self._workers]
        cursor = (await r.get(self.frontier.key("cursor"))) or "0-0"
        cursor = cursor.decode() if isinstance(cursor, bytes) else cursor
        try:
            while True:
                batch = await self.frontier.read_events(cursor, block_ms=200)
                for entry_id, events in batch:
                    for data in events:
                        event = event_from_dict(data)
                        self.stats.pages_scheduled += isinstance(event, PageFetched | PageFailed)
                        yield event
                    cursor = entry_id
                if batch:
                    await r.set(self.frontier.key("cursor"), cursor)
                # At 0 outstanding, drain what was written since the last read, then stop.
                elif await self.frontier.outstanding() <= 0 and not await self.frontier.read_events(
                    cursor, block_ms=None
                ):
                    break
            await r.set(self.frontier.key("done"), key)  # only a run crawled to the end
        finally:
            for w in self._workers:
                w.stop()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._owns_redis:
                await r.aclose()


async def run_worker(
    settings: NodeSettings,
    name: str | None,
    hosts_at_once: int | None = None,
    *,
    forever: bool = False,
    stop_grace_s: float = STOP_GRACE_S,
) -> WorkerStats:
    """One worker process on the node's Redis frontier, until the run has nothing left (or,
    ``forever``, until SIGINT/SIGTERM). A signal stops it cleanly either way: jobs in flight
    finish (or are queued again after a grace), unstarted ones are queued again for others."""
    from node.config import lab_of
    from node.crawl.limits import limits_from
    from node.net import make_client

    limits = limits_from(settings)
    client = make_client(
        lab_of(settings),
        timeout=limits.timeout_s,
        user_agent=limits.user_agent,
        max_connections=max(32, limits.concurrency),
    )
    redis = aioredis.Redis.from_url(settings.crawl.redis_url)
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    try:
        frontier = RedisFrontier(redis, settings.crawl.redis_prefix, lease_s=settings.crawl.lease_s)
        worker = RedisWorker(
            frontier,
            client,
            limits,
            name=name,
            hosts_at_once=hosts_at_once,
            lease_s=settings.crawl.lease_s,
            stop_grace_s=stop_grace_s,
        )
        for sig in signals:
            loop.add_signal_handler(sig, worker.stop)
        return await worker.run(idle_exit=not forever)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        await client.aclose()
        await redis.aclose()


async def _main(args: argparse.Namespace) -> int:
    from node.config import load_settings

    stats = await run_worker(
        load_settings(args.config),
        args.name,
        args.hosts_at_once,
        forever=args.forever,
        stop_grace_s=args.stop_grace,
    )
    print(json.dumps(asdict(stats)), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A LIBRA crawler worker on a Redis frontier.")
    parser.add_argument("--config", type=Path, required=True, help="the node's node.toml")
    parser.add_argument("--name", default=None, help="consumer name (default host-pid)")
    parser.add_argument(
        "--hosts-at-once", type=int, default=0, help="hosts owned at once (0: crawl.concurrency)"
    )
    parser.add_argument(
        "--forever", action="store_true", help="wait for new work until SIGINT/SIGTERM"
    )
    parser.add_argument(
        "--stop-grace", type=float, default=STOP_GRACE_S, help="seconds jobs may finish on stop"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    return asyncio.run(_main(args))


if __name__ == "__main__":
    raise SystemExit(main())
