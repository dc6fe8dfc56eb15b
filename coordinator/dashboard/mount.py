"""Attach the dashboard (pages and static assets) to the coordinator's app."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from .pages import dashboard_router
from .security import SecurityHeaders


def static_dir() -> Path:
    return Path(str(resources.files(__package__).joinpath("static")))


def install_dashboard(app: FastAPI) -> None:
    app.include_router(dashboard_router())
    app.mount(
        "/dashboard/static",
        SecurityHeaders(StaticFiles(directory=static_dir(), follow_symlink=False)),
        name="dashboard-static",
    )
