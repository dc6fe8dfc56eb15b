"""A frontier shared by several crawler workers through Redis Streams, one owner per host.

Keys under one prefix ``P`` (one crawl run per prefix):

- ``P:seen`` (set): canonical keys of every URL ever queued in the run (the seen-set).
- ``P:hosts`` (stream, group ``crawlers``): one entry per host that has work. Reading an entry
  makes a worker the host's owner; the entry stays *pending* for that worker while it works the
  host. The owner renews its lease by re-claiming the entry (XCLAIM ... JUSTID resets its idle
  time) more often than ``lease_s``. A worker that dies stops renewing: after ``lease_s`` another
  worker takes the host over (XCLAIM of an entry idle that long). Both steps are Lua scripts that
  look at the entry's current owner first, so ownership moves exactly once per expiry: a worker
  never "takes over" a host it owns already (a stalled event loop would otherwise start a second
  task on the same host), and a renewal after a take-over fails instead of claiming it back.
- ``P:jobs:<host>`` (stream, group ``crawlers``): the host's URLs. A job is acknowledged only
  after its outcome and new links are written, so a new owner XAUTOCLAIMs the jobs its dead
  predecessor had read but not finished, and fetches them.
- ``P:active`` (set): hosts that currently have an entry in ``P:hosts``.
- ``P:outstanding`` (counter): jobs queued or in flight; the run is over at 0.
- ``P:events`` (stream): one entry per finished job, the JSON list of its PageFetched /
  PageFailed / ImageFound events, for the node's cycle.
- ``P:outcome`` (hash): canonical key -> outcome ("ok", "image" or a failure reason).
- ``P:scheduled`` (counter): pages queued (the per-run page budget).
- ``P:site:<site>`` (counter): pages queued of one seed site (``crawl.max_pages_per_site``),
  checked and incremented in the same Lua script as the seen-set, so concurrent workers can
  never queue more than the budget of a site.
- ``P:run`` / ``P:done``: the run key of the seeds being crawled, and of the last run that was
  crawled to the end (the next cycle then starts a new run: ``reset_run``).
- ``P:epoch`` (counter): runs started afresh under the prefix; a worker that sees it change
  forgets its per-run caches.

Round trips (issue 17): a worker reads a host's jobs in batches (``read_jobs``), writes the
results of many jobs, from all its hosts, in one atomic script call (``complete``), renews all its
leases in one call (``renew_all``) and gives a host back in one call (``release``). A job's
results count only if its acknowledgement is the first (XACK returns 1), so a job fetched twice
(its owner stalled past its lease and the new owner fetched it too) is counted once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from node.crawl.frontier import FrontierItem

GROUP = "crawlers"
# Pending host entries looked at per take-over attempt (a worker owns at most hosts_at_once).
TAKE_OVER_SCAN = 1000
# Jobs moved per XAUTOCLAIM call when a new owner collects what a dead owner left pending.
CLAIM_BATCH = 100

# Take over one host whose lease expired from ANOTHER worker: the idle pending entries with
# their owners, then XCLAIM (which re-checks the idle time) of the first one not ours.
_TAKE_OVER_SCRIPT = """
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', tonumber(ARGV[3]), '-', '+',
                           tonumber(ARGV[4]))
for _, entry in ipairs(pending) do
  if entry[2] ~= ARGV[2] then
    local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3]), entry[1])
    if claimed[1] then
      return claimed[1]
    end
  end
