"""Command line: ``libra function serve|key create``; ``libra hash FILE...`` is in hash_cli.py.

Each command imports what it uses when it runs: `libra hash` and every `--help` start without
the server's settings, HTTP stack or key code (issue 17: commands that answer at once).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer

from .hash_cli import hash_command

__all__ = ["app", "hash_command", "key_app", "write_private_key"]

app = typer.Typer(
    name="function",
    help="The remote-hash function: fetch an image URL into memory and return its hashes.",
    no_args_is_help=True,
    add_completion=False,
)


key_app = typer.Typer(
    help="Request keys: the Ed25519 keys callers (nodes) sign their requests with.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(key_app, name="key")


@app.callback()
def _main() -> None:
    """The remote-hash function: fetch an image URL into memory and return its hashes."""


@key_app.command("create")
def key_create(
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Private key file to create (the node's function_key_file); never overwritten.",
            dir_okay=False,
        ),
    ],
    caller: Annotated[
        str,
        typer.Option(help="Caller name for the authorized_keys line (the node's node_id)."),
    ] = "NODE_ID",
) -> None:
    """Create a request key pair: the private key goes to --out (mode 0600), the line for the
    function's authorized_keys is printed on stdout."""
    from protocol.keys import NodeKey
    from protocol.request_auth import CALLER_PATTERN

    if caller != "NODE_ID" and not CALLER_PATTERN.match(caller):
        typer.echo(f"error: caller name {caller!r} is not valid", err=True)
        raise typer.Exit(2)
    key = NodeKey.generate()
    try:
        write_private_key(out, key.seed_b64())
    except FileExistsError:
        typer.echo(f"error: {out} exists; refusing to overwrite a key", err=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        typer.echo(f"error: cannot create {out}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"private key written to {out} (mode 0600)", err=True)
    if caller == "NODE_ID":
        typer.echo("replace NODE_ID with the node's node_id:", err=True)
    typer.echo(f'"{caller}" = "{key.public_key_b64}"')


def write_private_key(path: Path, text: str) -> None:
    """Create ``path`` with mode 0600 from the first byte (O_EXCL: an existing file is never
    replaced, FileExistsError); a failed write leaves no partial key behind."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        # The operator's request key (a command run by hand, never the serving function).
        with os.fdopen(fd, "w", encoding="ascii") as handle:  # disk-guard: key, no image
            handle.write(text + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise


@app.command()
def serve(
    host: Annotated[
        str,
        typer.Option(
            envvar="LIBRA_FUNCTION_HOST",
            help="Address to listen on (containers: 0.0.0.0).",
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(envvar="PORT", help="Port to listen on (default: $PORT or 8000).")
    ] = 8000,
    lab: Annotated[
        Path | None,
        typer.Option(
            help="Lab network TOML: enables loopback fetching for the synthetic web (tests, demo).",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(help="Settings TOML (LIBRA_FUNCTION_* environment variables override it)."),
    ] = None,
) -> None:
    """Serve POST /v1/analyze and GET /healthz with uvicorn."""
    import uvicorn

    from .app import create_app
    from .settings import ConfigFileError, load_settings

    try:
        settings = load_settings(config, lab=lab)
    except (ConfigFileError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    level = settings.log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        application = create_app(settings)
    except ValueError as exc:  # AuthConfigError, bad lab file
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    # uvicorn follows log_level too: at WARNING nothing is logged per request (issue 17). Its
    # access line repeats what our INFO line per analysis says (and names the client address),
    # so it is written at DEBUG only.
    uvicorn.run(
        application,
        host=host,
        port=port,
        log_level=level.lower(),
        access_log=logging.getLevelName(level) <= logging.DEBUG,
    )
