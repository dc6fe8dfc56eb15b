"""One exception type per failure, each with a stable wire code and HTTP status.

The codes are part of the function's contract (docs/operations-function.md); callers such as the
node branch on them, so they never change meaning. Messages never contain image bytes.
"""

from __future__ import annotations

from typing import Any


class FunctionError(Exception):
    """Base class: every failure of the function has a stable machine-readable code."""

    code = "analysis_failed"
    http_status = 502

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --------------------------------------------------------------------------- request / URL


class BadUrl(FunctionError):
    code = "bad_url"
    http_status = 400


class InvalidRequest(FunctionError):
    code = "invalid_request"
    http_status = 422


class BlockedAddress(FunctionError):
    """The target (or a redirect hop) resolves to an address or port we must not reach."""

    code = "blocked_address"
    http_status = 403


# --------------------------------------------------------------------------- fetching


class TooManyRedirects(FunctionError):
    code = "too_many_redirects"
    http_status = 502


class UpstreamStatus(FunctionError):
    code = "upstream_status"
    http_status = 502

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class FetchFailed(FunctionError):
    code = "fetch_failed"
    http_status = 502


class FetchTimeout(FunctionError):
    code = "timeout"
    http_status = 504


class TooLarge(FunctionError):
    code = "too_large"
    http_status = 413


class BadRedirect(FunctionError):
    """A redirect Location that does not parse or is not an acceptable URL: the target's fault."""

    code = "bad_redirect"
    http_status = 502


class UnsupportedEncoding(FunctionError):
    """A Content-Encoding (or chain) the function cannot decode in bounded steps."""

    code = "unsupported_encoding"
    http_status = 502


class RequestTooLarge(FunctionError):
    """The caller's request body is over the pre-authentication limit (nothing more is read)."""

    code = "request_too_large"
    http_status = 413


# --------------------------------------------------------------------------- batches


class TooManyItems(FunctionError):
    """A batch with more items than the function's ``max_batch_items``."""

    code = "too_many_items"
    http_status = 413


class DuplicateUrl(FunctionError):
    """A batch that names one URL twice (one signed request never fetches a URL twice)."""

    code = "duplicate_url"
    http_status = 422


class BatchTooLarge(FunctionError):
    """An item left unanalysed because its batch already fetched ``max_batch_bytes``."""

    code = "batch_too_large"
    http_status = 413


# --------------------------------------------------------------------------- decoding


class ImageError(FunctionError):
    """Base of everything ``hash_image`` raises: the bytes are not a hashable image."""

    code = "decode_failed"
    http_status = 422


class NotAnImage(ImageError):
    code = "not_an_image"
    http_status = 415


class UnsupportedFormat(ImageError):
    code = "unsupported_format"
    http_status = 415


class PixelLimit(ImageError):
    code = "pixel_limit"
    http_status = 413


class DecodeFailed(ImageError):
    code = "decode_failed"
    http_status = 422


# Video limits (issue 13, worker_function/video/): each its own code, so that an operator sees
# which bound refused a video. ImageError subclasses: the decoder's verdict on the bytes.


class VideoTooLong(ImageError):
    """Declared or decoded duration over ``video.max_duration_seconds``."""

    code = "video_too_long"
    http_status = 413


class TooManyFrames(ImageError):
    """More frames decoded than ``video.max_frames``, or more hashed than the protocol carries."""

    code = "too_many_frames"
    http_status = 413


class FrameTooLarge(ImageError):
    """One frame (declared or decoded) over ``video.max_frame_pixels``."""

    code = "frame_too_large"
    http_status = 413


class VideoTooManyPixels(ImageError):
    """All decoded frames together over ``video.max_total_pixels`` (bounds decoding work)."""

    code = "video_too_many_pixels"
    http_status = 413


class AnalysisFailed(FunctionError):
    """Catch-all for the unexpected: reported as a 502, never as a 500 with a traceback."""

    code = "analysis_failed"
    http_status = 502


ALL_ERRORS: tuple[type[FunctionError], ...] = (
    BadUrl,
    InvalidRequest,
    BlockedAddress,
    TooManyRedirects,
    UpstreamStatus,
    FetchFailed,
    FetchTimeout,
    TooLarge,
    BadRedirect,
    UnsupportedEncoding,
    RequestTooLarge,
    TooManyItems,
    DuplicateUrl,
    BatchTooLarge,
    NotAnImage,
    UnsupportedFormat,
    PixelLimit,
    DecodeFailed,
    VideoTooLong,
    TooManyFrames,
    FrameTooLarge,
    VideoTooManyPixels,
    AnalysisFailed,
)


def describe_validation(errors: Any) -> str:
    """A request's validation errors for its answer: location and message only (pydantic's
    "input" would echo the request body into the reply)."""
    parts = []
    for error in list(errors)[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"
