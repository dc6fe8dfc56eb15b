"""Every vector file under protocol/vectors/, and the command that writes them:
``python -m protocol.testvector_files`` (docs/protocol.md §7).

Kept apart from the modules that build the vectors so that imports run one way only
(testvector <- testvector_coverage, testvector_cases <- testvector_negative <- this module).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .testvector import (
    BATCH_PATH,
    ENROLL_PATH,
    FEDERATION_KEY_PATH,
    KEY_ROTATION_PATH,
    NEGATIVE_DIR,
    VECTOR_COVERAGE_PATH,
    VECTOR_METHODS_PATH,
    VECTOR_PATH,
    VECTOR_REMOVALS_PATH,
    VECTOR_SKETCH_PATH,
    build_batch_vector,
    build_enroll_vector,
    build_federation_key_vector,
    build_removals_vector,
    build_rotation_vector,
    build_sketch_vector,
    build_vector,
    render,
    vector_report_with_methods,
)
from .testvector_coverage import build_coverage_vector
from .testvector_discovery import VECTOR_DISCOVERY_PATH, build_discovery_vector
from .testvector_negative import negative_vectors
from .testvector_psi import PSI_VECTOR_PATH, build_psi_vector
from .testvector_tlog import TLOG_VECTOR_PATH, build_tlog_vector
from .testvector_video import VECTOR_VIDEO_PATH, build_video_vector


def positive_vectors() -> dict[Path, dict[str, Any]]:
    return {
        VECTOR_PATH: build_vector(),
        VECTOR_REMOVALS_PATH: build_removals_vector(),
        VECTOR_SKETCH_PATH: build_sketch_vector(),
        VECTOR_METHODS_PATH: build_vector(vector_report_with_methods()),
        VECTOR_COVERAGE_PATH: build_coverage_vector(),
        KEY_ROTATION_PATH: build_rotation_vector(),
        BATCH_PATH: build_batch_vector(),
        ENROLL_PATH: build_enroll_vector(),
        FEDERATION_KEY_PATH: build_federation_key_vector(),
        TLOG_VECTOR_PATH: build_tlog_vector(),
        VECTOR_VIDEO_PATH: build_video_vector(),  # issue 13
        VECTOR_DISCOVERY_PATH: build_discovery_vector(),  # issue 14
        PSI_VECTOR_PATH: build_psi_vector(),  # issue 15
    }


def all_vectors() -> dict[Path, dict[str, Any]]:
    return {**positive_vectors(), **negative_vectors()}


def main() -> None:
    NEGATIVE_DIR.mkdir(exist_ok=True)
    for path, vector in all_vectors().items():
        path.write_text(render(vector), encoding="utf-8")
        print(path)


if __name__ == "__main__":
    main()
