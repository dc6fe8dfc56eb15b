"""Videos through the function's HTTP face (issue 13): fetched from a loopback server, hashed in
the isolated video decoder, answered with their frames; images keep their exact answer shape;
batches mix images and videos; limits and settings reach the decoder."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from libra.demo.videogen import make_video
from protocol.lab import LabNetwork
from protocol.models import AnalyzeBatchResponse, HashResult
from tests.function import helpers as h
from tests.function.conftest import LAB_HOST, TEST_DEADLINE
from worker_function.app import create_app
from worker_function.errors import FunctionError
from worker_function.settings import FunctionSettings, load_settings
from worker_function.video.decode import hash_video
from worker_function.video.pool import VideoPool
from worker_function.video.settings import VideoSettings

MP4 = make_video(160, 90, 3.0, 30, "mp4", 11)
WEBM = make_video(160, 90, 2.0, 25, "webm", 12)
JPEG = h.encode(h.generated_image(13), "JPEG", quality=90)
PNG = h.encode(h.generated_image(14), "PNG")


@pytest.fixture(scope="module")
def server() -> Iterator[h.ImageServer]:
    routes: dict[str, h.Static | h.Handler] = {
        "/clip.mp4": h.Static(200, MP4, "video/mp4"),
        "/clip.webm": h.Static(200, WEBM, "video/webm"),
        "/served-as-text": h.Static(200, MP4, "text/plain"),  # Content-Type is never trusted
        "/broken.mp4": h.Static(200, MP4[: len(MP4) // 2], "video/mp4"),
        "/a.jpg": h.Static(200, JPEG, "image/jpeg"),
        "/b.png": h.Static(200, PNG, "image/png"),
    }
    with h.ImageServer(routes) as images:
        yield images


def _function(server: h.ImageServer, **values: object) -> h.FunctionServer:
    settings: dict[str, object] = {
        "max_bytes": 2_000_000,
        "deadline_seconds": TEST_DEADLINE,
        "lab": None,
        "require_auth": False,
        "max_concurrent_decodes": 1,
    }
    settings.update(values)
    lab = LabNetwork(hosts={LAB_HOST: "127.0.0.1"}, allow_ports=[server.port])
    return h.FunctionServer(create_app(FunctionSettings(**settings), lab=lab))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def function(server: h.ImageServer) -> Iterator[httpx.Client]:
    """Production isolation: videos decode in their own worker process."""
    with (
        _function(server) as running,
        httpx.Client(base_url=running.url, trust_env=False, timeout=120) as client,
    ):
        yield client


def _url(server: h.ImageServer, path: str) -> str:
    return f"http://{LAB_HOST}:{server.port}{path}"


def test_a_video_url_is_answered_with_its_frames(
    function: httpx.Client, server: h.ImageServer
) -> None:
    response = function.post("/v1/analyze", json={"url": _url(server, "/clip.mp4")})
    assert response.status_code == 200, response.text
    result = HashResult.model_validate_json(response.content)
    assert (result.format, result.width, result.height, result.bytes) == ("mp4", 160, 90, len(MP4))
    assert result.video is not None
    direct = hash_video(MP4)
    assert result.video == direct.video
    assert result.hashes == direct.hashes
    assert [f.frame for f in result.video.frames] == [0, 30, 60]
    assert result.video.frames_decoded == 90


def test_content_type_is_not_trusted(function: httpx.Client, server: h.ImageServer) -> None:
    response = function.post("/v1/analyze", json={"url": _url(server, "/served-as-text")})
    assert response.status_code == 200, response.text
    assert response.json()["format"] == "mp4"


def test_an_image_answer_has_no_video_member(function: httpx.Client, server: h.ImageServer) -> None:
    response = function.post("/v1/analyze", json={"url": _url(server, "/a.jpg")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert "video" not in body
    assert list(body) == [
        "url",
        "final_url",
        "server_ip",
        "format",
        "width",
        "height",
        "bytes",
        "animated",
        "hashes",
    ]


def test_a_broken_video_gets_its_code(function: httpx.Client, server: h.ImageServer) -> None:
    response = function.post("/v1/analyze", json={"url": _url(server, "/broken.mp4")})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "decode_failed"


def test_a_batch_mixes_images_and_videos(function: httpx.Client, server: h.ImageServer) -> None:
    paths = ["/a.jpg", "/clip.mp4", "/b.png", "/clip.webm", "/broken.mp4", "/missing.mp4"]
    body = json.dumps({"items": [{"url": _url(server, p)} for p in paths]})
    response = function.post("/v1/analyze:batch", content=body)
    assert response.status_code == 200, response.text
    results = AnalyzeBatchResponse.model_validate_json(response.content).results
    codes = [r.error.code if r.error else "ok" for r in results]
    assert codes == ["ok", "ok", "ok", "ok", "decode_failed", "upstream_status"]
    formats = [r.result.format if r.result else None for r in results]
    assert formats == ["JPEG", "mp4", "PNG", "webm", None, None]
    videos = [r.result.video for r in results if r.result is not None]
    assert [v is not None for v in videos] == [False, True, False, True]
    webm = results[3].result
    assert webm is not None and webm.video is not None
    assert [f.frame for f in webm.video.frames] == [0, 25]
    # Inside a batch an image's answer keeps its shape too.
    assert "video" not in response.json()["results"][0]["result"]


def test_limits_and_interval_reach_the_decoder(server: h.ImageServer) -> None:
    video = VideoSettings(frame_interval_seconds=0.5, max_duration_seconds=2.5)
    with (
        _function(server, decode_isolation="thread", video=video) as running,
        httpx.Client(base_url=running.url, trust_env=False, timeout=120) as client,
    ):
        long = client.post("/v1/analyze", json={"url": _url(server, "/clip.mp4")})
        assert long.status_code == 413
        assert long.json()["error"]["code"] == "video_too_long"
        short = client.post("/v1/analyze", json={"url": _url(server, "/clip.webm")})
        assert short.status_code == 200, short.text
        assert [f["frame"] for f in short.json()["video"]["frames"]] == [
            0,
            13,
            25,
            38,
        ]  # 25 fps: the first frame at or after each 0.5 s


def test_videos_off_means_not_an_image(server: h.ImageServer) -> None:
    with (
        _function(server, decode_isolation="thread", video={"enabled": False}) as running,
        httpx.Client(base_url=running.url, trust_env=False, timeout=120) as client,
    ):
        response = client.post("/v1/analyze", json={"url": _url(server, "/clip.mp4")})
        assert response.status_code == 415
        assert response.json()["error"]["code"] == "not_an_image"


def test_video_settings_from_toml_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "function.toml"
    config.write_text("[video]\nframe_interval_seconds = 2.0\nmax_frames = 100\n")
    from_file = load_settings(config)
    assert (from_file.video.frame_interval_seconds, from_file.video.max_frames) == (2.0, 100)
    monkeypatch.setenv("LIBRA_FUNCTION_VIDEO__PRUNE_DISTANCE", "4")
    assert load_settings().video.prune_distance == 4
    assert FunctionSettings().video.frame_interval_seconds == 1.0


def test_a_video_over_the_wall_clock_limit_is_decode_timeout() -> None:
    """The video pool's own limit: its worker is killed, the answer is decode_timeout."""
    # 20 s of 320x180 (600 frames): far more than the millisecond allowed, at any load.
    slow = make_video(320, 180, 20.0, 30, "mp4", 15)
    pool = VideoPool(VideoSettings(decode_timeout_seconds=0.001, frame_interval_seconds=0))

    async def run() -> str:
        try:
            await pool.hash(slow)
        except FunctionError as exc:
            return exc.code
        return "ok"

    try:
        assert asyncio.run(run()) == "decode_timeout"
    finally:
        pool.close()
