"""`libra demo` options, at unit level (no federation is started): --host/--port reach the
coordinator's start command, bad ones fail before anything starts, a failed step is one line."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from libra.cli import build_app
from libra.demo import runner
from libra.demo.history import History
from libra.demo.processes import DemoStepFailed
from libra.demo.runner import DemoOptions, Federation


class _Agrees:
    agrees = True


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[DemoOptions]:
    """`run_demo` replaced by a recorder: the options the command would run the demo with."""
    seen: list[DemoOptions] = []

    def fake_run_demo(options: DemoOptions, *args: Any, **kwargs: Any) -> _Agrees:
        seen.append(options)
        return _Agrees()

    monkeypatch.setattr(runner, "run_demo", fake_run_demo)
    return seen


def _demo(*args: str) -> Any:
    return CliRunner().invoke(build_app(["demo"]), ["demo", *args], env={"COLUMNS": "100"})


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_defaults_unchanged(calls: list[DemoOptions]) -> None:
    result = _demo()
    assert result.exit_code == 0, result.output
    assert (calls[0].host, calls[0].port) == ("127.0.0.1", None)  # None: a free port


def test_host_and_port_reach_the_options(calls: list[DemoOptions]) -> None:
    result = _demo("--host", "127.0.0.2", "--port", "18777", "--keep-running")
    assert result.exit_code == 0, result.output
    assert (calls[0].host, calls[0].port) == ("127.0.0.2", 18777)


def test_a_host_beyond_loopback_is_refused_before_anything_starts(
    calls: list[DemoOptions],
) -> None:
    for host in ("0.0.0.0", "192.168.1.5", "demo.example"):
        result = _demo("--host", host)
        assert result.exit_code == 2
        assert "loopback" in result.output
    assert calls == []


def test_a_port_in_use_is_refused_before_anything_starts(
    calls: list[DemoOptions], taken_port: int
) -> None:
    result = _demo("--port", str(taken_port))
    assert result.exit_code == 2
    assert f"127.0.0.1:{taken_port}" in result.output and "in use" in result.output
    assert calls == []


def test_help_says_loopback_only() -> None:
    result = _demo("--help")
    assert result.exit_code == 0
    text = " ".join(result.output.replace("│", " ").split())
    assert "--host" in text and "--port" in text
    assert "loopback address only" in text and "never listens beyond this machine" in text


def test_a_failed_step_is_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(*args: Any, **kwargs: Any) -> None:
        raise DemoStepFailed("`libra node crawl` failed (exit 1): ValueError: [x] bad; see a.log")

    monkeypatch.setattr(runner, "run_demo", failing)
    result = _demo()
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    # One line (the runner keeps it short); its brackets are text, not style tags.
    assert lines == [
        "demo failed: `libra node crawl` failed (exit 1): ValueError: [x] bad; see a.log"
    ]


# --- the options reach `libra coordinator serve` -------------------------------------------


@pytest.fixture
def federation(history: History, tmp_path: Path) -> Federation:
    return Federation(history, tmp_path / "demo", Console(file=io.StringIO()))


def _coordinator_start(
    federation: Federation, monkeypatch: pytest.MonkeyPatch, host: str, port: int | None
) -> tuple[list[str], str]:
    started: list[tuple[list[str], str]] = []
    monkeypatch.setattr(
        federation.procs, "start", lambda name, args, url, **kw: started.append((args, url))
    )
    monkeypatch.setattr(federation.procs, "run", lambda name, args, **kw: "viewer-token\n")
    federation.start_coordinator(host, port)
    assert len(started) == 1
    return started[0]


def _value(args: list[str], option: str) -> str:
    return args[args.index(option) + 1]


def test_the_coordinator_serves_on_the_given_address(
    federation: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    args, health = _coordinator_start(federation, monkeypatch, "127.0.0.2", 18777)
    assert args[:2] == ["coordinator", "serve"]
    assert (_value(args, "--host"), _value(args, "--port")) == ("127.0.0.2", "18777")
    assert health == "http://127.0.0.2:18777/healthz"
    assert federation.coordinator_url == "http://127.0.0.2:18777"
    assert federation.viewer_token == "viewer-token"


def test_ipv6_loopback_is_bracketed_in_its_urls(
    federation: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    args, health = _coordinator_start(federation, monkeypatch, "::1", 18778)
    assert _value(args, "--host") == "::1"
    assert health == "http://[::1]:18778/healthz"


def test_without_a_port_a_free_one_is_chosen(
    federation: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    args, _ = _coordinator_start(federation, monkeypatch, "127.0.0.1", None)
    assert _value(args, "--host") == "127.0.0.1"
    assert 0 < int(_value(args, "--port")) < 65536
    assert federation.coordinator_url == f"http://127.0.0.1:{_value(args, '--port')}"


def test_an_unusable_workdir_is_a_clear_error(tmp_path: Path) -> None:
    taken = tmp_path / "a-file"
    taken.write_text("not a directory", encoding="utf-8")
    with pytest.raises(DemoStepFailed, match=f"cannot use --workdir {taken}: File exists"):
        runner.run_demo(DemoOptions(workdir=taken), Console(file=io.StringIO()))
