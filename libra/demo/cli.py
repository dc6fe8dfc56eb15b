"""`libra demo`: the whole federation on loopback over six report periods, compared with the
ground truth."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from libra.demo.defaults import DEFAULT_SCALE, DEFAULT_SEED


def demo_command(
    keep_running: bool = typer.Option(
        False, "--keep-running", help="Leave the coordinator up after the run and print its URL."
    ),
    seed: int = typer.Option(DEFAULT_SEED, help="Seed of the synthetic world."),
    scale: float = typer.Option(
        DEFAULT_SCALE, min=0.1, max=4.0, help="Size of the synthetic world (per period)."
    ),
    workdir: Path | None = typer.Option(
        None, help="Keep configs, node databases and logs here instead of a temporary directory."
    ),
) -> None:
    """Run three nodes, a remote-hash function and a coordinator on loopback through six
    simulated days (material appears, hosters remove it after notices, some of it moves);
    compare each day's picture, the trends, time to removal per hoster and the displacement
    flows with the synthetic world's ground truth (exit 1 if they differ)."""
    # Imported here, not above: `libra demo --help` answers without loading the demo.
    from libra.demo.processes import DemoStepFailed
    from libra.demo.runner import DemoOptions, run_demo
    from libra.demo.summary import print_result

    console = Console()
    try:
        result = run_demo(
            DemoOptions(seed=seed, scale=scale, workdir=workdir),
            console,
            keep_running=keep_running,
            on_result=lambda r: print_result(console, r),
        )
    except DemoStepFailed as exc:
        console.print(f"[bold red]demo failed:[/bold red] {exc}")
        raise typer.Exit(2) from exc
    if not result.agrees:
        raise typer.Exit(1)
