"""`libra demo`: the whole federation on loopback, compared with the ground truth."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from libra.demo.compare import Comparison
from libra.demo.processes import DemoStepFailed
from libra.demo.runner import DEFAULT_SEED, DemoOptions, DemoResult, run_demo


def _table(title: str, comparison: Comparison, section: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("key")
    for name in ("matches", "distinct"):
        table.add_column(f"{name} (coordinator)", justify="right")
        table.add_column(f"{name} (truth)", justify="right")
    table.add_column("")
    for row in comparison.rows(section):
        ok = row.actual == row.expected
        table.add_row(
            row.key,
            str(row.actual["matches"]),
            str(row.expected["matches"]),
            str(row.actual["distinct"]),
            str(row.expected["distinct"]),
            "[green]ok[/green]" if ok else "[red]DIFFERS[/red]",
        )
    return table


def print_result(console: Console, result: DemoResult) -> None:
    comparison = result.comparison
    console.print(_table("By country", comparison, "by_country"))
    console.print(_table("By hoster (ASN, country)", comparison, "by_hoster"))
    console.print(_table("By hash family", comparison, "by_family"))
    totals = result.picture.get("totals", {})
    console.print(
        f"Reports: {result.picture.get('reports')} from {result.picture.get('nodes')} nodes; "
        f"pages fetched {totals.get('pages_fetched')}, images hashed "
        f"{totals.get('images_hashed')}, hosts seen {totals.get('hosts_seen')}; "
        f"{result.seconds:.1f} s."
    )
    if comparison.agrees:
        console.print("[bold green]The coordinator's picture equals the ground truth.[/bold green]")
    else:
        console.print("[bold red]The picture differs from the ground truth:[/bold red]")
        for line in comparison.differences:
            console.print(f"  - {line}")


def demo_command(
    keep_running: bool = typer.Option(
        False, "--keep-running", help="Leave the coordinator up after the run and print its URL."
    ),
    seed: int = typer.Option(DEFAULT_SEED, help="Seed of the synthetic world."),
    scale: float = typer.Option(1.0, min=0.1, max=4.0, help="Size of the synthetic world."),
    workdir: Path | None = typer.Option(
        None, help="Keep configs, node databases and logs here instead of a temporary directory."
    ),
) -> None:
    """Run three nodes, a remote-hash function and a coordinator on loopback; compare the
    global picture with the synthetic world's ground truth (exit 1 if they differ)."""
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
