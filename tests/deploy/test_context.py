"""What `docker build` would send and build, without an engine: the build context that
.dockerignore leaves (Docker's rules, tests/deploy/dockerignore.py), and the wheel the images'
build stage makes from it, file by file."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.deploy import dockerfiles
from tests.deploy.dockerignore import DockerIgnore

REPO = Path(__file__).resolve().parents[2]
IGNORE = DockerIgnore((REPO / ".dockerignore").read_text())
PACKAGES = ("protocol", "worker_function", "node", "coordinator", "libra")
# Budget for the context: the sources and the dashboard's vendored assets, a few MB; the
# 1 GB .venv or a stray data set would blow it.
MAX_CONTEXT_BYTES = 30_000_000


@pytest.mark.parametrize(
    ("patterns", "path", "excluded"),
    [
        # Docker, unlike .gitignore: a pattern is anchored at the context root.
        ("*.pyc", "a.pyc", True),
        ("*.pyc", "pkg/a.pyc", False),
        ("**/*.pyc", "pkg/sub/a.pyc", True),
        ("**/*.pyc", "a.pyc", True),
        ("secrets", "secrets/key", True),  # a directory takes its contents along
        ("secrets", "deploy/secrets/key", False),
        ("deploy/secrets", "deploy/secrets/sub/key", True),
        ("*/secrets", "deploy/secrets/key", True),
        ("a?c", "abc", True),
        ("a?c", "a/c", False),
        ("[a-c]x", "bx", True),
        ("[^a-c]x", "bx", False),
        ("dir/**", "dir/x/y", True),
        ("dir/**", "dirx", False),
        ("**", "anything/at/all", True),
        ("/.git", ".git/HEAD", True),  # a leading slash is the root
        ("./.venv/", ".venv/bin/python", True),  # cleaned like a path
        ("\\*", "*", True),
        ("\\*", "x", False),
        ("  # not a comment", "# not a comment", True),
        ("# a comment", "# a comment", False),
        # The last match wins; "!" re-includes, even below an excluded directory.
        ("*\n!keep", "keep/file", False),
        ("*\n!keep", "other/file", True),
        ("docs\n!docs/README.md", "docs/README.md", False),
        ("docs\n!docs/README.md", "docs/other.md", True),
        ("*\n!pkg\n**/__pycache__", "pkg/__pycache__/m.pyc", True),
        ("!pkg\n*", "pkg/m.py", True),
    ],
)
def test_the_matcher_follows_dockers_rules(patterns: str, path: str, excluded: bool) -> None:
    assert DockerIgnore(patterns).excluded(path) is excluded


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".venv/lib/python3.11/site-packages/numpy/__init__.py",
        ".git/HEAD",
        ".git/objects/pack/x.pack",
        "deploy/secrets/node_a_signing_key",
        "deploy/secrets/postgres_password",
        "deploy/secrets/node_a.pub",
        "deploy/geoip/country.mmdb",
        "deploy/make_secrets.py",
        "node.sqlite3",
        "lab/node-a/node.sqlite3",
        "node/node.sqlite3",
        "node/node.sqlite3-wal",
        "coordinator/data/coordinator.db",
        "coordinator/coordinator-signing.key",
        "node/lists.key",
        "protocol/__pycache__/keys.cpython-311.pyc",
        "node/matching/index/__pycache__/kernel.kernel_search-1.py311.nbi",
        "tests/artifacts/demo/report.json",
        "tests/deploy/test_compose.py",
        ".mypy_cache/3.11/x.json",
        ".pytest_cache/v/cache/lastfailed",
        ".ruff_cache/0.6/x",
        ".hypothesis/examples/x",
        "node/.mypy_cache/x",
        "var/lib/libra/node.sqlite3",
        "build/lib/protocol/keys.py",
        "dist/libra_network-0.1.0-py3-none-any.whl",
        "libra_network.egg-info/PKG-INFO",
        ".env",
        "node/.env",
        "docs/deployment.md",
        "benchmarks/bench_hashing.py",
        "docker-compose.yml",
    ],
)
def test_the_context_keeps_out(path: str) -> None:
    assert IGNORE.excluded(path), path


@pytest.mark.parametrize(
    "path",
    [
        "pyproject.toml",
        "README.md",
        "protocol/keys.py",
        "protocol/vectors/report-v1.json",
        "node/migrations/versions/n0001_baseline.py",
        "coordinator/dashboard/static/vendor/echarts.min.js",
        "coordinator/dashboard/templates/layout.html",
        "libra/cli.py",
        "worker_function/app.py",
        "deploy/node_start.py",
        "deploy/register_nodes.py",
    ],
)
def test_the_context_carries(path: str) -> None:
    assert not IGNORE.excluded(path), path


def _copied_from_context() -> list[tuple[str, dockerfiles.Stage, dockerfiles.Copy]]:
    out: list[tuple[str, dockerfiles.Stage, dockerfiles.Copy]] = []
    for name in ("Dockerfile", "Dockerfile.function"):
        for stage in dockerfiles.load(REPO / name).values():
            for copy in stage.copies:
                if copy.from_stage is None:
                    out.extend((source, stage, copy) for source in copy.sources)
    return out


def _under(path: str, source: str) -> bool:
    return path == source or path.startswith(source.rstrip("/") + "/")


def test_the_real_context_is_exactly_what_the_images_copy() -> None:
    files = list(IGNORE.context_files(REPO))
    sources = {source for source, _, _ in _copied_from_context()}
    stray = [f for f in files if not any(_under(f, s) for s in sources)]
    assert not stray, f"sent to the engine but copied by no Dockerfile: {stray[:10]}"
    for source in sources:
        assert any(_under(f, source) for f in files), f"{source} is copied but not in the context"
    size = sum((REPO / f).stat().st_size for f in files)
    assert size < MAX_CONTEXT_BYTES, size


def _stage_build_context(destination: Path) -> None:
    """Lay out what the build stage's COPY lines put under its WORKDIR."""
    files = set(IGNORE.context_files(REPO))
    build = dockerfiles.load(REPO / "Dockerfile")["build"]
    assert build.workdir == "/src"
    for copy in build.copies:
        assert copy.from_stage is None
        for source in copy.sources:
            if (REPO / source).is_file():
                target = destination / copy.dest / Path(source).name
                if not copy.dest.endswith("/"):
                    assert len(copy.sources) == 1
                    target = destination / copy.dest
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(REPO / source, target)
                continue
            for file in files:
                if _under(file, source):
                    target = destination / copy.dest / Path(file).relative_to(source)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(REPO / file, target)


