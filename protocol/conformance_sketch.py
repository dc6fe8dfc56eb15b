"""Decode sketches in a child process, for the offline conformance check.

DataSketches' C++ deserialisers trust the lengths in a sketch's header: some truncated KLL
sketches crash the process outright (a segmentation fault, datasketches 5.2). The checker
examines untrusted bodies, so it decodes them here, in a child; a crash becomes a finding.

Protocol: a JSON list of ``{"kind": "hll"|"kll"|"theta", "b64": ..., "count": int}`` (a theta
probe also names what it counts: ``"counted": "distinct"|"items"``) on stdin, a JSON list of
``null`` (fine) or ``[code, message]`` on stdout.
"""

from __future__ import annotations

import base64
import json
import math
import subprocess
import sys
from typing import Any

from protocol.sketch_bounds import SIGMAS, distinct_bounds

HLL_LG_K = 12
Probe = dict[str, Any]
Verdict = tuple[str, str] | None


def _check(probe: Probe) -> Verdict:
    from datasketches import hll_sketch, kll_floats_sketch, tgt_hll_type

    raw = base64.b64decode(probe["b64"])
    count = probe["count"]
    if probe["kind"] == "theta":
        from protocol.conformance_theta import check_theta

        return check_theta(raw, count, str(probe.get("counted", "count")))
    if probe["kind"] == "kll":
        try:
            kll = kll_floats_sketch.deserialize(raw)
        except Exception:  # the binding raises IndexError, ValueError, RuntimeError...
            return ("malformed_payload", "not a DataSketches KLL float sketch")
        if kll.n != count:
            return ("malformed_payload", f"the KLL sketch holds {kll.n} times, not {count}")
        return None
    try:
        hll = hll_sketch.deserialize(raw)
        estimate, low1, high1 = hll.get_estimate(), hll.get_lower_bound(1), hll.get_upper_bound(1)
    except Exception:
        return ("malformed_payload", "not a DataSketches HLL sketch")
    if hll.lg_config_k != HLL_LG_K or hll.tgt_type != tgt_hll_type.HLL_8:
        return ("malformed_payload", f"the HLL sketch must be HLL_8 with lg_k {HLL_LG_K}")
    if not all(math.isfinite(v) for v in (estimate, low1, high1)):
        return ("malformed_payload", "the HLL sketch has no usable estimate")
    low, high = distinct_bounds(estimate, low1, high1)
    if not low <= count <= high:
        return (
            "sketch_mismatch",
            f"distinct {count} is outside the sketch's {SIGMAS}-sigma bounds [{low}, {high}]",
        )
    return None


def _run_child(probes: list[Probe]) -> list[Verdict] | None:
    """The verdicts, or None if the child died (a decoder crash)."""
    done = subprocess.run(
        [sys.executable, "-m", "protocol.conformance_sketch"],
        input=json.dumps(probes).encode(),
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        return None
    raw: list[list[str] | None] = json.loads(done.stdout)
    return [(v[0], v[1]) if v is not None else None for v in raw]


def check_sketches(probes: list[Probe]) -> list[Verdict]:
    """One verdict per probe; a probe that crashes the decoder is malformed_payload."""
    if not probes:
        return []
    verdicts = _run_child(probes)
    if verdicts is not None:
        return verdicts
    out: list[Verdict] = []
    for probe in probes:  # find the one(s) that crash
        alone = _run_child([probe])
        out.append(
            alone[0]
            if alone is not None
            else ("malformed_payload", "the sketch crashes the DataSketches decoder")
        )
    return out


if __name__ == "__main__":
    print(json.dumps([_check(p) for p in json.loads(sys.stdin.buffer.read())]))