end
return false
"""

# Renew the leases of the given host entries, each only while this worker still owns it;
# returns one 1 (renewed) or 0 (lost or released) per entry.
_RENEW_SCRIPT = """
local out = {}
for i = 3, #ARGV do
  local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if pending[1] and pending[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
"""

# Queue one new link: seen-set, budgets, outstanding counter, job stream, host announce.
_ADD_FUNCTION = """
local function add(prefix, max_pages, max_per_site, key, host, site, job)
  local scheduled = tonumber(redis.call('GET', prefix .. ':scheduled') or '0')
  local site_key = prefix .. ':site:' .. site
  local site_ok = max_per_site <= 0
    or tonumber(redis.call('GET', site_key) or '0') < max_per_site
  if scheduled < max_pages and site_ok and redis.call('SADD', prefix .. ':seen', key) == 1 then
    redis.call('INCR', prefix .. ':scheduled')
    redis.call('INCR', site_key)
    redis.call('INCR', prefix .. ':outstanding')
    local jobs = prefix .. ':jobs:' .. host
    pcall(redis.call, 'XGROUP', 'CREATE', jobs, 'crawlers', '0', 'MKSTREAM')
    redis.call('XADD', jobs, '*', 'job', job)
    if redis.call('SADD', prefix .. ':active', host) == 1 then
      redis.call('XADD', prefix .. ':hosts', '*', 'host', host)
    end
    return 1
  end
  return 0
end
"""

_ADD_SCRIPT = (
    _ADD_FUNCTION
    + """
local prefix, max_pages, max_per_site = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local added = 0
for i = 4, #ARGV, 4 do
  added = added + add(prefix, max_pages, max_per_site, ARGV[i], ARGV[i + 1], ARGV[i + 2],
                      ARGV[i + 3])
end
return added
"""
)

# Finish many jobs atomically. Per job: host, entry id, key, outcome, events (JSON list or ''),
# the number of new links, then 4 values per link. A job whose XACK is not the first (it was
# finished already by a worker that took its host over) changes nothing.
_COMPLETE_SCRIPT = (
    _ADD_FUNCTION
    + """
local prefix, max_pages, max_per_site = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local added = 0
local i = 4
while i <= #ARGV do
  local host, entry, key, outcome, events = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3],
                                            ARGV[i + 4]
  local links = tonumber(ARGV[i + 5])
  local first = i + 6
  i = first + 4 * links
  if redis.call('XACK', prefix .. ':jobs:' .. host, 'crawlers', entry) == 1 then
    for j = first, i - 1, 4 do
      added = added + add(prefix, max_pages, max_per_site, ARGV[j], ARGV[j + 1], ARGV[j + 2],
                          ARGV[j + 3])
    end
    if events ~= '' then
      redis.call('XADD', prefix .. ':events', '*', 'e', events)
    end
    redis.call('HSET', prefix .. ':outcome', key, outcome)
    redis.call('DECR', prefix .. ':outstanding')
  end
end
return added
"""
)

# Give a host back. ARGV: prefix, worker, host entry id, host, then (job id, job) pairs of jobs
# this worker read but did not finish: they are queued again as new entries (only those still
# pending for this worker). Then, if the worker still owns the host entry, it is acknowledged
# and deleted, and the host is announced again when unread jobs remain (else it leaves the
# active set). A worker that lost the host only re-announces it if nobody has it. Atomic, so a
# link queued for the host at the same time is never stranded.
_RELEASE_SCRIPT = """
local prefix, worker, entry, host = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local jobs = prefix .. ':jobs:' .. host
local hosts = prefix .. ':hosts'
for i = 5, #ARGV, 2 do
  local pending = redis.call('XPENDING', jobs, 'crawlers', ARGV[i], ARGV[i], 1)
  if pending[1] and pending[1][2] == worker then
    redis.call('XACK', jobs, 'crawlers', ARGV[i])
    redis.call('XADD', jobs, '*', 'job', ARGV[i + 1])
  end
end
local function newer(a, b)
  local a1, a2 = string.match(a, '(%d+)-(%d+)')
  local b1, b2 = string.match(b, '(%d+)-(%d+)')
  a1, a2, b1, b2 = tonumber(a1), tonumber(a2), tonumber(b1), tonumber(b2)
  return a1 > b1 or (a1 == b1 and a2 > b2)
end
local unread = false
local pending_jobs = 0
local last = redis.call('XREVRANGE', jobs, '+', '-', 'COUNT', 1)
if last[1] then
  for _, group in ipairs(redis.call('XINFO', 'GROUPS', jobs)) do
    local name, delivered, pending
    for k = 1, #group, 2 do
      if group[k] == 'name' then name = group[k + 1]
      elseif group[k] == 'last-delivered-id' then delivered = group[k + 1]
      elseif group[k] == 'pending' then pending = group[k + 1] end
    end
    if name == 'crawlers' then
      unread = newer(last[1][1], delivered)
      pending_jobs = pending
    end
  end
end
local owner = redis.call('XPENDING', hosts, 'crawlers', entry, entry, 1)
local owned = owner[1] and owner[1][2] == worker
if owned then
  redis.call('XACK', hosts, 'crawlers', entry)
  redis.call('XDEL', hosts, entry)
  if unread then
    redis.call('XADD', hosts, '*', 'host', host)
  else
    redis.call('SREM', prefix .. ':active', host)
    if pending_jobs == 0 then
      -- Every job of the host is finished: its entries are dead weight (the group keeps its
      -- last-delivered id, so later jobs are still read).
      redis.call('XTRIM', jobs, 'MAXLEN', 0)
    end
  end
elseif unread and redis.call('SADD', prefix .. ':active', host) == 1 then
  redis.call('XADD', hosts, '*', 'host', host)
