"""`libra <component> <verb>`: gathers the components' own Typer apps."""

from __future__ import annotations

import typer

from coordinator.cli import app as coordinator_app
from libra.demo.cli import demo_command
from node.cli import app as node_app
from worker_function.cli import app as function_app
from worker_function.cli import hash_command

app = typer.Typer(
    name="libra",
    help="LIBRA federated hash-intelligence network.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(function_app, name="function", help="The remote-hash function.")
app.add_typer(node_app, name="node", help="An agency's node.")
app.add_typer(coordinator_app, name="coordinator", help="The federation coordinator.")
app.command("hash")(hash_command)
app.command("demo")(demo_command)


def main() -> None:
    app()
