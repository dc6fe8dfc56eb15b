"""Where the node looks for its configuration: names the command line needs before any heavy
module is imported (node.config re-exports them)."""

from __future__ import annotations

from pathlib import Path

CONFIG_ENV_VAR = "LIBRA_NODE_CONFIG"
DEFAULT_CONFIG_FILE = Path("node.toml")
