"""What `libra function serve` logs per request (issue 17): nothing at WARNING; one INFO line per
analysis or batch (a URL reference, never the URL); uvicorn's access line only at DEBUG.

The real command in a child process, so uvicorn's own loggers are the ones configured: before,
`serve` ran uvicorn at "info" whatever `log_level` said, so every request (health checks
included) wrote an access line at WARNING.
"""

from __future__ import annotations

import base64
import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from worker_function.urls import url_ref

REPO = Path(__file__).resolve().parents[2]
REQUESTS = 4


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _data_uri() -> str:
    buffer = io.BytesIO()
    Image.linear_gradient("L").save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _serve_and_log(tmp_path: Path, level: str) -> tuple[str, str]:
    """Serve at ``level``, send REQUESTS analyses (good and refused) and health checks, stop;
    the process's whole output (stdout, stderr) and the refused URL."""
    lab = tmp_path / "lab.toml"
    lab.write_text('allow_ranges = ["127.0.0.0/8"]\nallow_ports = [9]\n')
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIBRA_FUNCTION_")}
    env.update(
        PYTHONPATH=str(REPO),
        LIBRA_FUNCTION_LOG_LEVEL=level,
        LIBRA_FUNCTION_DECODE_ISOLATION="thread",
    )
    script = "import sys\nfrom libra.cli import main\nsys.argv[0] = 'libra'\nsys.exit(main())"
    command = [sys.executable, "-c", script, "function", "serve", "--lab", str(lab)]
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    refused = "http://127.0.0.1:9/never-logged.jpg"  # port 9: nothing listens (fetch_failed)
    try:
        _wait_healthy(url, process)
        with httpx.Client(base_url=url, trust_env=False, timeout=120) as client:
            for _ in range(REQUESTS):
                assert client.post("/v1/analyze", json={"url": _data_uri()}).status_code == 200
                assert client.post("/v1/analyze", json={"url": refused}).status_code == 502
                assert client.get("/healthz").status_code == 200
                batch = {"items": [{"url": _data_uri()}, {"url": refused + "?batch"}]}
                assert client.post("/v1/analyze:batch", json=batch).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            out, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
    return out + err, refused


def _wait_healthy(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 180  # generous: start-up speed proves nothing here
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(process.communicate()[1][-2000:])
        try:
            if httpx.get(url + "/healthz", trust_env=False, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("the function did not become healthy")


def test_nothing_per_request_at_warning(tmp_path: Path) -> None:
    output, _ = _serve_and_log(tmp_path, "WARNING")
    per_request = [line for line in output.splitlines() if "analyze" in line or "HTTP/1.1" in line]
    assert per_request == []
    assert "LAB MODE" in output  # warnings still reach the log


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_one_info_line_per_analysis(tmp_path: Path, level: str) -> None:
    output, refused = _serve_and_log(tmp_path, level)
    analyses = [line for line in output.splitlines() if " INFO worker_function analyze " in line]
    assert len(analyses) == 2 * REQUESTS
    # A batch: one INFO line with its outcome counts; its items at DEBUG only.
    batches = [line for line in output.splitlines() if "INFO worker_function analyze:batch" in line]
    assert len(batches) == REQUESTS and all("fetch_failed 1, ok 1" in b for b in batches)
    items = [line for line in output.splitlines() if "DEBUG worker_function analyze url:" in line]
    assert len(items) == (2 * REQUESTS if level == "DEBUG" else 0)
    assert sum(url_ref(refused) in line for line in analyses) == REQUESTS
    assert "never-logged" not in output
    access = [line for line in output.splitlines() if '"POST /v1/analyze HTTP/1.1"' in line]
    # uvicorn's access line: at DEBUG only (it repeats our line and names the client address).
    assert len(access) == (2 * REQUESTS if level == "DEBUG" else 0)


def test_unknown_log_level_is_refused() -> None:
    from worker_function.settings import FunctionSettings

    with pytest.raises(ValueError, match="log_level must be one of"):
        FunctionSettings(log_level="LOUD", require_auth=False)
    assert FunctionSettings(log_level="debug", require_auth=False).log_level == "DEBUG"
