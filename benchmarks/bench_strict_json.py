"""Strict parsing cost (issue 12): protocol.strictjson.loads against json.loads on 8 MiB bodies.

Three bodies of about 8 MiB, each parsed ``--repeat`` times by both parsers in the same run
(best time kept): a report payload of small cells (many objects: the worst case for the
duplicate-key hook), a report payload of cells carrying dense HLL sketches (long strings), and
a batch body of envelopes. For the payloads also the whole of ``Report.from_payload`` (strict
parse, RFC 8785 canonical check, schema, period).

    python -m benchmarks.bench_strict_json [--repeat 5]
"""

from __future__ import annotations

import argparse
import base64
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import rfc8785
from datasketches import HLL_8, hll_sketch

from protocol import PROTOCOL_VERSION
from protocol.models import Report
from protocol.strictjson import loads

MIB = 1024 * 1024
CREATED = datetime(2026, 11, 24, 12, tzinfo=UTC)


def _report(cells: list[dict[str, Any]]) -> bytes:
    data: dict[str, Any] = {
        "protocol_version": PROTOCOL_VERSION,
        "report_id": "0" * 32,
        "node_id": "node-bench",
        "key_id": "a" * 64,
        "sequence": 1,
        "created_at": CREATED.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "period": {
            "start": (CREATED - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "end": CREATED.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "cells": cells,
        "denominators": {"pages_fetched": 1, "images_hashed": 1, "hosts_seen": 1},
    }
    return bytes(rfc8785.dumps(data))


def small_cells_payload(target: int) -> bytes:
    cell = {"asn": 0, "country": "DE", "distinct": 1, "hash_family": "pdq", "matches": 2}
    size = len(json.dumps(cell)) + 30
    count = min(100_000, target // size)
    cells = [
        cell | {"asn": n, "hoster": f"Hoster {n} [GmbH]", "sketch": None} for n in range(count)
    ]
    return _report(cells)


def sketch_cells_payload(target: int) -> bytes:
    sketch = hll_sketch(12, HLL_8)
    for n in range(5000):
        sketch.update(f"item-{n}")
    text = base64.b64encode(sketch.serialize_compact()).decode()
    estimate = round(sketch.get_estimate())
    count = target // (len(text) + 120)
    cells = [
        {"asn": n, "country": "DE", "distinct": estimate, "hash_family": "pdq",
         "hoster": f"Hoster {n}", "matches": estimate, "sketch": text}
        for n in range(count)
    ]  # fmt: skip
    return _report(cells)


def batch_body(target: int) -> bytes:
    payload = base64.b64encode(b"x" * 6000).decode()
    envelope = {
        "payload": payload,
        "payloadType": "application/vnd.libra.report+json; version=1",
        "signatures": [{"keyid": "a" * 64, "sig": base64.b64encode(bytes(64)).decode()}],
    }
    count = target // (len(json.dumps(envelope)) + 1)
    return json.dumps({"envelopes": [envelope] * count}, separators=(",", ":")).encode()


def best(fn: Callable[[bytes], object], body: bytes, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn(body)
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--mib", type=float, default=8.0)
    args = parser.parse_args()
    target = int(args.mib * MIB)
    bodies = {
        "payload, small cells": small_cells_payload(target),
        "payload, HLL cells": sketch_cells_payload(target),
        "batch of envelopes": batch_body(target),
    }
    print(
        f"{'body':<22} {'MiB':>5} {'json.loads':>11} {'strict':>9} {'ratio':>6} "
        f"{'RFC 8785':>9} {'from_payload':>13}"
    )
    for name, body in bodies.items():
        plain = best(json.loads, body, args.repeat)
        strict = best(loads, body, args.repeat)
        parsed = json.loads(body)

        def canonical(_body: bytes, data: Any = parsed) -> bytes:
            return bytes(rfc8785.dumps(data))

        canon = best(canonical, body, args.repeat)
        full = best(Report.from_payload, body, args.repeat) if "payload" in name else None
        full_text = f"{full * 1000:10.0f} ms" if full is not None else f"{'-':>13}"
        print(
            f"{name:<22} {len(body) / MIB:5.2f} {plain * 1000:8.0f} ms {strict * 1000:6.0f} ms "
            f"{strict / plain:5.1f}x {canon * 1000:6.0f} ms {full_text}"
        )


if __name__ == "__main__":
    main()
