"""`libra demo`: the whole federation on loopback over six report periods, compared with the
ground truth."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from libra.demo.defaults import DEFAULT_SCALE, DEFAULT_SEED
from libra.demo.listen import DEFAULT_HOST, ListenError, check_port_free, loopback_host

EXIT_STEP_FAILED = 2  # also for an unusable --host/--port, found before anything starts
EXIT_INTERRUPTED = 130  # as a shell reports a command stopped by Ctrl-C


def _host_option(value: str) -> str:
    try:
        return loopback_host(value)
    except ListenError as exc:
        raise typer.BadParameter(str(exc)) from None


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
    host: str = typer.Option(
        DEFAULT_HOST,
        callback=_host_option,
        help="Address of the coordinator (and its dashboard): a loopback address only "
        "(127.0.0.0/8 or ::1); the demo never listens beyond this machine.",
    ),
    port: int | None = typer.Option(
        None,
        min=1,
        max=65535,
        show_default="a free port",
        help="Port of the coordinator (and its dashboard); one in use is refused before "
        "anything starts.",
    ),
) -> None:
    """Run three nodes, a remote-hash function and a coordinator on loopback through six
    simulated days (material appears, hosters remove it after notices, some of it moves);
    compare each day's picture, the trends, time to removal per hoster and the displacement
    flows with the synthetic world's ground truth (exit 1 if they differ, 2 if a step
    fails)."""
    if port is not None:
        try:
            check_port_free(host, port)
        except ListenError as exc:
            raise typer.BadParameter(str(exc), param_hint="'--port'") from None
    # Imported here, not above: `libra demo --help` answers without loading the demo.
    from libra.demo.processes import DemoStepFailed
    from libra.demo.runner import DemoOptions, run_demo
    from libra.demo.summary import print_result

    console = Console()
    options = DemoOptions(seed=seed, scale=scale, workdir=workdir, host=host, port=port)
    try:
        result = run_demo(
            options,
            console,
            keep_running=keep_running,
            on_result=lambda r: print_result(console, r),
        )
    except DemoStepFailed as exc:
        # One line, unwrapped: a log keeps it whole (the terminal wraps it for the eye).
        console.print(
            f"[bold red]demo failed:[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True
        )
        raise typer.Exit(EXIT_STEP_FAILED) from exc
    except KeyboardInterrupt:
        # The federation's processes are stopped on the way out (run_demo's finally).
        console.print("demo interrupted", highlight=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if not result.agrees:
        raise typer.Exit(1)
