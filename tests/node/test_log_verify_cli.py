"""`libra node log verify` end to end with real coordinator processes on loopback.

The node reports to an honest coordinator and verifies its log (exit 0, cosigned). Then the
operator swaps in a second database behind the same signing key (a forked history, as a
dishonest coordinator would show to other parties): the next `log verify` exits 1, "split view".
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from coordinator.db import create_schema, new_session
from coordinator.db import make_engine as coordinator_engine
from coordinator.registry import add_node
from coordinator.tlog import append_snapshot
from node.cli.main import app
from node.keys.files import load_signing_key
from protocol.models import utcnow
from tests.node.fake_coordinator import free_port

runner = CliRunner()


class Served:
    """`libra coordinator serve` in a child process, on 127.0.0.1 only."""

    def __init__(self, tmp_path: Path, port: int) -> None:
        self.tmp_path, self.port = tmp_path, port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, database: Path) -> None:
        config = self.tmp_path / f"{database.stem}.toml"
        config.write_text(
            f'database_url = "sqlite:///{database}"\nport = {self.port}\n'
            f'data_dir = "{self.tmp_path}"\n',  # one data dir: one signing key for both views
            encoding="utf-8",
        )
        with (self.tmp_path / f"{database.stem}.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "libra", "coordinator", "serve", "--config", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        while True:  # until healthy or dead (pytest-timeout bounds a hang)
            assert self.proc.poll() is None, (self.tmp_path / f"{database.stem}.log").read_text()
            try:
                url = f"http://127.0.0.1:{self.port}/healthz"
                if httpx.get(url, timeout=1, trust_env=False).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    server = Served(tmp_path, free_port())
    yield server
    server.stop()


def _database(path: Path, node_id: str, public_key_b64: str) -> Path:
    engine = coordinator_engine(f"sqlite:///{path}")
    create_schema(engine)
    with new_session(engine) as session:
        add_node(
            session, node_id=node_id, country="DE", public_key_b64=public_key_b64, now=utcnow()
        )
    engine.dispose()
    return path


def test_log_verify_passes_then_catches_a_forked_log(
    tmp_path: Path, served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LIBRA_NODE_CONFIG", raising=False)
    directory = tmp_path / "node"
    url = f"http://127.0.0.1:{served.port}"
    init = runner.invoke(
        app,
        [
            "init",
            "--dir",
            str(directory),
            "--node-id",
            "node-de",
            "--country",
            "de",
            "--coordinator-url",
            url,
        ],
    )
    assert init.exit_code == 0, init.output
    monkeypatch.chdir(directory)
    key = load_signing_key(directory / "node.key").public_key_b64
    honest = _database(tmp_path / "honest.db", "node-de", key)
    forked = _database(tmp_path / "forked.db", "node-de", key)

    served.start(honest)
    reported = runner.invoke(app, ["report"])
    assert reported.exit_code == 0, reported.output
    first = runner.invoke(app, ["log", "verify"])
    assert first.exit_code == 0, first.output
    assert "log verified: size 1" in first.output and "1 report(s) newly proven" in first.output
    assert "cosigned" in first.output
    shown = runner.invoke(app, ["log", "show"])
    assert shown.exit_code == 0 and "libra.node/node-de" not in shown.output  # log's own note
    served.stop()

    # The fork: the same key, a history without this node's report.
    engine = coordinator_engine(f"sqlite:///{forked}")
    with new_session(engine) as session:
        append_snapshot(session, "ab" * 32, utcnow())
    engine.dispose()
    served.start(forked)
    caught = runner.invoke(app, ["log", "verify"])
    assert caught.exit_code == 1, caught.output
    assert "split view" in caught.output
