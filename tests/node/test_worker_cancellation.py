"""A Redis worker's background loops end when cancelled, even when the cancellation comes out
of a Redis call as another error (node/crawl/worker.py ``_reraise_cancellation``).

Seen once in CI: `libra node crawl-worker --forever` never exited on SIGTERM; its fair-share
loop had logged the error its cancellation became, slept again, and the shutdown waited for it
forever. The frontier here is a stand-in whose calls never answer and turn a cancellation into
ConnectionError, as a Redis client may. No Redis, no network.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from node.crawl import worker as worker_module
from node.crawl.crawler import CrawlLimits
from node.crawl.worker import RedisWorker, _Completer

# A bound on a hang only (the bug hung forever); never reached by a loop that ends.
HANG_BOUND_S = 60.0


class _Swallowing:
    """Frontier calls that wait forever and, when cancelled, raise ConnectionError instead."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()

    async def _forever(self) -> Any:
        self.entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise ConnectionError("Connection reset by peer") from None

    async def workers_and_hosts(self) -> tuple[int, int]:
        return await self._forever()  # type: ignore[no-any-return]

    async def renew_all(self, name: str, entries: list[str]) -> list[bool]:
        return await self._forever()  # type: ignore[no-any-return]

    async def complete(self, done: list[Any], max_pages: int, per_site: int) -> None:
        await self._forever()


async def _ends_when_cancelled(frontier: _Swallowing, loop: Callable[[], Awaitable[None]]) -> None:
    task = asyncio.ensure_future(loop())
    await frontier.entered.wait()  # inside the frontier call when the cancellation comes
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=HANG_BOUND_S)
    assert task in done, "the loop went on after its cancellation"
    assert task.cancelled()


@pytest.mark.parametrize("loop", ["_balance", "_heartbeat"])
async def test_a_background_loop_ends_when_its_cancellation_becomes_an_error(
    loop: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_module, "BALANCE_S", 0.0)
    frontier = _Swallowing()
    async with httpx.AsyncClient() as client:  # never used: no page is fetched
        worker = RedisWorker(
            frontier,  # type: ignore[arg-type]
            client,
            CrawlLimits(),
            name="w",
            lease_s=0.003,  # the heartbeat's first beat at once
        )
        await _ends_when_cancelled(frontier, getattr(worker, loop))


async def test_the_completer_closes_when_its_write_is_cancelled() -> None:
    frontier = _Swallowing()
    completer = _Completer(frontier, CrawlLimits())  # type: ignore[arg-type]
    job = asyncio.ensure_future(completer.complete(object()))  # type: ignore[arg-type]
    await frontier.entered.wait()
    closing = asyncio.ensure_future(completer.close())
    done, _ = await asyncio.wait({closing}, timeout=HANG_BOUND_S)
    assert closing in done, "close() waited for a loop that went on"
    with pytest.raises(ConnectionError):
        await job  # the job waiting on that write is told, not left hanging
