"""Store and forward across a coordinator crash: the real coordinator process is killed in the
middle of a flush and restarted; every report arrives exactly once and the outbox empties."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from coordinator.db import create_schema
from coordinator.db import make_engine as coordinator_engine
from coordinator.models import ReportRow
from coordinator.registry import add_node
from node.db import make_engine as node_engine
from node.federation import outbox
from node.models import OutboxItem
from protocol import PROTOCOL_VERSION, REPORT_PAYLOAD_TYPE
from protocol.dsse import sign
from protocol.hashes import HashFamily
from protocol.keys import NodeKey
from protocol.models import Denominators, Period, Report, ReportCell, new_report_id, utcnow

pytestmark = pytest.mark.e2e
REPORTS = 300


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Coordinator:
    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.config, self.port, self.log = config, port, log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

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
        # Until healthy or dead, however long start-up takes here (pytest-timeout bounds it).
        while True:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1, trust_env=False).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: no graceful shutdown, requests in flight are cut
        self.proc.wait()


@pytest.fixture
def coordinator(tmp_path: Path) -> Iterator[tuple[Coordinator, Engine]]:
    db = tmp_path / "coordinator.db"
    port = _free_port()
    config = tmp_path / "coordinator.toml"
    config.write_text(
        f'database_url = "sqlite:///{db}"\nport = {port}\ndata_dir = "{tmp_path}"\n',
        encoding="utf-8",
    )
    engine = coordinator_engine(f"sqlite:///{db}")
    create_schema(engine)
    proc = Coordinator(config, port, tmp_path / "coordinator.log")
    yield proc, engine
    if proc.proc is not None and proc.proc.poll() is None:
        proc.kill()
    engine.dispose()


def _queue(engine: Engine, key: NodeKey, count: int) -> list[str]:
    start = utcnow().replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    ids: list[str] = []
    with Session(engine) as session:
        for sequence in range(1, count + 1):
            report = Report(
                protocol_version=PROTOCOL_VERSION,
                report_id=new_report_id(),
                node_id="node-r",
                key_id=key.key_id,
                sequence=sequence,
                created_at=utcnow(),
                period=Period(start=start, end=start + timedelta(days=1)),
                cells=[
                    ReportCell(
                        country="DE",
                        asn=64500,
                        hoster="H",
                        hash_family=HashFamily.PDQ,
                        matches=1,
                        distinct=1,
                    )
                ],
                denominators=Denominators(pages_fetched=1, images_hashed=1, hosts_seen=1),
            )
            envelope = sign(report.to_payload(), REPORT_PAYLOAD_TYPE, key)
            session.add(
                OutboxItem(
                    report_id=report.report_id,
                    sequence=sequence,
                    period_start=report.period.start,
                    period_end=report.period.end,
                    envelope=envelope.model_dump_json(by_alias=True),
                )
            )
            ids.append(report.report_id)
        session.commit()
    return ids


def _stored(engine: Engine) -> int:
    with Session(engine) as session:
        return int(session.exec(select(func.count()).select_from(ReportRow)).one())


def test_every_report_arrives_exactly_once(
    coordinator: tuple[Coordinator, Engine], tmp_path: Path
) -> None:
    proc, cengine = coordinator
    key = NodeKey.generate()
    with Session(cengine) as session:
        add_node(
            session, node_id="node-r", country="DE", public_key_b64=key.public_key_b64, now=utcnow()
        )
    nengine = node_engine(f"sqlite:///{tmp_path / 'node.db'}")
    ids = _queue(nengine, key, REPORTS)
    proc.start()

    results: list[outbox.FlushResult] = []
    flusher = threading.Thread(
        target=lambda: results.append(asyncio.run(outbox.flush(nengine, proc.url, timeout_s=5)))
    )
    flusher.start()
    # Kill mid-stream: after some reports were stored, long before all of them.
    while _stored(cengine) < REPORTS // 5 and flusher.is_alive():  # no deadline of our own
        time.sleep(0.01)
    proc.kill()
    flusher.join()
    first = results[0]
    stored_at_crash = _stored(cengine)
    assert 0 < stored_at_crash < REPORTS, "the kill did not land mid-stream"
    assert first.pending and first.last_error is not None
    assert len(outbox.pending_items(nengine)) == REPORTS - len(first.delivered) - len(
        first.duplicates
    )

    # Restart the same coordinator (same database) and flush until the outbox is empty.
    proc.start()
    rounds = 0
    while outbox.pending_items(nengine) and rounds < 5:
        again = asyncio.run(outbox.flush(nengine, proc.url, timeout_s=10))
        assert not again.rejected, again.rejected
        rounds += 1
    assert outbox.pending_items(nengine, include_rejected=True) == []
    with Session(cengine) as session:
        stored_ids = list(session.exec(select(ReportRow.report_id)))
        sequences = sorted(session.exec(select(ReportRow.sequence)))
    assert sorted(stored_ids) == sorted(ids)  # every report, none twice (report_id is the key)
    assert sequences == list(range(1, REPORTS + 1))
    nengine.dispose()
