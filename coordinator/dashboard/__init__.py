"""The coordinator's web dashboard: server-rendered page shells, vendored ECharts, and
page scripts that read the coordinator's own JSON API. Nothing is fetched from elsewhere."""

from __future__ import annotations

from .mount import install_dashboard

__all__ = ["install_dashboard"]