end
return owned and 1 or 0
"""


@dataclass(frozen=True)
class Job:
    """One URL of an owned host, read from its job stream (``raw`` is its stored form)."""

    entry_id: str
    item: FrontierItem
    raw: str
    reclaimed: bool = False  # a dead owner had read it but not finished it


@dataclass(frozen=True)
class Completion:
    """A finished job: its outcome, its events (a JSON list, '' for none) and its new links."""

    host: str
    entry_id: str
    key: str
    outcome: str
    events: str
    new: Sequence[tuple[str, str, FrontierItem]] = ()  # (key, host, item)


def encode_item(item: FrontierItem) -> str:
    return json.dumps(asdict(item), separators=(",", ":"))


def decode_item(raw: str) -> FrontierItem:
    return FrontierItem(**json.loads(raw))


class RedisFrontier:
    def __init__(self, client: aioredis.Redis, prefix: str, *, lease_s: float = 30.0) -> None:
        self.r: Any = client  # redis-py's async stubs type replies loosely
        self.prefix = prefix
        self.lease_ms = max(1, int(lease_s * 1000))
        self._take_over = client.register_script(_TAKE_OVER_SCRIPT)
        self._renew = client.register_script(_RENEW_SCRIPT)
        self._add = client.register_script(_ADD_SCRIPT)
        self._complete = client.register_script(_COMPLETE_SCRIPT)
        self._release = client.register_script(_RELEASE_SCRIPT)

    def key(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    async def setup(self) -> None:
        try:
            await self.r.xgroup_create(self.key("hosts"), GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def register(self, worker: str) -> None:
        """List ``worker`` among the host stream's consumers before it reads anything (an idle
        worker shows in XINFO CONSUMERS)."""
        await self.r.xgroup_createconsumer(self.key("hosts"), GROUP, worker)

    async def add(
        self,
        items: Sequence[tuple[str, str, FrontierItem]],
        max_pages: int,
        max_pages_per_site: int = 0,
    ) -> int:
        """Queue (key, host, item) triples not seen before, within the run's page budget and
        (when > 0) ``max_pages_per_site`` pages per seed site; returns how many were new."""
        if not items:
            return 0
        args: list[Any] = [self.prefix, max_pages, max_pages_per_site]
        for key, host, item in items:
            args += [key, host, item.site, encode_item(item)]
        return int(await self._add(args=args))

    async def workers_and_hosts(self) -> tuple[int, int]:
        """(workers alive, hosts with work): a worker is alive if it touched the host stream
        within a lease (a busy one renews its leases, an idle one waits on the stream)."""
        pipe = self.r.pipeline(transaction=False)
        pipe.xinfo_consumers(self.key("hosts"), GROUP)
        pipe.scard(self.key("active"))
        consumers, active = await pipe.execute()
        alive = sum(1 for c in consumers if int(c["idle"]) < self.lease_ms)
        return max(1, alive), int(active)

    async def unregister(self, worker: str) -> None:
        """Drop ``worker`` from the host stream's consumers if it holds no host any more."""
        held = await self.r.xpending_range(
            self.key("hosts"), GROUP, min="-", max="+", count=1, consumername=worker
        )
        if not held:
            await self.r.xgroup_delconsumer(self.key("hosts"), GROUP, worker)

    async def outstanding(self) -> int:
        return int(await self.r.get(self.key("outstanding")) or 0)

    # ---------------------------------------------------------------- host ownership

    async def take_hosts(
        self, worker: str, count: int, block_ms: int | None, *, take_over: bool = True
    ) -> list[tuple[str, str, bool]]:
        """Up to ``count`` hosts this worker now owns, as (entry id, host, taken_over): first one
        whose lease expired (when ``take_over``), else announced ones, waiting up to
        ``block_ms`` (None: not at all) for one to be announced."""
        if take_over:
            claimed = await self._take_over(
                keys=[self.key("hosts")], args=[GROUP, worker, self.lease_ms, TAKE_OVER_SCAN]
            )
            if claimed:
                entry_id, flat = claimed  # Lua gives the fields as a flat [name, value, ...] list
                fields = dict(zip(flat[::2], flat[1::2], strict=True))
                return [(_s(entry_id), _s(_field(fields, "host")), True)]
        read = await self.r.xreadgroup(
            GROUP, worker, {self.key("hosts"): ">"}, count=max(1, count), block=block_ms
        )
        return [
            (_s(entry_id), _s(_field(fields, "host")), False)
            for _stream, messages in read or []
            for entry_id, fields in messages
        ]

    async def take_host(self, worker: str, block_ms: int) -> tuple[str, str, bool] | None:
        """(entry id, host, taken_over) of one host this worker now owns, or None."""
        got = await self.take_hosts(worker, 1, block_ms)
        return got[0] if got else None

    async def renew_all(self, worker: str, entry_ids: Sequence[str]) -> list[bool]:
        """Reset the leases' idle time; False for each host another worker took over (it then
        stays with that worker) or that was released."""
        if not entry_ids:
            return []
        renewed = await self._renew(keys=[self.key("hosts")], args=[GROUP, worker, *entry_ids])
        return [bool(x) for x in renewed]

    async def renew(self, worker: str, entry_id: str) -> bool:
        return (await self.renew_all(worker, [entry_id]))[0]

    async def owner_of(self, entry_id: str) -> str | None:
        pending = await self.r.xpending_range(
            self.key("hosts"), GROUP, min=entry_id, max=entry_id, count=1
        )
        return _s(pending[0]["consumer"]) if pending else None

    async def release(
        self, worker: str, entry_id: str, host: str, unfinished: Sequence[Job] = ()
    ) -> bool:
        """Give a host back, queueing ``unfinished`` jobs again for whoever owns it next;
        True if this worker still owned it."""
        args: list[Any] = [self.prefix, worker, entry_id, host]
        for job in unfinished:
            args += [job.entry_id, job.raw]
        return bool(await self._release(args=args))

    async def release_host(self, entry_id: str, host: str, worker: str = "") -> None:
        """Give back a host whose jobs are all finished (``worker``: its owner's name; empty
        looks the owner up)."""
        owner = worker or await self.owner_of(entry_id) or ""
        await self.release(owner, entry_id, host)

    # ---------------------------------------------------------------- jobs of an owned host

    async def claim_jobs(self, worker: str, host: str) -> list[Job]:
        """The jobs of a just-taken host that a previous owner had read but not finished."""
        stream = self.key(f"jobs:{host}")
        out: list[Job] = []
        cursor = "0-0"
        while True:
            claimed = await self.r.xautoclaim(
                stream, GROUP, worker, min_idle_time=0, start_id=cursor, count=CLAIM_BATCH
            )
            if not claimed:
                return out
            cursor = _s(claimed[0])
            out += [_job(entry_id, fields, True) for entry_id, fields in claimed[1] if fields]
            if cursor == "0-0":
                return out

    async def read_jobs(self, worker: str, host: str, count: int) -> tuple[str, list[Job]]:
        """The run's epoch and up to ``count`` new jobs of an owned host (no waiting), in one
        round trip."""
        pipe = self.r.pipeline(transaction=False)
        pipe.get(self.key("epoch"))
        pipe.xreadgroup(GROUP, worker, {self.key(f"jobs:{host}"): ">"}, count=count)
        epoch, read = await pipe.execute()
        jobs = [
            _job(entry_id, fields, False)
            for _stream, messages in read or []
            for entry_id, fields in messages
        ]
        return (_s(epoch) if epoch is not None else "0"), jobs

    async def complete(
        self, done: Sequence[Completion], max_pages: int, max_pages_per_site: int = 0
    ) -> int:
        """Record finished jobs (outcomes, events, new links) in one atomic call; returns how
        many new links were queued."""
        if not done:
            return 0
        args: list[Any] = [self.prefix, max_pages, max_pages_per_site]
        for c in done:
            args += [c.host, c.entry_id, c.key, c.outcome, c.events, len(c.new)]
            for key, host, item in c.new:
                args += [key, host, item.site, encode_item(item)]
        return int(await self._complete(args=args))

    async def read_events(
        self, after: str, block_ms: int | None
    ) -> list[tuple[str, list[dict[str, Any]]]]:
        """Entries after ``after``: (entry id, the events of one finished job)."""
        read = await self.r.xread({self.key("events"): after}, count=500, block=block_ms)
        out: list[tuple[str, list[dict[str, Any]]]] = []
        for _stream, messages in read or []:
            for entry_id, fields in messages:
                events = json.loads(_s(_field(fields, "e")))
                out.append((_s(entry_id), events if isinstance(events, list) else [events]))
        return out

    async def reset_run(self) -> None:
        """Forget a finished run (seen-set, outcomes, budgets, events) so the next cycle
        crawls its seeds again. The host and job streams stay: waiting workers keep their
        consumer group, and every job of a finished run is acknowledged."""
        names = ["seen", "outcome", "scheduled", "events", "cursor", "run", "done"]
        keys = [self.key(n) for n in names]
        keys += [k async for k in self.r.scan_iter(match=self.key("site:*"), count=500)]
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(*keys)
        pipe.incr(self.key("epoch"))
        await pipe.execute()

    async def drop(self) -> None:
        """Delete every key of this run (tests, or an operator resetting a run)."""
        keys = [k async for k in self.r.scan_iter(match=f"{self.prefix}:*", count=500)]
        if keys:
            await self.r.delete(*keys)


def _job(entry_id: Any, fields: dict[Any, Any], reclaimed: bool) -> Job:
    raw = _s(_field(fields, "job"))
    return Job(_s(entry_id), decode_item(raw), raw, reclaimed)


def _field(fields: dict[Any, Any], name: str) -> Any:
    return fields[name.encode()] if name.encode() in fields else fields[name]


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
