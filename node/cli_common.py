"""What every `libra node ...` command shares: consoles, the --config option, fatal errors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from .config import DEFAULT_CONFIG_FILE, ConfigError, NodeSettings, load_settings

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


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def settings_or_exit(config: Path | None) -> NodeSettings:
    """The node's settings, or exit 2 with the configuration error."""
    try:
        return load_settings(config)
    except ConfigError as exc:
        fail(str(exc), 2)
