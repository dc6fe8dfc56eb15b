"""Coordinator benchmarks: verified ingest over HTTP, and global-picture query latency.

    .venv/bin/python benchmarks/bench_coordinator.py [--reports 6000] [--skip-postgres]
        [--picture-nodes 200 --picture-days 365 --picture-cells 50] [--json out.json]

Ingest: a real `libra coordinator serve` process (uvicorn, one worker) on loopback; signed
reports (5 cells each, 50 registered nodes) are generated and signed BEFORE the clock starts,
then sent by 8 concurrent clients (a) one report per POST /v1/reports and (b) 100 per
POST /v1/reports/batch. Targets (the named baselines): >= 2,000 reports/s on SQLite and
>= 1,000 on PostgreSQL; the ratio measured/target is printed.

Picture: PostgreSQL filled directly (COPY) with daily reports of N nodes x D days x C cells,
then GET /v1/picture over HTTP for the whole range, a quarter, a month and one hash family,
--repeats times each; p50/p95 against the 300 ms target. The PostgreSQL server must be on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text

from coordinator.auth import Role, create_token
from coordinator.db import create_schema, make_engine, new_session
from coordinator.registry import add_node
from protocol import PROTOCOL_VERSION, REPORT_PAYLOAD_TYPE
from protocol.dsse import sign
from protocol.hashes import HashFamily
from protocol.keys import NodeKey
from protocol.models import (
    Denominators,
    Period,
    Report,
    ReportCell,
    new_report_id,
    utcnow,
)

PG_URL = os.environ.get(
    "LIBRA_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
INGEST_TARGET = {"sqlite": 2000.0, "postgres": 1000.0}
PICTURE_P95_TARGET_MS = 300.0
NODES = 50
CONCURRENCY = 8
BATCH = 100


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(config: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "libra", "coordinator", "serve", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "LIBRA_COORDINATOR_RATE_LIMIT_PER_NODE": "0"},
        )
    for _ in range(300):
        try:
            if (
                httpx.get(
                    f"http://127.0.0.1:{port}/healthz", timeout=1, trust_env=False
                ).status_code
                == 200
            ):
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("coordinator did not start:\n" + log.read_text())


def signed_reports(keys: list[NodeKey], count: int) -> list[bytes]:
    now = utcnow()
    day = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    out: list[bytes] = []
    rng = random.Random(7)
    for i in range(count):
        node = i % len(keys)
        cells = [
            ReportCell(
                country=rng.choice(["DE", "FR", "NL", "US", "RU"]),
                asn=64500 + rng.randrange(50) * 5 + j,
                hoster=f"hoster-{rng.randrange(50)}",
                hash_family=HashFamily.PDQ,
                matches=rng.randrange(1, 50),
                distinct=1,
            )
            for j in range(5)
        ]
        report = Report(
            protocol_version=PROTOCOL_VERSION,
            report_id=new_report_id(),
            node_id=f"bench-{node}",
            key_id=keys[node].key_id,
            sequence=i // len(keys) + 1,
            created_at=now,
            period=Period(start=day, end=day + timedelta(days=1)),
            cells=cells,
            denominators=Denominators(pages_fetched=100, images_hashed=400, hosts_seen=20),
        )
        out.append(
            json.dumps(
                sign(report.to_payload(), REPORT_PAYLOAD_TYPE, keys[node]).to_json()
            ).encode()
        )
    return out


async def send_single(url: str, bodies: list[bytes]) -> float:
    # Each node's reports go in sequence order: lane k sends the reports of nodes k, k+8, ...
    lanes: list[list[bytes]] = [[] for _ in range(CONCURRENCY)]
    for i, body in enumerate(bodies):
        lanes[(i % NODES) % CONCURRENCY].append(body)

    async def lane(items: list[bytes], client: httpx.AsyncClient) -> None:
        for body in items:
            response = await client.post(
                f"{url}/v1/reports", content=body, headers={"content-type": "application/json"}
            )
            if response.status_code != 200:
                raise SystemExit(f"ingest failed: {response.status_code} {response.text}")

    async with httpx.AsyncClient(timeout=60, trust_env=False) as client:
        start = time.perf_counter()
        await asyncio.gather(*(lane(items, client) for items in lanes))
        return time.perf_counter() - start


async def send_batches(url: str, bodies: list[bytes]) -> float:
    lanes: list[list[bytes]] = [[] for _ in range(CONCURRENCY)]
    for i, body in enumerate(bodies):
        lanes[(i % NODES) % CONCURRENCY].append(body)

    async def lane(items: list[bytes], client: httpx.AsyncClient) -> None:
        for offset in range(0, len(items), BATCH):
            chunk = b'{"envelopes": [' + b",".join(items[offset : offset + BATCH]) + b"]}"
            response = await client.post(
                f"{url}/v1/reports/batch",
                content=chunk,
                headers={"content-type": "application/json"},
            )
            bad = [r for r in response.json()["results"] if r["http_status"] != 200]
            if response.status_code != 200 or bad:
                raise SystemExit(f"batch ingest failed: {response.status_code} {bad[:3]}")

    async with httpx.AsyncClient(timeout=120, trust_env=False) as client:
        start = time.perf_counter()
        await asyncio.gather(*(lane(items, client) for items in lanes))
        return time.perf_counter() - start


def prepare(url: str, keys: list[NodeKey], connect_args: dict[str, Any] | None = None) -> None:
    engine = make_engine(url, connect_args=connect_args)
    create_schema(engine)
    with new_session(engine) as session:
        for n, key in enumerate(keys):
            add_node(
                session,
                node_id=f"bench-{n}",
                country="DE",
                public_key_b64=key.public_key_b64,
                now=utcnow(),
            )
    engine.dispose()


def ingest_run(backend: str, reports: int, workdir: Path) -> dict[str, Any]:
    keys = [NodeKey.generate() for _ in range(NODES)]
    print(f"[{backend}] signing {2 * reports} reports (not timed) ...", flush=True)
    single_bodies = signed_reports(keys, reports)
    rest = signed_reports(keys, 2 * reports)[reports:]  # sequences continue after the first half
    port = free_port()
    config = workdir / f"{backend}.toml"
    schema = None
    if backend == "sqlite":
        db_url = f"sqlite:///{workdir / 'bench.db'}"
        prepare(db_url, keys)
        config.write_text(f'database_url = "{db_url}"\nport = {port}\ndata_dir = "{workdir}"\n')
    else:
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        prepare(PG_URL, keys, {"options": f"-csearch_path={schema}"})
        config.write_text(
            f'database_url = "{PG_URL}?options=-csearch_path%3D{schema}"\n'
            f'port = {port}\ndata_dir = "{workdir}"\n'
        )
    proc = serve(config, port, workdir / f"{backend}.log")
    url = f"http://127.0.0.1:{port}"
    try:
        single_s = asyncio.run(send_single(url, single_bodies))
        batch_s = asyncio.run(send_batches(url, rest))
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        if schema is not None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()
    single_rate, batch_rate = reports / single_s, reports / batch_s
    target = INGEST_TARGET[backend]
    result = {
        "backend": backend,
        "reports": reports,
        "single_rps": round(single_rate),
        "batch_rps": round(batch_rate),
        "target_rps": target,
        "single_ratio": round(single_rate / target, 2),
        "batch_ratio": round(batch_rate / target, 2),
    }
    print(
        f"[{backend}] ingest: single {single_rate:,.0f} reports/s "
        f"({single_rate / target:.2f}x target), batch of {BATCH}: {batch_rate:,.0f} reports/s "
        f"({batch_rate / target:.2f}x target {target:,.0f})",
        flush=True,
    )
    return result


# --- picture ----------------------------------------------------------------------------------


def fill_picture_data(engine_url: str, schema: str, nodes: int, days: int, cells: int) -> int:
    """COPY synthetic daily reports straight into the tables (ingest is measured above)."""
    import psycopg

    dsn = engine_url.replace("postgresql+psycopg://", "postgresql://")
    rng = random.Random(11)
    start = datetime(2025, 11, 24, tzinfo=UTC)
    countries = [
        "DE",
        "FR",
        "NL",
        "US",
        "RU",
        "PL",
        "IT",
        "ES",
        "SE",
        "CZ",
        "UA",
        "BR",
        "IN",
        "JP",
        "ZA",
    ]
    universe = [(rng.choice(countries), 64500 + h, f"hoster-{h}") for h in range(2000)]
    families = [f.value for f in HashFamily][:3]
    now = utcnow()
    with psycopg.connect(dsn, options=f"-csearch_path={schema}") as conn, conn.cursor() as cur:
        for n in range(nodes):
            cur.execute(
                "INSERT INTO nodes (node_id, country, created_at, status) "
                "VALUES (%s, %s, %s, 'active')",
                (f"n-{n}", countries[n % len(countries)], now),
            )
            cur.execute(
                "INSERT INTO node_keys (key_id, node_id, public_key, created_at) "
                "VALUES (%s, %s, %s, %s)",
                (f"{n:064x}", f"n-{n}", "x", now),
            )
        total = 0
        for day in range(days):
            p_start = start + timedelta(days=day)
            p_end = p_start + timedelta(days=1)
            reports = io.StringIO()
            cell_rows = io.StringIO()
            denoms = io.StringIO()
            for n in range(nodes):
                rid = uuid.uuid4().hex
                fields = [rid, f"n-{n}", f"{n:064x}", str(day + 1), p_end.isoformat()]
                fields += [p_start.isoformat(), p_end.isoformat(), "0" * 64, "{}", now.isoformat()]
                reports.write("\t".join(fields) + "\n")
                denoms.write(f"{rid}\t1000\t4000\t200\n")
                for idx in rng.sample(range(len(universe)), cells):
                    country, asn, hoster = universe[idx]
                    matches = rng.randrange(1, 20)
                    row = [rid, country, str(asn), hoster, families[idx % 3], str(matches), "1"]
                    cell_rows.write("\t".join(row) + "\t\\N\n")
                    total += 1
            for table, columns, buf in (
                (
                    "reports",
                    "report_id,node_id,key_id,sequence,created_at,period_start,period_end,payload_sha256,envelope,received_at",
                    reports,
                ),
                ("denominators", "report_id,pages_fetched,images_hashed,hosts_seen", denoms),
                (
                    "cells",
                    'report_id,country,asn,hoster,hash_family,matches,"distinct",sketch',
                    cell_rows,
                ),
            ):
                with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    copy.write(buf.getvalue())
            if day % 30 == 0:
                print(f"  day {day}/{days}: {total:,} cells", flush=True)
        conn.commit()
        cur.execute("ANALYZE")
    return total


def picture_run(nodes: int, days: int, cells: int, repeats: int, workdir: Path) -> dict[str, Any]:
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        engine = make_engine(PG_URL, connect_args={"options": f"-csearch_path={schema}"})
        create_schema(engine)
        with new_session(engine) as session:
            token = create_token(
                session,
                name="bench",
                role=Role.ADMIN,
                now=utcnow(),
                ttl=timedelta(days=1),
                actor="bench",
            ).token
        engine.dispose()
        started = time.perf_counter()
        total = fill_picture_data(PG_URL, schema, nodes, days, cells)
        print(
            f"[picture] {total:,} cells loaded in {time.perf_counter() - started:.0f} s", flush=True
        )
        port = free_port()
        config = workdir / "picture.toml"
        config.write_text(
            f'database_url = "{PG_URL}?options=-csearch_path%3D{schema}"\n'
            f'port = {port}\ndata_dir = "{workdir}"\n'
        )
        proc = serve(config, port, workdir / "picture.log")
        url = f"http://127.0.0.1:{port}/v1/picture"
        first = datetime(2025, 11, 24, tzinfo=UTC)
        queries = {
            "whole range": {},
            "one quarter": {
                "period_start": (first + timedelta(days=90)).isoformat(),
                "period_end": (first + timedelta(days=180)).isoformat(),
            },
            "one month": {
                "period_start": (first + timedelta(days=30)).isoformat(),
                "period_end": (first + timedelta(days=60)).isoformat(),
            },
            "one family": {"hash_family": "pdq"},
        }
        results: dict[str, Any] = {}
        try:
            with httpx.Client(
                timeout=300, trust_env=False, headers={"authorization": f"Bearer {token}"}
            ) as client:
                for name, params in queries.items():
                    times = []
                    for _ in range(repeats):
                        t0 = time.perf_counter()
                        response = client.get(url, params=params)
                        times.append((time.perf_counter() - t0) * 1000)
                        response.raise_for_status()
                    times.sort()
                    p95 = times[max(0, round(0.95 * len(times)) - 1)]
                    results[name] = {
                        "p50_ms": round(statistics.median(times)),
                        "p95_ms": round(p95),
                        "ratio_to_target": round(p95 / PICTURE_P95_TARGET_MS, 2),
                    }
                    print(
                        f"[picture] {name}: p50 {statistics.median(times):.0f} ms, "
                        f"p95 {p95:.0f} ms ({p95 / PICTURE_P95_TARGET_MS:.2f}x the "
                        f"{PICTURE_P95_TARGET_MS:.0f} ms target)",
                        flush=True,
                    )
        finally:
            proc.terminate()
            proc.wait(timeout=20)
        return {
            "nodes": nodes,
            "days": days,
            "cells_per_report": cells,
            "cells": total,
            "queries": results,
        }
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reports", type=int, default=6000)
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--skip-picture", action="store_true")
    parser.add_argument("--picture-nodes", type=int, default=200)
    parser.add_argument("--picture-days", type=int, default=365)
    parser.add_argument("--picture-cells", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    out: dict[str, Any] = {"ingest": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if not args.skip_ingest:
            (work / "sqlite").mkdir()
            out["ingest"].append(ingest_run("sqlite", args.reports, work / "sqlite"))
        if not args.skip_postgres:
            if not args.skip_ingest:
                (work / "pg").mkdir()
                out["ingest"].append(ingest_run("postgres", args.reports, work / "pg"))
            if not args.skip_picture:
                (work / "pic").mkdir()
                out["picture"] = picture_run(
                    args.picture_nodes,
                    args.picture_days,
                    args.picture_cells,
                    args.repeats,
                    work / "pic",
                )
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
