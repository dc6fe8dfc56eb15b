"""DP mode against a real `libra coordinator serve` process on loopback: a signed report in,
a noisy labelled picture out, the same answer after a restart, and the budget refusing a
release beyond it; admins read exact counts throughout."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from coordinator.db import create_schema, make_engine
from protocol.keys import NodeKey
from protocol.models import utcnow
from tests.node.fake_coordinator import free_port

from .helpers import bearer, cell, envelope_bytes, fixed_key, make_report, make_token, register
from .test_ingest_theta import with_coverage

CONFIG = """database_url = "sqlite:///{db}"
data_dir = "{dir}"
port = {port}

[viewer]
privacy = "dp"
epsilon = 1.0
budget = 2.0
refresh = 0
"""


class Coordinator:
    """The coordinator in a child process on 127.0.0.1; restartable on the same database."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = tmp_path / "coordinator.toml"
        self.db = tmp_path / "coordinator.db"
        self.log = tmp_path / "coordinator.log"
        self.config.write_text(CONFIG.format(db=self.db, dir=tmp_path, port=self.port))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "libra",
                    "coordinator",
                    "serve",
                    "--config",
                    str(self.config),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        while True:  # until healthy or dead (pytest-timeout bounds a hang)
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1, trust_env=False).is_success:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait()

    def get(self, path: str, token: str, **params: str) -> httpx.Response:
        return httpx.get(
            f"{self.url}{path}", params=params, headers=bearer(token), trust_env=False, timeout=30
        )


@pytest.fixture
def coordinator(tmp_path: Path) -> Iterator[Coordinator]:
    server = Coordinator(tmp_path)
    yield server
    server.stop()


def _signed_report(key: NodeKey) -> bytes:
    now = utcnow()
    start = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    cells = [cell(hoster=f"Hoster {i}", asn=64500 + i, matches=5 + i) for i in range(20)]
    coverage = [("DE", 64500 + i, f"Hoster {i}", 10, 100) for i in range(20)]
    report = make_report(key, created_at=now, period_start=start, cells=cells)
    return envelope_bytes(with_coverage(report, coverage), key)


def test_dp_viewer_tier_in_a_real_process(coordinator: Coordinator) -> None:
    engine = make_engine(f"sqlite:///{coordinator.db}")
    create_schema(engine)
    key = fixed_key(7)
    register(engine, "node-a", "DE", key, utcnow())
    viewer, admin = make_token(engine, "viewer", utcnow()), make_token(engine, "admin", utcnow())
    engine.dispose()

    coordinator.start()
    posted = httpx.post(
        f"{coordinator.url}/v1/reports",
        content=_signed_report(key),
        headers={"content-type": "application/json"},
        trust_env=False,
        timeout=30,
    )
    assert posted.status_code == 200, posted.text
    exact = coordinator.get("/v1/picture", admin).json()
    assert {r["hoster"]: r["matches"] for r in exact["by_hoster"]} == {
        f"Hoster {i}": 5 + i for i in range(20)
    }
    noisy = coordinator.get("/v1/picture", viewer).json()
    assert noisy["privacy"]["mechanism"] == "discrete_laplace"
    assert noisy["privacy"]["epsilon"] == 1.0 and noisy["privacy"]["scale"] == 3.0
    seen = {r["hoster"]: r["matches"] for r in noisy["by_hoster"]}
    assert seen and seen != {h: 5 + int(h.split()[1]) for h in seen}  # noise was added

    coordinator.stop()  # the stored release and the budget spent survive a restart
    coordinator.start()
    assert coordinator.get("/v1/picture", viewer).json() == noisy
    assert coordinator.get("/v1/picture", viewer, hash_family="pdq").status_code == 200
    refused = coordinator.get("/v1/picture", viewer, hash_family="md5")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "privacy_budget_exhausted"
    assert coordinator.get("/v1/picture", admin, hash_family="md5").status_code == 200
