"""The container recipe keeps its promises: non-root, $PORT, the function's CLI, no writes; and
`serve` refuses to start an unauthenticated production function."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.deploy import dockerfiles
from worker_function.cli import app

REPO = Path(__file__).resolve().parents[2]


def test_dockerfile_runs_the_function_as_non_root_on_port() -> None:
    text = (REPO / "Dockerfile.function").read_text()
    lines = [line.strip() for line in text.splitlines() if line and not line.startswith("#")]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and all(not u.startswith(("0", "root")) for u in users)
    assert 'CMD ["libra", "function", "serve"]' in lines
    assert "PORT=8080" in text and "LIBRA_FUNCTION_HOST=0.0.0.0" in text
    assert "PYTHONDONTWRITEBYTECODE=1" in text  # a read-only root file system stays untouched
    # AWS Lambda via the Web Adapter: its own target, so the default image pulls no adapter.
    stages = dockerfiles.load(REPO / "Dockerfile.function")
    assert any(c.dest == "/opt/extensions/lambda-adapter" for c in stages["lambda"].copies)
    default = stages[dockerfiles.default_target(stages)]
    assert not any("lambda" in c.dest for c in default.copies)
    assert default.env["OPENBLAS_NUM_THREADS"] == default.env["OMP_NUM_THREADS"] == "1"
    assert "VOLUME" not in text


def test_deployment_doc_covers_every_platform() -> None:
    text = (REPO / "docs" / "deployment.md").read_text()
    assert "## Remote-hash function" in text
    for platform in ("Knative", "Cloud Run", "AWS Lambda", "OpenFaaS", "Azure Functions"):
        assert f"### {platform}" in text or platform in text, platform


def test_serve_refuses_to_start_without_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LAB", "AUTHORIZED_KEYS", "REQUIRE_AUTH"):
        monkeypatch.delenv(f"LIBRA_FUNCTION_{name}", raising=False)
    result = CliRunner().invoke(app, ["serve", "--port", "0"])
    assert result.exit_code == 2
    assert "open proxy" in result.output
