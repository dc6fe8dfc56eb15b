"""Attach the dashboard (pages, static assets, admin JSON) to the coordinator's app."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from .admin_api import admin_router
from .pages import dashboard_router
from .security import SecurityHeaders


def static_dir() -> Path:
    return Path(str(resources.files(__package__).joinpath("static")))


def install_dashboard(app: FastAPI, clock: Callable[[], datetime]) -> None:
    app.include_router(admin_router(clock))
    app.include_router(dashboard_router())
    app.mount(
        "/dashboard/static",
        SecurityHeaders(StaticFiles(directory=static_dir(), follow_symlink=False)),
        name="dashboard-static",
    )
