"""What every `libra node ...` command shares: consoles, the --config option, fatal errors,
the lab clock option (--at)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from node.clock import LAB_ONLY, Clock, clock_for
from node.defaults import DEFAULT_CONFIG_FILE

if TYPE_CHECKING:
    from node.config import NodeSettings

# soft_wrap: long lines (paths, error messages) stay whole for logs and grep.
console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help=f"Node TOML file (default: $LIBRA_NODE_CONFIG, else ./{DEFAULT_CONFIG_FILE}).",
        show_default=False,
    ),
]

# Issue 16: a lab drives many report periods in minutes (node/clock.py).
AtOption = Annotated[
    str | None,
    typer.Option(
        "--at",
        help="Lab mode only: run as if it were this moment (ISO 8601, UTC if no zone); "
        "recorded times are this plus the real time elapsed.",
        show_default=False,
    ),
]


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def settings_or_exit(config: Path | None) -> NodeSettings:
    """The node's settings, or exit 2 with the configuration error."""
    from node.config import ConfigError, load_settings

    try:
        return load_settings(config)
    except ConfigError as exc:
        fail(str(exc), 2)


def parse_time(text: str, name: str) -> datetime:
    """An ISO 8601 moment (UTC when it names no zone), or exit 2 naming the option."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        fail(f"{name}: {text!r} is not an ISO 8601 timestamp", 2)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def lab_moment_or_exit(settings: NodeSettings, at: str | None) -> datetime | None:
    """The --at moment, None without one; exit 2 outside lab mode or for a bad timestamp."""
    if at is None:
        return None
    if settings.lab is None:
        fail(LAB_ONLY, 2)
    return parse_time(at, "--at")


def clock_or_exit(settings: NodeSettings, at: str | None) -> Clock:
    """The command's clock: real, or the lab clock started at --at (lab mode only)."""
    moment = lab_moment_or_exit(settings, at)
    return clock_for(moment, lab=settings.lab is not None)
