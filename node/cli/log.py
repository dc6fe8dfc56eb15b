"""`libra node log ...`: witness the coordinator's transparency log (issue 15).

Heavy imports stay inside the commands: `libra --help` start-up time is benchmarked.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from node.cli.common import ConfigOption, console, fail, settings_or_exit

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from node.config import NodeSettings

log_app = typer.Typer(
    help="Witness the coordinator's transparency log: verify, cosign, compare with peers.",
    no_args_is_help=True,
)


def _engine(settings: NodeSettings) -> Engine:
    from node.keys.list_encryption import ListKeyError
    from node.service import open_engine

    try:
        return open_engine(settings)
    except ListKeyError as exc:
        fail(str(exc), 2)


@log_app.command("verify")
def verify_cmd(
    config: ConfigOption = None,
    no_cosign: Annotated[
        bool, typer.Option("--no-cosign", help="Verify only; do not post a cosignature.")
    ] = False,
) -> None:
    """Verify the newest checkpoint and cosign it; exit 1 on a split view or a missing report."""
    # Checks: the log's signature (key pinned on first use), consistency with the last
    # checkpoint this node saw, inclusion of every report it delivered since.
    from node.federation.tlog_witness import LogVerifyError, verify_log
    from node.keys.files import KeyFileError, load_signing_key
    from protocol.models import utcnow

    settings = settings_or_exit(config)
    engine = _engine(settings)
    try:
        key = load_signing_key(settings.signing_key_path)
        result = verify_log(
            engine,
            settings.coordinator_url,
            key,
            settings.node_id,
            utcnow(),
            cosign_checkpoint=not no_cosign,
        )
    except KeyFileError as exc:
        fail(str(exc), 2)
    except LogVerifyError as exc:
        fail(str(exc))
    since = "first checkpoint" if result.previous_size is None else f"from {result.previous_size}"
    console.print(
        f"log verified: size {result.size} ({since}), root {result.root_b64}, "
        f"{result.newly_proven} report(s) newly proven included"
        + ("; cosigned" if result.cosigned else "")
    )


@log_app.command("show")
def show_cmd(config: ConfigOption = None) -> None:
    """Print the last checkpoint this node verified (hand it to another witness)."""
    from node.federation.tlog_witness import last_checkpoint

    note = last_checkpoint(_engine(settings_or_exit(config)))
    if note is None:
        fail("no checkpoint verified yet: run `libra node log verify`")
    typer.echo(note, nl=False)


@log_app.command("compare")
def compare_cmd(
    peer_checkpoint: Annotated[
        Path, typer.Argument(help="A checkpoint another node verified (`libra node log show`).")
    ],
    config: ConfigOption = None,
) -> None:
    """Detect a split view: the peer's checkpoint and ours must describe one history."""
    from node.federation.tlog_witness import LogVerifyError, compare_with_peer

    settings = settings_or_exit(config)
    try:
        text = peer_checkpoint.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {peer_checkpoint}: {exc}", 2)
    try:
        size = compare_with_peer(_engine(settings), settings.coordinator_url, text)
    except LogVerifyError as exc:
        fail(str(exc))
    console.print(f"consistent: both checkpoints are one history (up to size {size})")
