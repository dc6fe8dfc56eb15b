"""`libra node notices ...` on a node made by `libra node init`: list, show, approve, reject,
stats, tokens, settings. (Sending and re-checks are exercised in the other notices tests.)"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from node import audit
from node.cli.main import app
from node.config import load_settings
from node.notices.models import APPROVED, REJECTED
from node.notices.queue import list_notices
from node.service import open_engine
from tests.node.test_cli import init_node
from tests.node.test_notices import add_cycle

runner = CliRunner()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIBRA_NODE_CONFIG", raising=False)


def test_notice_commands(tmp_path: Path) -> None:
    directory = init_node(tmp_path)
    config = str(directory / "node.toml")
    settings = load_settings(directory / "node.toml")
    assert settings.notices.enabled is False and settings.notices.require_approval is True
    assert settings.notices.renotice_hours == 24 and settings.notices.escalate_after == 3
    engine = open_engine(settings)
    add_cycle(
        engine,
        [("http://a.test/1.png", "Hoster A", None), ("http://b.test/1.png", "Hoster B", None)],
    )
    from node.config import NoticeSettings
    from node.notices.queue import build_notices
    from tests.node.test_notices import T0

    build_notices(engine, NoticeSettings(), T0)
    ids = {n["hoster"]: n["id"] for n in list_notices(engine)}

    listed = runner.invoke(app, ["notices", "list", "--state", "pending_approval", "-c", config])
    assert listed.exit_code == 0, listed.output
    assert "Hoster A" in listed.output and "Hoster B" in listed.output
    bad = runner.invoke(app, ["notices", "list", "--state", "bogus", "-c", config])
    assert bad.exit_code == 2 and "--state must be one of" in bad.output

    shown = runner.invoke(app, ["notices", "show", str(ids["Hoster A"]), "--json", "-c", config])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["urls"][0]["url"] == "http://a.test/1.png"
    missing = runner.invoke(app, ["notices", "show", "999", "-c", config])
    assert missing.exit_code == 1 and "does not exist" in missing.output

    ok = runner.invoke(app, ["notices", "approve", str(ids["Hoster A"]), "-c", config])
    assert ok.exit_code == 0 and APPROVED in ok.output
    no_reason = runner.invoke(app, ["notices", "reject", str(ids["Hoster B"]), "-c", config])
    assert no_reason.exit_code == 2  # --reason is required
    rejected = runner.invoke(
        app, ["notices", "reject", str(ids["Hoster B"]), "--reason", "not ours", "-c", config]
    )
    assert rejected.exit_code == 0 and REJECTED in rejected.output
    twice = runner.invoke(app, ["notices", "approve", str(ids["Hoster B"]), "-c", config])
    assert twice.exit_code == 1 and "is rejected" in twice.output
    assert [e.reason for e in audit.entries(engine, "notice.reject")] == ["not ours"]
    assert len(audit.entries(engine, "notice.consult")) == 2

    stats = runner.invoke(app, ["notices", "stats", "--json", "-c", config])
    assert stats.exit_code == 0 and json.loads(stats.output) == []
    bad_since = runner.invoke(app, ["notices", "stats", "--since", "soon", "-c", config])
    assert bad_since.exit_code == 2

    from tests.node.test_notices import _sent_notice

    _sent_notice(engine, [3600.0, None], T0)
    table = runner.invoke(app, ["notices", "stats", "-c", config])
    assert table.exit_code == 0, table.output
    assert "Hoster A" in table.output and "1/2" in table.output and "1.0 h" in table.output

    token_file = tmp_path / "analyst.token"
    made = runner.invoke(
        app, ["notices", "token-create", "ana", "--out", str(token_file), "-c", config]
    )
    assert made.exit_code == 0, made.output
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert token_file.read_text().strip() not in made.output
    revoked = runner.invoke(app, ["notices", "token-revoke", "ana", "-c", config])
    assert revoked.exit_code == 0
    again = runner.invoke(app, ["notices", "token-revoke", "ana", "-c", config])
    assert again.exit_code == 1
    engine.dispose()


def test_notice_settings_are_validated(tmp_path: Path) -> None:
    directory = init_node(tmp_path)
    path = directory / "node.toml"
    path.write_text(
        path.read_text()
        + '\n[notices]\nescalate_after = 0\ndefault_classification = "Z"\n'
        + '[notices.smtp]\nsecurity = "plain"\n'
    )
    result = runner.invoke(app, ["notices", "list", "-c", str(path)])
    assert result.exit_code == 2
    for name in ("escalate_after", "default_classification", "security"):
        assert name in result.output


def test_secret_paths_are_relative_to_the_config(tmp_path: Path) -> None:
    directory = init_node(tmp_path)
    path = directory / "node.toml"
    path.write_text(
        path.read_text()
        + '\n[notices]\nwebhook_secret_file = "hook.key"\n'
        + '[notices.smtp]\npassword_file = "smtp.pw"\n'
    )
    settings = load_settings(path)
    assert settings.notices.webhook_secret_file == directory.resolve() / "hook.key"
    assert settings.notices.smtp.password_file == directory.resolve() / "smtp.pw"


def test_serve_schedules_notices_only_when_enabled(tmp_path: Path) -> None:
    from node.notices.schedule import NOTICES_JOB
    from node.scheduler import build_scheduler

    directory = init_node(tmp_path)
    path = directory / "node.toml"
    settings = load_settings(path)
    engine = open_engine(settings)
    assert NOTICES_JOB not in {job.id for job in build_scheduler(settings, engine).get_jobs()}
    path.write_text(path.read_text() + "\n[notices]\nenabled = true\nrecheck_minutes = 20\n")
    settings = load_settings(path)
    jobs = {job.id: job for job in build_scheduler(settings, engine).get_jobs()}
    assert jobs[NOTICES_JOB].trigger.interval.total_seconds() == 20 * 60
    assert jobs[NOTICES_JOB].max_instances == 1
    engine.dispose()


def test_run_from_settings_builds_and_blocks_without_contact(tmp_path: Path) -> None:
    """`notices run` wired from node.toml: the persisted index, the function client, contacts
    (RDAP off: no traffic) and channels. Nothing is sent: no contact is known."""
    directory = init_node(tmp_path)
    path = directory / "node.toml"
    path.write_text(path.read_text() + "\n[contacts]\nrdap = false\n")
    config = str(path)
    engine = open_engine(load_settings(path))
    add_cycle(engine, [("http://a.test/1.png", "Hoster A", None)])
    first = runner.invoke(app, ["notices", "run", "-c", config])
    assert first.exit_code == 0, first.output
    assert "1 new (1 waiting for approval)" in first.output
    [notice] = list_notices(engine)
    runner.invoke(app, ["notices", "approve", str(notice["id"]), "-c", config])
    second = runner.invoke(app, ["notices", "send", "-c", config])
    assert second.exit_code == 0, second.output
    assert "1 blocked" in second.output and "0 sent" in second.output
    listed = runner.invoke(app, ["notices", "list", "-c", config])
    assert "blocked" in listed.output and "reporter_org" in listed.output
    engine.dispose()


def test_a_run_says_why_deliveries_did_not_go_through(capsys: pytest.CaptureFixture[str]) -> None:
    from node.cli.notices import _print_run
    from node.notices.delivery import DeliveryOutcome
    from node.notices.service import NoticesRun

    why = "notice 3 round 1 over webhook: webhook http://abuse.h.test/xarf: HTTP 401 [refused]"
    run = NoticesRun(delivered=DeliveryOutcome(sent=1, retrying=1, errors=[why]))
    _print_run(run)
    lines = capsys.readouterr().out.splitlines()
    assert "1 sent, 1 to retry, 0 failed" in lines[0]
    assert lines[1:] == [f"  not delivered: {why}"]  # markup-like text printed as it is


def test_send_at_is_for_lab_nodes_only(tmp_path: Path) -> None:
    """`notices send --at` (a lab's late run) is refused by a production node, as `run --at`."""
    directory = init_node(tmp_path)
    config = str(directory / "node.toml")
    result = runner.invoke(app, ["notices", "send", "-c", config, "--at", "2026-11-30T06:30Z"])
    assert result.exit_code != 0
    assert "only accepted in lab mode" in result.output
