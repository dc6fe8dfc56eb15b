"""Where the coordinator looks for its configuration: names the command line needs before any
heavy module is imported (coordinator.config re-exports them)."""

from __future__ import annotations

from pathlib import Path

CONFIG_ENV_VAR = "LIBRA_COORDINATOR_CONFIG"
DEFAULT_CONFIG_FILE = Path("coordinator.toml")
DEFAULT_DATA_DIR = Path("var/coordinator")
