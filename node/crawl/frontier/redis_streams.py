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
- ``P:events`` (stream): PageFetched / PageFailed / ImageFound events for the node's cycle.
- ``P:outcome`` (hash): canonical key -> outcome ("ok", "image" or a failure reason).
- ``P:scheduled`` (counter): pages queued (the per-run page budget).
- ``P:site:<site>`` (counter): pages queued of one seed site (``crawl.max_pages_per_site``),
  checked and incremented in the same Lua script as the seen-set, so concurrent workers can
  never queue more than the budget of a site.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from node.crawl.frontier import FrontierItem

GROUP = "crawlers"
# Pending host entries looked at per take-over attempt (a worker owns at most hosts_at_once).
TAKE_OVER_SCAN = 1000

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

# Renew a lease only while this worker still owns the entry.
_RENEW_SCRIPT = """
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if pending[1] and pending[1][2] == ARGV[2] then
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
  return 1
end
return 0
"""

# Queue new links atomically: seen-set, budget, outstanding counter, job stream, host announce.
_ADD_SCRIPT = """
local prefix = ARGV[1]
local max_pages = tonumber(ARGV[2])
local max_per_site = tonumber(ARGV[3])
local added = 0
local i = 4
while i <= #ARGV do
  local key, host, site, job = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  i = i + 4
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
    added = added + 1
  end
end
return added
"""


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

    def key(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    async def setup(self) -> None:
        try:
            await self.r.xgroup_create(self.key("hosts"), GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def add(
        self,
        items: list[tuple[str, str, FrontierItem]],
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

    async def outstanding(self) -> int:
        return int(await self.r.get(self.key("outstanding")) or 0)

    # ---------------------------------------------------------------- host ownership

    async def take_host(self, worker: str, block_ms: int) -> tuple[str, str, bool] | None:
        """(entry id, host, taken_over) of a host this worker now owns, or None."""
        claimed = await self._take_over(
            keys=[self.key("hosts")], args=[GROUP, worker, self.lease_ms, TAKE_OVER_SCAN]
        )
        if claimed:
            entry_id, flat = claimed  # Lua gives the fields as a flat [name, value, ...] list
            fields = dict(zip(flat[::2], flat[1::2], strict=True))
            return _s(entry_id), _s(_field(fields, "host")), True
        read = await self.r.xreadgroup(
            GROUP, worker, {self.key("hosts"): ">"}, count=1, block=block_ms
        )
        for _stream, messages in read or []:
            for entry_id, fields in messages:
                host = fields.get(b"host", fields.get("host"))
                return _s(entry_id), _s(host), False
        return None

    async def renew(self, worker: str, entry_id: str) -> bool:
        """Reset the lease's idle time; False if another worker took the host over (the host
        then stays with it)."""
        renewed = await self._renew(keys=[self.key("hosts")], args=[GROUP, worker, entry_id])
        return bool(renewed)

    async def owner_of(self, entry_id: str) -> str | None:
        pending = await self.r.xpending_range(
            self.key("hosts"), GROUP, min=entry_id, max=entry_id, count=1
        )
        return _s(pending[0]["consumer"]) if pending else None

    async def release_host(self, entry_id: str, host: str) -> None:
        await self.r.xack(self.key("hosts"), GROUP, entry_id)
        await self.r.xdel(self.key("hosts"), entry_id)
        await self.r.srem(self.key("active"), host)
        # A link to this host may have been queued between our last read and the SREM: then
        # nobody would announce the host again, so check and re-announce.
        info = await self.r.xinfo_groups(self.key(f"jobs:{host}"))
        lag = next((g.get("lag") for g in info if _s(g["name"]) == GROUP), 0)
        if lag and await self.r.sadd(self.key("active"), host):
            await self.r.xadd(self.key("hosts"), {"host": host})

    # ---------------------------------------------------------------- jobs of an owned host

    async def next_job(self, worker: str, host: str) -> tuple[str, FrontierItem, bool] | None:
        """The next job of an owned host: first ones a dead owner left pending, then new ones."""
        stream = self.key(f"jobs:{host}")
        claimed = await self.r.xautoclaim(
            stream, GROUP, worker, min_idle_time=0, start_id="0-0", count=1
        )
        entries = claimed[1] if claimed else []
        if entries:
            entry_id, fields = entries[0]
            return _s(entry_id), decode_item(_s(_field(fields, "job"))), True
        read = await self.r.xreadgroup(GROUP, worker, {stream: ">"}, count=1)
        for _stream, messages in read or []:
            for entry_id, fields in messages:
                return _s(entry_id), decode_item(_s(_field(fields, "job"))), False
        return None

    async def finish_job(
        self, host: str, entry_id: str, key: str, outcome: str, events: list[dict[str, Any]]
    ) -> None:
        pipe = self.r.pipeline(transaction=True)
        for event in events:
            pipe.xadd(self.key("events"), {"e": json.dumps(event, separators=(",", ":"))})
        pipe.hset(self.key("outcome"), key, outcome)
        pipe.xack(self.key(f"jobs:{host}"), GROUP, entry_id)
        pipe.decr(self.key("outstanding"))
        await pipe.execute()

    async def read_events(self, after: str, block_ms: int) -> list[tuple[str, dict[str, Any]]]:
        read = await self.r.xread({self.key("events"): after}, count=500, block=block_ms)
        out: list[tuple[str, dict[str, Any]]] = []
        for _stream, messages in read or []:
            for entry_id, fields in messages:
                out.append((_s(entry_id), json.loads(_s(_field(fields, "e")))))
        return out

    async def drop(self) -> None:
        """Delete every key of this run (tests, or an operator resetting a run)."""
        keys = [k async for k in self.r.scan_iter(match=f"{self.prefix}:*", count=500)]
        if keys:
            await self.r.delete(*keys)


def _field(fields: dict[Any, Any], name: str) -> Any:
    return fields[name.encode()] if name.encode() in fields else fields[name]


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
