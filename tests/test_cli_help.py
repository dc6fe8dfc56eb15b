"""`libra` help screens: operator words for values (no Python type names), `--version`, and a
top-level help that imports no component (issue 17)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.core import TyperGroup
from typer.main import get_command
from typer.testing import CliRunner

from libra import help_style
from libra.cli import build_app, version

REPO = Path(__file__).resolve().parents[1]
# What Typer 0.29 prints on its own: `<bool>`, `<list[Path]>`, `<str>`, usage `{files}...`.
PYTHON_TYPE_NAMES = re.compile(r"<(bool|str|int|float|Path|path|list\[[^>]*\]|datetime)>|\{\w+\}")


def _paths(command: object, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield prefix
    if isinstance(command, TyperGroup):
        for name, sub in sorted(command.commands.items()):
            yield from _paths(sub, (*prefix, name))


def test_no_help_screen_shows_python_type_names() -> None:
    help_style.apply()
    app = build_app([])
    runner = CliRunner()
    screens = 0
    for path in _paths(get_command(app)):
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "120"})
        assert result.exit_code == 0, (path, result.output)
        found = PYTHON_TYPE_NAMES.findall(result.output)
        assert not found, f"`libra {' '.join(path)} --help` shows {found}"
        screens += 1
    assert screens > 40  # every command of every component was looked at


def test_help_prose_wraps_to_the_terminal_without_stubs() -> None:
    """At 80 columns no paragraph of any help screen breaks after a few words (docstring line
    breaks used to survive and leave "day), plus any" alone on a line)."""
    help_style.apply()
    app = build_app([])
    runner = CliRunner()
    stubs = []
    for path in _paths(get_command(app)):
        output = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80"}).output
        prose = output.split("\u256d")[0]  # what comes before the first options panel
        for paragraph in re.split(r"\n\s*\n", prose):
            lines = [line.strip() for line in paragraph.splitlines() if line.strip()]
            stubs += [(path, line) for line in lines[:-1] if len(line) < 40]
    assert not stubs, stubs[:5]
    assert help_style.reflow("- a\n- b\ncontinued\n    code\nnext") == (
        "- a\n- b continued\n    code\nnext"
    )


def test_flags_show_no_value_and_values_have_operator_names() -> None:
    help_style.apply()
    app = build_app(["hash"])
    result = CliRunner().invoke(app, ["hash", "--help"], env={"COLUMNS": "120"})
    assert "Usage: libra hash [OPTIONS] FILES..." in result.output.replace("root", "libra")
    line = next(x for x in result.output.splitlines() if "--dihedral" in x)
    assert "BOOLEAN" not in line and "<" not in line
    assert "PATH" in result.output


def _run_libra(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIBRA_")}
    env["COLUMNS"] = "100"
    return subprocess.run(
        [sys.executable, "-m", "libra", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_version() -> None:
    result = _run_libra("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"libra {version()}"
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", version())


def _modules_after(args: list[str]) -> tuple[list[str], str]:
    """The modules a fresh `libra ARGS` process has loaded when it is done, and its output."""
    code = (
        "import json, sys\n"
        f"sys.argv = ['libra', *{args!r}]\n"
        "from libra.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stdout


@pytest.mark.parametrize("args", [["--help"], [], ["--version"]])
def test_top_level_help_imports_no_component(args: list[str]) -> None:
    modules, stdout = _modules_after(args)
    loaded = [
        m
        for m in modules
        if m.split(".")[0] in {"node", "coordinator", "worker_function", "numpy", "fastapi"}
        or m.startswith("libra.demo")
    ]
    assert loaded == []
    if args != ["--version"]:
        # Every command is still listed, with its one-line summary.
        for name in ("coordinator", "demo", "function", "hash", "node"):
            assert re.search(rf"\b{name}\b", stdout)


# What a help screen has no use for: each costs 30-300 ms of start-up (asyncio alone 30 ms).
NOT_FOR_HELP = {
    "asyncio", "sqlalchemy", "sqlmodel", "numpy", "fastapi", "uvicorn", "httpx", "ssl",
    "nacl", "cryptography", "redis", "PIL", "datasketches", "pydantic_settings",
}  # fmt: skip


@pytest.mark.parametrize("component", ["node", "coordinator", "function", "hash", "demo"])
def test_component_help_imports_only_what_help_needs(component: str) -> None:
    modules, stdout = _modules_after([component, "--help"])
    assert "Usage" in stdout
    assert sorted({m.split(".")[0] for m in modules} & NOT_FOR_HELP) == []
