"""Child processes of the demo: each component runs as its own `libra` process over HTTP."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from libra.demo.listen import free_port

__all__ = ["DemoStepFailed", "ProcessGroup", "error_line", "free_port", "libra_argv"]

# Rich's traceback boxes and rules: a child's pretty traceback is framed in these.
_BOX = re.compile(r"[\u2500-\u257f]+")
# The last line of a Python traceback ("ValueError: ...", "pkg.mod.SomeError: ..."), or a CLI's
# own error line ("Error: ...", "error: ...").
_ERROR = re.compile(r"^(?:[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)\b|error\b).*", re.I)


class DemoStepFailed(RuntimeError):
    """A component of the demo did not start or a command failed; the message says which."""


def error_line(output: str) -> str:
    """One line saying why a child failed, from what it printed: the last error line (a
    traceback's last line or a CLI's "Error: ..."), else the last line; without the boxes of
    a pretty traceback. The whole output stays in the child's log."""
    lines = [_BOX.sub(" ", line).strip(" |") for line in output.splitlines()]
    lines = [" ".join(line.split()) for line in lines if line.strip(" |")]
    for index in range(len(lines) - 1, -1, -1):
        line = lines[index]
        if line.lower() == "error" and index + 1 < len(lines):
            return f"Error: {lines[index + 1]}"  # a CLI's error panel: its title, then the text
        if _ERROR.match(line):
            return line
    return lines[-1] if lines else "no output"


def libra_argv(*args: str) -> list[str]:
    # `python -m libra` rather than the console script: works from any venv without PATH set-up.
    return [sys.executable, "-m", "libra", *args]


@dataclass
class ProcessGroup:
    """Starts long-running services and runs one-shot commands, logging each to its own file."""

    log_dir: Path
    services: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    # Defaults of `start` and `run` (libra/demo/budget.py); None: no limit.
    service_timeout: float = 60.0
    command_timeout: float | None = None

    def _log(self, name: str) -> Path:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return self.log_dir / f"{name}.log"

    def start(
        self,
        name: str,
        args: list[str],
        health_url: str,
        timeout: float | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        timeout = self.service_timeout if timeout is None else timeout
        log = self._log(name).open("ab")
        proc = subprocess.Popen(
            libra_argv(*args),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=None if env is None else {**os.environ, **env},
        )
        self.services.append((name, proc))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                output = self._log(name).read_text(encoding="utf-8", errors="replace")
                raise DemoStepFailed(
                    f"{name} exited with {proc.returncode} at start-up: {error_line(output)}; "
                    f"see {self._log(name)}"
                )
            try:
                if httpx.get(health_url, timeout=1.0, trust_env=False).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise DemoStepFailed(f"{name} did not become healthy at {health_url} in {timeout:.0f} s")

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = self._log(name).open("ab")
        return subprocess.Popen(libra_argv(*args), stdout=log, stderr=subprocess.STDOUT)

    def run(
        self,
        name: str,
        args: list[str],
        ok_codes: tuple[int, ...] = (0,),
        timeout: float | None = None,
    ) -> str:
        timeout = self.command_timeout if timeout is None else timeout
        try:
            proc = subprocess.run(
                libra_argv(*args), capture_output=True, text=True, check=False, timeout=timeout
            )
        except subprocess.TimeoutExpired as exc:  # the child was killed
            raise DemoStepFailed(
                f"`libra {' '.join(args[:3])}` did not finish within its budget of "
                f"{timeout:.0f} s (libra/demo/budget.py)"
            ) from exc
        with self._log(name).open("a", encoding="utf-8") as log:
            log.write(proc.stdout + proc.stderr)
        if proc.returncode not in ok_codes:
            raise DemoStepFailed(
                f"`libra {' '.join(args[:3])}` failed (exit {proc.returncode}): "
                f"{error_line(proc.stderr or proc.stdout)}; see {self._log(name)}"
            )
        return proc.stdout

    def wait(
        self,
        name: str,
        proc: subprocess.Popen[bytes],
        ok_codes: tuple[int, ...] = (0,),
        timeout: float | None = None,
    ) -> None:
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            proc.kill()
            proc.wait()
            raise DemoStepFailed(
                f"{name} did not finish within its budget of {timeout:.0f} s "
                f"(libra/demo/budget.py); see {self._log(name)}"
            ) from exc
        if code not in ok_codes:
            output = self._log(name).read_text(encoding="utf-8", errors="replace")
            raise DemoStepFailed(
                f"{name} failed (exit {code}): {error_line(output)}; see {self._log(name)}"
            )

    def stop_all(self) -> None:
        for _, proc in reversed(self.services):
            if proc.poll() is None:
                proc.terminate()
        for _, proc in self.services:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.services.clear()
