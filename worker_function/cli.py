"""Command line: ``libra function serve`` and ``libra hash FILE...``."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from .errors import ImageError
from .hashing import DecodeLimits, ImageDigest, hash_image
from .settings import ConfigFileError, load_settings

app = typer.Typer(
    name="function",
    help="The remote-hash function: fetch an image URL into memory and return its hashes.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _main() -> None:
    """The remote-hash function: fetch an image URL into memory and return its hashes."""


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

    try:
        settings = load_settings(config, lab=lab)
    except (ConfigFileError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        application = create_app(settings)
    except ValueError as exc:  # AuthConfigError, bad lab file
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    uvicorn.run(application, host=host, port=port, log_level="info")


def hash_command(
    files: Annotated[list[Path], typer.Argument(help="Image files to hash (read only).")],
    dihedral: Annotated[
        bool, typer.Option(help="Also print the 8 dihedral PDQ hashes (rotations and flips).")
    ] = False,
) -> None:
    """Hash local image files with the function's exact decode rules; one JSON line per file.

    Reads the files and writes nothing. Exits 1 if any file could not be hashed.
    """
    stderr = Console(stderr=True)
    failed = False
    limits = DecodeLimits()
    with Progress(
        TextColumn("hashing"),
        BarColumn(),
        MofNCompleteColumn(),
        console=stderr,
        transient=True,
        disable=not stderr.is_terminal or len(files) < 2,
    ) as progress:
        task = progress.add_task("hash", total=len(files))
        for path in files:
            line = _hash_file(path, dihedral, limits)
            failed = failed or "error" in line
            # Progress draws on stderr; results go to stdout, one complete line each.
            sys.stdout.write(json.dumps(line, sort_keys=False) + "\n")
            sys.stdout.flush()
            progress.advance(task)
    if failed:
        raise typer.Exit(1)


def _hash_file(path: Path, dihedral: bool, limits: DecodeLimits) -> dict[str, object]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return _error_line(path, "read_failed", f"cannot read file: {exc.strerror or exc}")
    try:
        digest = hash_image(data, dihedral=dihedral, limits=limits)
    except ImageError as exc:
        return _error_line(path, exc.code, exc.message)
    return _digest_line(path, digest, len(data))


def _digest_line(path: Path, digest: ImageDigest, size: int) -> dict[str, object]:
    return {
        "path": str(path),
        "format": digest.format,
        "width": digest.width,
        "height": digest.height,
        "bytes": size,
        "animated": digest.animated,
        "hashes": digest.hashes.model_dump(mode="json", exclude_none=True),
    }


def _error_line(path: Path, code: str, message: str) -> dict[str, object]:
    return {"path": str(path), "error": {"code": code, "message": message}}