def test_both_dockerfiles_build_the_same_wheel_from_the_same_files() -> None:
    main = dockerfiles.load(REPO / "Dockerfile")["build"]
    function = dockerfiles.load(REPO / "Dockerfile.function")["build"]
    assert main.instructions == function.instructions


def test_the_wheel_built_from_the_context_holds_every_package_file(tmp_path: Path) -> None:
    source, out = tmp_path / "src", tmp_path / "dist"
    _stage_build_context(source)
    # What `pip install .` in the build stage does, offline with this environment's setuptools.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--quiet",
            "--wheel-dir",
            str(out),
            str(source),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = out.glob("libra_network-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        listed = archive.namelist()
        entry_points = next(n for n in listed if n.endswith(".dist-info/entry_points.txt"))
        scripts = archive.read(entry_points).decode()
    shipped = {n for n in listed if ".dist-info/" not in n}
    context = {f for f in IGNORE.context_files(REPO) if f.split("/")[0] in PACKAGES}
    missing = sorted(context - shipped)
    assert not missing, f"in the context but not installed (package-data?): {missing[:10]}"
    extra = sorted(shipped - context)
    assert not extra, f"installed but not from the context: {extra[:10]}"
    assert {n.split("/")[0] for n in shipped} == set(PACKAGES)
    for needed in (
        "node/migrations/env.py",
        "coordinator/migrations/env.py",
        "protocol/vectors/report-v1.json",
        "coordinator/dashboard/templates/layout.html",
    ):
        assert needed in shipped, needed
    assert "libra = libra.cli:main" in scripts
