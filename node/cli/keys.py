"""`libra node rotate-signing-key`: replace this node's Ed25519 signing key, with the
coordinator's agreement (see node/keys/signing_rotation.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from node.cli.common import ConfigOption, console, fail, settings_or_exit


def rotate_signing_key_cmd(
    overlap_hours: Annotated[
        float | None,
        typer.Option(
            min=0,
            max=24 * 90,
            help="How long the old key stays valid for reports created before the end of "
            "this window (default and maximum: the coordinator's key_overlap).",
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Make a new signing key, have the coordinator register it (signed by the current and
    the new key), then switch to it; the old key is kept next to the key file."""
    from node import audit
    from node.keys.files import KeyFileError
    from node.keys.signing_rotation import RotationError, rotate_signing_key

    settings = settings_or_exit(config)
    overlap = None if overlap_hours is None else timedelta(hours=overlap_hours)
    try:
        result = rotate_signing_key(
            settings.coordinator_url,
            settings.signing_key_path,
            settings.node_id,
            now=datetime.now(UTC),
            overlap=overlap,
        )
    except (KeyFileError, RotationError) as exc:
        fail(f"signing key not rotated: {exc}")
    try:
        from node.service import open_engine

        engine = open_engine(settings)
        try:
            audit.log(
                engine,
                "signing.key.rotate",
                subject="signing_key",
                details={
                    "old_key_id": result.old_key_id,
                    "new_key_id": result.new_key_id,
                    "old_valid_until": result.old_valid_until,
                },
            )
        finally:
            engine.dispose()
    except Exception as exc:  # the rotation itself is done; the local log is best effort
        console.print(f"[yellow]note:[/] rotation not recorded in the node audit log: {exc}")
    what = "rotated" if result.status == "rotated" else "was already registered; switched"
    console.print(
        f"signing key {what}: {result.old_key_id[:16]}… -> [bold]{result.new_key_id[:16]}…[/]; "
        f"the old key verifies reports created before {result.old_valid_until or 'revocation'} "
        f"and is kept at {result.retired_key_file}"
    )
