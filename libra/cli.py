"""`libra <component> <verb>`: gathers the components' own Typer apps.

`libra function ...` and `libra hash ...` import only the function (worker_function, protocol and
third-party libraries): the function's process must hold nothing of the node or coordinator, and
numba (imported by node code) opens files for writing at start-up. So components are imported
when their command is chosen, not at module import. The function commands also switch bytecode
writing off before the first worker_function import (docs/operations-function.md).

`libra`, `libra --help` and `libra --version` import no component at all: they are answered from
a summary tree whose entries only name the commands (issue 17: help at once, not after seconds
of imports).
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer

# Commands served by the remote-hash function's code alone.
FUNCTION_COMMANDS = frozenset({"function", "hash"})
OTHER_COMMANDS = frozenset({"node", "coordinator", "demo"})

# One line per command in `libra --help`, the same in the summary and the full tree.
SUMMARY = {
    "coordinator": "The federation coordinator: reports, the global picture, members.",
    "demo": "A whole federation on loopback, checked against its synthetic world's truth.",
    "function": "The remote-hash function: fetch, decode and hash images in memory only.",
    "hash": "Hash local image files with the function's exact decode rules.",
    "node": "An agency's node: crawl, match against private lists, notice, report.",
}
GROUPS = ("coordinator", "function", "node")


def version() -> str:
    from importlib import metadata  # only when asked: it costs a tenth of `libra --help`

    try:
        return metadata.version("libra-network")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "unknown"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"libra {version()}")
        raise typer.Exit()


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
    def _root(
        _version: Annotated[
            bool,
            typer.Option(
                "--version",
                callback=_show_version,
                is_eager=True,
                help="Print the installed version and exit.",
            ),
        ] = False,
    ) -> None:
        """LIBRA federated hash-intelligence network."""

    return app


def _summary_app() -> typer.Typer:
    """The command list without the commands: nothing but typer is imported for it."""
    app = _new_app()
    for name in sorted(SUMMARY):
        if name in GROUPS:
            group = typer.Typer(help=SUMMARY[name])

            @group.callback()
            def _group() -> None:
                pass  # never runs: a named command always gets the full tree

            app.add_typer(group, name=name, help=SUMMARY[name])
        else:

            def _command() -> None:
                pass  # never runs, as above

            app.command(name, help=SUMMARY[name])(_command)
    return app


def _add_function(app: typer.Typer, *, hash_command_too: bool = True) -> None:
    from worker_function.cli import app as function_app
    from worker_function.cli import hash_command

    app.add_typer(function_app, name="function", help=SUMMARY["function"])
    if hash_command_too:
        app.command("hash", short_help=SUMMARY["hash"])(hash_command)


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
        from node.cli.main import app as node_app

        app.add_typer(node_app, name="node", help=SUMMARY["node"])
    if chosen in (None, "coordinator"):
        from coordinator.cli import app as coordinator_app

        app.add_typer(coordinator_app, name="coordinator", help=SUMMARY["coordinator"])
    if chosen is None:
        from worker_function.cli import hash_command

        app.command("hash", short_help=SUMMARY["hash"])(hash_command)
    if chosen in (None, "demo"):
        from libra.demo.cli import demo_command

        app.command("demo", short_help=SUMMARY["demo"])(demo_command)
    return app


def __getattr__(name: str) -> Any:
    # ``libra.cli.app`` (the full tree) for callers that import it, e.g. typer's test runner.
    if name == "app":
        return build_app([])
    raise AttributeError(name)


def main() -> None:
    argv = sys.argv[1:]
    named = bool(argv) and argv[0] in FUNCTION_COMMANDS | OTHER_COMMANDS
    # build_app first: for the function it switches bytecode writing off before any other
    # module of ours is imported.
    app = build_app(argv) if named else _summary_app()
    from libra import help_style

    help_style.apply()
    app(prog_name="libra")
