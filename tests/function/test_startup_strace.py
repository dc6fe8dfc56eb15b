"""The no-write proof covers start-up: the real `libra function serve`, traced by strace from
process start (imports included) to shutdown, with its decode workers, opens no file for writing.

The test runs the function from a fresh copy of its source without any bytecode cache and without
PYTHONDONTWRITEBYTECODE, so Python would write .pyc files unless the function itself prevents it
(libra.cli and worker_function switch bytecode writing off before importing the function's
modules, for the server and its spawned workers). Only the two modules that run before that
switch can act, libra/__init__.py and libra/cli.py, are byte-compiled here first, as `pip install`
(and the container build's compileall) does at installation.
"""

from __future__ import annotations

import contextlib
import os
import py_compile
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.function import helpers as h
from tests.function.test_strace import write_violations

REPO = Path(__file__).resolve().parents[2]
LAB_HOST = "img.example.test"


def _strace() -> str:
    strace = shutil.which("strace")
    if strace is None:
        if os.environ.get("CI") == "true":
            pytest.fail("strace is required in CI")
        pytest.skip("strace is not installed (apt-get install strace)")
    return strace


def _fresh_source(root: Path) -> Path:
    """protocol, worker_function and libra copied without any __pycache__."""
    for package in ("protocol", "worker_function", "libra"):
        shutil.copytree(
            REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    for bootstrap in ("libra/__init__.py", "libra/cli.py"):
        py_compile.compile(str(root / bootstrap), doraise=True)
    return root


def _traced_python(strace_pid: int) -> int:
    """The function's own process: strace's child."""
    path = Path(f"/proc/{strace_pid}/task/{strace_pid}/children")
    for _ in range(600):
        children = path.read_text().split() if path.exists() else []
        # The child once it runs Python (under load an early read can see it before its exec,
        # still strace; that pid's SIGTERM later failed and left the function running, its
        # pipes holding this test open).
        for child in children:
            try:
                program = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if program == sys.executable.encode():
                return int(child)
        time.sleep(0.05)
    raise AssertionError("strace did not start the function")


def test_function_start_up_and_serving_write_no_file(tmp_path: Path) -> None:
    strace = _strace()
    source = _fresh_source(tmp_path / "src")
    image = h.encode(h.generated_image(41), "PNG")
    with h.ImageServer({"/a.png": h.Static(200, image, "image/png")}) as images:
        lab_file = tmp_path / "lab.toml"
        lab_file.write_text(h.lab_toml({LAB_HOST: "127.0.0.1"}, [images.port]))
        port = _free_port()
        trace_file = tmp_path / "trace.txt"  # written by strace, the observer
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("LIBRA_FUNCTION_") and k != "PYTHONDONTWRITEBYTECODE"
        }
        env.update(PYTHONPATH=str(source), LIBRA_FUNCTION_MAX_CONCURRENT_DECODES="1")
        # Exactly what the `libra` console script runs.
        script = "import sys\nfrom libra.cli import main\nsys.argv[0] = 'libra'\nsys.exit(main())"
        command = [sys.executable, "-c", script, "function", "serve", "--lab", str(lab_file)]
        process = subprocess.Popen(
            [
                strace,
                "-f",
                "-qq",
                "-e",
                "trace=%file",
                "-o",
                str(trace_file),
                *command,
                "--port",
                str(port),
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        function: int | None = None
        try:
            function = _traced_python(process.pid)
            url = f"http://127.0.0.1:{port}"
            _wait_healthy(url, process)
            response = httpx.post(
                url + "/v1/analyze",
                json={"url": f"http://{LAB_HOST}:{images.port}/a.png"},
                trust_env=False,
                timeout=120,
            )
            assert response.status_code == 200, response.text
            os.kill(function, signal.SIGTERM)  # graceful shutdown: the trace covers it too
            _, stderr = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                # The function too: killed strace leaves it running, holding our pipes open.
                if function is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(function, signal.SIGKILL)
                process.kill()
                process.communicate(timeout=120)
    if "ptrace" in stderr and process.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"strace cannot trace here: {stderr[-500:]}")
        pytest.skip("ptrace is not permitted in this environment")
    trace = trace_file.read_text()
    assert "worker_function" in trace and "multiprocessing" in trace  # imports were traced
    assert any("sem." in line for line in trace.splitlines())  # and the decode workers
    # Python looked for bytecode of the fresh copy but wrote none.
    assert f"{source}/worker_function/__pycache__" in trace
    assert write_violations(trace) == []


def _free_port() -> int:
    """A free loopback port (released again just before the server binds it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_healthy(url: str, process: subprocess.Popen[str]) -> None:
    # Generous: start-up under strace at load 20 is slow, and its speed proves nothing.
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the function exited: {process.communicate()[1][-2000:]}")
        try:
            if httpx.get(url + "/healthz", trust_env=False, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("the function did not become healthy")
