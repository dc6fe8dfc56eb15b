"""The function, traced by strace, opens no file for writing outside /dev and /proc.

A real server (with its decode worker processes) analyses a batch of images over HTTP under
``strace -f -e trace=%file``; every syscall that could create, modify or remove a file is
checked. The only writable paths used are the multiprocessing semaphores in /dev/shm (memory).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("strace_child.py")
ALLOWED_PREFIXES = ("/dev/", "/proc/")
_WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND")
_ALWAYS_WRITES = re.compile(
    r"^(creat|mkdir|mkdirat|rename|renameat2?|unlink|unlinkat|rmdir|link|linkat|symlink|"
    r"symlinkat|truncate|mknod|mknodat)$"
)
_CALL = re.compile(r"^\d+\s+(?P<name>\w+)\((?P<args>.*)")
_PATH = re.compile(r'"((?:[^"\\]|\\.)*)"')


def write_violations(trace: str) -> list[str]:
    """Trace lines that create, modify or remove a file outside /dev and /proc."""
    found = []
    for line in trace.splitlines():
        match = _CALL.match(line)
        if match is None or "= -1" in line:  # refused calls wrote nothing
            continue
        name, args = match["name"], match["args"]
        writes = _ALWAYS_WRITES.match(name) is not None or (
            name in ("open", "openat", "openat2") and any(flag in args for flag in _WRITE_FLAGS)
        )
        paths = _PATH.findall(args)
        if writes and any(not p.startswith(ALLOWED_PREFIXES) for p in paths):
            found.append(line)
    return found


def test_violation_parser_sees_writes() -> None:
    trace = (
        '1  openat(AT_FDCWD, "/tmp/x", O_WRONLY|O_CREAT|O_TRUNC, 0666) = 3\n'
        '1  openat(AT_FDCWD, "/etc/hosts", O_RDONLY|O_CLOEXEC) = 3\n'
        '1  openat(AT_FDCWD, "/dev/shm/sem.a", O_RDWR|O_CREAT|O_EXCL, 0600) = 3\n'
        '1  unlink("/var/tmp/y") = 0\n'
        '1  mkdir("/root/z", 0777) = -1 EACCES (Permission denied)\n'
    )
    assert write_violations(trace) == [
        '1  openat(AT_FDCWD, "/tmp/x", O_WRONLY|O_CREAT|O_TRUNC, 0666) = 3',
        '1  unlink("/var/tmp/y") = 0',
    ]


def test_function_under_strace_writes_no_file(tmp_path: Path) -> None:
    strace = shutil.which("strace")
    if strace is None:
        if os.environ.get("CI") == "true":
            pytest.fail("strace is required in CI (.ci/run installs Debian's strace)")
        pytest.skip("strace is not installed (apt-get install strace)")
    trace_file = tmp_path / "trace.txt"  # written by strace, the observer, not the function
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIBRA_FUNCTION_")}
    env.update(PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=str(REPO))
    completed = subprocess.run(
        [
            strace,
            "-f",
            "-qq",
            "-e",
            "trace=%file",
            "-o",
            str(trace_file),
            sys.executable,
            str(CHILD),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    if completed.returncode != 0 and "ptrace" in completed.stderr:
        if os.environ.get("CI") == "true":
            pytest.fail(f"strace cannot trace here: {completed.stderr[-500:]}")
        pytest.skip("ptrace is not permitted in this environment")
    assert completed.returncode == 0, completed.stderr[-3000:]
    # The whole batch was analysed: 12 images and 2 videos (issue 13).
    assert completed.stdout.strip().splitlines()[-1] == "14"
    trace = trace_file.read_text()
    assert "openat(" in trace  # the trace is real
    assert any("sem." in line for line in trace.splitlines())  # worker pool was traced too
    assert write_violations(trace) == []
