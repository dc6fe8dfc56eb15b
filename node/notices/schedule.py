"""The `serve` job of the notices: every ``notices.recheck_minutes``, one notices run
(re-check, re-notice/escalate, build from new cycles, deliver). Only when notices are enabled.
A failing run is printed and retried on the next interval: the node keeps serving."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from rich.console import Console
from rich.markup import escape
from sqlalchemy.engine import Engine

from node.config import NodeSettings
from node.notices.service import notices_once

NOTICES_JOB = "notices"


def notices_jobs(
    settings: NodeSettings, engine: Engine, console: Console
) -> list[tuple[str, float, Callable[[], Awaitable[None]]]]:
    if not settings.notices.enabled:
        return []

    async def job() -> None:
        try:
            run = await notices_once(settings, engine)
        except Exception as exc:  # logged, retried next interval; never ends `serve`
            console.print(f"[red]notices failed:[/] {escape(f'{type(exc).__name__}: {exc}')}")
            return
        console.print(
            f"notices: {len(run.created)} new, {run.rechecked.checked} re-checked "
            f"({run.rechecked.removed} removed), {run.escalations} escalated, "
            f"{run.delivered.sent} delivered, {run.delivered.retrying} to retry, "
            f"{run.delivered.failed} failed, {run.blocked} blocked"
        )
        for error in run.delivered.errors:
            console.print(f"  not delivered: {escape(error)}")

    return [(NOTICES_JOB, settings.notices.recheck_minutes, job)]
