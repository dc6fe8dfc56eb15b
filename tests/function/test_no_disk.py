"""Proof that analysis never writes to disk: a child process with writes forbidden twice over
(RLIMIT_FSIZE = 0 and an audit hook) hashes a batch directly and over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("nodisk_child.py")


def test_batch_analysis_writes_nothing() -> None:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(REPO)}
    env = {k: v for k, v in env.items() if not k.startswith("LIBRA_FUNCTION_")}
    completed = subprocess.run(
        [sys.executable, str(CHILD)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    assert summary["probe_refused"] is True  # the guard is live
    assert summary["violations"] == []
    assert summary["direct"] == summary["http"] == 24 + 3  # images + videos (issue 13)
    assert summary["agree"] is True
