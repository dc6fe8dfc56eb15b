"""Wiring of DP mode into the app: the ``[viewer]`` settings as a budget policy, and the guard
that keeps views with exact match-derived counts from viewers while DP mode is on.

The guarded views (coverage with its matches and prevalence, flows, removals, discovery)
count the same matches the noisy picture protects, exactly: serving them to viewers would
undo the guarantee. They answer 404 ``not_published`` to a viewer (the dashboard shows "this
coordinator does not serve these figures"), and stay whole for admins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Depends

from protocol.errors import ProtocolError

from ..auth import Scope
from ..config import ViewerSettings
from ..deps import PrincipalDep
from .accountant import BudgetPolicy


class NotPublished(ProtocolError):
    """A view with exact counts asked for by a viewer while the viewer tier is in DP mode."""

    code = "not_published"
    http_status = 404


def dp_policy(viewer: ViewerSettings) -> BudgetPolicy | None:
    """The budget policy when the viewer tier publishes with differential privacy, else None."""
    if viewer.privacy != "dp":
        return None
    return BudgetPolicy(
        epsilon=viewer.epsilon,
        budget=viewer.budget,
        window=viewer.budget_window,
        refresh=viewer.refresh,
    )


def _refuse_viewers(principal: PrincipalDep) -> None:
    # Only callers who could read the picture at all: others keep their 401/403.
    if principal.can(Scope.PICTURE_READ) and not principal.can(Scope.PICTURE_DETAIL):
        raise NotPublished(
            'this view counts matches exactly; with [viewer] privacy = "dp" it is served '
            "to admins only (viewers get the noisy picture)"
        )


def exact_views_guard(policy: BudgetPolicy | None) -> list[Any]:
    """Route dependencies for a router of exact views: none unless DP mode is on."""
    guard: Callable[..., None] = _refuse_viewers
    return [] if policy is None else [Depends(guard)]
