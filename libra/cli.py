"""`libra <component> <verb>`: gathers the components' own Typer apps.

`libra function ...` and `libra hash ...` import only the function (worker_function, protocol and
third-party libraries): the function's process must hold nothing of the node or coordinator, and
numba (imported by node code) opens files for writing at start-up. So components are imported
when their command is chosen, not at module import. The function commands also switch bytecode
writing off before the first worker_function import (docs/operations-function.md).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import typer

# Commands served by the remote-hash function's code alone.
FUNCTION_COMMANDS = frozenset({"function", "hash"})
OTHER_COMMANDS = frozenset({"node", "coordinator", "demo"})


def _new_app() -> typer.Typer:
    app = typer.Typer(
        name="libra",
        help="LIBRA federated hash-intelligence network.",
        no_args_is_help=True,
        add_completion=False,
    )

    # A callback keeps `libra` a group even when only one command is registered (Typer would
    # otherwise make a lone command the root, and `libra demo` would read "demo" as an argument).
    @app.callback()
    def _root() -> None:
        """LIBRA federated hash-intelligence network."""

    return app


def _add_function(app: typer.Typer, *, hash_command_too: bool = True) -> None:
    from worker_function.cli import app as function_app
    from worker_function.cli import hash_command

    app.add_typer(function_app, name="function", help="The remote-hash function.")
    if hash_command_too:
        app.command("hash")(hash_command)


def build_app(argv: list[str] | None = None) -> typer.Typer:
    """The command tree: only the function's commands when ``argv`` names one of them."""
    argv = sys.argv[1:] if argv is None else argv
    app = _new_app()
    if argv and argv[0] in FUNCTION_COMMANDS:
        # Set before worker_function is imported, and inherited by its spawned decode workers.
        sys.dont_write_bytecode = True
        os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
        _add_function(app)
        return app
    chosen = argv[0] if argv and argv[0] in OTHER_COMMANDS else None
    # A component's command imports that component only; the full tree is for `--help` and the
    # like. (Importing worker_function would also switch bytecode writing off for node code.)
    if chosen is None:
        _add_function(app, hash_command_too=False)
    if chosen in (None, "node"):
        from node.cli import app as node_app

        app.add_typer(node_app, name="node", help="An agency's node.")
    if chosen in (None, "coordinator"):
        from coordinator.cli import app as coordinator_app

        app.add_typer(coordinator_app, name="coordinator", help="The federation coordinator.")
    if chosen is None:
        from worker_function.cli import hash_command

        app.command("hash")(hash_command)
    if chosen in (None, "demo"):
        from libra.demo.cli import demo_command

        app.command("demo")(demo_command)
    return app


def __getattr__(name: str) -> Any:
    # ``libra.cli.app`` (the full tree) for callers that import it, e.g. typer's test runner.
    if name == "app":
        return build_app([])
    raise AttributeError(name)


def main() -> None:
    build_app()()
