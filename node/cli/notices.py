"""`libra node notices ...`: the notice queue, approvals, sending, re-checks, statistics.

See docs/notices.md. Every consultation, approval and rejection is written to the audit log with
the operating system user as the actor (the API uses the token's name).
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from node.config import NodeSettings
    from node.notices.service import NoticesRun

from node.cli.common import AtOption, ConfigOption, clock_or_exit, console, fail, settings_or_exit
from node.clock import Clock

# node.notices.models.STATES, named here so that `--help` need not import the database
# models; tests/node/test_cli_help_names.py keeps the two equal.
NOTICE_STATES = (
    "pending_approval",
    "approved",
    "rejected",
    "sent",
    "escalated",
    "closed",
)

notices_app = typer.Typer(
    help="Notices to hosters: approve, send, re-check, statistics.", no_args_is_help=True
)


def _engine(settings: NodeSettings) -> Engine:
    from node.keys.list_encryption import ListKeyError
    from node.service import open_engine

    try:
        return open_engine(settings)
    except ListKeyError as exc:
        fail(str(exc), 2)


def _open(config: Path | None) -> tuple[NodeSettings, Engine]:
    settings = settings_or_exit(config)
    return settings, _engine(settings)


def _when(moment: object) -> str:
    if moment is None:
        return "-"
    text = str(moment)
    return text.replace("T", " ")[:19]


@notices_app.command("list")
def list_(
    state: Annotated[
        str | None, typer.Option("--state", help=f"Only this state ({', '.join(NOTICE_STATES)}).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many.")] = 200,
    config: ConfigOption = None,
) -> None:
    """Notices, newest first."""
    from node import audit
    from node.notices.queue import list_notices

    if state is not None and state not in NOTICE_STATES:
        fail(f"--state must be one of {', '.join(NOTICE_STATES)}", 2)
    _settings, engine = _open(config)
    rows = list_notices(engine, state, limit)
    audit.log(
        engine,
        "notice.consult",
        subject="notices",
        reason="notices list CLI",
        details={"state": state, "returned": len(rows)},
    )
    table = Table("id", "state", "hoster", "where", "removed", "sent", "last sent")
    for row in rows:
        table.add_row(
            str(row["id"]),
            str(row["state"]),
            escape(str(row["hoster"])),
            f"AS{row['asn']} {row['country']}",
            f"{row['removed']}/{row['urls']}",
            str(row["notices_sent"]),
            _when(row["last_sent_at"]),
        )
    console.print(table if rows else "no notices")
    for row in rows:
        if row["blocked"]:
            console.print(f"[yellow]notice {row['id']} blocked:[/] {escape(str(row['blocked']))}")


@notices_app.command()
def show(
    notice_id: Annotated[int, typer.Argument(help="Notice id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOption = None,
) -> None:
    """A notice with its URLs, rounds and deliveries."""
    from node import audit
    from node.notices.queue import NoticeError, notice_detail

    _settings, engine = _open(config)
    try:
        detail = notice_detail(engine, notice_id)
    except NoticeError as exc:
        fail(str(exc))
    audit.log(engine, "notice.consult", subject=f"notice:{notice_id}", reason="notices show CLI")
    if as_json:
        console.print_json(json.dumps(detail))
        return
    notice = detail["notice"]
    console.print(
        f"notice {notice_id}: [bold]{escape(notice['state'])}[/] — {escape(notice['hoster'])} "
        f"(AS{notice['asn']}, {notice['country']}), sent {notice['notices_sent']} time(s)"
    )
    if notice["blocked"]:
        console.print(f"[yellow]blocked:[/] {escape(notice['blocked'])}")
    if notice["decided_by"]:
        console.print(
            f"decided by {escape(notice['decided_by'])} at {_when(notice['decided_at'])}: "
            f"{escape(notice['decision_reason'] or '')}"
        )
    urls = Table("id", "url", "family", "first notice", "last check", "outcome", "removed")
    for url in detail["urls"]:
        urls.add_row(
            str(url["id"]),
            escape(url["url"]),
            url["family"],
            _when(url["first_notice_at"]),
            _when(url["last_checked_at"]),
            str(url["last_outcome"] or "-"),
            f"{_when(url['removed_at'])} {url['removal_reason'] or ''}".strip(),
        )
    console.print(urls)
    deliveries = Table("round", "kind", "channel", "destination", "status", "attempts", "error")
    for d in detail["deliveries"]:
        deliveries.add_row(
            str(d["round"]),
            d["kind"],
            d["channel"],
            escape(d["destination"]),
            d["status"],
            str(d["attempts"]),
            escape(d["last_error"] or ""),
        )
    console.print(deliveries)


def _decide(notice_id: int, approve: bool, reason: str, config: Path | None) -> None:
    from node import audit
    from node.notices.queue import NoticeError, decide
    from protocol.models import utcnow

    _settings, engine = _open(config)
    try:
        notice = decide(
            engine,
            notice_id,
            approve=approve,
            actor=audit.default_actor(),
            reason=reason,
            now=utcnow(),
        )
    except NoticeError as exc:
        fail(str(exc))
    console.print(f"notice {notice_id}: {notice.state}")


@notices_app.command()
def approve(
    notice_id: Annotated[int, typer.Argument(help="Notice id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (audit log).")] = "",
    config: ConfigOption = None,
) -> None:
    """Approve a notice waiting for approval (it goes out with the next send)."""
    _decide(notice_id, True, reason, config)


@notices_app.command()
def reject(
    notice_id: Annotated[int, typer.Argument(help="Notice id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (required, audit log).")],
    config: ConfigOption = None,
) -> None:
    """Reject a notice waiting for approval: it is never sent."""
    _decide(notice_id, False, reason, config)


def _run(config: Path | None, *, build: bool, check: bool, at: str | None = None) -> None:
    import asyncio

    from node.attribution.attributor import GeoDatabaseError
    from node.notices.service import NoticesBusy, notices_once

    settings = settings_or_exit(config)
    clock: Clock | None = clock_or_exit(settings, at) if at is not None else None
    engine = _engine(settings)
    try:
        run = asyncio.run(notices_once(settings, engine, build=build, check=check, clock=clock))
    except (NoticesBusy, GeoDatabaseError, OSError, ValueError) as exc:
        fail(str(exc))
    _print_run(run)


def _print_run(run: NoticesRun) -> None:
    pending = sum(1 for c in run.created if c.state == "pending_approval")
    console.print(
        f"notices: {len(run.created)} new ({pending} waiting for approval), "
        f"{run.rechecked.checked} URLs re-checked ({run.rechecked.removed} removed), "
        f"{run.rounds_opened} rounds opened, {run.escalations} escalated, "
        f"{run.blocked} blocked; deliveries: {run.delivered.sent} sent, "
        f"{run.delivered.retrying} to retry, {run.delivered.failed} failed"
    )
    for error in run.delivered.errors:
        console.print(f"  not delivered: {escape(error)}")


@notices_app.command()
def send(config: ConfigOption = None, at: AtOption = None) -> None:
    """Build notices from new sightings and send the approved ones and every delivery due
    for a retry (no re-check).

    With --at (lab mode only) the run is recorded as if it ran at that moment.
    """
    _run(config, build=True, check=False, at=at)


@notices_app.command()
def recheck(config: ConfigOption = None) -> None:
    """Re-check noticed URLs, re-notice or escalate, deliver what is due."""
    _run(config, build=False, check=True)


@notices_app.command("run")
def run_all(config: ConfigOption = None, at: AtOption = None) -> None:
    """Everything `serve` does on its notices interval: re-check, build, send.

    With --at (lab mode only) the run is recorded as if it ran at that moment.
    """
    _run(config, build=True, check=True, at=at)


@notices_app.command()
def retry(
    notice_id: Annotated[int, typer.Argument(help="Notice id.")],
    config: ConfigOption = None,
) -> None:
    """Queue a notice's failed deliveries again."""
    from node import audit
    from node.notices.delivery import retry_failed
    from protocol.models import utcnow

    _settings, engine = _open(config)
    count = retry_failed(engine, notice_id, actor=audit.default_actor(), now=utcnow())
    console.print(f"{count} failed deliveries queued again")


