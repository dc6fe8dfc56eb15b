"""The demo's step display: a live list with spinners and timers on a terminal, plain lines
(a step's name when it starts, its time when it ends) anywhere else.

A log file or a CI job's output gets no spinner frames, cursor movements or colour codes
(issue 17): Rich's live display would only print its last frame there, at the very end, so a
user tailing the log would see nothing for minutes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType

from rich.console import Console, RenderableType
from rich.progress import Progress, SpinnerColumn, Task, TaskID, TextColumn, TimeElapsedColumn
from rich.text import Text


class _StateColumn(SpinnerColumn):
    """A spinner while the step runs, a tick when it is done, a cross when it failed."""

    def render(self, task: Task) -> RenderableType:
        if task.fields.get("failed"):
            return Text("✗", style="red")
        return super().render(task)


class Steps:
    """Numbered steps, one at a time: `start()` ends the step before; leaving the `with`
    block ends the last one (as failed if an exception is leaving it)."""

    def __init__(
        self, console: Console, total: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.console = console
        self.total = total
        self.clock = clock
        self.index = 0
        self._started = 0.0
        self._open = False  # a step has started and not ended
        self._live = console.is_terminal and not console.is_dumb_terminal
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> Steps:
        if self._live:
            self._progress = Progress(
                _StateColumn(finished_text="[green]✓[/green]"),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=False,
            )
            self._progress.start()
        return self

    def start(self, text: str) -> None:
        self._end(failed=False)
        self.index += 1
        self._started = self.clock()
        self._open = True
        label = f"[{self.index}/{self.total}] {text}"
        if self._progress is not None:
            self._task = self._progress.add_task(label, total=None)
        else:
            self._plain(f"{label} ...")

    def _end(self, failed: bool) -> None:
        if not self._open:
            return
        self._open = False
        if self._progress is not None and self._task is not None:
            # completed == total stops the task's timer at its own duration.
            self._progress.update(self._task, total=1, completed=1, failed=failed)
            return
        seconds = self.clock() - self._started
        what = "failed after" if failed else "done in"
        self._plain(f"[{self.index}/{self.total}] {what} {seconds:.1f} s")

    def _plain(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False, emoji=False)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._end(failed=exc_type is not None)
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
