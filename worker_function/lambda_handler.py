"""AWS Lambda entry point: ``worker_function.lambda_handler.handler`` (API Gateway REST or HTTP
API, Lambda function URLs, ALB), via Mangum around the same FastAPI app.

Settings come from ``LIBRA_FUNCTION_*`` environment variables (and ``LIBRA_FUNCTION_CONFIG``, a
TOML path inside the image). Lambda runs one request per sandbox, enforces its own memory and
time limits and has no /dev/shm for multiprocessing semaphores, so decoding defaults to
``decode_isolation = "thread"`` here; the sandbox is the isolation boundary.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mangum import Mangum

from .app import create_app
from .settings import FunctionSettings, load_settings

_handler: Mangum | None = None


def lambda_settings() -> FunctionSettings:
    config = os.environ.get("LIBRA_FUNCTION_CONFIG")
    isolation = os.environ.get("LIBRA_FUNCTION_DECODE_ISOLATION", "thread")
    return load_settings(Path(config) if config else None, decode_isolation=isolation)


def make_handler(settings: FunctionSettings | None = None) -> Mangum:
    """A Mangum adapter around a fresh app (tests pass their own settings)."""
    return Mangum(create_app(settings or lambda_settings()), lifespan="off")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda handler. The app is built once per sandbox, on the first invocation."""
    global _handler
    if _handler is None:
        _handler = make_handler()
    return _handler(event, context)