@notices_app.command()
def stats(
    since: Annotated[
        str | None, typer.Option("--since", help="ISO date-time (UTC if no zone).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOption = None,
) -> None:
    """Per hoster: notices sent, removed, median and p90 time to removal, shares."""
    from sqlmodel import Session

    from node import audit
    from node.notices.stats import stats_rows

    moment: datetime | None = None
    if since is not None:
        try:
            moment = datetime.fromisoformat(since)
        except ValueError:
            fail(f"--since {since!r} is not an ISO date-time", 2)
        if moment.tzinfo is None:
            from datetime import UTC

            moment = moment.replace(tzinfo=UTC)
    _settings, engine = _open(config)
    with Session(engine) as session:
        rows = stats_rows(session, moment)
    audit.log(engine, "notice.consult", subject="stats", reason="notices stats CLI")
    if as_json:
        console.print_json(json.dumps(rows))
        return

    def hours(value: object) -> str:
        return "-" if value is None else f"{float(str(value)) / 3600:.1f} h"

    def share(value: object) -> str:
        return "-" if value is None else f"{float(str(value)):.0%}"

    table = Table("hoster", "where", "sent", "removed", "median", "p90", "≤24h", "≤72h", "esc.")
    for r in rows:
        table.add_row(
            escape(str(r["hoster"])),
            f"AS{r['asn']} {r['country']}",
            str(r["notices_sent"]),
            f"{r['removed']}/{r['urls_noticed']}",
            hours(r["median_seconds"]),
            hours(r["p90_seconds"]),
            share(r["share_within_24h"]),
            share(r["share_within_72h"]),
            str(r["escalated"]),
        )
    console.print(table if rows else "no notices sent yet")


@notices_app.command("token-create")
def token_create(
    name: Annotated[str, typer.Argument(help="Who uses it (the actor in the audit log).")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the token to this file (mode 0600).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """A bearer token for the approval API; shown (or written) once, stored hashed."""
    from node.notices.api import create_token

    _settings, engine = _open(config)
    try:
        token = create_token(engine, name)
    except ValueError as exc:
        fail(str(exc), 2)
    if out is None:
        console.print(token)
        return
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    console.print(f"token {escape(name)} written to {out}")


@notices_app.command("token-revoke")
def token_revoke(
    name: Annotated[str, typer.Argument(help="Token name.")],
    config: ConfigOption = None,
) -> None:
    """Revoke every token of that name."""
    from node.notices.api import revoke_token

    _settings, engine = _open(config)
    count = revoke_token(engine, name)
    if not count:
        fail(f"no active token named {name!r}")
    console.print(f"{count} token(s) revoked")


@notices_app.command()
def api(
    host: Annotated[str | None, typer.Option("--host", help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port.")] = None,
    config: ConfigOption = None,
) -> None:
    """Serve the approval API (bearer tokens; 127.0.0.1 by default)."""
    import uvicorn

    from node.matching.index import persist
    from node.matching.matcher import Thresholds
    from node.notices.api import create_app
    from node.service import list_key_of

    settings, engine = _open(config)
    bind = host or settings.notices.api.host
    if bind not in ("127.0.0.1", "::1", "localhost"):
        console.print(
            f"[yellow]warning:[/] the approval API listens on {escape(bind)}: put TLS and a "
            "firewall in front of it"
        )
    app = create_app(engine)
    # Candidate rejections (node/discovery/api.py) find the list entries a rejected image
    # matches through the node's index (PDQ within its distance, as a crawl would), and flag
    # an entry at the node's own setting.
    key = list_key_of(settings)
    app.state.match_index = lambda: persist.current(
        engine, settings.index_dir, key, Thresholds.of(settings.match)
    )
    app.state.flag_after_rejections = settings.discovery.flag_after_rejections
    uvicorn.run(app, host=bind, port=port or settings.notices.api.port, log_level="info")
