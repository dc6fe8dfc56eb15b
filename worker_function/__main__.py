"""``python -m worker_function serve|key|...``: the function's command line without the `libra`
dispatcher (the package's __init__ has already switched bytecode writing off)."""

from worker_function.cli import app

app(prog_name="python -m worker_function")
