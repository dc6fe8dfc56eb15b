"""`libra node psi ...`: learn how much this node's list overlaps another node's, without
either seeing the other's hashes (PSI-cardinality relayed by the coordinator, issue 15).

Heavy imports stay inside the commands: `libra --help` start-up time is benchmarked.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from node.cli.common import ConfigOption, console, fail, settings_or_exit

if TYPE_CHECKING:
    from node.federation.psi import PsiContext, RunResult, SessionInfo

psi_app = typer.Typer(
    help="Private set intersection cardinality with another node: how many exact hashes your "
    "lists share, and nothing else (both nodes must consent).",
    no_args_is_help=True,
)

SessionArg = Annotated[str, typer.Argument(help="The session id (32 hex digits).")]


def _context(config: ConfigOption) -> PsiContext:
    from node.federation.enroll import TOKEN_FILE_NAME, load_token
    from node.federation.psi import PsiContext
    from node.keys.files import KeyFileError, load_signing_key
    from node.keys.list_encryption import ListKeyError
    from node.service import open_engine
    from protocol.models import utcnow

    settings = settings_or_exit(config)
    try:
        return PsiContext(
            engine=open_engine(settings),
            node_id=settings.node_id,
            key=load_signing_key(settings.signing_key_path),
            coordinator_url=settings.coordinator_url,
            token=load_token(settings.data_dir / TOKEN_FILE_NAME),
            clock=utcnow,
        )
    except (KeyFileError, ListKeyError) as exc:
        fail(str(exc), 2)


def _show(rows: list[SessionInfo], node_id: str) -> None:
    # One line per session: ids stay whole (copy them into `accept` / `run`) at any width.
    for info in rows:
        role = "initiator" if info.initiator == node_id else "responder"
        steps = ",".join(f"{sender}:{step}" for sender, step in info.steps) or "-"
        console.print(
            f"{info.session_id}  peer={info.peer_of(node_id)} role={role} "
            f"family={info.family} status={info.status} steps={escape(steps)} "
            f"expires={info.expires_at} peer_key={info.peer_key_id or '-'}"
        )


@psi_app.command("offer")
def offer_cmd(
    peer: Annotated[str, typer.Option("--peer", help="The other node's id.")],
    family: Annotated[
        str,
        typer.Option("--family", help="md5, sha1, sha256, video-md5, video-sha1 or video-sha256."),
    ] = "sha256",
    hours: Annotated[
        int, typer.Option("--hours", min=1, max=168, help="The offer expires after this.")
    ] = 24,
    config: ConfigOption = None,
) -> None:
    """Offer a session to PEER (your signed offer is your consent); it must accept."""
    from datetime import timedelta

    from node.federation.psi import PsiError, offer

    ctx = _context(config)
    try:
        info = offer(ctx, peer, family, timedelta(hours=hours))
    except PsiError as exc:
        fail(str(exc))
    console.print(
        f"offered session {info.session_id} to {info.responder} ({info.family}); "
        f"expires {info.expires_at}. It runs once {info.responder} accepts: "
        f"`libra node psi run {info.session_id}` on both nodes."
    )


@psi_app.command("offers")
def offers_cmd(config: ConfigOption = None) -> None:
    """Offers addressed to this node that await its answer."""
    from node.federation.psi import PsiError, sessions

    ctx = _context(config)
    try:
        rows = sessions(ctx, incoming=True)
    except PsiError as exc:
        fail(str(exc))
    if not rows:
        console.print("no offer awaits this node's answer")
        return
    _show(rows, ctx.node_id)


@psi_app.command("list")
def list_cmd(config: ConfigOption = None) -> None:
    """Every unexpired session of this node."""
    from node.federation.psi import PsiError, sessions

    ctx = _context(config)
    try:
        rows = sessions(ctx)
    except PsiError as exc:
        fail(str(exc))
    if not rows:
        console.print("this node has no PSI session")
        return
    _show(rows, ctx.node_id)


def _answer(session_id: str, config: ConfigOption, accept: bool) -> None:
    from node.federation.psi import PsiError, answer

    ctx = _context(config)
    try:
        info = answer(ctx, session_id, accept=accept)
    except PsiError as exc:
        fail(str(exc))
    word = "accepted" if accept else "declined"
    console.print(f"{word} session {session_id} from {info.initiator} ({info.family})")


@psi_app.command("accept")
def accept_cmd(session_id: SessionArg, config: ConfigOption = None) -> None:
    """Consent to an offer (signed); then `libra node psi run ID`."""
    _answer(session_id, config, True)


@psi_app.command("decline")
def decline_cmd(session_id: SessionArg, config: ConfigOption = None) -> None:
    """Decline an offer (signed); nothing of this node's list is ever sent for it."""
    _answer(session_id, config, False)


def _print_run(result: RunResult, node_id: str) -> None:
    if result.sent:
        console.print(f"sent: {', '.join(result.sent)}")
    if result.done:
        console.print(
            f"session {result.session.session_id} ({result.session.family}): "
            f"intersection {result.cardinality}; this node's set {result.own_size}, "
            f"peer's set {result.peer_size}"
        )
        peer = result.session.peer_of(node_id)
        # The registry vouches for this key: compare it with the peer out of band.
        console.print(f"{peer} signed with key {result.session.peer_key_id}")
    else:
        console.print(f"waiting for {result.waiting_for}; run again later")


@psi_app.command("run")
def run_cmd(
    session_id: SessionArg,
    wait: Annotated[
        int,
        typer.Option("--wait", min=0, help="Poll up to this many seconds for the peer's steps."),
    ] = 0,
    config: ConfigOption = None,
) -> None:
    """Do the steps this node can (idempotent); print the cardinality when done."""
    from node.federation.psi import PsiError, run

    ctx = _context(config)
    deadline = time.monotonic() + wait
    sent: list[str] = []
    while True:
        try:
            result = run(ctx, session_id)
        except PsiError as exc:
            fail(str(exc))
        sent += result.sent
        if result.done or time.monotonic() >= deadline:
            break
        time.sleep(1.0)
    result.sent = sent
    _print_run(result, ctx.node_id)
