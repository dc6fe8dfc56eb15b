"""The demo's embedded defaults: named apart so that `libra demo --help` imports nothing heavy."""

from __future__ import annotations

from typing import Final

DEFAULT_SEED: Final = 20261124
# Size of the synthetic world per period: six periods of it make a run of a few minutes.
DEFAULT_SCALE: Final = 0.3
