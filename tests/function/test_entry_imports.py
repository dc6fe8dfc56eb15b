"""Nothing of the node in the function's process: every entry point of the function imports only
worker_function, protocol and third-party libraries (no node, coordinator, libra.demo, numba),
and switches bytecode writing off before the function's own modules are imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = ("node", "coordinator", "numba", "llvmlite", "libra.demo")

# Each snippet imports one entry point the way its runtime does, then reports what is loaded.
ENTRY_POINTS = {
    "libra function serve": (
        "import sys; sys.argv = ['libra', 'function', 'serve', '--help']\n"
        "import libra.cli\n"
        "app = libra.cli.build_app()\n"
    ),
    "libra hash": (
        "import sys; sys.argv = ['libra', 'hash', '--help']\n"
        "import libra.cli\n"
        "app = libra.cli.build_app()\n"
    ),
    "python -m worker_function": (
        "import runpy, sys; sys.argv = ['worker_function', '--help']\n"
        "try:\n    runpy.run_module('worker_function', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
    ),
    "lambda handler": "import worker_function.lambda_handler\n",
    "asgi app": "from worker_function.app import create_app\n",
}
REPORT = (
    "import json, os\n"
    "print(json.dumps({'modules': sorted(sys.modules), 'no_bytecode': sys.dont_write_bytecode,"
    " 'env': os.environ.get('PYTHONDONTWRITEBYTECODE')}))\n"
)


def _loaded(snippet: str) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(REPO)
    # `python -m worker_function` would run the CLI: import its module without running it.
    code = (
        snippet.replace("worker_function.__main__", "worker_function.cli as _cli")
        + "import sys\n"
        + REPORT
    )
    completed = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    report: dict[str, object] = json.loads(completed.stdout.strip().splitlines()[-1])
    return report


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_entry_point_imports_nothing_of_the_node(entry: str) -> None:
    report = _loaded(ENTRY_POINTS[entry])
    modules = report["modules"]
    assert isinstance(modules, list)
    leaked = [m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert leaked == []
    assert "worker_function" in modules
    # Bytecode writing is off in the process and for the decode workers it spawns.
    assert report["no_bytecode"] is True
    assert report["env"] == "1"


def test_the_other_commands_load_their_own_component_only() -> None:
    # `libra node ...` loads the node, not the function (whose import turns bytecode writing off)
    # nor the coordinator; `libra --help` (no command) loads the whole tree.
    node = _loaded("import libra.cli\napp = libra.cli.build_app(['node', '--help'])\n")
    modules = node["modules"]
    assert isinstance(modules, list)
    assert "node.cli.main" in modules
    assert "coordinator.cli" not in modules and "worker_function" not in modules
    every = _loaded("import libra.cli\napp = libra.cli.build_app([])\n")["modules"]
    assert isinstance(every, list)
    assert {"node.cli.main", "coordinator.cli", "worker_function.cli", "libra.demo.cli"} <= set(
        every
    )
