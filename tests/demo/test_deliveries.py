"""The demo's notices: the key the nodes sign with and the desks check with, and the check after
every notices run that the desks received what the truth has each node send."""

from __future__ import annotations

import asyncio
import io
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console

from libra.demo.deliveries import Shortfall, missing_deliveries
from libra.demo.history import History, day_periods
from libra.demo.live import write_webhook_key
from libra.demo.processes import DemoStepFailed
from libra.demo.runner import Federation, notice_moment
from node.config import NoticeSettings
from node.notices import xarf
from node.notices.delivery import Channels


def test_the_desks_accept_what_the_nodes_sign_with_every_new_key(tmp_path: Path) -> None:
    """CI, 2026-12-06: the demo wrote 32 random bytes as the key; the nodes read it without
    the whitespace bytes at its ends, so in about one run in twenty every notice was refused
    and no hoster removed anything. Each key here goes through the node's own sending code."""
    seen: list[httpx.Request] = []

    def desk(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    async def send_all() -> None:
        for n in range(200):
            key_file = tmp_path / f"webhook-{n}.key"
            secret = write_webhook_key(key_file)
            settings = NoticeSettings(webhook_secret_file=key_file, webhook_retries=0)
            channels = Channels(settings, None, transport=httpx.MockTransport(desk))
            body = b'{"notice_id": %d, "round": 1}' % n
            try:
                await channels.send_webhook("https://abuse.hoster-a.test/xarf", body)
            finally:
                await channels.aclose()
            request = seen[-1]
            assert xarf.verify_webhook(
                secret,
                request.content,
                request.headers[xarf.TIMESTAMP_HEADER],
                request.headers[xarf.SIGNATURE_HEADER],
            ), key_file.read_bytes()
            assert key_file.stat().st_mode & 0o077 == 0  # the key is the node operator's only

    asyncio.run(send_all())
    assert len(seen) == 200


def test_a_desk_short_of_a_nodes_notices_is_named() -> None:
    delivered: Counter[tuple[int, str, str]] = Counter(
        {
            (0, "node-de", "hoster-a"): 1,
            (0, "node-de", "hoster-e"): 1,
            (0, "node-nl", "hoster-a"): 1,  # another node's: not node-de's business
            (1, "node-de", "hoster-b"): 1,  # another day's
        }
    )
    before = {"hoster-a": 2, "hoster-e": 0}
    # Both arrived: nothing missing (a desk that received more is left to the picture's check).
    assert missing_deliveries(delivered, 0, "node-de", before, {"hoster-a": 4, "hoster-e": 1}) == []
    # The run's notices were refused: both desks are named, with what they got.
    short = missing_deliveries(delivered, 0, "node-de", before, dict(before))
    assert short == [Shortfall("hoster-a", 0, 1), Shortfall("hoster-e", 0, 1)]
    assert str(short[0]) == "hoster-a's abuse desk received 0 of 1"
    # A node with nothing to send that day is never short.
    assert missing_deliveries(delivered, 0, "node-us", before, before) == []


class RefusedNotices:
    """The process group of a federation whose nodes' notices never reach a desk: each
    `notices run` prints what a node prints when its webhooks are refused; nothing else runs."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.commands: list[list[str]] = []

    def run(self, name: str, args: list[str], **_: Any) -> str:
        self.commands.append(args)
        return (
            "notices: 2 new (0 waiting for approval), 0 URLs re-checked (0 removed), 2 rounds "
            "opened, 0 escalated, 0 blocked; deliveries: 0 sent, 2 to retry, 0 failed\n"
            "  not delivered: notice 1 round 1 over webhook: http://abuse.x/xarf: HTTP 401\n"
        )

    def spawn(self, name: str, args: list[str]) -> Any:
        raise AssertionError(f"{name}: a node reported although its notices were lost")


def test_the_runner_stops_at_the_run_whose_notices_were_lost(
    history: History, tmp_path: Path
) -> None:
    """The day's first node's notices do not arrive: the demo stops there, naming the desks,
    the counts and what the node printed, before any report (not as pictures that differ from
    the next day on)."""
    federation = Federation(history, tmp_path / "demo", Console(file=io.StringIO()))
    procs = RefusedNotices(tmp_path / "logs")
    federation.procs = procs  # type: ignore[assignment]
    federation.node_configs = {p.node_id: tmp_path / p.node_id for p in history.world.nodes}
    period = day_periods(datetime.now(UTC), history.periods)[0]
    first = history.world.nodes[0].node_id
    with pytest.raises(DemoStepFailed) as failed:
        federation.notices_and_reports(0, notice_moment(period[0], 0), period)
    message = str(failed.value)
    assert f"{first}'s notices did not reach the hosters" in message
    assert "abuse desk received 0 of 1" in message
    assert "deliveries: 0 sent, 2 to retry" in message and "HTTP 401" in message
    assert str(tmp_path / "logs" / f"notices-{first}.log") in message
    assert [args[:3] for args in procs.commands] == [["node", "notices", "run"]]
